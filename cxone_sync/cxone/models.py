"""Typed, strict models of what the Data Download API answers (CONTRACT §1).

Unknown fields are ignored (CXone adds fields without notice); missing or ill-typed known fields
are refused with a :class:`ManifestError` naming the job, the field path and the problem.
Timestamps must carry a time zone and are normalised to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from cxone_sync.cxone.errors import ManifestError
from cxone_sync.cxone.untrusted import shown

_M = TypeVar("_M", bound=BaseModel)

_MAX_SHOWN_ERRORS = 5
_MAX_INPUT_REPR = 80


def _utc(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}") from None
    else:
        raise ValueError(f"expected an ISO 8601 timestamp string, got {value!r}")
    if parsed.tzinfo is None:
        raise ValueError(f"expected a timestamp with a time zone, got {value!r}")
    return parsed.astimezone(UTC)


UtcDatetime = Annotated[datetime, BeforeValidator(_utc)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=0)]


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"


class JobTrigger(StrEnum):
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class JobFile(_Model):
    uri: NonEmptyStr
    data_type: NonEmptyStr
    record_count: Count
    size_bytes: Count


class Job(_Model):
    id: NonEmptyStr
    download_id: NonEmptyStr
    category: NonEmptyStr
    status: JobStatus = Field(strict=False)
    trigger: JobTrigger = Field(strict=False)
    interval_start: UtcDatetime
    interval_end: UtcDatetime
    start_time: UtcDatetime | None = None
    """When the job ran; absent or null while it is still queued."""
    end_time: UtcDatetime | None = None
    updated_at: UtcDatetime
    output_files: list[str]
    files: list[JobFile] | None = None
    record_count: Count
    error_details: str | None = None

    @classmethod
    def parse(cls, raw: object) -> Self:
        """Validate one job as the API sent it; :class:`ManifestError` when it is unusable."""
        job_id = raw.get("id") if isinstance(raw, dict) else None
        readable = isinstance(job_id, str) and job_id
        label = f"job {shown(job_id)}" if readable else "job (unreadable id)"
        return _parse(cls, raw, label)

    @property
    def file_uris(self) -> list[str]:
        """Every file the job names (``output_files`` then ``files[].uri``), each once."""
        uris = [*self.output_files, *(f.uri for f in self.files or ())]
        return list(dict.fromkeys(uris))


class Partitioning(_Model):
    enabled: bool
    structure: str


class Schedule(_Model):
    frequency: NonEmptyStr
    offset_minutes: Count


class Destination(_Model):
    type: NonEmptyStr
    bucket: NonEmptyStr
    prefix: str


class DownloadConfig(_Model):
    download_id: NonEmptyStr
    category: NonEmptyStr
    data_types: list[NonEmptyStr]
    format: NonEmptyStr
    compression: NonEmptyStr
    partitioning: Partitioning
    schedule: Schedule
    destination: Destination

    @classmethod
    def parse(cls, raw: object) -> Self:
        """Validate a download configuration; :class:`ManifestError` when it is unusable."""
        download_id = raw.get("download_id") if isinstance(raw, dict) else None
        label = f"download {shown(download_id)}" if isinstance(download_id, str) else "download"
        return _parse(cls, raw, label)


def _parse(model: type[_M], raw: object, label: str) -> _M:
    if not isinstance(raw, dict):
        raise ManifestError(f"{label}: expected a JSON object, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [_describe(e) for e in errors[:_MAX_SHOWN_ERRORS]]
        if len(errors) > _MAX_SHOWN_ERRORS:
            problems.append(f"and {len(errors) - _MAX_SHOWN_ERRORS} more")
        raise ManifestError(f"{label}: {'; '.join(problems)}") from None


_EXPECTED = {
    "int_type": "expected an integer",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "string_too_short": "expected a non-empty string",
    "greater_than_equal": "expected a number >= 0",
}


def _describe(error: ErrorDetails) -> str:
    where = f"field '{_path(error['loc'])}'"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: missing"
    if kind == "value_error":
        return f"{where}: {error.get('ctx', {}).get('error', error['msg'])}"
    expected = _EXPECTED.get(kind) or error["msg"][:1].lower() + error["msg"][1:]
    shown = repr(error["input"])
    if len(shown) > _MAX_INPUT_REPR:
        shown = shown[: _MAX_INPUT_REPR - 3] + "..."
    return f"{where}: {expected}, got {shown}"


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path
