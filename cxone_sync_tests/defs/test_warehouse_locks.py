"""A run that meets DuckDB's lock waits and retries instead of failing (issue 11 item 3, issue 14
item 1): another process holds the warehouse file while ``cxone-sync sync`` runs real Dagster runs
against the simulator and the local S3 store, in an on-disk instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cxone_sync.catalog import category
from cxone_sync.cli import main
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.defs.test_automation_support import point_platform_at
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.lockholder import LockHolder, release_after_waits

START = datetime(2024, 3, 15, tzinfo=UTC)
IVR = category("ivr").data_type("ivr_session")
ONE_HOUR = ["sync", "--start", "2024-03-15T00:00Z", "--end", "2024-03-15T01:00Z"]


@pytest.fixture
def stack(make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalStack:
    stack = make_stack(scale=0.05, categories=("ivr",))
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    # short bounds, so a test meets the wait and the retries within seconds
    monkeypatch.setenv("CXONE_WAREHOUSE_LOCK_WAIT_SECONDS", "0.5")
    monkeypatch.setenv("CXONE_STEP_RETRY_DELAY_SECONDS", "0.2")
    stack.world.advance_to(START + timedelta(hours=2))
    return stack


def _warehouse(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "data" / "warehouse.duckdb")
    warehouse.ensure_control_tables()
    return warehouse


def _events(run: dg.DagsterRun, kind: dg.DagsterEventType) -> list[dg.EventLogEntry]:
    with dg.DagsterInstance.get() as instance:
        return list(instance.all_logs(run.run_id, of_type=kind))


def _only_run() -> dg.DagsterRun:
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        return run


def test_a_run_that_meets_the_lock_retries_and_loads_the_truth(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXONE_STEP_MAX_RETRIES", "6")
    warehouse = _warehouse(tmp_path)
    with LockHolder(warehouse.path) as holder, release_after_waits(holder, times=2) as waits:
        # the staged step meets the lock, waits 0.5 s, is retried, meets it again (released)
        code = main([*ONE_HOUR, "--category", "ivr"])
    assert code == 0
    assert len(waits) >= 2 and all(f"PID {holder.pid}" in w for w in waits)
    run = _only_run()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    retried = _events(run, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert retried and {e.step_key for e in retried} == {"load__ivr__ivr_session"}
    truth = stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=1))
    assert truth.num_rows > 0
    assert differences(truth, warehouse.reader().read_table(IVR), list(IVR.key)) == []


def test_a_lock_that_outlasts_the_retries_fails_the_run_clearly_and_merges_nothing(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CXONE_STEP_MAX_RETRIES", "1")
    warehouse = _warehouse(tmp_path)
    with LockHolder(warehouse.path) as holder:
        code = main([*ONE_HOUR, "--category", "ivr"])
        capsys.readouterr()
    assert code == 1
    run = _only_run()
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert len(_events(run, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    (failure,) = _events(run, dg.DagsterEventType.STEP_FAILURE)
    assert failure.dagster_event is not None and failure.dagster_event.step_failure_data
    error = failure.dagster_event.step_failure_data.error
    assert error is not None
    text = error.to_string()
    assert "is locked by" in text and f"(PID {holder.pid})" in text
    assert "CXONE_WAREHOUSE_LOCK_WAIT_SECONDS" in text
    assert warehouse.reader().partition_loads(IVR) == []
    # the lock is gone: the same sync loads the partition, equal to the truth
    assert main([*ONE_HOUR, "--category", "ivr"]) == 0
    truth = stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=1))
    assert differences(truth, warehouse.reader().read_table(IVR), list(IVR.key)) == []
