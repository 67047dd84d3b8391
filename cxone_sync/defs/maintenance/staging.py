"""Staging clean-up: ``staging_cleanup_sensor`` requests ``clean_staging_job`` when some run
folder under the staging root belongs to a run lineage that ended more than the grace period ago.

Why a sensor that requests a job, not a sensor that deletes, nor a clean-up at the start of the
next run of a partition: a sensor should have no side effect beyond its cursor and its run
requests (a tick may be evaluated again, previewed, or run by two daemons during a restart), and
the next run of a partition may never come (a partition that was blocked and then superseded is
never run again). The job's op decides again from the instance at the moment it deletes, so a run
that started between the tick and the job keeps its folder. The decision reads only the run
lineage's status in the instance, so it survives kill -9 of anything: a killed run's folder goes
once Dagster marks the run failed (run monitoring), never while it shows as live.
"""

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg

from cxone_sync.defs.resources import IngestResource
from cxone_sync.ingest.cleanup import (
    Decision,
    Lineage,
    decide,
    list_staging_folders,
    remove_folder,
)
from cxone_sync.settings import AutomationSettings, get_settings

STAGING_CLEANUP_SENSOR = "staging_cleanup_sensor"
CLEAN_STAGING_JOB = "clean_staging_job"
ROOT_RUN_ID_TAG = "dagster/root_run_id"
"""Dagster's tag naming the first run of a re-execution lineage."""
ENDED = frozenset(
    {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
)
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
_BATCH = 200


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _BATCH):
        yield list(items[i : i + _BATCH])


def lineages(instance: dg.DagsterInstance, root_run_ids: Iterable[str]) -> dict[str, Lineage]:
    """root run id -> the status of its lineage (the root and every re-execution of it); a root
    the instance does not know is absent."""
    roots = sorted(set(root_run_ids))
    records: list[dg.RunRecord] = []
    for chunk in _chunks(roots):
        records.extend(instance.get_run_records(dg.RunsFilter(run_ids=chunk)))
        records.extend(instance.get_run_records(dg.RunsFilter(tags={ROOT_RUN_ID_TAG: chunk})))
    by_root: dict[str, list[dg.RunRecord]] = {}
    for record in records:
        run = record.dagster_run
        root = run.tags.get(ROOT_RUN_ID_TAG) or run.root_run_id or run.run_id
        by_root.setdefault(root, []).append(record)
    out: dict[str, Lineage] = {}
    for root, recs in by_root.items():
        unique = {r.dagster_run.run_id: r for r in recs}.values()
        live = any(r.dagster_run.status not in ENDED for r in unique)
        ends = [
            r.end_time if r.end_time is not None else r.update_timestamp.timestamp()
            for r in unique
            if r.dagster_run.status in ENDED
        ]
        out[root] = Lineage(
            live=live,
            ended_at=max(ends) if ends and not live else None,
            statuses=tuple(sorted(r.dagster_run.status.value for r in unique)),
        )
    return out


def plan_cleanup(
    instance: dg.DagsterInstance, staging_dir: Path, grace_seconds: float, now: float | None = None
) -> list[Decision]:
    """What the clean-up would do with every run folder under ``staging_dir`` right now."""
    folders = list_staging_folders(staging_dir)
    known = lineages(instance, (f.root_run_id for f in folders))
    return decide(
        folders, known, now=time.time() if now is None else now, grace_seconds=grace_seconds
    )


@dg.op(
    name="clean_staging",
    description="Remove the staging folders of run lineages that ended more than the grace "
    "period ago (CXONE_STAGING_CLEANUP_GRACE_MINUTES); never a folder of a live run.",
)
def clean_staging_op(context: dg.OpExecutionContext, ingest: IngestResource) -> int:
    grace = get_settings().staging_cleanup_grace_seconds
    decisions = plan_cleanup(context.instance, Path(ingest.staging_dir), grace)
    removed: list[str] = []
    failed: list[str] = []
    for d in decisions:
        if not d.remove:
            continue
        try:
            remove_folder(d.folder)
        except FileNotFoundError:
            continue  # gone already (its MERGE step, or another clean-up)
        except OSError as exc:
            failed.append(f"{d.folder.path}: {exc}")
            continue
        removed.append(f"{d.folder.table}/{d.folder.partition}/{d.folder.root_run_id}")
        context.log.info(f"removed staging {removed[-1]}: {d.reason}")
    kept = [d for d in decisions if not d.remove]
    context.add_output_metadata(
        {
            "removed": len(removed),
            "kept": len(kept),
            "kept_live": sum(1 for d in kept if "live" in d.reason),
            "removed_folders": dg.MetadataValue.json(removed[:200]),
            "errors": dg.MetadataValue.json(failed[:50]),
        }
    )
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} staging folder(s) could not be removed (permissions? a "
            "file held open?); the next clean-up tries again:\n" + "\n".join(failed[:20]),
            metadata={"removed": len(removed)},
        )
    return len(removed)


@dg.job(
    name=CLEAN_STAGING_JOB,
    description="Remove staging folders left by runs that ended (blocked, failed, canceled or "
    "killed) more than the grace period ago.",
    tags={"cxone/maintenance": "staging"},
)
def clean_staging_job() -> None:
    clean_staging_op()


def build_staging_cleanup_sensor(settings: AutomationSettings) -> dg.SensorDefinition:
    @dg.sensor(
        name=STAGING_CLEANUP_SENSOR,
        job=clean_staging_job,
        minimum_interval_seconds=settings.staging_cleanup_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Requests clean_staging_job when a staging folder belongs to a run lineage "
        f"that ended more than {settings.staging_cleanup_grace_minutes} min ago (none while a "
        "clean-up run is in flight). Deletes nothing itself.",
    )
    def _sensor(context: dg.SensorEvaluationContext, ingest: IngestResource) -> dg.SensorResult:
        decisions = plan_cleanup(
            context.instance, Path(ingest.staging_dir), settings.staging_cleanup_grace_seconds
        )
        due = [d for d in decisions if d.remove]
        summary = f"{len(decisions)} staging folder(s), {len(due)} to remove"
        if not due:
            return dg.SensorResult(skip_reason=summary)
        in_flight = context.instance.get_run_records(
            dg.RunsFilter(job_name=CLEAN_STAGING_JOB, statuses=IN_FLIGHT), limit=1
        )
        if in_flight:
            return dg.SensorResult(skip_reason=f"{summary}; a clean-up run is in flight")
        n = int(context.cursor or 0) + 1
        context.log.info(summary)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"staging_cleanup:{n}", tags={"cxone/trigger": context.sensor_name}
                )
            ],
            cursor=str(n),
        )

    return _sensor


def build_maintenance_defs(settings: AutomationSettings | None = None) -> dg.Definitions:
    settings = settings or get_settings()
    return dg.Definitions(
        jobs=[clean_staging_job], sensors=[build_staging_cleanup_sensor(settings)]
    )
