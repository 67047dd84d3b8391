"""``cxone-sync sync``: plan the partitions of a range, skip what is loaded, run the rest as
Dagster runs of the code location (batched like a UI backfill), and report progress as it goes."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cxone_sync.catalog import CATEGORIES, Category, category, partition_key
from cxone_sync.settings import INSTANCE_TEMPLATE, get_settings
from cxone_sync.sync_summary import TableSummary, collect, merged_rows, print_summary


def ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME when set, else a home under the data folder with the project's yaml."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = get_settings().cxone_data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if INSTANCE_TEMPLATE.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(INSTANCE_TEMPLATE, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Dagster's console logger for headless runs: warnings and errors only (the UI has the rest)."""


IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
"""Steps run in the command's process, one after another (as ``execute_in_process`` did)."""


def current_partitions(
    instance: Any, group: Sequence[Category], keys: Sequence[str], start: datetime, end: datetime
) -> tuple[dict[str, set[str]], str | None]:
    """category -> partitions of ``keys`` already loaded from every COMPLETED export job CXone
    lists for them now (the jobs sensor's rule: nothing new to load), and why nothing could be
    skipped (the listing failed: every partition is loaded, as without this check).

    One job listing per category and one event-log query per table, for the whole range.
    """
    from dagster import build_resources

    from cxone_sync.cxone.errors import CXoneError
    from cxone_sync.defs.ingest.loaded import loaded_jobs
    from cxone_sync.defs.resources import build_resources as platform_resources
    from cxone_sync.ingest.stage import overlapping, select_jobs

    out: dict[str, set[str]] = {}
    cxone = platform_resources(get_settings())["cxone"]
    try:
        # the source the load step reads (Data Download, or the bridge for bridged categories)
        with build_resources({"cxone": cxone}) as resources, resources.cxone.client() as client:
            for cat in group:
                jobs = select_jobs(client, cat.name, start, end)
                loaded = loaded_jobs(instance, cat, keys)
                current = set()
                for t in cat.interval_starts(start, end):
                    key = partition_key(t)
                    expected = {j.id for j in overlapping(jobs, t, t + cat.interval)}
                    seen = loaded.get(key)
                    if expected and seen is not None and expected <= seen:
                        current.add(key)
                out[cat.name] = current
    except CXoneError as exc:
        return {}, f"could not list the export jobs ({exc})"
    return out, None


def range_problem(
    start: datetime, end: datetime, selected: Sequence[Category], first_day: date
) -> str | None:
    """Why ``sync`` refuses [start, end) (None: it does not)."""
    first = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    if start < first:
        usable = (
            f"the range it would use is [{first:%Y-%m-%dT%H:%M}Z, {end:%Y-%m-%dT%H:%M}Z)"
            if end > first
            else "no part of the range is usable"
        )
        return (
            f"--start {start:%Y-%m-%dT%H:%M}Z is before the first partition "
            f"({first:%Y-%m-%d}, CXONE_PARTITIONS_START): Dagster has no partition there; "
            f"{usable}. Start at or after it, or set CXONE_PARTITIONS_START earlier"
        )
    if not any(c.interval_starts(start, end) for c in selected):
        return (
            f"[{start:%Y-%m-%dT%H:%M}Z, {end:%Y-%m-%dT%H:%M}Z) holds no whole partition of "
            f"{', '.join(c.name for c in selected)}: partitions are whole hours (6-hourly "
            "categories: 00:00, 06:00, 12:00, 18:00 UTC); widen the range"
        )
    return None


def partial_intervals(cat: Category, start: datetime, end: datetime) -> list[str]:
    """The category's intervals that [start, end) covers only in part (not loaded by sync)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    out = []
    for edge in (start, end):
        if (edge - epoch) % cat.interval:
            lo = epoch + ((edge - epoch) // cat.interval) * cat.interval
            if lo + cat.interval > start and lo < end:  # overlaps the range
                span = f"[{lo:%Y-%m-%dT%H:%M}Z, {lo + cat.interval:%Y-%m-%dT%H:%M}Z)"
                if span not in out:
                    out.append(span)
    return out


class Progress:
    """Partitions done / total while ``sync`` works: a bar on a terminal, plain lines in logs.

    Every finished run prints one plain line (kept in CI logs and on a terminal); on a terminal
    a bar under those lines is redrawn after each run."""

    def __init__(self, total: int, runs: int, stream: Any = None) -> None:
        self.total, self.planned, self.done, self.rows = total, runs, 0, 0
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.began = time.monotonic()

    def _bar(self, width: int = 30) -> str:
        filled = width * self.done // self.total if self.total else width
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} partition(s), "
            f"{self.rows:,} row(s) merged, {time.monotonic() - self.began:.0f} s"
        )

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self.done < self.total:
            self.stream.write(self._bar())
        self.stream.flush()

    def advance(self, partitions: int, rows: int) -> None:
        self.done += partitions
        self.rows += rows


def _contiguous(keys: Sequence[str], pending: set[str]) -> list[list[str]]:
    """The pending keys in runs of adjacent partitions (a ranged run covers adjacent ones)."""
    out: list[list[str]] = []
    previous = False
    for key in keys:
        if key in pending:
            if previous:
                out[-1].append(key)
            else:
                out.append([key])
        previous = key in pending
    return out


def sync(start: datetime, end: datetime, categories: Sequence[str], *, force: bool = False) -> int:
    """Materialize the partitions in [start, end) of the categories; 0 when all loaded.

    A partition already loaded from every COMPLETED export job CXone lists for it is skipped
    (nothing new: a re-run costs a job listing and an event-log query), unless ``force``: then
    every partition is loaded again, its files verified against the audit ledger (a file
    replaced in S3 under the same job is downloaded, re-hashed and re-checked).

    Each run carries the code location's origin (see :mod:`cxone_sync.defs.runs`), so the UI
    shows it on the Overview timeline and re-executes it like a run it launched itself.
    """
    ensure_dagster_home()
    from dagster import DagsterInstance

    from cxone_sync.defs.ingest.jobs import interval_job_name
    from cxone_sync.defs.ingest.names import WAREHOUSE_POOL, staged_key, table_key
    from cxone_sync.defs.resources import apply_pool_limit
    from cxone_sync.defs.runs import CodeLocationRunner, partition_tags

    settings = get_settings()
    per_run = settings.cxone_backfill_partitions_per_run

    selected = [category(c) for c in categories] if categories else list(CATEGORIES)
    problem = range_problem(start, end, selected, settings.cxone_partitions_start)
    if problem:
        print(f"cxone-sync sync: {problem}", file=sys.stderr)
        return 2
    for cat in selected:
        hours = int(cat.interval.total_seconds() // 3600)
        if not cat.interval_starts(start, end):
            print(
                f"cxone-sync sync: {cat.name}: no whole {hours}-hour partition in "
                f"[{start:%Y-%m-%dT%H:%M}Z, {end:%Y-%m-%dT%H:%M}Z) (its partitions start every "
                f"{hours} h from 00:00 UTC); nothing to load for it, widen the range to load it",
                file=sys.stderr,
            )
        elif partial := partial_intervals(cat, start, end):
            starts = cat.interval_starts(start, end)
            print(
                f"cxone-sync sync: {cat.name}: {' and '.join(partial)} only partly inside the "
                f"range: not loaded (a partition loads whole); loading "
                f"[{starts[0]:%Y-%m-%dT%H:%M}Z, {starts[-1] + cat.interval:%Y-%m-%dT%H:%M}Z)",
                file=sys.stderr,
            )
    runner = CodeLocationRunner()
    tables: dict[str, TableSummary] = {}
    by_interval: dict[timedelta, list[Category]] = {}
    for cat in selected:
        by_interval.setdefault(cat.interval, []).append(cat)
    runs = failed_runs = skipped = 0
    with DagsterInstance.get() as instance:
        apply_pool_limit(instance, get_settings(), WAREHOUSE_POOL)
        # the plan first (what is already loaded is skipped), so progress has a total
        plan: list[tuple[timedelta, list[str], list[str]]] = []  # interval, chunk, categories
        for interval, group in sorted(by_interval.items()):
            keys = [partition_key(t) for t in group[0].interval_starts(start, end)]
            current: dict[str, set[str]] = {}
            if not force and keys:
                current, why = current_partitions(instance, group, keys, start, end)
                if why:
                    print(f"{why}: loading every partition of the range", file=sys.stderr)
            # a partition runs when one of the group's categories has something new for it;
            # only those categories' assets are selected for the run
            todo = {c.name: set(keys) - current.get(c.name, set()) for c in group}
            pending = set().union(*todo.values())
            skipped += sum(len(keys) - len(v) for v in todo.values())
            # Batched like a UI backfill: ranges of partitions, each partition checked alone.
            for stretch in _contiguous(keys, pending):
                for i in range(0, len(stretch), per_run):
                    chunk = stretch[i : i + per_run]
                    names = sorted(n for n in todo if todo[n] & set(chunk))
                    plan.append((interval, chunk, names))
        total = sum(len(chunk) for _, chunk, _ in plan)
        progress = Progress(total, len(plan))
        if plan:
            progress.line(
                f"sync: {total} partition(s) to load in {len(plan)} run(s)"
                + (f", {skipped} category partition(s) already loaded" if skipped else "")
            )
        for interval, chunk, names in plan:
            selection = [
                k
                for name in names
                for dt in category(name).data_types
                for k in (staged_key(dt), table_key(dt))
            ]
            began = time.monotonic()
            rows_before = merged_rows(tables)
            outcome = runner.run(
                instance,
                interval_job_name(interval),
                selection,
                tags={"cxone/trigger": "cli-sync", **partition_tags(chunk)},
                run_config={**QUIET, **IN_PROCESS},
            )
            runs += 1
            failed_runs += 0 if outcome.success else 1
            collect(outcome.events, chunk, tables)
            rows = merged_rows(tables) - rows_before
            progress.advance(len(chunk), rows)
            span = chunk[0] if len(chunk) == 1 else f"{chunk[0]} .. {chunk[-1]}"
            progress.line(
                f"[{progress.done}/{total}] run {runs}/{len(plan)}: {span} ({len(chunk)} "
                f"partition(s) of {', '.join(names)}): "
                f"{'loaded' if outcome.success else 'FAILED (see below)'}, {rows:,} row(s) "
                f"merged in {time.monotonic() - began:.1f} s, run {outcome.run_id}"
            )
    if skipped:
        print(
            f"{skipped} category partition(s) skipped: already loaded from every COMPLETED export "
            "job CXone lists for them (--force loads them again and re-verifies their files)."
        )
    print_summary(tables, runs, failed_runs)
    return 1 if failed_runs else 0
