"""The export bucket's source asset and its preflight asset checks, run against the local stack."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from cxone_sync.defs.resources import CachedS3Resource, IngestResource, build_resources
from cxone_sync.defs.storage.assets import (
    CHECK_NAMES,
    EXPORT_BUCKET_KEY,
    VERIFY_JOB_NAME,
    build_storage_checks,
    build_storage_defs,
    cxone_export_bucket,
)
from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION, get_settings
from cxone_sync.simulator.stack import LocalStack
from cxone_sync_tests.fixtures import MakeStack

warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def _resources(stack: LocalStack, tmp_path: Path) -> dict[str, Any]:
    return {
        "s3": CachedS3Resource(
            endpoint_url=stack.s3_url,
            kms_endpoint_url=stack.s3_url,  # the local store serves KMS too; AWS's is separate
            region_name=SIM_AWS_REGION,
            aws_access_key_id=SIM_AWS_KEY,
            aws_secret_access_key=SIM_AWS_KEY,
        ),
        "ingest": IngestResource(bucket=stack.config.bucket, staging_dir=str(tmp_path)),
    }


def _defs(resources: dict[str, Any]) -> dg.Definitions:
    return dg.Definitions.merge(build_storage_defs(), dg.Definitions(resources=resources))


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {
        e.check_name: e
        for e in (
            cast(Any, event.event_specific_data)
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    }


def test_definitions_shape(tmp_path: Path) -> None:
    resources = {
        "s3": S3Resource(region_name=SIM_AWS_REGION),
        "ingest": IngestResource(bucket="b", staging_dir=str(tmp_path)),
    }
    job = _defs(resources).resolve_job_def(VERIFY_JOB_NAME)
    assert {key.name for key in job.asset_layer.asset_graph.asset_check_keys} >= set(CHECK_NAMES)
    checks = build_storage_checks()
    keys = {key for check in checks for key in check.check_keys}
    assert keys == {dg.AssetCheckKey(EXPORT_BUCKET_KEY, name) for name in CHECK_NAMES}
    (spec,) = cxone_export_bucket.specs
    assert spec.key == dg.AssetKey(["s3", "cxone_export_bucket"])
    assert spec.group_name == "storage"
    assert spec.kinds == {"s3"}
    assert cxone_export_bucket.is_observable


def test_checks_pass_on_the_local_stack(stack: LocalStack, tmp_path: Path) -> None:
    stack.world.advance(timedelta(hours=2, minutes=30))
    job = _defs(_resources(stack, tmp_path)).resolve_job_def(VERIFY_JOB_NAME)

    result = job.execute_in_process()

    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == set(CHECK_NAMES)
    assert all(e.passed for e in evaluations.values()), evaluations
    encryption = evaluations["bucket_default_encryption"]
    assert stack.kms_key_arn in encryption.metadata["detail"].value
    assert encryption.metadata["bucket"].value == stack.config.bucket
    assert "fix" not in encryption.metadata


def test_checks_fail_with_the_fix_as_description(make_stack: MakeStack, tmp_path: Path) -> None:
    probe = make_stack()
    start = probe.config.start
    probe.stop()
    stack = make_stack(denied_read=(start + timedelta(hours=1),))
    stack.world.advance(timedelta(hours=2, minutes=30))
    s3 = stack.s3_client()
    bucket = stack.config.bucket
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.delete_public_access_block(Bucket=bucket)
    s3.delete_bucket_policy(Bucket=bucket)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    job = _defs(_resources(stack, tmp_path)).resolve_job_def(VERIFY_JOB_NAME)

    result = job.execute_in_process()

    evaluations = _evaluations(result)
    assert set(evaluations) == set(CHECK_NAMES)
    assert not any(e.passed for e in evaluations.values())
    versioning = evaluations["bucket_versioning"]
    assert versioning.severity == dg.AssetCheckSeverity.ERROR
    assert versioning.description.endswith(
        f"Fix: aws s3api put-bucket-versioning --bucket {bucket} "
        "--versioning-configuration Status=Enabled"
    )
    assert "put-bucket-versioning" in versioning.metadata["fix"].value
    assert "AES256" in evaluations["bucket_default_encryption"].description
    assert "put-public-access-block" in evaluations["bucket_public_access_block"].description
    assert "aws:SecureTransport" in evaluations["bucket_policy"].description
    read = evaluations["read_decrypt"].description
    assert stack.kms_key_arn in read and "aws kms create-grant" in read


def test_check_called_as_a_plain_function(stack: LocalStack, tmp_path: Path) -> None:
    resources = _resources(stack, tmp_path)
    by_name = {next(iter(c.check_keys)).name: c for c in build_storage_checks()}

    result = by_name["bucket_public_access_block"](**resources)

    assert isinstance(result, dg.AssetCheckResult)
    assert result.passed
    assert result.metadata["bucket"].value == stack.config.bucket


def test_observation_versions_the_bucket_settings(stack: LocalStack, tmp_path: Path) -> None:
    defs = _defs(_resources(stack, tmp_path))
    observe_job = defs.resolve_implicit_global_asset_job_def()
    # the observation's data version changes when a security setting changes
    with dg.instance_for_test() as instance:
        first = observe_job.execute_in_process(
            instance=instance, asset_selection=[EXPORT_BUCKET_KEY]
        )
        stack.s3_client().put_bucket_versioning(
            Bucket=stack.config.bucket, VersioningConfiguration={"Status": "Suspended"}
        )
        second = observe_job.execute_in_process(
            instance=instance, asset_selection=[EXPORT_BUCKET_KEY]
        )
    observations = [
        cast(Any, event.event_specific_data).asset_observation
        for run in (first, second)
        for event in run.all_events
        if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert len(observations) == 2
    assert observations[0].metadata["versioning"].value == "Enabled"
    assert observations[1].metadata["versioning"].value == "Suspended"
    assert observations[0].metadata["kms_key"].value == stack.kms_key_arn
    versions = [o.tags["dagster/data_version"] for o in observations]
    assert versions[0] != versions[1]


def test_merges_with_the_platform_resources(stack_env: LocalStack) -> None:
    defs = _defs(build_resources(get_settings()))
    assert defs.resolve_job_def(VERIFY_JOB_NAME) is not None
    assert EXPORT_BUCKET_KEY in {spec.key for spec in defs.resolve_all_asset_specs()}


@pytest.fixture(autouse=True)
def _quiet_preview_warnings() -> None:
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def test_daily_schedule_runs_the_checks_and_is_on_only_on_the_embedded_default(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxone_sync.definitions import defs as build_defs
    from cxone_sync.defs.storage.assets import VERIFY_SCHEDULE_NAME

    monkeypatch.delenv("CXONE_API_URL", raising=False)  # the embedded default: the local stack
    schedule = build_defs().resolve_schedule_def(VERIFY_SCHEDULE_NAME)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == VERIFY_JOB_NAME
    assert schedule.cron_schedule == "15 6 * * *" and schedule.execution_timezone == "UTC"
    monkeypatch.setenv("CXONE_API_URL", "https://api-c1.niceincontact.com")  # a deployment
    stopped = build_defs().resolve_schedule_def(VERIFY_SCHEDULE_NAME)
    assert stopped.default_status == dg.DefaultScheduleStatus.STOPPED

    # A tick requests the job, and the job evaluates all five checks against the bucket.
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance)
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 1
    stack.world.advance(timedelta(hours=2, minutes=30))
    job = _defs(_resources(stack, tmp_path)).resolve_job_def(
        requests[0].job_name or VERIFY_JOB_NAME
    )
    evaluations = _evaluations(job.execute_in_process())
    assert set(evaluations) == set(CHECK_NAMES)
    assert all(e.passed for e in evaluations.values())
