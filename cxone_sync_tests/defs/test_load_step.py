"""The load step as a sensor or a single "Materialize" runs it: one partition, in process, on an
on-disk instance, against the simulator over real sockets.

What the UI shows must be true: a partition with nothing to stage is not recorded as staged, its
``completed_export`` check fails with the reason; a partition the jobs sensor had given up on
turns its ``recovered`` check green when it loads, and nothing else gets that result.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cxone_sync.catalog import category, partition_key
from cxone_sync.definitions import defs as build_defs
from cxone_sync.defs.ingest.names import staged_key, table_key
from cxone_sync.ingest import checks as ck
from cxone_sync.simulator.config import CountSkew
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.defs.test_automation_support import QUIET, point_platform_at
from cxone_sync_tests.fixtures import MakeStack

START = datetime(2024, 3, 15, tzinfo=UTC)
WFM = category("workforce_management")


@pytest.fixture
def env(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[LocalStack, dg.DagsterInstance, Path]]:
    stack = make_stack(scale=0.05, categories=("workforce_management",))
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        yield stack, instance, tmp_path / "data" / "warehouse.duckdb"


def _run(instance: dg.DagsterInstance, partition: str) -> dg.ExecuteInProcessResult:
    return (
        build_defs()
        .resolve_job_def("sync_workforce_management_job")
        .execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False, run_config=QUIET
        )
    )


def _evaluations(
    instance: dg.DagsterInstance, key: dg.AssetKey, name: str
) -> list[dg.AssetCheckEvaluation]:
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, name), limit=100
    )
    out = []
    for record in records:
        event = record.event.dagster_event if record.event else None
        data = event.event_specific_data if event else None
        if isinstance(data, dg.AssetCheckEvaluation):
            out.append(data)
    return out


def test_a_partition_without_export_is_not_staged_and_fails_completed_export(env) -> None:  # type: ignore[no-untyped-def]
    stack, instance, db = env
    stack.world.advance_to(START + timedelta(hours=8))  # 00:00 exported; 06:00 not yet
    loaded, early = partition_key(START), partition_key(START + timedelta(hours=6))
    assert _run(instance, loaded).success

    result = _run(instance, early)
    assert not result.success
    for dt in WFM.data_types:
        assert instance.get_materialized_partitions(staged_key(dt)) == {loaded}
        assert instance.get_materialized_partitions(table_key(dt)) == {loaded}
        latest = _evaluations(instance, staged_key(dt), ck.COMPLETED_EXPORT)[0]
        assert latest.partition == early and not latest.passed and latest.blocking
        assert "no export job for this interval yet" in (latest.description or "")
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == len(WFM.data_types)
    for event in failures:
        data = event.step_failure_data.user_failure_data
        assert data is not None and "1 of 1 partitions not merged" in (data.description or "")
        assert early in (data.description or "")
    # the table holds exactly the loaded interval
    warehouse = DuckDBWarehouse(db)
    for dt in WFM.data_types:
        truth = stack.world.ground_truth(WFM.name, dt.name, START, START + WFM.interval)
        assert differences(truth, warehouse.read_table(dt), list(dt.key)) == []


def test_loading_an_unrecovered_partition_turns_its_recovered_check_green(env) -> None:  # type: ignore[no-untyped-def]
    stack, instance, _ = env
    stack.world.advance_to(START + timedelta(hours=14))
    flagged, plain = partition_key(START), partition_key(START + timedelta(hours=6))
    for dt in WFM.data_types:  # what the jobs sensor records when it gives up on an interval
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=table_key(dt),
                partition=flagged,
                metadata={ck.RECOVERY_METADATA: "exhausted", "reason": "FAILED twice"},
            )
        )
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=table_key(dt),
                check_name=ck.RECOVERED,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description="UNRECOVERED: FAILED twice",
                partition=flagged,
            )
        )
    assert _run(instance, flagged).success and _run(instance, plain).success
    for dt in WFM.data_types:
        evaluations = _evaluations(instance, table_key(dt), ck.RECOVERED)
        latest: dict[str | None, dg.AssetCheckEvaluation] = {}
        for e in evaluations:  # newest first
            latest.setdefault(e.partition, e)
        assert set(latest) == {flagged}, "only the flagged partition has something to say"
        assert latest[flagged].passed
        assert instance.get_materialized_partitions(table_key(dt)) == {flagged, plain}


def test_a_category_tolerance_lets_a_record_count_mismatch_load(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Manifest counts 7% off: blocked at the default 5% (another category's wider tolerance
    does not apply), loaded once CXONE_RECORD_COUNT_TOLERANCES gives telephony 10%."""
    skewed = START + timedelta(hours=2)
    stack = make_stack(
        scale=0.2,
        categories=("telephony",),
        record_count_skew=(CountSkew("telephony", skewed, 7.0),),
    )
    stack.world.advance_to(START + timedelta(hours=5))
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    key = partition_key(skewed)
    cdr = category("telephony").data_type("cdr")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:

        def run() -> tuple[dg.ExecuteInProcessResult, dg.AssetCheckEvaluation]:
            result = (
                build_defs()
                .resolve_job_def("sync_telephony_job")
                .execute_in_process(
                    partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
                )
            )
            return result, _evaluations(instance, staged_key(cdr), ck.RECORD_COUNT)[0]

        monkeypatch.setenv("CXONE_RECORD_COUNT_TOLERANCES", '{"speech": 0.1}')
        result, check = run()
        assert not result.success
        assert check.partition == key and not check.passed and check.blocking
        assert "exceeds the 5% tolerance" in (check.description or ""), check.description
        assert key not in instance.get_materialized_partitions(table_key(cdr))

        monkeypatch.setenv("CXONE_RECORD_COUNT_TOLERANCES", '{"telephony": 0.1}')
        result, check = run()
        assert result.success
        assert check.partition == key and check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert "is within the 10% tolerance" in (check.description or ""), check.description
        assert key in instance.get_materialized_partitions(table_key(cdr))
    table = DuckDBWarehouse(tmp_path / "data" / "warehouse.duckdb").read_table(cdr)
    assert table.num_rows > 0
    assert set(table.column("_cxone_partition").to_pylist()) == {key}
