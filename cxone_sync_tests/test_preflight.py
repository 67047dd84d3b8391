"""The storage-boundary preflight against real buckets on the local S3 endpoint (moto's server)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cxone_sync.preflight import doctor as doctor_module
from cxone_sync.preflight.bucket import (
    PUBLIC_ACCESS_FLAGS,
    check_bucket_policy,
    check_default_encryption,
    check_public_access_block,
    check_versioning,
)
from cxone_sync.preflight.common import CheckLine
from cxone_sync.preflight.doctor import bucket_checks, doctor, run_doctor
from cxone_sync.preflight.read import check_read_decrypt
from cxone_sync.preflight.warehouse import check_warehouse
from cxone_sync.settings import Settings, get_settings
from cxone_sync.simulator.s3 import S3Endpoint, create_export_bucket
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import ExportBucket, MakeStack
from cxone_sync_tests.lockholder import LockHolder


def _names(lines: list[CheckLine]) -> dict[str, CheckLine]:
    return {line.name: line for line in lines}


@pytest.fixture
def s3(export_bucket: ExportBucket) -> Any:
    return export_bucket.endpoint.client()


@pytest.fixture
def kms(export_bucket: ExportBucket) -> Any:
    return export_bucket.endpoint.client("kms")


def _bare_bucket(endpoint: S3Endpoint) -> str:
    name = f"cxone-bare-{uuid.uuid4().hex[:12]}"
    endpoint.client().create_bucket(Bucket=name)
    return name


# ------------------------------------------------------------------------------- secure bucket


def test_secure_bucket_passes_every_check(export_bucket: ExportBucket, s3: Any, kms: Any) -> None:
    writer = export_bucket.endpoint.writer_client()
    writer.put_object(Bucket=export_bucket.name, Key="exports/ivr/a.parquet", Body=b"x" * 100)

    lines = bucket_checks(s3, kms, export_bucket.name)

    assert [line.name for line in lines] == [
        "bucket_versioning",
        "bucket_default_encryption",
        "bucket_public_access_block",
        "bucket_policy",
        "read_decrypt",
    ]
    assert all(line.ok and line.fix is None for line in lines), lines
    by_name = _names(lines)
    assert export_bucket.kms_key_arn in by_name["bucket_default_encryption"].detail
    assert "exports/ivr/a.parquet (100 bytes, aws:kms)" in by_name["read_decrypt"].detail


def test_local_stack_bucket_passes_and_reads_the_newest_export(stack: LocalStack) -> None:
    stack.world.advance(timedelta(hours=2, minutes=30))
    s3, kms = stack.s3_client(), stack.s3.client("kms")

    lines = bucket_checks(s3, kms, stack.config.bucket, "exports/")

    assert all(line.ok for line in lines), lines
    read = _names(lines)["read_decrypt"].detail
    # the newest partition of the hourly data types is hour 01 (exported at 02:20)
    assert "/hour=01/part-" in read and read.startswith("read the newest file s3://")


def test_empty_bucket_read_check_passes_but_says_it_verified_nothing(
    export_bucket: ExportBucket, s3: Any
) -> None:
    line = check_read_decrypt(s3, export_bucket.name, "exports/")
    assert line.ok
    assert "nothing under s3://" in line.detail and "not verified" in line.detail


# ---------------------------------------------------------------------------------- versioning


def test_versioning_never_enabled(s3_endpoint: S3Endpoint) -> None:
    bucket = _bare_bucket(s3_endpoint)
    line = check_versioning(s3_endpoint.client(), bucket)
    assert not line.ok
    assert "never enabled" in line.detail
    assert line.fix == (
        f"aws s3api put-bucket-versioning --bucket {bucket} "
        "--versioning-configuration Status=Enabled"
    )


def test_versioning_suspended(export_bucket: ExportBucket, s3: Any) -> None:
    s3.put_bucket_versioning(
        Bucket=export_bucket.name, VersioningConfiguration={"Status": "Suspended"}
    )
    line = check_versioning(s3, export_bucket.name)
    assert not line.ok and "is Suspended" in line.detail
    assert line.fix is not None and "Status=Enabled" in line.fix


def test_missing_bucket_fails_every_bucket_check_clearly(s3_endpoint: S3Endpoint) -> None:
    lines = bucket_checks(s3_endpoint.client(), s3_endpoint.client("kms"), "cxone-no-such-bkt")
    assert all(not line.ok for line in lines)
    # the local endpoint answers NoSuchBucketPolicy (not NoSuchBucket) for a missing bucket
    others = [line for line in lines if line.name != "bucket_policy"]
    assert all("cxone-no-such-bkt does not exist" in line.detail for line in others), lines


# ---------------------------------------------------------------------------------- encryption


def _set_default(s3: Any, bucket: str, default: dict[str, str]) -> None:
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": default}]
        },
    )


def test_no_default_encryption(export_bucket: ExportBucket, s3: Any, kms: Any) -> None:
    s3.delete_bucket_encryption(Bucket=export_bucket.name)
    line = check_default_encryption(s3, kms, export_bucket.name)
    assert not line.ok and "no default encryption" in line.detail
    assert line.fix is not None
    assert line.fix.startswith(f"aws s3api put-bucket-encryption --bucket {export_bucket.name} ")
    assert '"SSEAlgorithm":"aws:kms"' in line.fix


def test_sse_s3_instead_of_kms(export_bucket: ExportBucket, s3: Any, kms: Any) -> None:
    _set_default(s3, export_bucket.name, {"SSEAlgorithm": "AES256"})
    line = check_default_encryption(s3, kms, export_bucket.name)
    assert not line.ok
    assert "AES256 (SSE-S3), not SSE-KMS" in line.detail
    assert line.fix is not None and "put-bucket-encryption" in line.fix


@pytest.mark.parametrize("key_id", [None, "alias/aws/s3"], ids=["implicit", "alias"])
def test_aws_managed_key(
    export_bucket: ExportBucket, s3: Any, kms: Any, key_id: str | None
) -> None:
    default = {"SSEAlgorithm": "aws:kms"} | ({"KMSMasterKeyID": key_id} if key_id else {})
    _set_default(s3, export_bucket.name, default)
    line = check_default_encryption(s3, kms, export_bucket.name)
    assert not line.ok
    assert "AWS-managed key" in line.detail and (key_id or "aws/s3") in line.detail
    assert line.fix is not None and "KMSMasterKeyID" in line.fix


def test_disabled_customer_key(export_bucket: ExportBucket, s3: Any, kms: Any) -> None:
    kms.disable_key(KeyId=export_bucket.kms_key_arn.rsplit("/", 1)[1])
    line = check_default_encryption(s3, kms, export_bucket.name)
    assert not line.ok and "is Disabled" in line.detail
    assert line.fix == f"aws kms enable-key --key-id {export_bucket.kms_key_arn}"


# ------------------------------------------------------------------------------- public access


@pytest.mark.parametrize("flag", PUBLIC_ACCESS_FLAGS)
def test_one_public_access_flag_off(export_bucket: ExportBucket, s3: Any, flag: str) -> None:
    config = dict.fromkeys(PUBLIC_ACCESS_FLAGS, True) | {flag: False}
    s3.put_public_access_block(Bucket=export_bucket.name, PublicAccessBlockConfiguration=config)
    line = check_public_access_block(s3, export_bucket.name)
    assert not line.ok
    assert line.detail == f"{export_bucket.name} public access block has {flag} off"
    assert line.fix == (
        f"aws s3api put-public-access-block --bucket {export_bucket.name} "
        "--public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,"
        "BlockPublicPolicy=true,RestrictPublicBuckets=true"
    )


def test_no_public_access_block(export_bucket: ExportBucket, s3: Any) -> None:
    s3.delete_public_access_block(Bucket=export_bucket.name)
    line = check_public_access_block(s3, export_bucket.name)
    assert not line.ok and "no public access block" in line.detail


# ------------------------------------------------------------------------------- bucket policy


def _policy(s3: Any, bucket: str) -> dict[str, Any]:
    return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])


def _put_policy(s3: Any, bucket: str, statements: list[dict[str, Any]]) -> None:
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )


def test_no_bucket_policy(export_bucket: ExportBucket, s3: Any) -> None:
    s3.delete_bucket_policy(Bucket=export_bucket.name)
    line = check_bucket_policy(s3, export_bucket.name)
    assert not line.ok
    assert "has no bucket policy" in line.detail
    assert "aws:SecureTransport=false" in line.detail and "s3:PutObject" in line.detail
    assert line.fix is not None
    assert '"aws:SecureTransport": "false"' in line.fix
    assert '"s3:x-amz-server-side-encryption": "aws:kms"' in line.fix


@pytest.mark.parametrize(
    ("dropped", "missing", "kept"),
    [
        ("DenyInsecureTransport", "aws:SecureTransport", "DenyUnencryptedUploads"),
        ("DenyUnencryptedUploads", "s3:x-amz-server-side-encryption", "DenyInsecureTransport"),
    ],
)
def test_policy_missing_one_deny(
    export_bucket: ExportBucket, s3: Any, dropped: str, missing: str, kept: str
) -> None:
    statements = [s for s in _policy(s3, export_bucket.name)["Statement"] if s["Sid"] != dropped]
    _put_policy(s3, export_bucket.name, statements)

    line = check_bucket_policy(s3, export_bucket.name)

    assert not line.ok
    assert "policy lacks" in line.detail and missing in line.detail
    assert line.fix is not None
    assert dropped in line.fix and kept not in line.fix


def test_policy_deny_that_is_an_allow_does_not_count(export_bucket: ExportBucket, s3: Any) -> None:
    statements = _policy(s3, export_bucket.name)["Statement"]
    statements[0]["Effect"] = "Allow"
    _put_policy(s3, export_bucket.name, statements)
    line = check_bucket_policy(s3, export_bucket.name)
    assert not line.ok and "aws:SecureTransport" in line.detail


def test_policy_with_null_condition_passes(export_bucket: ExportBucket, s3: Any) -> None:
    statements = _policy(s3, export_bucket.name)["Statement"]
    statements[1]["Condition"] = {"Null": {"s3:x-amz-server-side-encryption": "true"}}
    statements[0]["Principal"] = {"AWS": "*"}
    statements[0]["Condition"] = {"Bool": {"aws:SecureTransport": False}}
    _put_policy(s3, export_bucket.name, statements)
    assert check_bucket_policy(s3, export_bucket.name).ok


# ------------------------------------------------------------------------------- read / decrypt


@pytest.fixture
def denying_endpoint() -> Iterator[S3Endpoint]:
    with S3Endpoint(deny=lambda bucket, key: key.endswith("-denied.parquet")) as endpoint:
        yield endpoint


def test_denied_read_names_the_key_the_role_and_the_fix(denying_endpoint: S3Endpoint) -> None:
    bucket = f"cxone-deny-{uuid.uuid4().hex[:12]}"
    key_arn = create_export_bucket(denying_endpoint.url, bucket)
    writer = denying_endpoint.writer_client()
    writer.put_object(Bucket=bucket, Key="exports/a/x=1/old.parquet", Body=b"ok")
    writer.put_object(Bucket=bucket, Key="exports/a/x=2/new-denied.parquet", Body=b"no")

    line = check_read_decrypt(denying_endpoint.client(), bucket, "exports/")

    assert not line.ok
    assert f"cannot read s3://{bucket}/exports/a/x=2/new-denied.parquet" in line.detail
    assert key_arn in line.detail and "lacks kms:Decrypt" in line.detail
    reader = f"arn:aws:iam::{denying_endpoint.account_id}:user/cxone-sync-reader"
    assert reader in line.detail
    assert line.fix is not None
    assert (
        f"aws kms create-grant --key-id {key_arn} --grantee-principal {reader} "
        "--operations Decrypt" in line.fix
    )
    assert json.dumps({"Sid": "ReadExportFilesDecrypt", "Effect": "Allow",
                       "Action": "kms:Decrypt", "Resource": key_arn}) in line.fix  # fmt: skip


def test_denied_read_on_the_stack_after_a_key_rotation(make_stack: MakeStack) -> None:
    probe = make_stack()
    start = probe.config.start
    probe.stop()
    stack = make_stack(denied_read=(start + timedelta(hours=1),))
    stack.world.advance(timedelta(hours=2, minutes=30))

    line = check_read_decrypt(stack.s3_client(), stack.config.bucket, "exports/")

    assert not line.ok
    assert stack.kms_key_arn in line.detail and "kms:Decrypt" in line.detail
    assert "/hour=01/" in line.detail


# ----------------------------------------------------------------------------------- warehouse


def test_warehouse_opens_for_writing(tmp_path: Path) -> None:
    line = check_warehouse(Settings(CXONE_DUCKDB_PATH=tmp_path / "w" / "wh.duckdb"))
    assert line.ok and "opens for writing" in line.detail


def test_warehouse_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        line = check_warehouse(Settings(CXONE_DUCKDB_PATH=path))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not line.ok
    assert f"{path} is locked for writing by" in line.detail
    assert f"(PID {holder.pid})" in line.detail
    assert line.fix is not None and f"kill {holder.pid}" in line.fix
    assert "CXONE_DUCKDB_PATH" in line.fix


def test_warehouse_check_is_read_only_beside_a_reading_process(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    DuckDBWarehouse(path).ensure_control_tables()
    with LockHolder(path, read_only=True):  # e.g. a BI tool reading the tables
        line = check_warehouse(Settings(CXONE_DUCKDB_PATH=path))
    assert line.ok, line.detail
    assert "opens for writing" in line.detail and "read-only" in line.detail
    # the doctor left nothing open: a writer gets the file at once
    assert DuckDBWarehouse(path, lock_wait_seconds=0).record_job_events([]) == 0
    DuckDBWarehouse(path, lock_wait_seconds=0).ensure_control_tables()


def test_warehouse_check_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w" / "wh.duckdb"
    line = check_warehouse(Settings(CXONE_DUCKDB_PATH=path))
    assert line.ok and "does not exist yet" in line.detail
    assert not path.exists()


def test_snowflake_warehouse_without_its_settings_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PATH", raising=False)
    line = check_warehouse(Settings(CXONE_WAREHOUSE="snowflake", SNOWFLAKE_USER="loader"))
    assert not line.ok
    assert "SNOWFLAKE_ACCOUNT" in line.detail and "SNOWFLAKE_DATABASE" in line.detail
    assert "SNOWFLAKE_USER" not in line.detail
    assert "SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH" in line.detail


# ---------------------------------------------------------------------------------- API, doctor


def test_doctor_passes_on_the_local_stack(
    stack_env: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_env.world.advance(timedelta(hours=2, minutes=30))

    assert doctor() == 0

    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:7]] == [
        "PASS cxone_api",
        "PASS bucket_versioning",
        "PASS bucket_default_encryption",
        "PASS bucket_public_access_block",
        "PASS bucket_policy",
        "PASS read_decrypt",
        "PASS warehouse",
    ]
    assert out[-1] == "7 passed, 0 failed"
    assert "all 6 categories read, all exporting to" in out[0]


def test_doctor_names_the_failing_category(
    stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXONE_DOWNLOAD_IDS", json.dumps({"speech": "dl-speech-missing"}))
    client_log = logging.getLogger("cxone_sync.cxone.client")
    level = client_log.level

    assert doctor() == 1
    # the doctor quiets the client's retry logs while it runs, not for the rest of the process
    assert client_log.level == level

    out = capsys.readouterr().out.splitlines()
    api = next(line for line in out if line.startswith("FAIL cxone_api"))
    assert "failed for 1 of 6 categories: speech:" in api and "404" in api
    assert out[out.index(api) + 1].startswith("    fix: check CXONE_DOWNLOAD_IDS (the speech")
    assert out[-1] == "6 passed, 1 failed"


def test_doctor_token_failure_never_shows_the_secret(
    stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wrong-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("CXONE_CLIENT_SECRET", secret)

    lines = _names(run_doctor(get_settings()))
    assert doctor() == 1

    api = lines["cxone_api"]
    assert not api.ok and api.detail.startswith("no token from ")
    assert api.fix is not None and "CXONE_CLIENT_SECRET" in api.fix
    assert lines["bucket_versioning"].ok and lines["warehouse"].ok
    out = capsys.readouterr()
    assert "FAIL cxone_api: no token from" in out.out
    assert secret not in out.out + out.err
    assert secret not in repr(lines)


def test_doctor_reports_a_bucket_failure_with_its_fix(
    stack_env: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_env.s3_client().put_bucket_versioning(
        Bucket=stack_env.config.bucket, VersioningConfiguration={"Status": "Suspended"}
    )
    assert doctor() == 1
    out = capsys.readouterr().out
    assert f"FAIL bucket_versioning: versioning on {stack_env.config.bucket} is Suspended" in out
    assert (
        f"    fix: aws s3api put-bucket-versioning --bucket {stack_env.config.bucket} "
        "--versioning-configuration Status=Enabled"
    ) in out


def test_doctor_prints_each_check_as_it_completes(
    stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # what the doctor had printed when its last check (the warehouse) began
    printed_before_warehouse: list[str] = []
    original = doctor_module.check_warehouse

    def observed(settings: Any) -> Any:
        printed_before_warehouse.extend(capsys.readouterr().out.splitlines())
        return original(settings)

    monkeypatch.setattr(doctor_module, "check_warehouse", observed)
    assert doctor() == 0
    rest = capsys.readouterr().out.splitlines()
    # the API and bucket lines were out before the warehouse check started; its own line after
    assert any(x.startswith("PASS cxone_api") for x in printed_before_warehouse)
    assert any(x.startswith("PASS bucket_versioning") for x in printed_before_warehouse)
    assert not any("warehouse" in x for x in printed_before_warehouse)
    assert rest[0].startswith("PASS warehouse") and rest[-1] == "7 passed, 0 failed"
