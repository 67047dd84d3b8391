"""One typed settings object for the whole platform (CONTRACT §4), read lazily.

Nothing reads the environment at import time: call :func:`get_settings` where the value is needed.
With no variable set, everything points at the embedded default: the local simulator and S3
endpoint started by ``cxone-sync local-stack`` and a DuckDB file under the data folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cxone_sync.catalog import CATEGORIES, SURFACES, default_download_id

# The embedded default: where `cxone-sync local-stack` listens and what the simulator accepts.
LOCAL_HOST = "127.0.0.1"
LOCAL_API_PORT = 8765
LOCAL_S3_PORT = 9010
LOCAL_API_URL = f"http://{LOCAL_HOST}:{LOCAL_API_PORT}"
LOCAL_S3_URL = f"http://{LOCAL_HOST}:{LOCAL_S3_PORT}"
SIM_CLIENT_ID = "cxone-sim-client"
SIM_CLIENT_SECRET = "cxone-sim-secret"  # noqa: S105 - the simulator's public demo credential
SIM_BUCKET = "org-cxone-data-lake"
SIM_AWS_REGION = "us-east-1"
SIM_AWS_KEY = "testing"  # moto accepts any credentials
DEFAULT_PARTITIONS_START = date(2024, 3, 15)
DEFAULT_AUTH_URL = "https://cxone.niceincontact.com"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
INSTANCE_TEMPLATE = PROJECT_ROOT / "config" / "dagster.yaml"
"""The Dagster instance settings copied into a new DAGSTER_HOME. Not at the repository root:
`dagster dev` warns about a dagster.yaml in its working folder that is not DAGSTER_HOME."""


def _json_object(value: object, variable: str, mapping: str, example: str) -> object:
    """A JSON object given as an environment string; empty means none."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    if not value:
        return {}
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{variable} must be a JSON object mapping {mapping}, e.g. {example} ({exc.msg})"
        ) from None


def known_categories(variable: str, names: Iterable[str]) -> None:
    """Reject category names the catalog does not know in the JSON setting ``variable``."""
    known = [c.name for c in CATEGORIES]
    unknown = sorted(str(n) for n in names if n not in known)
    if unknown:
        raise ValueError(
            f"{variable} names unknown categories {unknown}; known: {', '.join(known)}"
        )


def aws_chain_region() -> str | None:
    """The region the AWS SDK's own chain gives: ``AWS_DEFAULT_REGION``, else the ``region`` of
    the profile (``AWS_PROFILE``, default ``default``) in the config file (``AWS_CONFIG_FILE``,
    default ``~/.aws/config``); None when nothing sets one."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        region = botocore.session.Session().get_config_variable("region")
    except BotoCoreError:  # e.g. AWS_PROFILE names a profile the config file lacks
        return None
    return region or None


class AutomationSettings(BaseSettings):
    """The sensors' part of :class:`Settings`: polling, recovery, gap and reconciliation knobs."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    jobs_sensor_interval_seconds: int = Field(
        default=25 * 60, alias="CXONE_JOBS_SENSOR_INTERVAL_SECONDS"
    )
    """How often ``{category}_jobs_sensor`` asks the API for job state changes."""
    jobs_sensor_intervals_by_category: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, alias="CXONE_JOBS_SENSOR_INTERVALS"
    )
    """Per-category overrides, a JSON object: ``{"workforce_management": 3600}``."""
    gap_sensor_interval_seconds: int = Field(
        default=60 * 60, alias="CXONE_GAP_SENSOR_INTERVAL_SECONDS"
    )
    reconciliation_interval_seconds: int = Field(
        default=24 * 60 * 60, alias="CXONE_RECONCILIATION_INTERVAL_SECONDS"
    )
    max_jobs_per_tick: int = Field(default=2000, alias="CXONE_SENSOR_MAX_JOBS_PER_TICK")
    """Job state changes handled per tick; the rest wait for the next tick (cursor-exact)."""
    sensor_tick_budget_seconds: float = Field(
        default=20.0, gt=0, alias="CXONE_SENSOR_TICK_BUDGET_SECONDS"
    )
    """Wall time a tick may spend on bounded work (listing, file audit) before it stops, saves
    its position in the cursor and says so; Dagster's own limit for a tick is 60 s."""
    reconciliation_max_heads_per_tick: int = Field(
        default=2000, ge=1, alias="CXONE_RECONCILIATION_MAX_HEADS_PER_TICK"
    )
    """Loaded files the file audit re-checks (S3 HEAD) per tick; the next tick goes on."""
    sensor_ranged_run_min_partitions: int = Field(
        default=4, ge=2, alias="CXONE_SENSOR_RANGED_RUN_MIN_PARTITIONS"
    )
    """Consecutive partitions to load from one tick that become ranged runs (at most
    CXONE_BACKFILL_PARTITIONS_PER_RUN each) instead of one run per job and partition."""
    sensor_partitions_per_run: int = Field(
        default=24, ge=1, alias="CXONE_BACKFILL_PARTITIONS_PER_RUN"
    )
    """The assets' BackfillPolicy (same variable as ``cxone_backfill_partitions_per_run``)."""
    recovery_max_attempts: int = Field(default=3, alias="CXONE_RECOVERY_MAX_ATTEMPTS")
    """Manual exports requested for one failed or missing interval before giving up."""
    recovery_backoff_ticks: int = Field(default=1, alias="CXONE_RECOVERY_BACKOFF_TICKS")
    """Ticks to wait after the first attempt; doubles with every further attempt."""
    max_exports_per_tick: int = Field(default=24, alias="CXONE_MAX_EXPORTS_PER_TICK")
    gap_lookback_days: int = Field(default=7, alias="CXONE_GAP_LOOKBACK_DAYS")
    gap_grace_minutes: int = Field(default=10, alias="CXONE_GAP_GRACE_MINUTES")
    """Allowance beyond interval end + offset + the category's lag before an interval is a gap."""
    reconciliation_lookback_days: int = Field(default=7, alias="CXONE_RECONCILIATION_LOOKBACK_DAYS")
    reconciliation_min_age_hours: int = Field(
        default=24, alias="CXONE_RECONCILIATION_MIN_AGE_HOURS"
    )
    staging_cleanup_interval_seconds: int = Field(
        default=60 * 60, ge=1, alias="CXONE_STAGING_CLEANUP_INTERVAL_SECONDS"
    )
    """How often ``staging_cleanup_sensor`` looks for staging folders of ended runs."""
    staging_cleanup_grace_minutes: float = Field(
        default=24 * 60, ge=0, alias="CXONE_STAGING_CLEANUP_GRACE_MINUTES"
    )
    """How long an ended run's staging stays (a re-execution from failure reuses it)."""

    sensor_lock_wait_seconds: float = Field(
        default=10.0, ge=0, alias="CXONE_SENSOR_LOCK_WAIT_SECONDS"
    )
    """How long a sensor tick waits for a warehouse file another process holds before it skips
    (the tick's work comes back on the next tick; a tick has a 60 s budget)."""

    @field_validator("jobs_sensor_intervals_by_category", mode="before")
    @classmethod
    def _parse_intervals(cls, value: object) -> object:
        return _json_object(
            value,
            "CXONE_JOBS_SENSOR_INTERVALS",
            "category to seconds",
            '{"workforce_management": 3600}',
        )

    @field_validator("jobs_sensor_intervals_by_category", mode="after")
    @classmethod
    def _known_categories(cls, value: dict[str, int]) -> dict[str, int]:
        known_categories("CXONE_JOBS_SENSOR_INTERVALS", value)
        if any(v < 30 for v in value.values()):
            raise ValueError("CXONE_JOBS_SENSOR_INTERVALS: intervals must be at least 30 seconds")
        return value

    def jobs_sensor_interval(self, category: str) -> int:
        """Minimum seconds between two ticks of ``{category}_jobs_sensor``."""
        return self.jobs_sensor_intervals_by_category.get(
            category, self.jobs_sensor_interval_seconds
        )

    @property
    def gap_lookback(self) -> timedelta:
        return timedelta(days=self.gap_lookback_days)

    @property
    def gap_grace(self) -> timedelta:
        return timedelta(minutes=self.gap_grace_minutes)

    @property
    def reconciliation_lookback(self) -> timedelta:
        return timedelta(days=self.reconciliation_lookback_days)

    @property
    def reconciliation_min_age(self) -> timedelta:
        return timedelta(hours=self.reconciliation_min_age_hours)

    @property
    def staging_cleanup_grace_seconds(self) -> float:
        return self.staging_cleanup_grace_minutes * 60


class Settings(AutomationSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    cxone_api_url: str = Field(default=LOCAL_API_URL, alias="CXONE_API_URL")
    cxone_token_url: str | None = Field(default=None, alias="CXONE_TOKEN_URL")
    cxone_client_id: str = Field(default=SIM_CLIENT_ID, alias="CXONE_CLIENT_ID")
    cxone_client_secret: SecretStr = Field(
        default=SecretStr(SIM_CLIENT_SECRET), alias="CXONE_CLIENT_SECRET"
    )
    cxone_access_key_id: str | None = Field(default=None, alias="CXONE_ACCESS_KEY_ID")
    cxone_access_key_secret: SecretStr | None = Field(default=None, alias="CXONE_ACCESS_KEY_SECRET")
    cxone_download_ids: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="CXONE_DOWNLOAD_IDS"
    )
    cxone_bucket: str = Field(default=SIM_BUCKET, alias="CXONE_BUCKET")
    aws_endpoint_url_kms: str | None = Field(default=None, alias="AWS_ENDPOINT_URL_KMS")
    """KMS's own endpoint; never ``AWS_ENDPOINT_URL_S3`` (see ``clients.kms_endpoint_url``)."""
    aws_endpoint_url_s3: str | None = Field(default=None, alias="AWS_ENDPOINT_URL_S3")
    aws_endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    aws_region: str | None = Field(default=None, alias="AWS_REGION")
    cxone_partitions_start: date = Field(
        default=DEFAULT_PARTITIONS_START, alias="CXONE_PARTITIONS_START"
    )
    cxone_warehouse: Literal["duckdb", "snowflake"] = Field(
        default="duckdb", alias="CXONE_WAREHOUSE"
    )
    cxone_data_dir: Path = Field(default=DEFAULT_DATA_DIR, alias="CXONE_DATA_DIR")
    cxone_duckdb_path: Path | None = Field(default=None, alias="CXONE_DUCKDB_PATH")
    cxone_duckdb_memory_limit: str | None = Field(default=None, alias="CXONE_DUCKDB_MEMORY_LIMIT")
    cxone_record_count_tolerance: float = Field(
        default=0.05, ge=0, lt=1, alias="CXONE_RECORD_COUNT_TOLERANCE"
    )
    """Largest deviation of a job's rows from its manifest's record_count that still loads."""
    cxone_record_count_tolerances: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, alias="CXONE_RECORD_COUNT_TOLERANCES"
    )
    """Per-category overrides of the tolerance, a JSON object: ``{"speech": 0.1}``."""
    warehouse_lock_wait_seconds: float = Field(
        default=60.0, ge=0, alias="CXONE_WAREHOUSE_LOCK_WAIT_SECONDS"
    )
    """How long a run step waits for a DuckDB file another process holds (backoff with jitter)
    before the step fails with a clear error; the step retry policy then retries it later."""
    step_max_retries: int = Field(default=3, ge=0, alias="CXONE_STEP_MAX_RETRIES")
    """Retries of a warehouse step that failed for a transient reason (lock, network, S3 5xx)."""
    step_retry_delay_seconds: float = Field(
        default=15.0, ge=0, alias="CXONE_STEP_RETRY_DELAY_SECONDS"
    )
    """The first retry's delay; doubles with every further retry (+/- jitter)."""
    cxone_warehouse_pool_limit: int | None = Field(
        default=None, ge=1, alias="CXONE_WAREHOUSE_POOL_LIMIT"
    )
    """Runs merging at once (the ``cxone_warehouse`` pool); default 1 on DuckDB, 8 on Snowflake."""
    snowflake_account: str | None = Field(default=None, alias="SNOWFLAKE_ACCOUNT")
    snowflake_user: str | None = Field(default=None, alias="SNOWFLAKE_USER")
    snowflake_password: SecretStr | None = Field(default=None, alias="SNOWFLAKE_PASSWORD")
    snowflake_private_key_path: Path | None = Field(
        default=None, alias="SNOWFLAKE_PRIVATE_KEY_PATH"
    )
    snowflake_private_key_passphrase: SecretStr | None = Field(
        default=None, alias="SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
    )
    snowflake_role: str | None = Field(default=None, alias="SNOWFLAKE_ROLE")
    snowflake_warehouse: str | None = Field(default=None, alias="SNOWFLAKE_WAREHOUSE")
    snowflake_database: str | None = Field(default=None, alias="SNOWFLAKE_DATABASE")
    snowflake_stage: str = Field(default="PUBLIC.CXONE_EXPORTS", alias="SNOWFLAKE_STAGE")
    """The named stage over the export bucket's root (``s3://$CXONE_BUCKET/``), as written
    after ``@``: unquoted, optionally qualified."""
    snowflake_host: str | None = Field(default=None, alias="SNOWFLAKE_HOST")
    snowflake_port: int | None = Field(default=None, alias="SNOWFLAKE_PORT")
    snowflake_protocol: Literal["https", "http"] | None = Field(
        default=None, alias="SNOWFLAKE_PROTOCOL"
    )
    """Host/port/protocol: private link, or the local emulator (``cxone-sync local-snowflake``)."""
    cxone_backfill_partitions_per_run: int = Field(
        default=24, ge=1, alias="CXONE_BACKFILL_PARTITIONS_PER_RUN"
    )
    """UI backfills: partitions per run (24 = one day of an hourly category per run)."""

    # The bridge (cxone_sync/bridge): NICE's public export surfaces. Additive; CXONE_SOURCE
    # unset keeps every category on the Data Download API.
    cxone_source: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="CXONE_SOURCE"
    )
    """``data_download`` (default), ``data_extraction`` or ``reporting``; one word for every
    category or a JSON object per category (``{"quality_management": "data_extraction"}``)."""
    cxone_auth_url: str = Field(default=DEFAULT_AUTH_URL, alias="CXONE_AUTH_URL")
    """Where ``/.well-known/openid-configuration`` is served (NICE's discovery host)."""
    cxone_tenant_id: str | None = Field(default=None, alias="CXONE_TENANT_ID")
    """The tenant id; when unset, the token's ``tenantId`` claim."""
    cxone_extraction_api_url: str | None = Field(default=None, alias="CXONE_EXTRACTION_API_URL")
    """The tenant's API host; when unset, ``api_endpoint`` of the tenant's cxone-configuration."""
    cxone_extraction_entities: Annotated[dict[str, dict[str, object]], NoDecode] = Field(
        default_factory=dict, alias="CXONE_EXTRACTION_ENTITIES"
    )
    """JSON: ``{"category/data_type": {"entity", "version", "types", "updated_at"}}``."""
    cxone_extraction_min_interval_seconds: float = Field(
        default=30.0, ge=0, alias="CXONE_EXTRACTION_MIN_INTERVAL_SECONDS"
    )
    cxone_external_id: str | None = Field(default=None, alias="CXONE_EXTERNAL_ID")
    """``cxone-sync policy``: the ``sts:ExternalId`` agreed in CXone's Data Download S3 setup."""
    cxone_aws_account_id: str | None = Field(default=None, alias="CXONE_AWS_ACCOUNT_ID")
    """``cxone-sync policy``: CXone's AWS account (principal of the export role's trust)."""
    snowflake_iam_user_arn: str | None = Field(default=None, alias="SNOWFLAKE_IAM_USER_ARN")
    snowflake_external_id: str | None = Field(default=None, alias="SNOWFLAKE_EXTERNAL_ID")
    """``cxone-sync policy``: the storage integration's ``STORAGE_AWS_IAM_USER_ARN`` and
    ``STORAGE_AWS_EXTERNAL_ID`` (``DESC INTEGRATION``), for the reader role's trust policy."""
    cxone_bridge_prefix: str = Field(default="cxone-bridge/", alias="CXONE_BRIDGE_PREFIX")
    """Key prefix in CXONE_BUCKET under which the bridge writes files and manifests."""

    @field_validator("cxone_source", mode="before")
    @classmethod
    def _parse_source(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("{"):
            word = value.strip()
            return {c.name: word for c in CATEGORIES} if word else {}
        return _json_object(
            value, "CXONE_SOURCE", "category to surface", '{"quality_management": "reporting"}'
        )

    @field_validator("cxone_source", mode="after")
    @classmethod
    def _known_sources(cls, value: dict[str, str]) -> dict[str, str]:
        known_categories("CXONE_SOURCE", value)
        bad = {k: v for k, v in value.items() if v not in SURFACES}
        if bad:
            raise ValueError(
                f"CXONE_SOURCE: surfaces must be one of {', '.join(SURFACES)}; got {bad}"
            )
        return value

    @field_validator("cxone_extraction_entities", mode="before")
    @classmethod
    def _parse_entities(cls, value: object) -> object:
        return _json_object(
            value,
            "CXONE_EXTRACTION_ENTITIES",
            "category/data_type to an entity",
            '{"quality_management/evaluation": {"entity": "qm-workflows", "version": "4"}}',
        )

    @field_validator("cxone_extraction_entities", mode="after")
    @classmethod
    def _known_entity_targets(
        cls, value: dict[str, dict[str, object]]
    ) -> dict[str, dict[str, object]]:
        known_categories("CXONE_EXTRACTION_ENTITIES", {k.partition("/")[0] for k in value})
        return value

    def source_for(self, category: str) -> str:
        """The surface a category is read from (CXONE_SOURCE)."""
        return self.cxone_source.get(category, "data_download")

    @field_validator("cxone_download_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        return _json_object(
            value,
            "CXONE_DOWNLOAD_IDS",
            "category to download id",
            '{"telephony": "dl-telephony-prod"}',
        )

    @field_validator("cxone_download_ids", mode="after")
    @classmethod
    def _known_download_categories(cls, value: dict[str, str]) -> dict[str, str]:
        known_categories("CXONE_DOWNLOAD_IDS", value)
        return value

    @field_validator("cxone_record_count_tolerances", mode="before")
    @classmethod
    def _parse_tolerances(cls, value: object) -> object:
        return _json_object(
            value, "CXONE_RECORD_COUNT_TOLERANCES", "category to a fraction", '{"speech": 0.1}'
        )

    @field_validator("cxone_record_count_tolerances", mode="after")
    @classmethod
    def _valid_tolerances(cls, value: dict[str, float]) -> dict[str, float]:
        known_categories("CXONE_RECORD_COUNT_TOLERANCES", value)
        bad = {k: v for k, v in value.items() if not 0 <= v < 1}
        if bad:
            raise ValueError(
                f"CXONE_RECORD_COUNT_TOLERANCES: tolerances are fractions from 0 up to (not "
                f"including) 1, e.g. 0.1 for 10%; got {bad}"
            )
        return value

    def record_count_tolerance(self, category: str) -> float:
        """The record-count tolerance of a category (CXONE_RECORD_COUNT_TOLERANCES, else
        CXONE_RECORD_COUNT_TOLERANCE)."""
        return self.cxone_record_count_tolerances.get(category, self.cxone_record_count_tolerance)

    @property
    def embedded(self) -> bool:
        """True when the API is the local simulator's default address."""
        return self.cxone_api_url.rstrip("/") == LOCAL_API_URL

    @property
    def token_url(self) -> str:
        return self.cxone_token_url or f"{self.cxone_api_url.rstrip('/')}/oauth/token"

    @property
    def s3_endpoint_url(self) -> str | None:
        """Explicit S3 endpoint; the local S3 store when running on the embedded default."""
        explicit = self.aws_endpoint_url_s3 or self.aws_endpoint_url
        if explicit:
            return explicit
        return LOCAL_S3_URL if self.embedded else None

    @property
    def region(self) -> str | None:
        """``AWS_REGION``; else the local S3 store's on the embedded default; else the AWS SDK's
        chain (:func:`aws_chain_region`); None when nothing sets one: boto3 then reaches
        S3 through its global endpoint (which redirects to the bucket's region), and what needs
        a region (KMS: the doctor, the bucket checks) fails with "You must specify a region"."""
        if self.aws_region:
            return self.aws_region
        return SIM_AWS_REGION if self.embedded else aws_chain_region()

    @property
    def warehouse_pool_limit(self) -> int:
        """The ``cxone_warehouse`` pool's limit: DuckDB has one writer, Snowflake none."""
        if self.cxone_warehouse_pool_limit is not None:
            return self.cxone_warehouse_pool_limit
        return 8 if self.cxone_warehouse == "snowflake" else 1

    def snowflake_missing(self) -> list[str]:
        """The SNOWFLAKE_* variables CXONE_WAREHOUSE=snowflake needs that are not set."""
        required = {
            "SNOWFLAKE_ACCOUNT": self.snowflake_account,
            "SNOWFLAKE_USER": self.snowflake_user,
            "SNOWFLAKE_DATABASE": self.snowflake_database,
        }
        missing = [name for name, value in required.items() if not value]
        if self.snowflake_password is None and self.snowflake_private_key_path is None:
            missing.append("SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH")
        return missing

    @property
    def duckdb_path(self) -> Path:
        return self.cxone_duckdb_path or self.cxone_data_dir / "warehouse.duckdb"

    @property
    def staging_dir(self) -> Path:
        return self.cxone_data_dir / "staging"

    def download_id(self, category: str) -> str:
        return self.cxone_download_ids.get(category) or default_download_id(category)

    def download_ids(self) -> dict[str, str]:
        return {c.name: self.download_id(c.name) for c in CATEGORIES}


def get_settings() -> Settings:
    """Read the environment now (never at import time)."""
    return Settings()
