"""What ``cxone-sync sync`` prints at the end: per table, from the runs' Dagster events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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


def collect(
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


def merged_rows(tables: dict[str, TableSummary]) -> int:
    return sum(t.inserted + t.updated for t in tables.values())


def print_summary(tables: dict[str, TableSummary], runs: int, failed_runs: int) -> None:
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
