"""What every automation tick shares: the ``Tick`` result, its wall-time budget, run tags,
partition arithmetic and CXone's clock.

The ticks (:mod:`.jobs_tick`, :mod:`.gaps_tick`, :mod:`.reconcile_tick`) are functions of (API
client, warehouse, instance, cursor); the sensors in :mod:`.sensors` are thin wrappers around
them, so tests and the benchmark can drive a tick with their own client and read its counters.
"""

from __future__ import annotations

import hashlib
import re
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import dagster as dg

from cxone_sync.automation.state import RecoveryOutcome
from cxone_sync.catalog import PARTITION_FMT
from cxone_sync.cxone.source import ExportSource
from cxone_sync.ingest import checks as ck

TAG_TRIGGER = "cxone/trigger"
TAG_JOB_ID = "cxone/job_id"
"""The job id when it meets Dagster's strict tag rule, else its hash form (``untrusted.label``)."""
TAG_RUN_KEY = "cxone/run_key"
RECOVERY_METADATA = ck.RECOVERY_METADATA
TAG_RANGE_START = "dagster/asset_partition_range_start"
TAG_RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class Tick:
    """What one evaluation decided; the sensor turns it into a ``SensorResult``."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    observations: list[dg.AssetObservation | dg.AssetCheckEvaluation] = field(default_factory=list)
    outcomes: list[RecoveryOutcome] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Log lines: what happened, and what a person should know."""
    errors: list[str] = field(default_factory=list)
    jobs_seen: int = 0
    partitions_requested: list[str] = field(default_factory=list)
    """Every partition key a load request of this tick covers (singles and ranges)."""
    partitions_skipped: int = 0
    exports_requested: int = 0
    stopped_early: bool = False
    cursor: str | None = None
    """The new cursor; None keeps the old one (nothing of this tick is committed)."""
    skip: str | None = None

    def summary(self) -> str:
        return "; ".join(self.lines) or "nothing new"


class Budget:
    """A tick's wall-time budget (monotonic)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = _time.monotonic()

    def spent(self) -> bool:
        return _time.monotonic() - self.started >= self.seconds

    def elapsed(self) -> float:
        return _time.monotonic() - self.started


def first_instant(start: Any) -> datetime:
    return datetime.combine(start, time(0), tzinfo=UTC)


def _fixed_step(pdef: dg.TimeWindowPartitionsDefinition) -> timedelta | None:
    """The partition length when the partitions are every N hours from midnight UTC (ours)."""
    if pdef.timezone != "UTC" or pdef.fmt != PARTITION_FMT:
        return None
    match = re.fullmatch(r"0 (\*|\*/(\d+)) \* \* \*", pdef.cron_schedule or "")
    if match is None:
        return None
    hours = int(match.group(2) or 1)
    return timedelta(hours=hours) if 24 % hours == 0 else None


def partition_windows(
    pdef: dg.TimeWindowPartitionsDefinition, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(key, start, end) of every partition starting in ``[start, end)`` (job intervals are
    whole partitions, so: the partitions a job covers).

    Fixed-length UTC partitions are computed directly (Dagster walks the cron schedule from
    the first partition for a 6-hourly one: ~2 ms a call, too slow for a year of jobs).
    """
    if end <= start:
        return []
    step = _fixed_step(pdef)
    if step is None:
        out = []
        for key in pdef.get_partition_keys_in_time_window(dg.TimeWindow(start, end)):
            tw = pdef.time_window_for_partition_key(key)
            out.append((key, tw.start.astimezone(UTC), tw.end.astimezone(UTC)))
        return out
    # as Dagster's get_partition_keys_in_time_window: the partitions starting in [start, end)
    # (a partition that starts before ``start`` is not included), never before the first one
    first = pdef.start.astimezone(UTC)
    t = first + max(-((first - start.astimezone(UTC)) // step), 0) * step
    windows = []
    while t < end:
        windows.append((t.strftime(PARTITION_FMT), t, t + step))
        t += step
    return windows


def partition_start(pdef: dg.TimeWindowPartitionsDefinition, key: str) -> datetime:
    if _fixed_step(pdef) is not None:
        return datetime.strptime(key, PARTITION_FMT).replace(tzinfo=UTC)
    return pdef.time_window_for_partition_key(key).start.astimezone(UTC)


def next_start(pdef: dg.TimeWindowPartitionsDefinition, key: str) -> datetime:
    step = _fixed_step(pdef)
    if step is not None:
        return partition_start(pdef, key) + step
    return pdef.time_window_for_partition_key(key).end.astimezone(UTC)


def consecutive(pdef: dg.TimeWindowPartitionsDefinition, keys: Sequence[str]) -> list[list[str]]:
    """``keys`` (sorted by time) split into runs of adjacent partitions."""
    groups: list[list[str]] = []
    previous: str | None = None
    for key in keys:
        start = partition_start(pdef, key)
        # adjacent: the previous key is the partition just before this one
        if groups and previous is not None and next_start(pdef, previous) == start:
            groups[-1].append(key)
        else:
            groups.append([key])
        previous = key
    return groups


def short_digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def span(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:6])
    return shown + (f", ... {keys[-1]}" if len(keys) > 6 else "")


def api_now(source: ExportSource, category: str) -> tuple[datetime, str]:
    """CXone's clock now and where it came from.

    The client records the HTTP ``Date`` of its answers (CXone's clock; the simulator sends its
    simulated clock there), so "now" is the source's own time, in production and against the
    simulator alike, also under the real daemon. Before any answer, one cheap call (the
    download configuration) asks for it; a source without a clock gives the local wall clock.
    """
    server_now = getattr(source, "server_now", None)
    if server_now is None:
        return datetime.now(UTC), "local clock"
    now = server_now()
    if now is None:
        source.download_config(category)
        now = server_now()
    if now is None:
        return datetime.now(UTC), "local clock (the API sent no Date)"
    return now.astimezone(UTC), "CXone's clock (HTTP Date)"
