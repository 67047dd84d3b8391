"""Configuration of the CXone Data Download simulator: the world's seed, scale and faults.

Every fault knob is either a rate in [0, 1] (decided per interval, deterministically by seed) or an
explicit tuple of UTC datetimes naming the intervals that get the fault (a datetime matches every
category interval that contains it). Both dataclasses round-trip through JSON-friendly dicts
(:meth:`SimConfig.to_dict` / :meth:`SimConfig.from_dict`) for the server's control endpoint and
the CLI.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal, get_args, get_origin

from cxone_sync.catalog import CATEGORIES, UPDATED_AT, DataType, category
from cxone_sync.settings import (
    DEFAULT_PARTITIONS_START,
    SIM_BUCKET,
    SIM_CLIENT_ID,
    SIM_CLIENT_SECRET,
)
from cxone_sync.timefmt import as_utc as utc
from cxone_sync.timefmt import parse_utc, utc_iso

DriftKind = Literal[
    "add_column", "reorder", "widen", "drop_column", "drop_key", "incompatible_type"
]
DRIFT_KINDS: tuple[str, ...] = get_args(DriftKind)
COMPRESSIONS = ("zstd", "snappy")


def parse_time(value: str | datetime) -> datetime:
    """An ISO-8601 timestamp (``Z`` or offset; naive is UTC) or a datetime, as aware UTC."""
    return utc(value) if isinstance(value, datetime) else parse_utc(value.strip())


def iso(value: datetime) -> str:
    """ISO-8601 with a ``Z`` suffix (naive values are taken as UTC)."""
    return utc_iso(utc(value))


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a rate in [0, 1], got {value}")


@dataclass(frozen=True)
class DriftSpec:
    """A schema change of one data type for the intervals starting in ``[start, end)``."""

    data_type: str
    start: datetime
    end: datetime | None = None
    kind: DriftKind = "add_column"
    column: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"drift kind must be one of {DRIFT_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "start", utc(self.start))
        if self.end is not None:
            object.__setattr__(self, "end", utc(self.end))

    def active(self, interval_start: datetime) -> bool:
        return self.start <= interval_start and (self.end is None or interval_start < self.end)

    def breaking(self, data_type: DataType) -> bool:
        """True when files with this drift must not load (a key or ``updated_at`` lost/retyped)."""
        if self.kind in ("drop_key", "incompatible_type"):
            return True
        return self.kind == "drop_column" and self.column in (*data_type.key, UPDATED_AT)


@dataclass(frozen=True)
class CountSkew:
    """Manifest record counts of one category interval off by ``percent`` (+/-)."""

    category: str
    interval_start: datetime
    percent: float

    def __post_init__(self) -> None:
        category(self.category)
        object.__setattr__(self, "interval_start", utc(self.interval_start))


@dataclass(frozen=True)
class Outage:
    """CXone exports nothing in ``[start, end)``: scheduled exports due then are never created
    (each logged as an ``outage`` fault); the API itself answers, manual exports work."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end <= self.start:
            raise ValueError("an outage must end after it starts")

    def covers(self, t: datetime) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class FaultConfig:
    duplicate_export_rate: float = 0.0
    duplicate_export_intervals: tuple[datetime, ...] = ()
    failed_rate: float = 0.0
    failed_intervals: tuple[datetime, ...] = ()
    timed_out_rate: float = 0.0
    timed_out_intervals: tuple[datetime, ...] = ()
    placeholder_rate: float = 0.0
    """Placeholder/partial files visible while a job is RUNNING (FAILED/TIMED_OUT leave theirs)."""
    late_update_rate: float = 0.0
    """Share of an interval's keys re-delivered ``late_update_delay`` later with a newer version."""
    late_update_delay: timedelta = timedelta(days=1)
    stale_redelivery_rate: float = 0.0
    """Share of an interval's keys re-delivered ``late_update_delay`` later, OLDER version."""
    in_file_duplicate_rate: float = 0.0
    """Share of a file's keys that also appear in older versions inside the same file."""
    shuffle_rows: bool = True
    omit_files_rate: float = 0.0
    drift: tuple[DriftSpec, ...] = ()
    record_count_skew: tuple[CountSkew, ...] = ()
    record_count_skew_rate: float = 0.0
    record_count_skew_percent: float = 10.0
    replaced_bytes: tuple[datetime, ...] = ()
    denied_read: tuple[datetime, ...] = ()
    null_key_intervals: tuple[datetime, ...] = ()
    api_429_rate: float = 0.0
    api_5xx_rate: float = 0.0
    api_slow_rate: float = 0.0
    api_slow_seconds: float = 0.3
    api_truncated_rate: float = 0.0
    api_non_json_rate: float = 0.0
    token_ttl_seconds: int = 3600
    token_ttl_calls: int = 0
    """A token also expires once it has answered this many API calls (0: never). Real time cannot
    make the server refuse an expired token reproducibly (a correct client refreshes ahead of
    ``expires_in``); this lifetime runs out mid-session, deterministically."""
    revoke_tokens_every: int = 0
    """Every N-th API call revokes every token, at the first call whose token answered before."""
    hostile_job_ids: float = 0.0
    """Share of jobs (scheduled and manual) whose id is hostile: a path traversal, an absolute
    path, '/' '?' '#', unicode with spaces, 1,000+ characters, NUL and control characters, ','
    and '%' (``world.HOSTILE_ID_FORMS``); logged as ``hostile_job_id`` with its form."""
    outages: tuple[Outage, ...] = ()
    """Windows in which no scheduled export is created (a full CXone export outage)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_rate") or f.name == "hostile_job_ids":
                _check_rate(f.name, value)
            elif f.name.endswith("_intervals") or f.name in ("replaced_bytes", "denied_read"):
                object.__setattr__(self, f.name, tuple(utc(v) for v in value))
        if self.late_update_delay <= timedelta(0):
            raise ValueError("late_update_delay must be positive")
        if self.token_ttl_calls < 0:
            raise ValueError("token_ttl_calls must not be negative")

    @classmethod
    def chaos(cls) -> FaultConfig:
        """Every data fault on at modest rates plus API faults at low rates; no breaking drift."""
        return cls(
            duplicate_export_rate=0.05,
            failed_rate=0.03,
            timed_out_rate=0.02,
            placeholder_rate=0.1,
            late_update_rate=0.02,
            stale_redelivery_rate=0.01,
            in_file_duplicate_rate=0.02,
            shuffle_rows=True,
            omit_files_rate=0.1,
            api_429_rate=0.02,
            api_5xx_rate=0.02,
            api_slow_rate=0.02,
            api_truncated_rate=0.01,
            api_non_json_rate=0.01,
        )


def _default_start() -> datetime:
    return datetime.combine(DEFAULT_PARTITIONS_START, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class SimConfig:
    seed: int = 42
    start: datetime = field(default_factory=_default_start)
    bucket: str = SIM_BUCKET
    scale: float = 1.0
    """1.0 = a few thousand telephony rows per hour (cdr ~3000); rows scale linearly."""
    compression: str = "zstd"
    categories: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
    faults: FaultConfig = field(default_factory=FaultConfig)
    manifests_only: bool = False
    """Benchmarks of the API side (sensors over a year of history): jobs complete with their
    manifests (file URIs, zero counts) but no object is written to S3 and no ground truth exists."""
    client_id: str = SIM_CLIENT_ID
    client_secret: str = SIM_CLIENT_SECRET
    access_key_id: str = "sim-access-key"
    access_key_secret: str = "sim-access-secret"  # noqa: S105 - the simulator's demo credential

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        if self.start != self.start.replace(minute=0, second=0, microsecond=0):
            raise ValueError("start must be on a whole hour")
        if self.scale <= 0:
            raise ValueError("scale must be positive")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}")
        for name in self.categories:
            category(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (ISO timestamps, seconds for durations)."""
        return _encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are errors."""
        return _decode(cls, data)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**{name: _decode_value(hints[name], value) for name, value in data.items()})


def _decode_value(hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = (a for a in get_args(hint) if a is not type(None))
        return _decode_value(inner, value)
    if origin is tuple:
        return tuple(_decode_value(get_args(hint)[0], v) for v in value)
    if dataclasses.is_dataclass(hint):
        return _decode(hint, value)  # type: ignore[arg-type]
    if hint is datetime:
        return parse_time(value)
    if hint is timedelta:
        return value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if hint is float:
        return float(value)
    return value
