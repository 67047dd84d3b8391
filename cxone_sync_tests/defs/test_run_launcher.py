"""The run launcher's worker health check: run monitoring learns that a run worker died from it
(instead of waiting for the 2-hour runtime limit). The daemon end of it (a killed worker's run
failed and retried) is exercised by the soak (``cxone_sync_tests/soak``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData  # no public constructor for engine events

from cxone_sync.defs.launcher import LocalWorkerHealthRunLauncher, WorkerStatus, worker_pid
from cxone_sync.settings import INSTANCE_TEMPLATE


@dg.op
def noop() -> None:
    pass


@dg.job
def tiny_job() -> None:
    noop()


def test_a_dead_run_worker_is_reported_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.yaml").write_text(INSTANCE_TEMPLATE.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LocalWorkerHealthRunLauncher)
        assert launcher.supports_check_run_worker_health
        run = instance.create_run_for_job(tiny_job)

        # no worker reported yet (e.g. a run of `cxone-sync sync` in its own process): running
        health = launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.RUNNING, health

        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        try:
            instance.report_engine_event(
                f"Started process for run (pid: {worker.pid}).",
                run,
                EngineEventData.in_process(worker.pid),
            )
            assert worker_pid(instance, run.run_id) == worker.pid
            health = launcher.check_run_worker_health(run)
            assert health.status == WorkerStatus.RUNNING, health
        finally:
            worker.kill()
            worker.wait()
        health = launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.FAILED, health
        assert f"pid {worker.pid}" in (health.msg or "") and "no longer exists" in (
            health.msg or ""
        )


def test_a_live_worker_of_this_process_is_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.yaml").write_text(INSTANCE_TEMPLATE.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        run = instance.create_run_for_job(tiny_job)
        instance.report_engine_event(
            f"Started process for run (pid: {os.getpid()}).",
            run,
            EngineEventData.in_process(os.getpid()),
        )
        health = instance.run_launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.RUNNING, health
