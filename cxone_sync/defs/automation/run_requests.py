"""The load and job-event run requests of a tick: one run per job and partition or ranged runs
for stretches, and the job state changes riding in the first new load run (else runs of their
own)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dagster as dg

from cxone_sync.catalog import Category
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.untrusted import label, shown
from cxone_sync.defs.automation.actions import RECORD_JOB_EVENTS_JOB
from cxone_sync.defs.automation.job_events import CONFIG_KEY as EVENTS_KEY
from cxone_sync.defs.automation.job_events import JobEventConfig, events_config
from cxone_sync.defs.automation.tick_common import (
    TAG_JOB_ID,
    TAG_RANGE_END,
    TAG_RANGE_START,
    TAG_RUN_KEY,
    TAG_TRIGGER,
    Tick,
    consecutive,
    partition_start,
    partition_windows,
    short_digest,
)
from cxone_sync.defs.ingest.jobs import category_job_name
from cxone_sync.defs.ingest.loaded import loaded_jobs
from cxone_sync.defs.ingest.names import load_step_name
from cxone_sync.settings import AutomationSettings

EVENTS_PER_RUN = 500
"""Partitions per materialization query (it fetches up to 20 records per partition)."""
EVENTS_PRIORITY = "-1"
"""``dagster/priority`` of a run that only records job events: the queue starts loads first."""


def run_key(job_id: str, partition_key: str) -> str:
    """``{job id}:{partition}``; an id that is not a safe tag value (``/``, NUL, spaces,
    non-ASCII, over 63 characters, ...) enters as its stable hash form, so run keys stay short,
    printable and distinct. Ordinary ids (``job-8f3a...``) keep their run key unchanged."""
    return f"{label(job_id)}:{partition_key}"


def describe_load(
    category: Category, partitions: str, job_ids: Sequence[str], sensor: str
) -> dict[str, Any]:
    """Run config that says what a load request is for (``dagster sensor preview`` prints only
    a request's run config, so without it every request reads ``{}``). It sits on the load
    step of the category's first data type, whose config is free-form and not read."""
    op = load_step_name(category.data_types[0])
    return {
        "ops": {
            op: {
                "config": {
                    "cxone_request": {
                        "sensor": sensor,
                        "category": category.name,
                        "partitions": partitions,
                        "jobs": [shown(j) for j in job_ids],
                    }
                }
            }
        }
    }


def ranged_request(
    category: Category, chunk: Sequence[str], ids: Sequence[str], rk: str, sensor: str
) -> dg.RunRequest:
    """One ranged load run of adjacent partitions ``chunk`` (first .. last), like a backfill's."""
    return dg.RunRequest(
        run_key=rk,
        job_name=category_job_name(category),
        run_config=describe_load(category, f"{chunk[0]} .. {chunk[-1]}", ids, sensor),
        tags={
            TAG_TRIGGER: sensor,
            TAG_RUN_KEY: rk,
            TAG_RANGE_START: chunk[0],
            TAG_RANGE_END: chunk[-1],
            "cxone/jobs": str(len(ids)),
        },
    )


def load_requests(
    tick: Tick,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    instance: dg.DagsterInstance | None,
    completed: Sequence[Job],
    settings: AutomationSettings,
    sensor: str,
    open_until: datetime | None = None,
) -> dict[str, list[str]]:
    """Load requests for the partitions of newly COMPLETED jobs.

    A partition whose latest load (every table of the category) already considered all these
    jobs is skipped (materialization metadata ``job_ids``): e.g. the first tick after
    ``cxone-sync sync``. Runs of at least ``sensor_ranged_run_min_partitions`` adjacent
    partitions become ranged runs of at most ``CXONE_BACKFILL_PARTITIONS_PER_RUN`` partitions
    (the assets' BackfillPolicy); the others one run per job and partition.

    A partition that ends after ``open_until`` (this machine's clock) does not exist in Dagster
    yet: its jobs are returned (partition key -> job ids) for the cursor to hold, not requested.
    """
    by_key: dict[str, list[Job]] = {}
    waiting: dict[str, list[str]] = {}
    for job in completed:
        for key, _, end in partition_windows(pdef, job.interval_start, job.interval_end):
            if open_until is not None and end > open_until:
                waiting.setdefault(key, []).append(job.id)
                continue
            by_key.setdefault(key, []).append(job)
    if not by_key:
        return waiting
    keys = sorted(by_key, key=lambda k: partition_start(pdef, k))
    if instance is not None:
        loaded = loaded_jobs(instance, category, keys)
        kept = []
        for key in keys:
            seen = loaded[key]
            if seen is not None and {j.id for j in by_key[key]} <= seen:
                tick.partitions_skipped += 1
            else:
                kept.append(key)
        keys = kept
    per_run = settings.sensor_partitions_per_run
    for group in consecutive(pdef, keys):
        if len(group) < settings.sensor_ranged_run_min_partitions:
            for key in group:
                for job in by_key[key]:
                    rk = run_key(job.id, key)
                    tick.run_requests.append(
                        dg.RunRequest(
                            run_key=rk,
                            job_name=category_job_name(category),
                            partition_key=key,
                            run_config=describe_load(category, key, [job.id], sensor),
                            tags={
                                TAG_TRIGGER: sensor,
                                TAG_JOB_ID: label(job.id),
                                TAG_RUN_KEY: rk,
                                "cxone/export_trigger": job.trigger.value,
                            },
                        )
                    )
                tick.partitions_requested.append(key)
            continue
        for i in range(0, len(group), per_run):
            chunk = group[i : i + per_run]
            ids = sorted({j.id for key in chunk for j in by_key[key]})
            rk = f"range:{chunk[0]}..{chunk[-1]}:{short_digest(ids)}"
            tick.run_requests.append(ranged_request(category, chunk, ids, rk, sensor))
            tick.partitions_requested.extend(chunk)
    return waiting


def event_requests(
    category: Category, events: Sequence[JobEventConfig], sensor: str
) -> list[dg.RunRequest]:
    """``record_job_events_job`` runs carrying the state changes (the sensor writes nothing)."""
    out = []
    for i in range(0, len(events), EVENTS_PER_RUN):
        chunk = list(events[i : i + EVENTS_PER_RUN])
        rk = "job-events:{}:{}".format(
            category.name,
            short_digest([f"{e.job_id}|{e.status}|{e.updated_at}" for e in chunk]),
        )
        out.append(
            dg.RunRequest(
                run_key=rk,
                job_name=RECORD_JOB_EVENTS_JOB,
                run_config={
                    "ops": {
                        "record_job_events": {"config": events_config(category.name, chunk, sensor)}
                    }
                },
                tags={
                    TAG_TRIGGER: sensor,
                    TAG_RUN_KEY: rk,
                    "cxone/events": str(len(chunk)),
                    "dagster/priority": EVENTS_PRIORITY,
                },
            )
        )
    return out


def _run_key_used(instance: dg.DagsterInstance | None, rk: str) -> bool:
    """A run with this run key exists (Dagster would drop a new request carrying it)."""
    if instance is None:
        return False
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={TAG_RUN_KEY: rk}), limit=1))


def carry_events(
    tick: Tick,
    category: Category,
    events: Sequence[JobEventConfig],
    instance: dg.DagsterInstance | None,
    sensor: str,
    *,
    may_wait: bool = False,
) -> bool:
    """Put the tick's state changes on its first new load request, else on runs of their own,
    or (``may_wait``: no job ended) leave them for a later tick: False, they stay in the cursor.

    A load request whose run key already ran would be dropped by Dagster with its events, so
    only a fresh one carries them; over ``EVENTS_PER_RUN`` changes they go in their own runs."""
    if not events:
        return True
    name = category_job_name(category)
    loads = [i for i, r in enumerate(tick.run_requests) if r.job_name == name]
    if loads and len(events) <= EVENTS_PER_RUN:
        i = loads[0]
        r = tick.run_requests[i]
        if r.run_key and not _run_key_used(instance, r.run_key):
            config = dict(r.run_config)
            ops = {k: dict(v) for k, v in config["ops"].items()}
            op = load_step_name(category.data_types[0])
            ops[op] = {
                "config": {
                    **ops[op]["config"],
                    EVENTS_KEY: events_config(category.name, events, sensor),
                }
            }
            tick.run_requests[i] = dg.RunRequest(
                run_key=r.run_key,
                job_name=r.job_name,
                partition_key=r.partition_key,
                run_config={**config, "ops": ops},
                tags={**r.tags, "cxone/events": str(len(events))},
            )
            return True
    if may_wait:
        return False
    tick.run_requests.extend(event_requests(category, events, sensor))
    return True


def event_requests_of(tick: Tick) -> list[dg.RunRequest]:
    return [r for r in tick.run_requests if r.job_name == RECORD_JOB_EVENTS_JOB]
