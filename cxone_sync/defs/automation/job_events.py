"""Job state changes as they travel from a jobs-sensor tick to ``cxone_sync.job_events``.

A tick writes nothing itself: its state changes ride in a run's config. When the tick also
requests a partition load, they ride in that load run (the config of the category's first
load step), so a tick costs one run, not two; otherwise in a ``record_job_events_job`` run, or,
when no job ended (only QUEUED / RUNNING changes), they wait in the jobs cursor for a later tick
(a load to ride on, or a job's end).
Either way the run page shows exactly what was recorded, and recording is idempotent (a
(job, status, updated_at) triple is stored once), so a retried or re-executed run records
nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from cxone_sync.cxone.models import Job
from cxone_sync.timefmt import parse_utc as _parse
from cxone_sync.timefmt import utc_iso as _iso
from cxone_sync.warehouse.base import JobEvent, Warehouse

CONFIG_KEY = "job_events"
"""The key of the events in a load step's config (beside ``cxone_request``)."""


class JobEventConfig(dg.Config):
    """One job state change as the API reported it."""

    job_id: str
    status: str
    interval_start: str
    interval_end: str
    updated_at: str
    trigger: str
    download_id: str
    error_details: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobEventConfig:
        return cls(
            job_id=job.id,
            status=job.status.value,
            interval_start=_iso(job.interval_start),
            interval_end=_iso(job.interval_end),
            updated_at=_iso(job.updated_at),
            trigger=job.trigger.value,
            download_id=job.download_id,
            error_details=job.error_details,
        )

    def event(self, category: str) -> JobEvent:
        return JobEvent(
            job_id=self.job_id,
            category=category,
            download_id=self.download_id,
            status=self.status,
            interval_start=_parse(self.interval_start),
            interval_end=_parse(self.interval_end),
            updated_at=_parse(self.updated_at),
            error_details=self.error_details,
            trigger=self.trigger,
        )


class JobEventsConfig(dg.Config):
    category: str
    sensor: str = ""
    events: list[JobEventConfig]


WAITING_STATES = frozenset({"QUEUED", "RUNNING"})
"""States whose recording may wait for a later tick (the job has not ended)."""
WAIT_AT_MOST = 200
"""State changes a jobs cursor holds at most before they get a run of their own."""


def events_config(category: str, events: Sequence[JobEventConfig], sensor: str) -> dict[str, Any]:
    """The run-config form of a tick's state changes."""
    return JobEventsConfig(category=category, sensor=sensor, events=list(events)).model_dump()


def may_wait(events: Sequence[JobEventConfig]) -> bool:
    """True when none of these changes ends a job and they are few: a tick that requests no
    load may leave them in its cursor, so QUEUED and RUNNING do not cost a run each tick."""
    return len(events) < WAIT_AT_MOST and all(e.status in WAITING_STATES for e in events)


def record(warehouse: Warehouse, config: JobEventsConfig | Mapping[str, Any]) -> tuple[int, int]:
    """Write the state changes; (changes carried, new rows in cxone_sync.job_events)."""
    cfg = config if isinstance(config, JobEventsConfig) else JobEventsConfig(**config)
    added = warehouse.record_job_events([e.event(cfg.category) for e in cfg.events])
    return len(cfg.events), added
