"""Sensor state and the decisions made from it; plain Python, no Dagster.

A sensor's cursor is its whole state (JSON): what the sensor has seen of the API and which
manual exports it owes. Everything here is deterministic in the API's data and the tick counter,
never the wall clock, so the sensors run the same against CXone and the simulator's clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cxone_sync.cxone.models import Job, JobStatus, JobTrigger
from cxone_sync.cxone.source import ExportSource
from cxone_sync.timefmt import parse_utc, utc_iso

CURSOR_VERSION = 1
LIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED)
ENDED_BADLY = (JobStatus.FAILED, JobStatus.TIMED_OUT)


def interval_id(start: datetime, end: datetime) -> str:
    return f"{utc_iso(start)}/{utc_iso(end)}"


# -------------------------------------------------------------------------- the job stream


@dataclass
class StreamPosition:
    """``updated_since`` high-water mark plus the (job, status) pairs seen exactly at it.

    The API filter is inclusive, so asking from the mark again returns those pairs again; they
    are skipped, and every other state change is seen exactly once, whatever the paging and
    however many jobs share one ``updated_at``.
    """

    high_water: datetime | None = None
    seen_at_mark: list[str] = field(default_factory=list)

    @staticmethod
    def token(job: Job) -> str:
        return f"{job.id}|{job.status.value}"

    def take(
        self,
        jobs: Iterable[Job],
        limit: int,
        out_of_time: Callable[[], bool] = lambda: False,
    ) -> tuple[list[Job], bool]:
        """The jobs not seen yet (at most ``limit``, and none once ``out_of_time()``), advancing
        the position over them.

        Returns (new jobs in API order, whether more were left for the next tick).
        """
        seen = set(self.seen_at_mark)
        fresh: list[Job] = []
        mark, at_mark = self.high_water, list(self.seen_at_mark)
        for job in jobs:
            if self.high_water is not None and job.updated_at < self.high_water:
                continue  # the API answered something older than asked: ignore it
            if job.updated_at == self.high_water and self.token(job) in seen:
                continue
            if len(fresh) >= limit or (fresh and out_of_time()):
                self.high_water, self.seen_at_mark = mark, at_mark
                return fresh, True
            fresh.append(job)
            if mark is None or job.updated_at > mark:
                mark, at_mark = job.updated_at, []
            if job.updated_at == mark:
                at_mark.append(self.token(job))
        self.high_water, self.seen_at_mark = mark, at_mark
        return fresh, False

    def to_json(self) -> dict[str, Any]:
        return {
            "updated_since": utc_iso(self.high_water) if self.high_water else None,
            "seen_at_mark": sorted(self.seen_at_mark),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StreamPosition:
        mark = doc.get("updated_since")
        return cls(parse_utc(mark) if mark else None, list(doc.get("seen_at_mark", [])))


# ----------------------------------------------------------------------- owed manual exports


@dataclass
class Recovery:
    """An interval that needs a manual export: its failed jobs, and what was asked so far."""

    start: str
    end: str
    reason: str
    failed_jobs: list[str] = field(default_factory=list)
    attempts: int = 0
    next_tick: int = 0
    export_jobs: list[str] = field(default_factory=list)
    last_error: str | None = None
    exhausted: bool = False

    @property
    def window(self) -> tuple[datetime, datetime]:
        return parse_utc(self.start), parse_utc(self.end)

    @property
    def key(self) -> str:
        return f"{self.start}/{self.end}"


@dataclass
class RecoveryOutcome:
    """What one tick did about one owed interval (for logs, metadata and tests)."""

    kind: str
    """``requested`` (a manual-export run is requested), ``covered``, ``live``, ``pending``
    (the previous attempt's run has not finished), ``waiting``, ``exhausted``."""
    recovery: Recovery
    job_id: str | None = None
    detail: str = ""


def backoff(attempts: int, base_ticks: int) -> int:
    """Ticks to wait after ``attempts`` exports: base, 2x base, 4x base, ..."""
    return base_ticks * 2 ** max(attempts - 1, 0)


def covering(jobs: Sequence[Job], start: datetime, end: datetime) -> list[Job]:
    return [j for j in jobs if j.interval_start < end and j.interval_end > start]


def live_jobs(source: ExportSource, category: str, since: datetime) -> list[Job]:
    """QUEUED, RUNNING and COMPLETED jobs changed at or after ``since`` (one paged call)."""
    return list(source.iter_jobs(category, statuses=LIVE, updated_since=since))


def settle(
    source: ExportSource,
    category: str,
    owed: dict[str, Recovery],
    *,
    tick: int,
    max_attempts: int,
    backoff_ticks: int,
    max_exports: int,
    known_jobs: Sequence[Job] | None = None,
    pending: Callable[[Recovery], str | None] = lambda r: None,
) -> list[RecoveryOutcome]:
    """Decide the manual exports the owed intervals need now; drop the ones now covered.

    Nothing is POSTed here: a ``requested`` outcome becomes a ``request_manual_export_job`` run
    request (one run key per interval and attempt), so a sensor evaluation has no side effect.
    An interval is covered by a COMPLETED job (removed from ``owed``), waits while a QUEUED or
    RUNNING job covers it or while the run of its previous attempt has not finished
    (``pending``: why it waits, or None), and otherwise gets a manual export, at most
    ``max_attempts`` times with a doubling wait in ticks. When the attempts run out the interval
    is marked exhausted (reported once). ``known_jobs``: the category's jobs changed since the
    earliest owed interval, when the caller already listed them (saves the API call).
    """
    due = [r for r in owed.values() if not r.exhausted and r.next_tick <= tick]
    if not due:
        return []
    if known_jobs is None:
        jobs = live_jobs(source, category, min(r.window[0] for r in due))
    else:
        jobs = [j for j in known_jobs if j.status in LIVE]
    outcomes: list[RecoveryOutcome] = []
    exports = 0
    for r in sorted(due, key=lambda r: r.start):
        start, end = r.window
        around = covering(jobs, start, end)
        if any(j.status == JobStatus.COMPLETED for j in around):
            del owed[r.key]
            done = next(j for j in around if j.status == JobStatus.COMPLETED)
            outcomes.append(RecoveryOutcome("covered", r, done.id))
            continue
        if around:
            if r.attempts:  # our export (or one someone asked for since): its id, for the record
                for j in around:
                    if j.trigger == JobTrigger.MANUAL and j.id not in r.export_jobs:
                        r.export_jobs.append(j.id)
            r.next_tick = tick + 1
            outcomes.append(RecoveryOutcome("live", r, around[0].id))
            continue
        waiting = pending(r) if r.attempts else None
        if waiting:
            r.next_tick = tick + 1
            outcomes.append(RecoveryOutcome("pending", r, detail=waiting))
            continue
        if r.attempts >= max_attempts:
            r.exhausted = True
            outcomes.append(RecoveryOutcome("exhausted", r, detail=r.last_error or r.reason))
            continue
        if exports >= max_exports:
            outcomes.append(RecoveryOutcome("waiting", r, detail="export budget of this tick"))
            continue
        exports += 1
        r.attempts += 1
        r.next_tick = tick + backoff(r.attempts, backoff_ticks)
        outcomes.append(RecoveryOutcome("requested", r))
    return outcomes


def owe(
    owed: dict[str, Recovery],
    start: datetime,
    end: datetime,
    reason: str,
    job_id: str | None,
    manual: bool = False,
) -> Recovery:
    """Register (or refresh) an interval that needs a manual export. A failed MANUAL job after
    the sensor asked for an export is that export (its failure is the last error)."""
    key = interval_id(start, end)
    r = owed.get(key)
    if r is None:
        r = owed[key] = Recovery(utc_iso(start), utc_iso(end), reason)
    if job_id and manual and r.attempts and job_id not in r.export_jobs:
        r.export_jobs.append(job_id)
    elif job_id and job_id not in r.failed_jobs and job_id not in r.export_jobs:
        r.failed_jobs.append(job_id)
    if job_id in r.export_jobs:
        r.last_error = reason
    return r


def recoveries_to_json(owed: dict[str, Recovery]) -> dict[str, Any]:
    return {k: asdict(v) for k, v in sorted(owed.items())}


def recoveries_from_json(doc: dict[str, Any]) -> dict[str, Recovery]:
    return {k: Recovery(**v) for k, v in doc.items()}


# ----------------------------------------------------------------------------- the cursors


@dataclass
class JobsCursor:
    position: StreamPosition = field(default_factory=StreamPosition)
    tick: int = 0
    owed: dict[str, Recovery] = field(default_factory=dict)
    waiting: dict[str, list[str]] = field(default_factory=dict)
    """Partition key -> ids of COMPLETED jobs for it that Dagster had no partition for yet (the
    interval ends after this machine's clock: CXone's clock ahead, or a simulator moved ahead);
    requested on the first tick after the partition opens."""
    unrecorded: list[dict[str, Any]] = field(default_factory=list)
    """Job state changes (QUEUED, RUNNING) not handed to a run yet: they wait for the next
    tick that requests a load (which carries them) or sees a job end (which records them)."""

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                **self.position.to_json(),
                "tick": self.tick,
                "recoveries": recoveries_to_json(self.owed),
                "waiting": {k: sorted(v) for k, v in sorted(self.waiting.items())},
                **({"unrecorded": self.unrecorded} if self.unrecorded else {}),
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str | None) -> JobsCursor:
        if not text:
            return cls()
        doc = json.loads(text)
        return cls(
            StreamPosition.from_json(doc),
            int(doc.get("tick", 0)),
            recoveries_from_json(doc.get("recoveries", {})),
            {str(k): [str(i) for i in v] for k, v in (doc.get("waiting") or {}).items()},
            [dict(e) for e in doc.get("unrecorded") or [] if isinstance(e, dict)],
        )


@dataclass
class GapCursor:
    now: datetime | None = None
    """The API's newest ``updated_at`` seen (the data's clock)."""
    tick: int = 0
    owed: dict[str, Recovery] = field(default_factory=dict)
    clock: datetime | None = None
    """CXone's clock at the last tick (the server's ``Date``, else the local wall clock): what
    decides that an interval is overdue, also when CXone produced nothing at all."""

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "now": utc_iso(self.now) if self.now else None,
                "clock": utc_iso(self.clock) if self.clock else None,
                "tick": self.tick,
                "recoveries": recoveries_to_json(self.owed),
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str | None) -> GapCursor:
        if not text:
            return cls()
        doc = json.loads(text)
        now, clock = doc.get("now"), doc.get("clock")
        return cls(
            parse_utc(now) if now else None,
            int(doc.get("tick", 0)),
            recoveries_from_json(doc.get("recoveries", {})),
            parse_utc(clock) if clock else None,
        )


@dataclass
class ReconciliationCursor:
    now: datetime | None = None
    acknowledged: dict[str, str] = field(default_factory=dict)
    """uri -> S3 version id whose mismatch already got a manual export (asked once)."""
    audit_after: str | None = None
    """The file audit's position: the last uri checked in the current round (None: a new
    round starts at the first uri). A tick checks a bounded number of files from here."""

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "now": utc_iso(self.now) if self.now else None,
                "acknowledged": dict(sorted(self.acknowledged.items())),
                "audit_after": self.audit_after,
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str | None) -> ReconciliationCursor:
        if not text:
            return cls()
        doc = json.loads(text)
        now = doc.get("now")
        return cls(
            parse_utc(now) if now else None,
            dict(doc.get("acknowledged", {})),
            doc.get("audit_after"),
        )
