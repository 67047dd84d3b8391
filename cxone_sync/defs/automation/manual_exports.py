"""The ticks' side of manual-export recovery: run requests for owed intervals, waiting for the
previous attempt, and the UNRECOVERED markers of intervals given up on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from cxone_sync.automation.state import Recovery, RecoveryOutcome
from cxone_sync.catalog import Category
from cxone_sync.cxone.untrusted import shown
from cxone_sync.defs.automation.actions import BACKFILL, REQUEST_MANUAL_EXPORT_JOB
from cxone_sync.defs.automation.tick_common import (
    RECOVERY_METADATA,
    TAG_RUN_KEY,
    TAG_TRIGGER,
    Tick,
    partition_windows,
)
from cxone_sync.defs.ingest.names import table_key
from cxone_sync.ingest import checks as ck


def manual_export_request(
    category: Category, r: Recovery, sensor: str, attempt: str | int | None = None
) -> dg.RunRequest:
    """The run that POSTs one manual export: run key per sensor, interval and attempt."""
    attempt = r.attempts if attempt is None else attempt
    rk = f"manual-export:{sensor}:{r.key}:{attempt}"
    return dg.RunRequest(
        run_key=rk,
        job_name=REQUEST_MANUAL_EXPORT_JOB,
        run_config={
            "ops": {
                "request_manual_export": {
                    "config": {
                        "category": category.name,
                        "start": r.start,
                        "end": r.end,
                        "attempt": int(r.attempts) if isinstance(attempt, str) else attempt,
                        "reason": (r.last_error or r.reason)[:500],
                        "sensor": sensor,
                    }
                }
            }
        },
        tags={TAG_TRIGGER: sensor, TAG_RUN_KEY: rk, "cxone/interval": r.key},
    )


def previous_export_pending(
    instance: dg.DagsterInstance | None, sensor: str
) -> Callable[[Recovery], str | None]:
    """Whether the manual-export run of an interval's last attempt has not finished (then the
    sensor waits instead of asking again); its failure becomes the interval's last error."""

    def pending(r: Recovery) -> str | None:
        if instance is None:
            return None
        rk = f"manual-export:{sensor}:{r.key}:{r.attempts}"
        runs = instance.get_runs(filters=dg.RunsFilter(tags={TAG_RUN_KEY: rk}), limit=1)
        if not runs:
            # requested by an evaluation whose result was not committed, or not launched yet
            return None
        run = runs[0]
        if not run.is_finished:
            return f"manual-export run {run.run_id} is {run.status.value}"
        if run.status != dg.DagsterRunStatus.SUCCESS:
            r.last_error = f"manual-export run {run.run_id} {run.status.value} (see its log)"
        return None

    return pending


def exhausted_observations(
    category: Category, pdef: dg.TimeWindowPartitionsDefinition, r: Recovery, sensor: str
) -> list[dg.AssetObservation | dg.AssetCheckEvaluation]:
    """The failed-status marker on every table of each partition it covers: the ``recovered``
    check fails (ERROR, red on the check dashboard and the partition) and an observation keeps
    the details; a later load of the partition passes the check again."""
    start, end = r.window
    out: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
    reason = r.last_error or r.reason
    description = (
        f"UNRECOVERED: {category.name} interval {r.start} .. {r.end} has no "
        f"COMPLETED export after {r.attempts} manual export(s). Reason: "
        f"{reason}. Request a manual export by hand (overwrite "
        f"false, destination prefix {{prefix}}{BACKFILL}) or ask CXone support."
    )
    metadata: dict[str, Any] = {
        RECOVERY_METADATA: "exhausted",
        "reason": reason,
        "attempts": r.attempts,
        "failed_jobs": ", ".join(shown(j) for j in r.failed_jobs),
        "manual_export_jobs": ", ".join(shown(j) for j in r.export_jobs),
        "sensor": sensor,
    }
    for key, _, _ in partition_windows(pdef, start, end):
        for dt in category.data_types:
            out.append(
                dg.AssetObservation(
                    asset_key=table_key(dt),
                    partition=key,
                    description=description,
                    metadata=metadata,
                    tags={"cxone/sensor": sensor},
                )
            )
            out.append(
                dg.AssetCheckEvaluation(
                    asset_key=table_key(dt),
                    check_name=ck.RECOVERED,
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=description,
                    metadata=metadata,
                    partition=key,
                )
            )
    return out


def report_outcomes(
    tick: Tick,
    category: Category,
    pdef: dg.TimeWindowPartitionsDefinition,
    outcomes: list[RecoveryOutcome],
    sensor: str,
) -> None:
    tick.outcomes.extend(outcomes)
    for o in outcomes:
        r = o.recovery
        what = f"{category.name} {r.start} .. {r.end}"
        if o.kind == "requested":
            tick.run_requests.append(manual_export_request(category, r, sensor))
            tick.exports_requested += 1
            tick.lines.append(
                f"manual export requested for {what} (try {r.attempts}, run "
                f"request_manual_export_job): {r.last_error or r.reason}"
            )
        elif o.kind == "pending":
            tick.lines.append(f"{what}: waiting for the previous attempt ({o.detail})")
        elif o.kind == "covered":
            tick.lines.append(f"{what} recovered by COMPLETED job {shown(o.job_id)}")
        elif o.kind == "exhausted":
            tick.errors.append(
                f"GAVE UP on {what} after {r.attempts} manual export(s): {o.detail}; the "
                "interval stays empty until someone exports it by hand"
            )
            tick.observations.extend(exhausted_observations(category, pdef, r, sensor))
