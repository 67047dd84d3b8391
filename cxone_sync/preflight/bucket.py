"""The export bucket's settings: versioning, default SSE-KMS encryption with a customer-managed
key, the public access block, and a bucket policy denying plain HTTP and unencrypted uploads."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cxone_sync.preflight.common import (
    CHECK_ENCRYPTION,
    CHECK_POLICY,
    CHECK_PUBLIC_ACCESS,
    CHECK_VERSIONING,
    CheckLine,
    aws_failure,
    check_failed,
    check_passed,
    error_code,
    error_message,
)
from cxone_sync.preflight.iam import (
    SSE_HEADER,
    as_list,
    denies_plain_http,
    denies_unencrypted_put,
    secure_transport_statement,
    unencrypted_upload_statement,
)

PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def check_versioning(s3: Any, bucket: str) -> CheckLine:
    """Object versioning must be Enabled (re-exports overwrite keys; versions keep the audit)."""
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except (ClientError, BotoCoreError) as exc:
        return aws_failure(CHECK_VERSIONING, bucket, "s3:GetBucketVersioning", exc)
    if status == "Enabled":
        return check_passed(CHECK_VERSIONING, f"versioning on {bucket} is Enabled")
    found = status or "never enabled"
    return check_failed(
        CHECK_VERSIONING,
        f"versioning on {bucket} is {found}; a re-export would overwrite files without a trace",
        f"aws s3api put-bucket-versioning --bucket {bucket} "
        "--versioning-configuration Status=Enabled",
    )


def _encryption_fix(bucket: str, key: str = "<customer-managed-key-arn>") -> str:
    config = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": key,
                },
                "BucketKeyEnabled": True,
            }
        ]
    }
    return (
        f"aws s3api put-bucket-encryption --bucket {bucket} "
        f"--server-side-encryption-configuration '{json.dumps(config, separators=(',', ':'))}'"
    )


def check_default_encryption(s3: Any, kms: Any, bucket: str) -> CheckLine:
    """Default encryption must be SSE-KMS with a customer-managed key (KeyManager CUSTOMER)."""
    name = CHECK_ENCRYPTION
    try:
        config = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    except ClientError as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return check_failed(
                name, f"{bucket} has no default encryption configured", _encryption_fix(bucket)
            )
        return aws_failure(name, bucket, "s3:GetEncryptionConfiguration", exc)
    except BotoCoreError as exc:
        return aws_failure(name, bucket, "s3:GetEncryptionConfiguration", exc)
    rules = config.get("Rules") or []
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")
    key_id = default.get("KMSMasterKeyID")
    if algorithm not in {"aws:kms", "aws:kms:dsse"}:
        return check_failed(
            name,
            f"{bucket} encrypts by default with {algorithm or 'nothing'} (SSE-S3), not SSE-KMS "
            "with a customer-managed key",
            _encryption_fix(bucket),
        )
    if not key_id or key_id.startswith("alias/aws/") or ":alias/aws/" in key_id:
        return check_failed(
            name,
            f"{bucket} uses SSE-KMS with the AWS-managed key {key_id or 'aws/s3'}; its key "
            "policy cannot be changed, so CXone's export role cannot be granted use of it",
            _encryption_fix(bucket),
        )
    try:
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        code = error_code(exc)
        if code in {"NotFoundException", "KMS.NotFoundException"}:
            return check_failed(
                name,
                f"{bucket}'s default key {key_id} does not exist",
                _encryption_fix(bucket),
            )
        return check_failed(
            name,
            f"kms:DescribeKey on {key_id} failed: {code} {error_message(exc)}".strip(),
            f"allow kms:DescribeKey on {key_id} for the role running the preflight",
        )
    except BotoCoreError as exc:
        return check_failed(
            name,
            f"kms:DescribeKey on {key_id} failed: {type(exc).__name__}: {exc}",
            "check the KMS endpoint (AWS_ENDPOINT_URL_KMS), AWS_REGION and the AWS credentials, "
            "then re-run",
        )
    arn = meta.get("Arn", key_id)
    if meta.get("KeyManager") != "CUSTOMER":
        return check_failed(
            name,
            f"{bucket}'s default key {arn} is managed by {meta.get('KeyManager')}, "
            "not a customer-managed key",
            _encryption_fix(bucket),
        )
    state = meta.get("KeyState", "Enabled")
    if state != "Enabled":
        return check_failed(
            name,
            f"{bucket}'s default key {arn} is {state}: nothing can be written or read with it",
            f"aws kms enable-key --key-id {arn}"
            + (
                f"  (first: aws kms cancel-key-deletion --key-id {arn})"
                if state == "PendingDeletion"
                else ""
            ),
        )
    bucket_key = " (bucket key on)" if rules[0].get("BucketKeyEnabled") else ""
    return check_passed(
        name, f"{bucket} encrypts with SSE-KMS, customer-managed key {arn}{bucket_key}"
    )


def check_public_access_block(s3: Any, bucket: str) -> CheckLine:
    """All four public-access-block flags must be on."""
    name = CHECK_PUBLIC_ACCESS
    fix = (
        f"aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration "
        + ",".join(f"{flag}=true" for flag in PUBLIC_ACCESS_FLAGS)
    )
    try:
        config = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return check_failed(name, f"{bucket} has no public access block", fix)
        return aws_failure(name, bucket, "s3:GetBucketPublicAccessBlock", exc)
    except BotoCoreError as exc:
        return aws_failure(name, bucket, "s3:GetBucketPublicAccessBlock", exc)
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if config.get(flag) is not True]
    if off:
        return check_failed(name, f"{bucket} public access block has {', '.join(off)} off", fix)
    return check_passed(name, f"{bucket} blocks all public access (all four flags on)")


def check_bucket_policy(s3: Any, bucket: str) -> CheckLine:
    """The bucket policy must deny plain-HTTP access and uploads without SSE-KMS."""
    name = CHECK_POLICY
    try:
        raw = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchBucketPolicy":
            return aws_failure(name, bucket, "s3:GetBucketPolicy", exc)
        raw = None
    except BotoCoreError as exc:
        return aws_failure(name, bucket, "s3:GetBucketPolicy", exc)
    try:
        policy = json.loads(raw) if raw else {}
    except ValueError:
        policy = {}
    statements = as_list(policy.get("Statement") if isinstance(policy, dict) else None)
    missing = []
    if not any(denies_plain_http(s, bucket) for s in statements):
        missing.append(("a Deny on aws:SecureTransport=false", secure_transport_statement(bucket)))
    if not any(denies_unencrypted_put(s, bucket) for s in statements):
        missing.append(
            (
                f"a Deny of s3:PutObject without {SSE_HEADER}=aws:kms",
                unencrypted_upload_statement(bucket),
            )
        )
    if not missing:
        return check_passed(
            name, f"{bucket}'s policy denies plain HTTP and uploads without SSE-KMS"
        )
    what = " and ".join(label for label, _ in missing)
    if raw is None:
        detail = f"{bucket} has no bucket policy (needs {what})"
    else:
        detail = f"{bucket}'s bucket policy lacks {what}"
    statements_text = ",\n".join(json.dumps(s) for _, s in missing)
    fix = (
        "add to the bucket policy's Statement list (or apply the whole policy from "
        "`cxone-sync policy`, then `aws s3api put-bucket-policy --bucket "
        f"{bucket} --policy file://bucket-policy.json`):\n{statements_text}"
    )
    return check_failed(name, detail, fix)
