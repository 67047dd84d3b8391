"""Jobs that load partitions: one per category (sensors, gap fills) and one per interval length
(the command line and UI backfills of several categories at once)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from cxone_sync.catalog import Category
from cxone_sync.defs.ingest.names import staged_key, table_key

RUN_RETRY_TAGS = {
    "dagster/max_retries": "2",
    "dagster/retry_strategy": "FROM_FAILURE",
    "dagster/retry_on_asset_or_op_failure": "false",
}
"""Sensor-launched loads whose run dies (a killed or lost run worker, a run-monitoring timeout)
are re-executed from failure by the daemon, at most twice. A failed step is not: transient step
failures already had their op retries with backoff (:mod:`cxone_sync.defs.retries`), and a
blocked partition would only block again."""


def category_selection(category: Category) -> dg.AssetSelection:
    keys = [k for dt in category.data_types for k in (staged_key(dt), table_key(dt))]
    return dg.AssetSelection.assets(*keys)


def category_job_name(category: Category) -> str:
    return f"sync_{category.name}_job"


def interval_job_name(interval: timedelta) -> str:
    hours = int(interval.total_seconds() // 3600)
    return "sync_hourly_categories_job" if hours == 1 else f"sync_{hours}h_categories_job"


def build_jobs(categories: tuple[Category, ...]) -> list[dg.UnresolvedAssetJobDefinition]:
    jobs = [
        dg.define_asset_job(
            category_job_name(c),
            selection=category_selection(c),
            description=f"Load one {c.name} interval: verify, check, merge every data type.",
            tags={"cxone/category": c.name, **RUN_RETRY_TAGS},
            # Sensors launch many small runs of these jobs: one process per run, its steps in
            # it (the `cxone_warehouse` pool still applies), instead of a process per step
            # that mostly waits for the pool. Backfills use the interval jobs below.
            executor_def=dg.in_process_executor,
        )
        for c in categories
    ]
    by_interval: dict[timedelta, list[Category]] = {}
    for c in categories:
        by_interval.setdefault(c.interval, []).append(c)
    for interval, group in by_interval.items():
        selection: dg.AssetSelection = dg.AssetSelection.assets()
        for c in group:
            selection = selection | category_selection(c)
        jobs.append(
            dg.define_asset_job(
                interval_job_name(interval),
                selection=selection,
                description="Load one interval of every category with this interval length.",
            )
        )
    return jobs
