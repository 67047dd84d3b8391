"""`cxone-sync policy`: the rendered documents, and the bucket policy passing the preflight."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cxone_sync.policy import (
    CXONE_ACCOUNT_PLACEHOLDER,
    HEADINGS,
    policy_main,
    render_policies,
)
from cxone_sync.preflight.bucket import check_bucket_policy
from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync.simulator.stack import LocalStack

BUCKET = "org-cxone-data-lake"
KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert document["Version"] == "2012-10-17"
    return {s["Sid"]: s for s in document["Statement"]}


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


@pytest.fixture
def documents() -> dict[str, dict[str, Any]]:
    rendered = render_policies(BUCKET, KEY, "ext-42", cxone_account_id="444455556666")
    # every document survives a JSON round trip unchanged
    return {name: json.loads(json.dumps(doc)) for name, doc in rendered.items()}


def test_trust_policy_names_cxone_and_the_external_id(
    documents: dict[str, dict[str, Any]],
) -> None:
    trust = _statements(documents["export_role_trust"])["CXoneAssumesExportRole"]
    assert trust["Effect"] == "Allow"
    assert trust["Principal"] == {"AWS": "arn:aws:iam::444455556666:root"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "ext-42"}}


def test_writer_can_upload_and_encrypt_but_not_read(documents: dict[str, dict[str, Any]]) -> None:
    writer = _statements(documents["writer_grants"])
    s3_actions = _actions(writer["WriteExportFiles"]) | _actions(writer["ListExportPrefix"])
    assert s3_actions == {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"}
    assert writer["WriteExportFiles"]["Resource"] == f"arn:aws:s3:::{BUCKET}/exports/*"
    assert writer["ListExportPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["exports/*"]}}
    kms = writer["EncryptWithExportKey"]
    assert {"kms:GenerateDataKey", "kms:Encrypt"} <= _actions(kms)
    assert kms["Resource"] == KEY
    all_actions = set().union(*(_actions(s) for s in writer.values()))
    assert "s3:GetObject" not in all_actions


def test_reader_can_read_versions_and_decrypt(documents: dict[str, dict[str, Any]]) -> None:
    reader = _statements(documents["reader_grants"])
    assert _actions(reader["ReadExportFiles"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert _actions(reader["ListExportPrefix"]) == {"s3:ListBucket"}
    assert "kms:Decrypt" in _actions(reader["DecryptWithExportKey"])
    assert reader["DecryptWithExportKey"]["Resource"] == KEY
    all_actions = set().union(*(_actions(s) for s in reader.values()))
    assert not {"s3:PutObject", "kms:Encrypt", "kms:GenerateDataKey"} & all_actions


def test_bucket_policy_denies_plain_http_unencrypted_and_foreign_key_uploads(
    documents: dict[str, dict[str, Any]],
) -> None:
    policy = _statements(documents["bucket_policy"])
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in policy.values())
    assert policy["DenyInsecureTransport"]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    assert policy["DenyUnencryptedUploads"]["Condition"] == {
        "StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}
    }
    assert policy["DenyUploadsWithOtherKmsKey"]["Condition"] == {
        "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY}
    }
    assert "kms_key_policy_statements" not in documents


def test_role_arns_add_key_policy_statements() -> None:
    docs = render_policies(
        BUCKET,
        KEY,
        "ext",
        export_role_arn="arn:aws:iam::111122223333:role/cxone-export",
        reader_role_arn="arn:aws:iam::111122223333:role/cxone-reader",
    )
    key_policy = _statements(docs["kms_key_policy_statements"])
    assert key_policy["ExportRoleEncrypts"]["Principal"] == {
        "AWS": "arn:aws:iam::111122223333:role/cxone-export"
    }
    assert "kms:Decrypt" in _actions(key_policy["ReaderRoleDecrypts"])
    trust = _statements(docs["export_role_trust"])["CXoneAssumesExportRole"]
    assert CXONE_ACCOUNT_PLACEHOLDER in trust["Principal"]["AWS"]


def test_rendered_bucket_policy_passes_the_preflight(s3_endpoint: S3Endpoint) -> None:
    bucket = f"cxone-policy-{uuid.uuid4().hex[:12]}"
    s3 = s3_endpoint.client()
    s3.create_bucket(Bucket=bucket)
    assert not check_bucket_policy(s3, bucket).ok

    policy = render_policies(bucket, KEY, "ext")["bucket_policy"]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    line = check_bucket_policy(s3, bucket)
    assert line.ok, line


def _printed(out: str) -> dict[str, dict[str, Any]]:
    """Documents printed by policy_main, keyed by the name in each heading."""
    found = {}
    for block in out.strip().split("\n\n"):
        heading, _, body = block.partition("\n")
        assert heading.startswith("# ")
        found[heading.rsplit("(", 1)[1].rstrip(")")] = json.loads(body)
    return found


def test_policy_command_defaults_from_settings_and_the_bucket(
    stack_env: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CXONE_EXTERNAL_ID", "ext-from-env")

    assert policy_main(["--cxone-account-id", "444455556666"]) == 0

    captured = capsys.readouterr()
    printed = _printed(captured.out)
    assert set(printed) == {"export_role_trust", "writer_grants", "reader_grants", "bucket_policy"}
    for name in printed:
        assert f"# {HEADINGS[name]} ({name})" in captured.out
    bucket = stack_env.config.bucket
    assert printed["bucket_policy"]["Statement"][0]["Resource"][0] == f"arn:aws:s3:::{bucket}"
    # the key is read from the bucket's default encryption
    reader = _statements(printed["reader_grants"])
    assert reader["DecryptWithExportKey"]["Resource"] == stack_env.kms_key_arn
    trust = _statements(printed["export_role_trust"])["CXoneAssumesExportRole"]
    assert trust["Condition"]["StringEquals"]["sts:ExternalId"] == "ext-from-env"
    assert captured.err == ""


def test_policy_command_warns_about_placeholders(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CXONE_EXTERNAL_ID", raising=False)
    monkeypatch.delenv("CXONE_AWS_ACCOUNT_ID", raising=False)

    assert policy_main(["--bucket", "b-x", "--kms-key-arn", KEY]) == 0

    captured = capsys.readouterr()
    assert "placeholders left for the external id" in captured.err
    assert "CXone's AWS account id" in captured.err
    assert "the KMS key ARN" not in captured.err
    assert _printed(captured.out)["bucket_policy"]["Statement"][1]["Resource"] == (
        "arn:aws:s3:::b-x/*"
    )


def test_snowflake_adds_the_integration_trust_policy_and_the_grants(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxone_sync.policy import policy_main

    monkeypatch.setenv("CXONE_WAREHOUSE", "snowflake")
    monkeypatch.setenv("SNOWFLAKE_DATABASE", "bi")
    monkeypatch.setenv("SNOWFLAKE_ROLE", "cxone_loader")
    monkeypatch.setenv("SNOWFLAKE_WAREHOUSE", "load_wh")
    monkeypatch.setenv("SNOWFLAKE_IAM_USER_ARN", "arn:aws:iam::123456789012:user/sf-abc")
    monkeypatch.setenv("SNOWFLAKE_EXTERNAL_ID", "SF_EXT_1")
    args = ["--kms-key-arn", "arn:aws:kms:us-east-1:1:key/k", "--external-id", "e"]
    assert policy_main([*args, "--cxone-account-id", "111122223333"]) == 0
    out = capsys.readouterr().out
    trust = json.loads(out.split("(snowflake_trust)\n", 1)[1].split("\n\n", 1)[0])
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:user/sf-abc"}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": "SF_EXT_1"}}
    grants = out.split("(snowflake_grants)\n", 1)[1].strip().splitlines()
    assert grants == [
        "GRANT USAGE ON DATABASE BI TO ROLE CXONE_LOADER;",
        "GRANT USAGE ON WAREHOUSE LOAD_WH TO ROLE CXONE_LOADER;",
        "GRANT CREATE SCHEMA ON DATABASE BI TO ROLE CXONE_LOADER;",
        "GRANT USAGE ON STAGE BI.PUBLIC.CXONE_EXPORTS TO ROLE CXONE_LOADER;",
    ]
