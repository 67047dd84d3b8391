"""Resources, and the one environment-to-resources map (CONTRACT §4).

``build_resources`` is the only place that decides what backs the platform: the embedded default
(local simulator, local S3 store, DuckDB) or production (CXone, AWS, Snowflake). The AWS side comes
from :mod:`cxone_sync.clients` (the map the command line and ``doctor`` use too). Secrets are
passed as ``dg.EnvVar`` so Dagster never stores or prints their values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from cxone_sync.clients import AwsConfig, aws_config, cached_client
from cxone_sync.cxone.client import CXoneClient, RetryPolicy
from cxone_sync.cxone.source import ExportSource
from cxone_sync.settings import SIM_CLIENT_SECRET, Settings
from cxone_sync.warehouse.base import Warehouse
from cxone_sync.warehouse.duckdb_warehouse import DEFAULT_LOCK_WAIT_SECONDS, DuckDBWarehouse


class CXoneAPIResource(dg.ConfigurableResource):
    """The CXone Data Download API (or the local simulator), through :class:`CXoneClient`."""

    api_url: str
    token_url: str
    client_id: str
    client_secret: str
    access_key_id: str | None = None
    access_key_secret: str | None = None
    download_ids: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = 30.0
    max_attempts: int = 6
    # The bridge (CXONE_SOURCE): categories read from the bridge's manifests instead of the
    # Data Download API, and where those live. Empty: every category on Data Download.
    bridged: dict[str, str] = Field(default_factory=dict)
    bridge_bucket: str = ""
    bridge_prefix: str = "cxone-bridge/"
    bridge_s3: dict[str, str] = Field(default_factory=dict)
    """CachedS3Resource fields for the bridge's bucket (the platform's S3 settings)."""

    @contextmanager
    def client(self) -> Iterator[ExportSource]:
        client = CXoneClient(
            base_url=self.api_url,
            token_url=self.token_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            access_key_id=self.access_key_id,
            access_key_secret=self.access_key_secret,
            download_ids=self.download_ids,
            timeout=self.timeout_seconds,
            retry=RetryPolicy(attempts=self.max_attempts),
        )
        try:
            if self.bridged:
                from cxone_sync.bridge.routing import RoutingSource
                from cxone_sync.bridge.source import BridgeSource

                s3_config: dict[str, Any] = dict(self.bridge_s3)
                s3 = CachedS3Resource(**s3_config).get_client()
                bridge = BridgeSource(s3, self.bridge_bucket, self.bridge_prefix)
                yield RoutingSource(client, {c: bridge for c in self.bridged})
            else:
                yield client
        finally:
            client.close()


class CachedS3Resource(S3Resource):
    """dagster-aws's S3Resource with its clients from :mod:`cxone_sync.clients`: one boto3
    client per process and configuration (a run touches S3 from every staged asset; building a
    client costs ~150 ms), keyed by a hash of every field, secrets included. KMS has its own
    endpoint (``kms_endpoint_url``; None: boto3's, from ``AWS_ENDPOINT_URL_KMS`` /
    ``AWS_ENDPOINT_URL``), never the S3 one.
    """

    kms_endpoint_url: str | None = None

    def get_client(self) -> Any:
        return cached_client("s3", resource_aws_config(self))

    def get_kms_client(self) -> Any:
        return cached_client("kms", resource_aws_config(self))


def resource_aws_config(s3: S3Resource) -> AwsConfig:
    """The clients configuration of an S3 resource (dagster-aws's own, or ours with a KMS
    endpoint)."""
    return AwsConfig(
        region=s3.region_name,
        s3_endpoint_url=s3.endpoint_url,
        kms_endpoint_url=getattr(s3, "kms_endpoint_url", None),
        profile_name=s3.profile_name,
        access_key_id=s3.aws_access_key_id,
        secret_access_key=s3.aws_secret_access_key,
        session_token=s3.aws_session_token,
        max_attempts=s3.max_attempts,
        use_ssl=s3.use_ssl,
        verify=s3.verify,
        unsigned=s3.use_unsigned_session,
    )


def s3_resource_config(settings: Settings) -> dict[str, Any]:
    """:class:`CachedS3Resource` fields for the settings (unset ones left to AWS's chain)."""
    aws = aws_config(settings)
    fields = {
        "region_name": aws.region,
        "endpoint_url": aws.s3_endpoint_url,
        "kms_endpoint_url": aws.kms_endpoint_url,
        # only the embedded default's dummy key of the local S3 store, never a real one
        "aws_access_key_id": aws.access_key_id,
        "aws_secret_access_key": aws.secret_access_key,
    }
    return {name: value for name, value in fields.items() if value is not None}


class WarehouseResource(dg.ConfigurableResource):
    """The BI warehouse behind one interface: DuckDB (embedded default) or Snowflake.

    ``get()`` is the read-write handle (merges, job events); ``reader()`` the read-only one for
    everything that only reads (staging's ledger lookups, reconciliation, doctor), so DuckDB
    readers never take its single-writer lock. Both wait up to ``lock_wait_seconds`` for a DuckDB
    file another process holds (backoff with jitter) before giving up with a clear error.
    Snowflake has no such lock: both return the same warehouse. It is reached through
    :class:`~cxone_sync.defs.snowflake.SnowflakeWarehouseResource`, this class plus
    ``dagster_snowflake.SnowflakeResource``, built only when ``CXONE_WAREHOUSE=snowflake``:
    importing dagster-snowflake (snowflake.core, snowpark) doubles the CPU cost of loading the code
    location, paid by every run process and code server otherwise. ``s3`` is used on the
    Snowflake path only to prove a file's S3 version is unchanged after COPY (HEAD requests).
    """

    kind: str = "duckdb"
    duckdb_path: str = ""
    memory_limit: str | None = None
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    snowflake_stage: str = "PUBLIC.CXONE_EXPORTS"
    bucket: str = ""
    s3: CachedS3Resource | None = None

    def get(self, *, lock_wait_seconds: float | None = None) -> Warehouse:
        if self.kind == "snowflake":
            return self._snowflake()
        return self._duckdb(read_only=False, lock_wait_seconds=lock_wait_seconds)

    def reader(self, *, lock_wait_seconds: float | None = None) -> Warehouse:
        if self.kind == "snowflake":
            return self._snowflake()
        return self._duckdb(read_only=True, lock_wait_seconds=lock_wait_seconds)

    def _duckdb(self, *, read_only: bool, lock_wait_seconds: float | None) -> DuckDBWarehouse:
        if self.kind != "duckdb":
            raise dg.Failure(description=f"CXONE_WAREHOUSE={self.kind!r}: use duckdb or snowflake")
        path = Path(self.duckdb_path)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        return DuckDBWarehouse(
            path,
            memory_limit=self.memory_limit,
            temp_directory=path.parent / "duckdb_tmp",
            read_only=read_only,
            lock_wait_seconds=(
                self.lock_wait_seconds if lock_wait_seconds is None else lock_wait_seconds
            ),
        )

    def _snowflake(self) -> Warehouse:
        # a plain WarehouseResource has no Snowflake connection (settings without SNOWFLAKE_*)
        raise dg.Failure(
            description="CXONE_WAREHOUSE=snowflake needs SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER, "
            "SNOWFLAKE_DATABASE and SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH "
            "(cxone-sync doctor names what is missing)"
        )


class IngestResource(dg.ConfigurableResource):
    """Where exports live and how strictly they are checked."""

    bucket: str
    staging_dir: str
    record_count_tolerance: float = 0.05
    category_tolerances: dict[str, float] = Field(default_factory=dict)

    def tolerance(self, category: str) -> float:
        return self.category_tolerances.get(category, self.record_count_tolerance)


def secret(name: str, default: str | None) -> Any:
    """An EnvVar when the variable is set (never resolved into config), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def apply_pool_limit(instance: dg.DagsterInstance, settings: Settings, pool: str) -> int:
    """Set the warehouse pool's slots from settings (1 on DuckDB, 8 on Snowflake by default)."""
    limit = settings.warehouse_pool_limit
    instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limit


def _bridge_config(settings: Settings, s3_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The cxone resource's bridge fields; none (today's config) when nothing is bridged."""
    bridged = {c: s for c, s in settings.cxone_source.items() if s != "data_download"}
    if not bridged:
        return {}
    return {
        "bridged": bridged,
        "bridge_bucket": settings.cxone_bucket,
        "bridge_prefix": settings.cxone_bridge_prefix,
        "bridge_s3": dict(s3_kwargs),
    }


def warehouse_resource(settings: Settings, s3: CachedS3Resource) -> WarehouseResource:
    """The warehouse resource for the settings; dagster-snowflake is imported only for Snowflake."""
    common: dict[str, Any] = {
        "kind": settings.cxone_warehouse,
        "duckdb_path": str(settings.duckdb_path),
        "memory_limit": settings.cxone_duckdb_memory_limit,
        "lock_wait_seconds": settings.warehouse_lock_wait_seconds,
        "snowflake_stage": settings.snowflake_stage,
        "bucket": settings.cxone_bucket,
        "s3": s3,
    }
    if settings.cxone_warehouse != "snowflake" or settings.snowflake_missing():
        return WarehouseResource(**common)
    from cxone_sync.defs.snowflake import SnowflakeWarehouseResource, snowflake_resource

    return SnowflakeWarehouseResource(**common, snowflake=snowflake_resource(settings))


def build_resources(settings: Settings) -> dict[str, Any]:
    """The environment-to-resources map: the only place that picks backends."""
    s3_kwargs = s3_resource_config(settings)
    return {
        "cxone": CXoneAPIResource(
            api_url=settings.cxone_api_url,
            token_url=settings.token_url,
            client_id=settings.cxone_client_id,
            client_secret=secret("CXONE_CLIENT_SECRET", SIM_CLIENT_SECRET),
            access_key_id=settings.cxone_access_key_id,
            access_key_secret=secret("CXONE_ACCESS_KEY_SECRET", None),
            download_ids=settings.download_ids(),
            **_bridge_config(settings, s3_kwargs),
        ),
        "s3": CachedS3Resource(**s3_kwargs),
        "warehouse": warehouse_resource(settings, CachedS3Resource(**s3_kwargs)),
        "ingest": IngestResource(
            bucket=settings.cxone_bucket,
            staging_dir=str(settings.staging_dir),
            record_count_tolerance=settings.cxone_record_count_tolerance,
            category_tolerances=settings.cxone_record_count_tolerances,
        ),
    }
