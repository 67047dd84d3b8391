"""``cxone-sync``: a thin command line over Dagster for headless use (CONTRACT §6).

Every run it starts is an ordinary Dagster run of a job in the code location, recorded in the
configured instance (``DAGSTER_HOME``), so the UI shows it like any other.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cxone_sync.catalog import CATEGORIES, Category, category, partition_key
from cxone_sync.settings import INSTANCE_TEMPLATE, get_settings
from cxone_sync.timefmt import parse_utc


def _parse_time(value: str) -> datetime:
    try:
        return parse_utc(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date or time (e.g. 2024-03-15 or 2024-03-15T14:00Z)"
        ) from None


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


@dataclass
class TableSummary:
    partitions_ok: int = 0
    partitions_failed: int = 0
    files: int = 0
    rows_in: int = 0
    inserted: int = 0
    updated: int = 0
    stale: int = 0
    checks_failed: int = 0
    checks_warned: int = 0
    problems: list[str] = field(default_factory=list)


def _meta(event: Any) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def _collect(
    events: Sequence[Any], partitions: Sequence[str], tables: dict[str, TableSummary]
) -> None:
    """Fold one run's events (one partition or a range of them) into the per-table summary."""
    from dagster import DagsterEventType

    merged: dict[str, int] = {}
    failed_steps: dict[str, str] = {}
    blocked: dict[str, dict[str, str]] = {}
    for event in events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            prefix, table = mat.asset_key.path[0], mat.asset_key.path[-1]
            meta = _meta(mat)
            summary = tables.setdefault(table, TableSummary())
            if prefix == "cxone_staged":
                summary.files += int(meta.get("files", 0))
                summary.rows_in += int(meta.get("rows_in_files", 0))
            elif prefix == "cxone":
                merged[table] = merged.get(table, 0) + 1
                summary.partitions_ok += 1
                summary.inserted += int(meta.get("rows_inserted", 0))
                summary.updated += int(meta.get("rows_updated", 0))
                summary.stale += int(meta.get("stale_rows_ignored", 0))
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            table = evaluation.asset_key.path[-1]
            summary = tables.setdefault(table, TableSummary())
            where = evaluation.partition or partitions[0]
            if not evaluation.passed:
                summary.checks_failed += 1
                summary.problems.append(
                    f"{where} {evaluation.check_name}: {evaluation.description}"
                )
            elif evaluation.severity.value == "WARN" and evaluation.description != "ok":
                summary.checks_warned += 1
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            key = event.step_key or ""
            table = key.split("__", 1)[-1]  # step keys are load__{table}
            tables.setdefault(table, TableSummary())
            failure = event.event_specific_data
            user = failure.user_failure_data
            named = _meta(user).get("blocked") if user else None
            if isinstance(named, dict):  # the load step: the partitions it did not merge
                blocked.setdefault(table, {}).update(named)
                continue
            text = user.description if user and user.description else None
            if not text:
                text = failure.error.message if failure.error else "step failed"
            failed_steps[table] = text.strip().splitlines()[0]
    for table, summary in tables.items():
        named = blocked.get(table, {})
        for key, why in sorted(named.items()):
            if not any(p.startswith(key) for p in summary.problems):
                summary.problems.append(f"{key}: {why.strip().splitlines()[0] if why else '?'}")
        summary.partitions_failed += len(named)
        if table in failed_steps:  # a whole step failed: none of its partitions merged
            where = partitions[0] if len(partitions) == 1 else f"{partitions[0]}..{partitions[-1]}"
            summary.problems.append(f"{where}: {failed_steps[table]}")
            summary.partitions_failed += len(partitions) - merged.get(table, 0)


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
        return (
            f"--start {start:%Y-%m-%dT%H:%M}Z is before the first partition "
            f"({first:%Y-%m-%d}, CXONE_PARTITIONS_START): Dagster has no partition there. Start "
            "at or after it, or set CXONE_PARTITIONS_START earlier"
        )
    if not any(c.interval_starts(start, end) for c in selected):
        return (
            f"[{start:%Y-%m-%dT%H:%M}Z, {end:%Y-%m-%dT%H:%M}Z) holds no whole partition of "
            f"{', '.join(c.name for c in selected)}: partitions are whole hours (6-hourly "
            "categories: 00:00, 06:00, 12:00, 18:00 UTC); widen the range"
        )
    return None


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

    Each run carries the code location's origin (see :mod:`cxone_sync.dagster_runs`), so the UI
    shows it on the Overview timeline and re-executes it like a run it launched itself.
    """
    ensure_dagster_home()
    from dagster import DagsterInstance

    from cxone_sync.dagster_runs import CodeLocationRunner, partition_tags
    from cxone_sync.defs.ingest.assets import WAREHOUSE_POOL, staged_key, table_key
    from cxone_sync.defs.ingest.jobs import interval_job_name
    from cxone_sync.defs.resources import apply_pool_limit

    settings = get_settings()
    per_run = settings.cxone_backfill_partitions_per_run

    selected = [category(c) for c in categories] if categories else list(CATEGORIES)
    problem = range_problem(start, end, selected, settings.cxone_partitions_start)
    if problem:
        print(f"cxone-sync sync: {problem}", file=sys.stderr)
        return 2
    for cat in selected:
        if not cat.interval_starts(start, end):
            hours = int(cat.interval.total_seconds() // 3600)
            print(
                f"cxone-sync sync: {cat.name}: no whole {hours}-hour partition in "
                f"[{start:%Y-%m-%dT%H:%M}Z, {end:%Y-%m-%dT%H:%M}Z) (its partitions start every "
                f"{hours} h from 00:00 UTC); nothing to load for it, widen the range to load it",
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
                    selection = [
                        k
                        for c in group
                        if todo[c.name] & set(chunk)
                        for dt in c.data_types
                        for k in (staged_key(dt), table_key(dt))
                    ]
                    began = time.monotonic()
                    outcome = runner.run(
                        instance,
                        interval_job_name(interval),
                        selection,
                        tags={"cxone/trigger": "cli-sync", **partition_tags(chunk)},
                        run_config={**QUIET, **IN_PROCESS},
                    )
                    runs += 1
                    failed_runs += 0 if outcome.success else 1
                    _collect(outcome.events, chunk, tables)
                    span = chunk[0] if len(chunk) == 1 else f"{chunk[0]} .. {chunk[-1]}"
                    print(
                        f"run {runs}: {span} ({len(chunk)} partition(s) of "
                        f"{', '.join(sorted(n for n in todo if todo[n] & set(chunk)))}): "
                        f"{'loaded' if outcome.success else 'FAILED (see below)'} in "
                        f"{time.monotonic() - began:.1f} s, run {outcome.run_id}",
                        flush=True,
                    )
    if skipped:
        print(
            f"{skipped} category partition(s) skipped: already loaded from every COMPLETED export "
            "job CXone lists for them (--force loads them again and re-verifies their files)."
        )
    _print_summary(tables, runs, failed_runs)
    return 1 if failed_runs else 0


def _print_summary(tables: dict[str, TableSummary], runs: int, failed_runs: int) -> None:
    header = (
        f"{'table':34} {'parts ok':>8} {'failed':>6} {'files':>6} {'rows in':>9} "
        f"{'inserted':>9} {'updated':>8} {'stale':>7} {'checks':>12}"
    )
    print(header)
    print("-" * len(header))
    for table in sorted(tables):
        s = tables[table]
        checks = f"{s.checks_failed} fail/{s.checks_warned} warn"
        print(
            f"{table:34} {s.partitions_ok:>8} {s.partitions_failed:>6} {s.files:>6} "
            f"{s.rows_in:>9} {s.inserted:>9} {s.updated:>8} {s.stale:>7} {checks:>12}"
        )
    print(f"\n{runs} Dagster runs, {failed_runs} failed.")
    problems = [(t, p) for t, s in sorted(tables.items()) for p in s.problems]
    if problems:
        print("\nProblems:")
        for table, problem in problems[:40]:
            print(f"  {table}: {problem}")
        if len(problems) > 40:
            print(f"  ... and {len(problems) - 40} more (see the Dagster UI)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxone-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync", help="materialize every partition in [start, end)")
    p_sync.add_argument("--start", required=True, type=_parse_time)
    p_sync.add_argument("--end", required=True, type=_parse_time)
    p_sync.add_argument(
        "--category",
        action="append",
        default=[],
        choices=[c.name for c in CATEGORIES],
        help="repeatable; default: every category",
    )
    p_sync.add_argument(
        "--force",
        action="store_true",
        help="load partitions already loaded from the same export jobs again (re-verifies files)",
    )
    sub.add_parser("local-stack", help="start the simulator and a local S3 store", add_help=False)
    sub.add_parser(
        "local-snowflake", help="start the Snowflake emulator on loopback", add_help=False
    )
    sub.add_parser("sim", help="control a running simulator (advance its clock)", add_help=False)
    sub.add_parser("doctor", help="preflight the API, the bucket and the warehouse")
    sub.add_parser("policy", help="print the IAM and bucket policies to apply", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "local-stack":
        from cxone_sync.simulator.stack import main as stack_main

        return stack_main(args_list[1:])
    if args_list and args_list[0] == "local-snowflake":
        from cxone_sync.warehouse.snowflake_emulator import main as snowflake_main

        return snowflake_main(args_list[1:])
    if args_list and args_list[0] == "sim":
        from cxone_sync.simulator.__main__ import main as sim_main

        return sim_main(args_list[1:])
    if args_list and args_list[0] == "policy":
        from cxone_sync.policy import policy_main

        return policy_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "sync":
        if args.end <= args.start:
            print("cxone-sync sync: --end must be after --start", file=sys.stderr)
            return 2
        return sync(args.start, args.end, args.category, force=args.force)
    if args.command == "doctor":
        from cxone_sync.preflight import doctor

        return doctor()
    return 2


if __name__ == "__main__":
    sys.exit(main())
