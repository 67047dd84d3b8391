"""The export bucket as an observable source asset, its preflight checks as asset checks.

``s3/cxone_export_bucket`` is observed, not materialized: its data version is a hash of the
bucket's security settings (versioning, default encryption, public access block, policy), so a
change to any of them shows up as a new version in the UI. One asset check per bucket preflight
(the same functions ``cxone-sync doctor`` runs) reports pass or fail with the finding as metadata
and the exact remedy as the description. ``verify_export_bucket_job`` runs all of them, and the
``verify_export_bucket_daily`` schedule runs that job once a day (on by default only on the
embedded default, the local stack; a deployment turns it on under Automation).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from typing import Any

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource

from cxone_sync.clients import cached_client
from cxone_sync.defs.resources import IngestResource, resource_aws_config
from cxone_sync.preflight.bucket import (
    check_bucket_policy,
    check_default_encryption,
    check_public_access_block,
    check_versioning,
)
from cxone_sync.preflight.common import (
    CHECK_ENCRYPTION,
    CHECK_POLICY,
    CHECK_PUBLIC_ACCESS,
    CHECK_READ,
    CHECK_VERSIONING,
    CheckLine,
)
from cxone_sync.preflight.read import check_read_decrypt

EXPORT_BUCKET_KEY = dg.AssetKey(["s3", "cxone_export_bucket"])
STORAGE_GROUP = "storage"
VERIFY_JOB_NAME = "verify_export_bucket_job"
VERIFY_SCHEDULE_NAME = "verify_export_bucket_daily"
VERIFY_CRON = "15 6 * * *"
"""Daily at 06:15 UTC: a bucket setting changed by hand fails a check within a day."""

CHECK_NAMES = (
    CHECK_VERSIONING,
    CHECK_ENCRYPTION,
    CHECK_PUBLIC_ACCESS,
    CHECK_POLICY,
    CHECK_READ,
)


def kms_client(s3: S3Resource) -> Any:
    """A boto3 KMS client with the S3 resource's region and credentials, on KMS's own endpoint
    (the resource's ``kms_endpoint_url``, else boto3's: ``AWS_ENDPOINT_URL_KMS`` /
    ``AWS_ENDPOINT_URL`` / AWS), never on the S3 endpoint."""
    return cached_client("kms", resource_aws_config(s3))


def check_result(line: CheckLine, bucket: str) -> dg.AssetCheckResult:
    """A preflight line as an asset check result: the fix is the description on failure."""
    metadata: dict[str, Any] = {"bucket": bucket, "detail": line.detail}
    if line.fix:
        metadata["fix"] = dg.MetadataValue.md(f"```\n{line.fix}\n```")
    return dg.AssetCheckResult(
        passed=line.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=line.detail if line.ok else f"{line.detail}. Fix: {line.fix}",
        metadata=metadata,
    )


def _bucket_settings(client: Any, bucket: str) -> dict[str, Any]:
    """The raw security settings of the bucket (each None when absent or unreadable)."""
    reads: dict[str, Callable[[], Any]] = {
        "versioning": lambda: client.get_bucket_versioning(Bucket=bucket).get("Status"),
        "encryption": lambda: client.get_bucket_encryption(Bucket=bucket)[
            "ServerSideEncryptionConfiguration"
        ],
        "public_access_block": lambda: client.get_public_access_block(Bucket=bucket)[
            "PublicAccessBlockConfiguration"
        ],
        "policy": lambda: json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"]),
    }
    found: dict[str, Any] = {}
    for name, read in reads.items():
        try:
            found[name] = read()
        except (ClientError, BotoCoreError, ValueError):
            found[name] = None
    return found


def _observe_export_bucket(s3: S3Resource, ingest: IngestResource) -> dg.ObserveResult:
    found = _bucket_settings(s3.get_client(), ingest.bucket)
    digest = hashlib.sha256(json.dumps(found, sort_keys=True, default=str).encode()).hexdigest()
    encryption = (found["encryption"] or {}).get("Rules") or [{}]
    default = encryption[0].get("ApplyServerSideEncryptionByDefault", {})
    return dg.ObserveResult(
        asset_key=EXPORT_BUCKET_KEY,
        data_version=dg.DataVersion(digest[:16]),
        metadata={
            "bucket": ingest.bucket,
            "versioning": found["versioning"] or "never enabled",
            "sse_algorithm": default.get("SSEAlgorithm") or "none",
            "kms_key": default.get("KMSMasterKeyID") or "none",
            "policy_statements": len((found["policy"] or {}).get("Statement", [])),
        },
    )


EXPORT_BUCKET_SPEC = dg.AssetSpec(
    EXPORT_BUCKET_KEY,
    group_name=STORAGE_GROUP,
    kinds={"s3"},
    description="The S3 bucket CXone Data Download exports Parquet files to (CONTRACT §2).",
)

with warnings.catch_warnings():
    # observable source assets are beta in Dagster 1.13 (the tested range)
    warnings.simplefilter("ignore", dg.BetaWarning)
    cxone_export_bucket = dg.multi_observable_source_asset(
        specs=[EXPORT_BUCKET_SPEC], name="observe_cxone_export_bucket"
    )(_observe_export_bucket)


def _bucket_check(
    name: str, description: str, run: Callable[[Any, S3Resource, str], CheckLine]
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=EXPORT_BUCKET_KEY, name=name, description=description)
    def _check(s3: S3Resource, ingest: IngestResource) -> dg.AssetCheckResult:
        return check_result(run(s3.get_client(), s3, ingest.bucket), ingest.bucket)

    return _check


def build_storage_checks() -> list[dg.AssetChecksDefinition]:
    """One asset check per bucket"""
    return [
        _bucket_check(
            CHECK_VERSIONING,
            "Object versioning is Enabled.",
            lambda client, _, bucket: check_versioning(client, bucket),
        ),
        _bucket_check(
            CHECK_ENCRYPTION,
            "Default encryption is SSE-KMS with a customer-managed key.",
            lambda client, s3, bucket: check_default_encryption(client, kms_client(s3), bucket),
        ),
        _bucket_check(
            CHECK_PUBLIC_ACCESS,
            "All four public-access-block flags are on.",
            lambda client, _, bucket: check_public_access_block(client, bucket),
        ),
        _bucket_check(
            CHECK_POLICY,
            "The bucket policy denies plain HTTP and uploads without SSE-KMS.",
            lambda client, _, bucket: check_bucket_policy(client, bucket),
        ),
        _bucket_check(
            CHECK_READ,
            "The reader can read and decrypt the newest export file.",
            lambda client, _, bucket: check_read_decrypt(client, bucket),
        ),
    ]


def build_storage_defs(schedule_running: bool = False) -> dg.Definitions:
    """The export bucket source asset, its checks, the job that runs them and its daily schedule.

    ``schedule_running``: the schedule's default status (True on the embedded default, so the local
    stack evaluates the checks without a click; elsewhere it starts STOPPED like the sensors).
    """
    job = dg.define_asset_job(
        VERIFY_JOB_NAME,
        selection=dg.AssetSelection.checks_for_assets(EXPORT_BUCKET_KEY),
        description="Run the export bucket's preflight checks.",
    )
    schedule = dg.ScheduleDefinition(
        name=VERIFY_SCHEDULE_NAME,
        job=job,
        cron_schedule=VERIFY_CRON,
        execution_timezone="UTC",
        description="Evaluate the export bucket's five preflight checks once a day.",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if schedule_running
            else dg.DefaultScheduleStatus.STOPPED
        ),
    )
    return dg.Definitions(
        assets=[cxone_export_bucket],
        asset_checks=build_storage_checks(),
        jobs=[job],
        schedules=[schedule],
    )
