"""The bucket policy statements the platform asks for, and a small evaluator of IAM policy
statements (wildcards, principals, condition operators) that tells whether a policy already
denies plain HTTP and uploads without SSE-KMS."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from typing import Any

SSE_HEADER = "s3:x-amz-server-side-encryption"


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


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _matches(patterns: Any, value: str) -> bool:
    """IAM wildcard match, case-insensitive (actions and condition keys are)."""
    return any(fnmatchcase(value.lower(), str(p).lower()) for p in as_list(patterns))


def _everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))


def _conditions(statement: dict[str, Any], operators: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(condition key, values) pairs under the named operators (case-insensitive keys)."""
    wanted = {op.lower() for op in operators}
    condition = statement.get("Condition") or {}
    if not isinstance(condition, dict):
        return
    for operator, entries in condition.items():
        if str(operator).lower() in wanted and isinstance(entries, dict):
            for key, values in entries.items():
                yield str(key).lower(), as_list(values)


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


def denies_plain_http(statement: Any, bucket: str) -> bool:
    if not _denies(statement, "s3:GetObject", f"arn:aws:s3:::{bucket}/any-key"):
        return False
    return any(
        key == "aws:securetransport" and any(str(v).lower() == "false" for v in values)
        for key, values in _conditions(statement, ["Bool", "BoolIfExists"])
    )


def denies_unencrypted_put(statement: Any, bucket: str) -> bool:
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
