"""``cxone-sync doctor``: preflight the API, the export bucket, read access and the warehouse.

Every check is a plain function returning a :class:`CheckLine`: whether it passed, what was found,
and on failure the exact remedy (an ``aws`` command or the policy statement to add). The bucket
checks take boto3 clients, so the Dagster asset checks (``cxone_sync.defs.storage``) and the
command line run the same code. Nothing here prints or returns a secret: API failures are reported
through :class:`CXoneClient`'s redacted messages, AWS failures by error code and message only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cxone_sync.catalog import CATEGORIES
from cxone_sync.settings import Settings, get_settings

CHECK_API = "cxone_api"
CHECK_VERSIONING = "bucket_versioning"
CHECK_ENCRYPTION = "bucket_default_encryption"
CHECK_PUBLIC_ACCESS = "bucket_public_access_block"
CHECK_POLICY = "bucket_policy"
CHECK_READ = "read_decrypt"
CHECK_WAREHOUSE = "warehouse"

PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)
SSE_HEADER = "s3:x-amz-server-side-encryption"

_MAX_LIST_CALLS = 200
"""Bound on ListObjectsV2 calls while looking for the newest export file."""
_HIVE_FOLDER = re.compile(r"^[^/=]+=[^/]*/$")
_KMS_KEY_ARN = re.compile(r"arn:aws[\w-]*:kms:[\w-]*:\d*:key/[\w-]+")
_PRINCIPAL_ARN = re.compile(r"User: (arn:aws[\w-]*:(?:iam|sts)::\d*:[\w+=,.@/-]+)")


@dataclass(frozen=True)
class CheckLine:
    """One preflight result: ``fix`` is the exact remedy when ``ok`` is false, else None."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def render(self) -> list[str]:
        lines = [f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"]
        if self.fix:
            fix_lines = self.fix.splitlines()
            lines.append(f"    fix: {fix_lines[0]}")
            lines.extend(f"         {line}" for line in fix_lines[1:])
        return lines


def _passed(name: str, detail: str) -> CheckLine:
    return CheckLine(name, True, detail, None)


def _failed(name: str, detail: str, fix: str) -> CheckLine:
    return CheckLine(name, False, detail, fix)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error_message(exc: ClientError) -> str:
    return " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())


def _aws_failure(name: str, bucket: str, action: str, exc: Exception) -> CheckLine:
    """A check that could not read the setting at all: no bucket, no permission, no endpoint."""
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        if code in {"NoSuchBucket", "404"}:
            return _failed(
                name,
                f"bucket {bucket} does not exist (or is in another account/endpoint)",
                "create the export bucket (or set CXONE_BUCKET / AWS_ENDPOINT_URL_S3 to the "
                "right one), then re-run `cxone-sync doctor`",
            )
        if code in {"AccessDenied", "AccessDeniedException", "403", "AllAccessDisabled"}:
            return _failed(
                name,
                f"{action} on {bucket} was denied: {_error_message(exc) or code}",
                f"allow {action} on arn:aws:s3:::{bucket} for the role running the preflight "
                "(the reader role from `cxone-sync policy` includes it)",
            )
        return _failed(
            name,
            f"{action} on {bucket} failed: {code} {_error_message(exc)}".strip(),
            "check AWS_ENDPOINT_URL_S3, AWS_REGION and the AWS credentials, then re-run",
        )
    return _failed(
        name,
        f"{action} on {bucket} failed: {type(exc).__name__}: {exc}",
        "check AWS_ENDPOINT_URL_S3, AWS_REGION and the AWS credentials, then re-run",
    )


# ---------------------------------------------------------------------------------- versioning


def check_versioning(s3: Any, bucket: str) -> CheckLine:
    """Object versioning must be Enabled (re-exports overwrite keys; versions keep the audit)."""
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except (ClientError, BotoCoreError) as exc:
        return _aws_failure(CHECK_VERSIONING, bucket, "s3:GetBucketVersioning", exc)
    if status == "Enabled":
        return _passed(CHECK_VERSIONING, f"versioning on {bucket} is Enabled")
    found = status or "never enabled"
    return _failed(
        CHECK_VERSIONING,
        f"versioning on {bucket} is {found}; a re-export would overwrite files without a trace",
        f"aws s3api put-bucket-versioning --bucket {bucket} "
        "--versioning-configuration Status=Enabled",
    )


# ---------------------------------------------------------------------------------- encryption


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
        if _error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return _failed(
                name, f"{bucket} has no default encryption configured", _encryption_fix(bucket)
            )
        return _aws_failure(name, bucket, "s3:GetEncryptionConfiguration", exc)
    except BotoCoreError as exc:
        return _aws_failure(name, bucket, "s3:GetEncryptionConfiguration", exc)
    rules = config.get("Rules") or []
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")
    key_id = default.get("KMSMasterKeyID")
    if algorithm not in {"aws:kms", "aws:kms:dsse"}:
        return _failed(
            name,
            f"{bucket} encrypts by default with {algorithm or 'nothing'} (SSE-S3), not SSE-KMS "
            "with a customer-managed key",
            _encryption_fix(bucket),
        )
    if not key_id or key_id.startswith("alias/aws/") or ":alias/aws/" in key_id:
        return _failed(
            name,
            f"{bucket} uses SSE-KMS with the AWS-managed key {key_id or 'aws/s3'}; its key "
            "policy cannot be changed, so CXone's export role cannot be granted use of it",
            _encryption_fix(bucket),
        )
    try:
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        code = _error_code(exc)
        if code in {"NotFoundException", "KMS.NotFoundException"}:
            return _failed(
                name,
                f"{bucket}'s default key {key_id} does not exist",
                _encryption_fix(bucket),
            )
        return _failed(
            name,
            f"kms:DescribeKey on {key_id} failed: {code} {_error_message(exc)}".strip(),
            f"allow kms:DescribeKey on {key_id} for the role running the preflight",
        )
    except BotoCoreError as exc:
        return _failed(
            name,
            f"kms:DescribeKey on {key_id} failed: {type(exc).__name__}: {exc}",
            "check the KMS endpoint (AWS_ENDPOINT_URL_KMS), AWS_REGION and the AWS credentials, "
            "then re-run",
        )
    arn = meta.get("Arn", key_id)
    if meta.get("KeyManager") != "CUSTOMER":
        return _failed(
            name,
            f"{bucket}'s default key {arn} is managed by {meta.get('KeyManager')}, "
            "not a customer-managed key",
            _encryption_fix(bucket),
        )
    state = meta.get("KeyState", "Enabled")
    if state != "Enabled":
        return _failed(
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
    return _passed(name, f"{bucket} encrypts with SSE-KMS, customer-managed key {arn}{bucket_key}")


# ------------------------------------------------------------------------------- public access


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
        if _error_code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return _failed(name, f"{bucket} has no public access block", fix)
        return _aws_failure(name, bucket, "s3:GetBucketPublicAccessBlock", exc)
    except BotoCoreError as exc:
        return _aws_failure(name, bucket, "s3:GetBucketPublicAccessBlock", exc)
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if config.get(flag) is not True]
    if off:
        return _failed(name, f"{bucket} public access block has {', '.join(off)} off", fix)
    return _passed(name, f"{bucket} blocks all public access (all four flags on)")


# ------------------------------------------------------------------------------- bucket policy


def secure_transport_statement(bucket: str) -> dict[str, Any]:
    """Deny every S3 action on the bucket and its objects over plain HTTP."""
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def unencrypted_upload_statement(bucket: str) -> dict[str, Any]:
    """Deny uploads that do not ask for SSE-KMS."""
    return {
        "Sid": "DenyUnencryptedUploads",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"StringNotEquals": {SSE_HEADER: "aws:kms"}},
    }


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _matches(patterns: Any, value: str) -> bool:
    """IAM wildcard match, case-insensitive (actions and condition keys are)."""
    return any(fnmatchcase(value.lower(), str(p).lower()) for p in _as_list(patterns))


def _everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))


def _conditions(statement: dict[str, Any], operators: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(condition key, values) pairs under the named operators (case-insensitive keys)."""
    wanted = {op.lower() for op in operators}
    condition = statement.get("Condition") or {}
    if not isinstance(condition, dict):
        return
    for operator, entries in condition.items():
        if str(operator).lower() in wanted and isinstance(entries, dict):
            for key, values in entries.items():
                yield str(key).lower(), _as_list(values)


def _denies(statement: Any, action: str, resource: str) -> bool:
    """True for a Deny to everyone that covers ``action`` on ``resource``."""
    return (
        isinstance(statement, dict)
        and statement.get("Effect") == "Deny"
        and _everyone(statement.get("Principal"))
        and "NotAction" not in statement
        and _matches(statement.get("Action"), action)
        and _matches(statement.get("Resource"), resource)
    )


def _denies_plain_http(statement: Any, bucket: str) -> bool:
    if not _denies(statement, "s3:GetObject", f"arn:aws:s3:::{bucket}/any-key"):
        return False
    return any(
        key == "aws:securetransport" and any(str(v).lower() == "false" for v in values)
        for key, values in _conditions(statement, ["Bool", "BoolIfExists"])
    )


def _denies_unencrypted_put(statement: Any, bucket: str) -> bool:
    if not _denies(statement, "s3:PutObject", f"arn:aws:s3:::{bucket}/any-key"):
        return False
    header = SSE_HEADER.lower()
    not_kms = any(
        key == header and any(str(v).startswith("aws:kms") for v in values)
        for key, values in _conditions(statement, ["StringNotEquals"])
    )
    null = any(
        key == header and any(str(v).lower() == "true" for v in values)
        for key, values in _conditions(statement, ["Null"])
    )
    return not_kms or null


def check_bucket_policy(s3: Any, bucket: str) -> CheckLine:
    """The bucket policy must deny plain-HTTP access and uploads without SSE-KMS."""
    name = CHECK_POLICY
    try:
        raw = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchBucketPolicy":
            return _aws_failure(name, bucket, "s3:GetBucketPolicy", exc)
        raw = None
    except BotoCoreError as exc:
        return _aws_failure(name, bucket, "s3:GetBucketPolicy", exc)
    try:
        policy = json.loads(raw) if raw else {}
    except ValueError:
        policy = {}
    statements = _as_list(policy.get("Statement") if isinstance(policy, dict) else None)
    missing = []
    if not any(_denies_plain_http(s, bucket) for s in statements):
        missing.append(("a Deny on aws:SecureTransport=false", secure_transport_statement(bucket)))
    if not any(_denies_unencrypted_put(s, bucket) for s in statements):
        missing.append(
            (
                f"a Deny of s3:PutObject without {SSE_HEADER}=aws:kms",
                unencrypted_upload_statement(bucket),
            )
        )
    if not missing:
        return _passed(name, f"{bucket}'s policy denies plain HTTP and uploads without SSE-KMS")
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
    return _failed(name, detail, fix)


# ------------------------------------------------------------------------------- read / decrypt


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
        return _aws_failure(name, bucket, "s3:ListBucket", exc)
    if newest is None:
        return _passed(
            name,
            f"nothing under {where} yet, so decryption is not verified; re-run after the first "
            "export lands",
        )
    key = newest["Key"]
    uri = f"s3://{bucket}/{key}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code, message = _error_code(exc), _error_message(exc)
        if code in {"AccessDenied", "403"} or code.startswith("KMS") or "kms:" in message:
            match = _KMS_KEY_ARN.search(message)
            key_arn = match.group(0) if match else _object_key_arn(s3, bucket, key)
            who = _PRINCIPAL_ARN.search(message)
            principal = who.group(1) if who else None
            return _failed(
                name,
                f"cannot read {uri}: access denied decrypting with KMS key {key_arn}; the reader "
                f"role{f' ({principal})' if principal else ''} lacks kms:Decrypt on that key "
                "(typically after a key rotation or re-keying of the bucket)",
                _decrypt_fix(key_arn, principal),
            )
        return _aws_failure(name, bucket, "s3:GetObject", exc)
    except BotoCoreError as exc:
        return _aws_failure(name, bucket, "s3:GetObject", exc)
    size = 0
    body = response["Body"]
    try:
        for chunk in body.iter_chunks(1024 * 1024):
            size += len(chunk)
    except (BotoCoreError, OSError) as exc:
        return _failed(
            name,
            f"reading {uri} broke off after {size} bytes ({type(exc).__name__})",
            "re-run the preflight; if it persists, check the network path to S3",
        )
    finally:
        body.close()
    expected = int(response.get("ContentLength", size))
    if size != expected:
        return _failed(
            name,
            f"short read of {uri}: {size} of {expected} bytes",
            "re-run the preflight; if it persists, check the network path to S3",
        )
    return _passed(
        name,
        f"read the newest file {uri} ({size} bytes, "
        f"{response.get('ServerSideEncryption', 'unencrypted')})",
    )


def _object_key_arn(s3: Any, bucket: str, key: str) -> str:
    try:
        return str(s3.head_object(Bucket=bucket, Key=key).get("SSEKMSKeyId") or "the bucket key")
    except (ClientError, BotoCoreError):
        return "the bucket's KMS key"


# ----------------------------------------------------------------------------------------- API


def check_api(settings: Settings) -> CheckLine:
    """A token, then the download configuration of every category; never shows a secret."""
    import httpx

    from cxone_sync.clients import cxone_client
    from cxone_sync.cxone.client import RetryPolicy
    from cxone_sync.cxone.errors import AuthError, CXoneError

    name = CHECK_API
    try:
        client = cxone_client(
            settings, timeout=10.0, retry=RetryPolicy(attempts=2, initial_wait=0.2, jitter=0.2)
        )
    except ValueError as exc:
        return _failed(name, str(exc), "fix CXONE_API_URL / CXONE_TOKEN_URL")
    token_call = f"POST {httpx.URL(settings.token_url).path}"
    failures: list[str] = []
    foreign: list[str] = []
    with client:
        for cat in CATEGORIES:
            if settings.source_for(cat.name) != "data_download":
                continue  # read through the bridge (its own doctor lines)
            try:
                config = client.download_config(cat.name)
            except AuthError as exc:
                if exc.what.startswith("POST "):
                    return _failed(
                        name,
                        f"no token from {settings.token_url}: {exc.status_code}"
                        + (f" {exc.server_text}" if exc.server_text else ""),
                        "check CXONE_CLIENT_ID/CXONE_CLIENT_SECRET (and CXONE_ACCESS_KEY_ID/"
                        "CXONE_ACCESS_KEY_SECRET for the password grant) and CXONE_TOKEN_URL",
                    )
                failures.append(f"{cat.name}: {exc}")
            except CXoneError as exc:
                if str(exc).startswith(token_call):
                    return _failed(
                        name,
                        f"no token from {settings.token_url}: {exc}",
                        "check that CXONE_TOKEN_URL / CXONE_API_URL are reachable from here "
                        "(`cxone-sync local-stack` for the embedded default)",
                    )
                failures.append(f"{cat.name}: {exc}")
            else:
                if config.destination.bucket != settings.cxone_bucket:
                    foreign.append(
                        f"{cat.name} exports to {config.destination.bucket}, "
                        f"not CXONE_BUCKET={settings.cxone_bucket}"
                    )
    if failures:
        first = failures[0].split(":", 1)[0]
        return _failed(
            name,
            f"token ok; download configuration failed for {len(failures)} of "
            f"{len(CATEGORIES)} categories: " + "; ".join(failures),
            f"check CXONE_DOWNLOAD_IDS (the {first} download id is "
            f"{settings.download_id(first)}) and the API user's scope for Data Download",
        )
    if foreign:
        return _failed(
            name,
            "; ".join(foreign),
            "set CXONE_BUCKET to the bucket the downloads export to, or change the "
            "downloads' destination in CXone",
        )
    return _passed(
        name,
        f"token from {settings.token_url}; download configuration of all {len(CATEGORIES)} "
        f"categories read, all exporting to {settings.cxone_bucket}",
    )


# ----------------------------------------------------------------------------------- warehouse


def check_warehouse(settings: Settings) -> CheckLine:
    """The DuckDB file can be written (file and folder writable, no writer holds its lock).

    Checked read-only: the doctor never takes DuckDB's single-writer lock, so running it beside
    the platform never fails a run, and it never creates the file.
    """
    import duckdb

    from cxone_sync.warehouse.locks import is_lock_error, lock_holder

    name = CHECK_WAREHOUSE
    if settings.cxone_warehouse == "snowflake":
        from cxone_sync.warehouse.snowflake_doctor import check_snowflake

        line: CheckLine = check_snowflake(settings)
        return line
    path = settings.duckdb_path
    folder = _existing_parent(path)
    if not os.access(folder, os.W_OK | os.X_OK):
        return _failed(name, f"cannot create files in {folder}", _path_fix(path))
    if not path.exists():
        return _passed(
            name,
            f"DuckDB {path} opens for writing: it does not exist yet and {folder} is writable "
            "(the first load creates it)",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        return _failed(name, f"{path} is not readable and writable by this user", _path_fix(path))
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        text = " ".join(str(exc).split())
        if is_lock_error(exc):
            holder = lock_holder(exc)
            who = f"{holder[0]} (PID {holder[1]})" if holder else "another process"
            pid = holder[1] if holder else "<pid>"
            return _failed(
                name,
                f"{path} is locked for writing by {who}; DuckDB allows one writing process",
                f"stop that process (e.g. `kill {pid}` once its run is done, or close the "
                "DuckDB shell / notebook holding the file), or point CXONE_DUCKDB_PATH at "
                "another file",
            )
        return _failed(name, f"cannot open {path}: {text}", _path_fix(path))
    except (OSError, duckdb.Error) as exc:
        return _failed(name, f"cannot open {path}: {exc}", _path_fix(path))
    try:
        connection.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    except duckdb.Error as exc:
        return _failed(name, f"{path} opened but cannot be read: {exc}", _path_fix(path))
    finally:
        connection.close()
    return _passed(
        name,
        f"DuckDB {path} opens for writing (no other process holds its write lock; checked "
        "read-only, so the doctor never holds it either)",
    )


def _existing_parent(path: Path) -> Path:
    """The folder the file is (or would be) created in, or its nearest existing ancestor."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _path_fix(path: Path) -> str:
    return f"make {path.parent} writable by this user, or set CXONE_DUCKDB_PATH to a writable file"


# ------------------------------------------------------------------------------------- doctor


def aws_clients(settings: Settings) -> tuple[Any, Any]:
    """boto3 S3 and KMS clients for the settings (each on its own endpoint), failing fast."""
    from cxone_sync.clients import s3_and_kms

    return s3_and_kms(
        settings,
        max_attempts=2,
        retry_mode="legacy",
        connect_timeout=5,
        read_timeout=30,
        addressing_style="auto",
    )


def bucket_checks(s3: Any, kms: Any, bucket: str, prefix: str = "") -> list[CheckLine]:
    """Every bucket check, in the order the doctor prints them."""
    steps: list[Callable[[], CheckLine]] = [
        lambda: check_versioning(s3, bucket),
        lambda: check_default_encryption(s3, kms, bucket),
        lambda: check_public_access_block(s3, bucket),
        lambda: check_bucket_policy(s3, bucket),
        lambda: check_read_decrypt(s3, bucket, prefix),
    ]
    return [step() for step in steps]


def run_doctor(settings: Settings) -> list[CheckLine]:
    """Every preflight check against the configured API, bucket and warehouse."""
    from cxone_sync.bridge.doctor import bridge_lines

    download = [c for c in CATEGORIES if settings.source_for(c.name) == "data_download"]
    lines = [check_api(settings)] if download else []
    if len(download) < len(CATEGORIES) or settings.cxone_source:
        lines += bridge_lines(settings)
    try:
        s3, kms = aws_clients(settings)
    except (BotoCoreError, ValueError) as exc:
        lines.append(
            _failed(
                "aws_client",
                f"cannot create AWS clients: {type(exc).__name__}: {exc}",
                "check AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_KMS and the AWS "
                "credential chain",
            )
        )
    else:
        lines += bucket_checks(s3, kms, settings.cxone_bucket)
    lines.append(check_warehouse(settings))
    return lines


def doctor() -> int:
    """``cxone-sync doctor``: one line per check; 1 when any check failed."""
    # the client logs each retry; the doctor's lines already say what failed
    logging.getLogger("cxone_sync.cxone.client").setLevel(logging.ERROR)
    lines = run_doctor(get_settings())
    for line in lines:
        print("\n".join(line.render()))
    failed = sum(not line.ok for line in lines)
    print(f"\n{len(lines) - failed} passed, {failed} failed")
    sys.stdout.flush()
    return 1 if failed else 0
