"""Staging clean-up (issue 11, item 6): the folder of an ended run lineage goes, the folder of a
live run stays, whatever its age.

Runs are real runs of a real (temporary, on-disk) instance in the statuses a daemon leaves them
in; the clean-up job runs in process against it and a real staging folder tree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from cxone_sync.defs.maintenance.staging import (
    CLEAN_STAGING_JOB,
    STAGING_CLEANUP_SENSOR,
    build_maintenance_defs,
    plan_cleanup,
)
from cxone_sync.defs.resources import IngestResource
from cxone_sync.ingest.cleanup import Lineage, StagingFolder, decide, list_staging_folders
from cxone_sync.settings import AutomationSettings

S = dg.DagsterRunStatus


def stage(root: Path, table: str, partition: str, run_id: str, age_seconds: float = 0) -> Path:
    folder = root / table / partition / run_id
    folder.mkdir(parents=True)
    for name in ("staged.json", "part-00000.parquet"):
        (folder / name).write_bytes(b"x")
        if age_seconds:
            old = time.time() - age_seconds
            os.utime(folder / name, (old, old))
    if age_seconds:
        old = time.time() - age_seconds
        os.utime(folder, (old, old))
    return folder


def queued_run(instance: dg.DagsterInstance, job_name: str) -> dg.DagsterRun:
    """A run in the queue, as the queued run coordinator leaves a submitted run."""
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="cxone_sync.definitions")),
            "__repository__",
        ),
        job_name,
    )
    return create_run_for_test(
        instance, job_name=job_name, status=S.QUEUED, remote_job_origin=origin
    )


def run_in(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, **kw: object) -> str:
    """A run of the instance in ``status``, ended the way the daemon ends one (with an end time)."""
    if status in (S.FAILURE, S.CANCELED):
        run = create_run_for_test(instance, job_name="sync_ivr_job", status=S.STARTED, **kw)
        if status == S.FAILURE:
            instance.report_run_failed(run, "killed")
        else:
            instance.report_run_canceled(run, "canceled")
    elif status == S.QUEUED:
        run = queued_run(instance, "sync_ivr_job")
    else:
        run = create_run_for_test(instance, job_name="sync_ivr_job", status=status, **kw)
    assert instance.get_run_by_id(run.run_id).status == status  # type: ignore[union-attr]
    return run.run_id


@pytest.fixture
def instance(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as inst:
        yield inst


def test_clean_up_removes_ended_lineages_and_keeps_live_ones(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXONE_STAGING_CLEANUP_GRACE_MINUTES", "0")
    staging = tmp_path / "staging"
    failed = run_in(instance, S.FAILURE)
    canceled = run_in(instance, S.CANCELED)
    succeeded = run_in(instance, S.SUCCESS)
    started = run_in(instance, S.STARTED)  # e.g. a worker killed with no run monitoring: kept
    queued = run_in(instance, S.QUEUED)
    failed_root = run_in(instance, S.FAILURE)
    # a re-execution from failure of failed_root is running: it reuses the root's folder
    run_in(
        instance,
        S.STARTED,
        root_run_id=failed_root,
        parent_run_id=failed_root,
        tags={"dagster/root_run_id": failed_root, "dagster/parent_run_id": failed_root},
    )
    day = 24 * 3600
    gone = {
        "failed": stage(staging, "ivr_session", "2024-03-15-00_00", failed),
        "canceled": stage(staging, "ivr_session", "2024-03-15-01_00", canceled),
        "succeeded": stage(staging, "telephony_cdr", "2024-03-15-01_00", succeeded),
        "unknown, idle": stage(staging, "telephony_cdr", "2024-03-15-02_00", "f" * 36, day),
    }
    kept = {
        "started, a day old": stage(staging, "ivr_session", "2024-03-15-02_00", started, day),
        "queued": stage(staging, "ivr_session", "2024-03-15-03_00", queued),
        "re-executing": stage(staging, "ivr_session", "2024-03-15-04_00", failed_root, day),
        # a live run's folder beside an ended one in the same partition
        "live beside ended": stage(staging, "ivr_session", "2024-03-15-00_00", started),
    }
    defs = dg.Definitions.merge(
        build_maintenance_defs(AutomationSettings()),
        dg.Definitions(resources={"ingest": IngestResource(bucket="b", staging_dir=str(staging))}),
    )
    result = defs.resolve_job_def(CLEAN_STAGING_JOB).execute_in_process(instance=instance)
    assert result.success
    assert result.output_for_node("clean_staging") == len(gone)
    assert {k: p.exists() for k, p in gone.items()} == dict.fromkeys(gone, False)
    assert {k: p.exists() for k, p in kept.items()} == dict.fromkeys(kept, True)
    # an emptied partition folder goes too; one holding a live run's folder stays
    assert not (staging / "ivr_session" / "2024-03-15-01_00").exists()
    assert (staging / "ivr_session" / "2024-03-15-00_00").is_dir()
    # nothing left to do: the plan keeps every remaining folder, naming why
    reasons = {d.folder.path: d.reason for d in plan_cleanup(instance, staging, 0)}
    assert set(reasons) == set(kept.values())
    assert reasons[kept["re-executing"]].startswith("run lineage is live: FAILURE, STARTED")
    assert reasons[kept["queued"]] == "run lineage is live: QUEUED"


def test_sensor_requests_a_clean_up_only_when_a_folder_is_due(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    settings = AutomationSettings(CXONE_STAGING_CLEANUP_GRACE_MINUTES=0)
    defs = dg.Definitions.merge(
        build_maintenance_defs(settings),
        dg.Definitions(resources={"ingest": IngestResource(bucket="b", staging_dir=str(staging))}),
    )
    sensor = defs.resolve_sensor_def(STAGING_CLEANUP_SENSOR)

    def tick(cursor: str | None = None) -> SensorExecutionData:
        with dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            definitions=defs,
            sensor_name=sensor.name,
            resources=defs.resources,
        ) as context:
            data = sensor.evaluate_tick(context)
        return data

    stage(staging, "ivr_session", "2024-03-15-00_00", run_in(instance, S.STARTED))
    idle = tick()
    assert not idle.run_requests and "1 staging folder(s), 0 to remove" in str(idle.skip_message)
    stage(staging, "ivr_session", "2024-03-15-01_00", run_in(instance, S.FAILURE))
    due = tick()
    assert [r.run_key for r in due.run_requests or []] == ["staging_cleanup:1"]
    assert due.cursor == "1"
    # the sensor deleted nothing itself
    assert len(list_staging_folders(staging)) == 2
    # while a clean-up run is in flight, no second request
    queued_run(instance, CLEAN_STAGING_JOB)
    busy = tick("1")
    assert not busy.run_requests and "in flight" in str(busy.skip_message)


def test_grace_period_counts_from_the_lineage_end_and_the_last_write() -> None:
    now = 1_000_000.0
    assert list_staging_folders(Path("/nonexistent")) == []  # a missing root holds nothing

    def folder(run: str, modified: float) -> StagingFolder:
        return StagingFolder(Path(f"/s/t/p/{run}"), "t", "p", run, modified)

    lineages = {
        "ended-long-ago": Lineage(False, now - 7200, ("FAILURE",)),
        "ended-recently": Lineage(False, now - 600, ("FAILURE",)),
        "ended-but-written-later": Lineage(False, now - 7200, ("FAILURE",)),
    }
    decisions = decide(
        [
            folder("ended-long-ago", now - 7200),
            folder("ended-recently", now - 7200),
            folder("ended-but-written-later", now - 60),
            folder("unknown-recent", now - 60),
        ],
        lineages,
        now=now,
        grace_seconds=3600,
    )
    assert [d.remove for d in decisions] == [True, False, False, False]
    assert "within the grace period of 3600 s" in decisions[1].reason
