"""Fetch one export file from S3 to local disk while hashing it.

The reader streams the object in chunks (bounded memory), computes SHA-256 over the bytes as
read, records the S3 version id, and compares with what S3 itself says about the object: its
size (a short read fails) and its SHA-256 checksum when the writer set one. Access-denied and KMS
errors become :class:`UnreadableFileError` with the fix spelled out, never a stack trace.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

CHUNK_BYTES = 8 * 1024 * 1024

_KMS_ARN = re.compile(r"arn:aws[\w-]*:kms:[\w-]*:\d*:key/[\w-]+")
_DENIED_CODES = {
    "AccessDenied",
    "KMS.AccessDeniedException",
    "AccessDeniedException",
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
    "KMS.NotFoundException",
}


class StagingError(Exception):
    """A file could not be staged; the message says what, where and what to do."""


class TransientStagingError(StagingError):
    """S3 failed in a way a later attempt can fix (5xx, throttling, a connection error) after
    boto3's own retries: the staging step is retried rather than the partition blocked."""


S3_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
"""S3 error codes worth retrying later (with any 5xx)."""


class UnreadableFileError(StagingError):
    """The reader cannot read or decrypt the object (typically a KMS grant missing)."""


class ShortReadError(StagingError):
    """Fewer bytes arrived than S3 announced."""


@dataclass(frozen=True)
class FetchedFile:
    uri: str
    path: Path | None
    """Local copy, or None when the bytes were only hashed (``keep=False``)."""
    version_id: str | None
    sha256: str
    size_bytes: int
    s3_checksum_sha256: str | None
    """Hex SHA-256 S3 stores for the object when the writer set one (single-part uploads)."""

    @property
    def checksum_matches(self) -> bool | None:
        if self.s3_checksum_sha256 is None:
            return None
        return self.s3_checksum_sha256 == self.sha256


def _denied_message(uri: str, error: ClientError, reader: str) -> str:
    text = str(error.response.get("Error", {}).get("Message", ""))
    match = _KMS_ARN.search(text)
    key = match.group(0) if match else "the bucket's customer-managed KMS key"
    return (
        f"cannot read {uri}: access denied while decrypting with {key} for {reader}. "
        f"The reader role lacks kms:Decrypt on that key (typically after a KMS key rotation or "
        f"a new key without a grant). Fix: grant kms:Decrypt on {key} to the reader role "
        f"(see `cxone-sync policy`), then re-run this partition."
    )


@dataclass(frozen=True)
class ObjectHead:
    version_id: str | None
    size_bytes: int
    s3_checksum_sha256: str | None


def _client_error(uri: str, exc: ClientError, reader: str) -> StagingError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _DENIED_CODES or code.startswith("KMS"):
        return UnreadableFileError(_denied_message(uri, exc, reader))
    if code in {"NoSuchKey", "404", "NoSuchVersion"}:
        return StagingError(
            f"{uri} is listed by a COMPLETED job but is not in the bucket ({code}). "
            "Request a re-export of the interval (manual export, overwrite false)."
        )
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if status >= 500 or code in S3_TRANSIENT_CODES:
        return TransientStagingError(
            f"cannot read {uri}: S3 answered {code or status} (HTTP {status}) after retries; "
            "the step is retried later"
        )
    return StagingError(f"cannot read {uri}: S3 answered {code or 'an error'}")


def head_s3_file(
    s3_client: Any, bucket: str, key: str, *, reader: str = "the reader role"
) -> ObjectHead:
    """What S3 says about the current version of an object, without reading its bytes."""
    uri = f"s3://{bucket}/{key}"
    try:
        response = s3_client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        raise _client_error(uri, exc, reader) from None
    except BotoCoreError as exc:
        raise StagingError(f"cannot read {uri}: {type(exc).__name__}") from None
    return ObjectHead(
        version_id=response.get("VersionId"),
        size_bytes=int(response.get("ContentLength") or 0),
        s3_checksum_sha256=s3_sha256_hex(response.get("ChecksumSHA256")),
    )


def fetch_s3_file(
    s3_client: Any,
    bucket: str,
    key: str,
    dest: Path | None,
    *,
    version_id: str | None = None,
    reader: str = "the reader role",
) -> FetchedFile:
    """Stream ``s3://bucket/key`` to ``dest`` (or only hash it when ``dest`` is None)."""
    uri = f"s3://{bucket}/{key}"
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if version_id:
        params["VersionId"] = version_id
    try:
        response = s3_client.get_object(**params)
    except ClientError as exc:
        raise _client_error(uri, exc, reader) from None
    except BotoCoreError as exc:
        raise TransientStagingError(
            f"cannot read {uri}: {type(exc).__name__}; the step is retried later"
        ) from None

    digest = hashlib.sha256()
    size = 0
    body = response["Body"]
    try:
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(dest.suffix + ".part")
            with open(tmp, "wb") as out:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            os.replace(tmp, dest)
        else:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except (BotoCoreError, OSError) as exc:
        raise ShortReadError(
            f"reading {uri} broke off after {size} bytes ({type(exc).__name__}); "
            "re-run the partition; if it persists, request a re-export of the interval."
        ) from None
    finally:
        body.close()

    expected = response.get("ContentLength")
    if expected is not None and size != int(expected):
        raise ShortReadError(
            f"short read of {uri}: got {size} of {expected} bytes; re-run the partition, and if "
            "it persists request a re-export of the interval (manual export, overwrite false)."
        )
    return FetchedFile(
        uri=uri,
        path=dest,
        version_id=response.get("VersionId"),
        sha256=digest.hexdigest(),
        size_bytes=size,
        s3_checksum_sha256=s3_sha256_hex(response.get("ChecksumSHA256")),
    )


def s3_sha256_hex(value: str | None) -> str | None:
    """S3's ``ChecksumSHA256`` (base64) as hex, comparable with a SHA-256 hex digest of the bytes.

    None when absent, unreadable, or a multipart composite (``...-N``: a checksum of the parts'
    checksums, not of the object's bytes). The one reading of that header: staging and the
    reconciliation's file audit both use it."""
    if not value or "-" in value:
        return None
    try:
        return base64.b64decode(value).hex()
    except ValueError:
        return None
