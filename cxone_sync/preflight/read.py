"""Read access: the newest export file reads fully (the reader role can decrypt it with the
bucket's KMS key)."""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cxone_sync.preflight.common import (
    CHECK_READ,
    CheckLine,
    aws_failure,
    check_failed,
    check_passed,
    error_code,
    error_message,
)

_MAX_LIST_CALLS = 200
"""Bound on ListObjectsV2 calls while looking for the newest export file."""
_HIVE_FOLDER = re.compile(r"^[^/=]+=[^/]*/$")
_KMS_KEY_ARN = re.compile(r"arn:aws[\w-]*:kms:[\w-]*:\d*:key/[\w-]+")
_PRINCIPAL_ARN = re.compile(r"User: (arn:aws[\w-]*:(?:iam|sts)::\d*:[\w+=,.@/-]+)")


def _newest_object(s3: Any, bucket: str, prefix: str) -> dict[str, Any] | None:
    """The newest object under ``prefix``, walking the export layout without listing it all.

    Plain folders (categories, data types, backfill prefixes) are all visited; of partition
    folders (``year=2024/``, ``hour=14/``), zero-padded so that name order is time order, only the
    last is. The newest object there stands for what the reader must be able to decrypt now.
    """
    newest: dict[str, Any] | None = None
    pending = [prefix]
    calls = 0
    while pending and calls < _MAX_LIST_CALLS:
        folder = pending.pop()
        folders: list[str] = []
        token: str | None = None
        while calls < _MAX_LIST_CALLS:
            params: dict[str, Any] = {"Bucket": bucket, "Prefix": folder, "Delimiter": "/"}
            if token:
                params["ContinuationToken"] = token
            page = s3.list_objects_v2(**params)
            calls += 1
            for obj in page.get("Contents", []):
                if newest is None or obj["LastModified"] > newest["LastModified"]:
                    newest = obj
            folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            token = page.get("NextContinuationToken")
            if not token:
                break
        partitions = sorted(f for f in folders if _HIVE_FOLDER.match(f[len(folder) :]))
        plain = [f for f in folders if not _HIVE_FOLDER.match(f[len(folder) :])]
        pending += plain + partitions[-1:]
    return newest


def _decrypt_fix(key_arn: str, principal: str | None) -> str:
    grantee = principal or "<reader-role-arn>"
    statement = {
        "Sid": "ReadExportFilesDecrypt",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": key_arn,
    }
    return (
        f"grant kms:Decrypt on {key_arn} to {grantee}: add to its IAM policy\n"
        f"{json.dumps(statement)}\n"
        "(the reader policy from `cxone-sync policy --kms-key-arn ...`), or run\n"
        f"aws kms create-grant --key-id {key_arn} --grantee-principal {grantee} "
        "--operations Decrypt"
    )


def check_read_decrypt(s3: Any, bucket: str, prefix: str = "") -> CheckLine:
    """GetObject of the newest object under ``prefix`` must read fully (kms:Decrypt works)."""
    name = CHECK_READ
    where = f"s3://{bucket}/{prefix}"
    try:
        newest = _newest_object(s3, bucket, prefix)
    except (ClientError, BotoCoreError) as exc:
        return aws_failure(name, bucket, "s3:ListBucket", exc)
    if newest is None:
        return check_passed(
            name,
            f"nothing under {where} yet, so decryption is not verified; re-run after the first "
            "export lands",
        )
    key = newest["Key"]
    uri = f"s3://{bucket}/{key}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if code in {"AccessDenied", "403"} or code.startswith("KMS") or "kms:" in message:
            match = _KMS_KEY_ARN.search(message)
            key_arn = match.group(0) if match else _object_key_arn(s3, bucket, key)
            who = _PRINCIPAL_ARN.search(message)
            principal = who.group(1) if who else None
            return check_failed(
                name,
                f"cannot read {uri}: access denied decrypting with KMS key {key_arn}; the reader "
                f"role{f' ({principal})' if principal else ''} lacks kms:Decrypt on that key "
                "(typically after a key rotation or re-keying of the bucket)",
                _decrypt_fix(key_arn, principal),
            )
        return aws_failure(name, bucket, "s3:GetObject", exc)
    except BotoCoreError as exc:
        return aws_failure(name, bucket, "s3:GetObject", exc)
    size = 0
    body = response["Body"]
    try:
        for chunk in body.iter_chunks(1024 * 1024):
            size += len(chunk)
    except (BotoCoreError, OSError) as exc:
        return check_failed(
            name,
            f"reading {uri} broke off after {size} bytes ({type(exc).__name__})",
            "re-run the preflight; if it persists, check the network path to S3",
        )
    finally:
        body.close()
    expected = int(response.get("ContentLength", size))
    if size != expected:
        return check_failed(
            name,
            f"short read of {uri}: {size} of {expected} bytes",
            "re-run the preflight; if it persists, check the network path to S3",
        )
    return check_passed(
        name,
        f"read the newest file {uri} ({size} bytes, "
        f"{response.get('ServerSideEncryption', 'unencrypted')})",
    )


def _object_key_arn(s3: Any, bucket: str, key: str) -> str:
    try:
        return str(s3.head_object(Bucket=bucket, Key=key).get("SSEKMSKeyId") or "the bucket key")
    except (ClientError, BotoCoreError):
        return "the bucket's KMS key"
