"""S3 URIs of exported files, and the check that a job only names files where they belong.

CONTRACT §2: ``s3://{bucket}/{prefix}{data_type}/year=YYYY/month=MM/day=DD/hour=HH/part-NNNNN.parquet``.
A job naming any file elsewhere (another bucket, outside every allowed prefix, a traversal, a
path off the layout) is refused whole (CONTRACT §3): nothing of it may be loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cxone_sync.cxone.errors import ForeignFileError
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.untrusted import shown

S3_SCHEME = "s3"
_URI_SHOWN = 300
LAYOUT = "{data_type}/year=YYYY/month=MM/day=DD/hour=HH/part-NNNNN.parquet"
_LAYOUT_RE = re.compile(
    r"(?P<sub>(?:[A-Za-z0-9._=+-]+/)*)"
    r"(?P<data_type>[a-z][a-z0-9_]*)/year=(?P<year>\d{4})/month=(?P<month>\d{2})"
    r"/day=(?P<day>\d{2})/hour=(?P<hour>\d{2})/part-(?P<part>\d{5})\.parquet"
)
"""The key after an allowed prefix. ``sub`` is a nested destination prefix (a manual export's
``destination_prefix`` under the download's prefix, e.g. ``backfill/``): still inside the
download's prefix, which is what CONTRACT §3 requires."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}://{self.bucket}/{self.key}"

    def __str__(self) -> str:
        return self.uri


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/key``; ``ValueError`` for another scheme or a missing bucket or key."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme != S3_SCHEME:
        raise ValueError(f"not an {S3_SCHEME}:// URI: {uri!r}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    if not key:
        raise ValueError(f"no object key in {uri!r}")
    return S3Location(bucket, key)


@dataclass(frozen=True)
class FileRef:
    """One exported file: where it is, which data type and partition hour it holds.

    ``prefix`` is the destination prefix the file was written under: an allowed prefix, or a
    nested one below it (a manual export's). ``record_count`` and ``size_bytes`` come from the
    job's ``files`` entry when it has one.
    """

    location: S3Location
    prefix: str
    data_type: str
    partition_hour: datetime
    part: int
    record_count: int | None = None
    size_bytes: int | None = None

    @property
    def uri(self) -> str:
        return self.location.uri


class _Refused(Exception):
    """Why one URI is not acceptable; turned into a :class:`ForeignFileError` for its job."""


def validate_job_files(job: Job, bucket: str, prefixes: Iterable[str]) -> list[FileRef]:
    """Every file of ``job`` as a :class:`FileRef`, or :class:`ForeignFileError` for the job.

    ``prefixes`` are the key prefixes files may live under: the download's destination prefix,
    plus any manual export's ``destination_prefix`` outside it. A file may sit in a nested
    prefix below an allowed one (``exports/telephony/backfill/`` under ``exports/telephony/``).
    """
    allowed = _normalise(prefixes)
    declared = {f.uri: f for f in job.files or ()}
    refs: list[FileRef] = []
    for uri in job.file_uris:
        try:
            ref = _file_ref(uri, bucket, allowed)
            entry = declared.get(uri)
            if entry is not None:
                if entry.data_type != ref.data_type:
                    raise _Refused(
                        f"is listed with data type {entry.data_type!r} but its path holds "
                        f"{ref.data_type!r}"
                    )
                ref = replace(ref, record_count=entry.record_count, size_bytes=entry.size_bytes)
        except _Refused as refused:
            raise ForeignFileError(_message(job.id, uri, refused, bucket, allowed)) from None
        refs.append(ref)
    return refs


def _normalise(prefixes: Iterable[str]) -> list[str]:
    normalised = {p if not p or p.endswith("/") else f"{p}/" for p in prefixes}
    if not normalised:
        raise ValueError("validate_job_files needs at least one allowed prefix")
    return sorted(normalised, key=lambda p: (-len(p), p))


def _file_ref(uri: str, bucket: str, allowed: list[str]) -> FileRef:
    try:
        location = parse_s3_uri(uri)
    except ValueError as exc:
        raise _Refused(f"is not an s3://bucket/key URI ({exc})") from None
    if location.bucket != bucket:
        raise _Refused(f"is in bucket {location.bucket!r}, not the export bucket")
    _check_segments(location.key)
    prefix = next((p for p in allowed if location.key.startswith(p)), None)
    if prefix is None:
        raise _Refused("is outside every allowed prefix")
    match = _LAYOUT_RE.fullmatch(location.key[len(prefix) :])
    if match is None:
        raise _Refused(f"does not follow the layout {{prefix}}{LAYOUT}")
    return _ref(location, prefix + match["sub"], match)


def _check_segments(key: str) -> None:
    if "%" in key:
        raise _Refused("has a percent-encoded character in its key")
    if "\\" in key:
        raise _Refused("has a backslash in its key")
    segments = key.split("/")
    if "" in segments:
        raise _Refused("has an empty path segment in its key")
    if "." in segments or ".." in segments:
        raise _Refused("has a '.' or '..' path segment in its key")


def _ref(location: S3Location, prefix: str, match: re.Match[str]) -> FileRef:
    try:
        hour = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise _Refused(f"names a partition that is not a valid UTC hour ({exc})") from None
    return FileRef(location, prefix, match["data_type"], hour, int(match["part"]))


def _message(job_id: str, uri: str, refused: _Refused, bucket: str, allowed: list[str]) -> str:
    prefixes = ", ".join(repr(p) for p in allowed)
    file = repr(uri) if len(uri) <= _URI_SHOWN else shown(uri, _URI_SHOWN)
    return (
        f"job {shown(job_id)} refused whole: file {file} {refused}. Files must be in bucket "
        f"{bucket!r} under prefix {prefixes} as {{prefix}}{LAYOUT}. No file of this job was "
        "loaded: check the download's destination (bucket, prefix) in CXone, or the manual "
        "export's destination_prefix, against CXONE_BUCKET."
    )
