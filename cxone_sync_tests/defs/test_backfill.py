"""UI backfills: a range of partitions is batched into few runs by the assets' backfill policy,
and the blocking gates still hold per partition.

Drives Dagster's own backfill daemon iteration (what the UI's "Materialize > backfill" submits)
against a real on-disk instance, with the workspace loaded from ``cxone_sync.definitions``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import AssetCheckEvaluation
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration

from cxone_sync.catalog import category, partition_key
from cxone_sync.definitions import defs as build_defs
from cxone_sync.defs.automation.sensors import RECONCILIATION_SENSOR
from cxone_sync.ingest import checks as ck
from cxone_sync.simulator.config import CountSkew
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.defs.test_automation_support import Daemon, point_platform_at
from cxone_sync_tests.fixtures import MakeStack

START = datetime(2024, 3, 15, tzinfo=UTC)
DAYS = 2
BAD = START + timedelta(days=1, hours=5)
"""An hour whose export's manifest overstates the rows by 10%: record_count fails."""
LOG = logging.getLogger("backfill-test")
# Dagster's tags on backfill runs (their constants are in the private dagster._core.storage.tags)
BACKFILL_ID_TAG = "dagster/backfill"
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


@pytest.fixture
def workspace(
    request: pytest.FixtureRequest,
    make_stack: MakeStack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[tuple[object, WorkspaceProcessContext, dg.DagsterInstance]]:
    params = dict(getattr(request, "param", {}))
    clock = params.pop("advance_to", START + timedelta(days=DAYS, hours=8))
    config = {
        "scale": 0.1,
        "categories": ("ivr", "workforce_management"),
        "record_count_skew": (CountSkew("ivr", BAD, 10.0),),
        "duplicate_export_rate": 0.3,
        "late_update_rate": 0.1,
    }
    stack = make_stack(**{**config, **params})
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    stack.world.advance_to(clock)
    home = tmp_path / "home"
    home.mkdir()
    target = InProcessWorkspaceLoadTarget(
        InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                executable_path=sys.executable,
                module_name="cxone_sync.definitions",
                attribute="defs",
                working_directory=str(Path(__file__).parents[2]),
            ),
            location_name="cxone_sync",
        )
    )
    with (
        dg.instance_for_test(
            temp_dir=str(home), synchronous_run_launcher=True, synchronous_run_coordinator=True
        ) as instance,
        create_test_daemon_workspace_context(target, instance) as context,
    ):
        yield stack, context, instance


def _backfill(
    context: WorkspaceProcessContext,
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey],
    partitions: list[str],
) -> PartitionBackfill:
    """Submit an asset backfill as the UI does, then tick the daemon until it is done."""
    backfill_id = f"bf{len(instance.get_backfills())}"
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=context.create_request_context().asset_graph,
        partition_names=partitions,
        asset_selection=keys,
        backfill_timestamp=datetime.now(UTC).timestamp(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    status = None
    for _ in range(20):
        list(execute_backfill_iteration(context, LOG))
        done = instance.get_backfill(backfill_id)
        assert done is not None
        status = done.status
        if status != BulkActionStatus.REQUESTED:
            return done
    raise AssertionError(f"backfill {backfill_id} did not finish: {status}")


def _evaluation(record: Any) -> AssetCheckEvaluation:
    event = record.event.dagster_event
    assert event is not None
    data = event.event_specific_data
    assert isinstance(data, AssetCheckEvaluation)
    return data


def _failure_descriptions(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    out = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            out.append(data.user_failure_data.description)
    return out


def _keys(name: str, prefix: str) -> list[dg.AssetKey]:
    return [dg.AssetKey([prefix, dt.table]) for dt in category(name).data_types]


def _partitions(name: str) -> list[str]:
    return [
        partition_key(s)
        for s in category(name).interval_starts(START, START + timedelta(days=DAYS))
    ]


def test_backfill_batches_runs_and_blocks_only_the_bad_partition(workspace) -> None:  # type: ignore[no-untyped-def]
    stack, context, instance = workspace
    ivr = category("ivr")
    session = ivr.data_type("ivr_session")
    keys = _keys("ivr", "cxone_staged") + _keys("ivr", "cxone")
    partitions = _partitions("ivr")
    assert len(partitions) == 48

    backfill = _backfill(context, instance, keys, partitions)

    # 48 hourly partitions, 24 per run: two runs, each a partition range, not 48 runs
    runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
    ranges = sorted(
        (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG], r.status)
        for r in runs
    )
    assert ranges == [
        (partitions[0], partitions[23], dg.DagsterRunStatus.SUCCESS),
        (partitions[24], partitions[47], dg.DagsterRunStatus.FAILURE),
    ]
    bad = partition_key(BAD)

    # the bad hour's record_count check failed for that partition only, with the numbers
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["cxone_staged", session.table]), ck.RECORD_COUNT),
        limit=200,
    )
    by_partition = {r.partition: r for r in records}
    assert set(by_partition) == set(partitions)
    failed = {p for p, r in by_partition.items() if not _evaluation(r).passed}
    assert failed == {bad}
    evaluation = _evaluation(by_partition[bad])
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    deviation = evaluation.metadata["deviation"].value
    assert isinstance(deviation, float) and deviation > 0.05

    # the BI table: every partition but the bad one materialized and loaded
    table = dg.AssetKey(["cxone", session.table])
    materialized = instance.get_materialized_partitions(table)
    assert materialized == set(partitions) - {bad}
    staged_materialized = instance.get_materialized_partitions(
        dg.AssetKey(["cxone_staged", session.table])
    )
    assert staged_materialized == set(partitions) - {bad}  # blocked: not recorded as staged
    warehouse = DuckDBWarehouse(Path(instance.root_directory).parent / "data" / "warehouse.duckdb")
    loaded = set(warehouse.read_table(session).column("_cxone_partition").to_pylist())
    assert loaded == set(partitions) - {bad}

    # the backfill names the bad partition as failed, the rest as materialized
    data = backfill.asset_backfill_data
    assert data is not None
    assert set(
        data.failed_and_downstream_subset.get_partitions_subset(table).get_partition_keys()
    ) == {bad}
    assert backfill.status == BulkActionStatus.COMPLETED_FAILED

    # the failed run says which partition and why
    failure = next(r for r in runs if r.status == dg.DagsterRunStatus.FAILURE)
    messages = _failure_descriptions(instance, failure.run_id)
    assert len(messages) == 1 and bad in messages[0] and "1 of 24" in messages[0], messages
    assert "record_count" in messages[0] or "rows" in messages[0], messages

    # "re-execute from failure" of the failed range: the 23 partitions merged the first time are
    # not reported missing; the bad one is still blocked and the only one named
    reexecuted = dg.execute_job(
        ReconstructableRepository.for_module(
            "cxone_sync.definitions", "defs", working_directory=str(Path(__file__).parents[2])
        ).get_reconstructable_job(failure.job_name),
        instance=instance,
        reexecution_options=dg.ReexecutionOptions.from_failure(failure.run_id, instance),
        tags={  # as the UI's re-execution does: the parent's partition range
            k: v for k, v in failure.tags.items() if k.startswith("dagster/asset_partition_range")
        },
        raise_on_error=False,
    )
    assert not reexecuted.success
    again_messages = _failure_descriptions(instance, reexecuted.run_id)
    assert len(again_messages) == 1 and "1 of 24" in again_messages[0], again_messages
    assert "no staged data" not in again_messages[0]
    assert instance.get_materialized_partitions(table) == set(partitions) - {bad}

    # late-data reconciliation reads what each ranged load considered, per partition: it asks
    # again only for the partition that did not load, not for the 47 that did
    reconcile = Daemon(build_defs(), instance).evaluate(RECONCILIATION_SENSOR)
    requested = {
        r.partition_key for r in reconcile.run_requests or [] if r.job_name == "sync_ivr_job"
    }
    assert requested <= {bad}, requested

    # repair: re-export the bad hour, re-run only the failed partition as a backfill
    stack.world.manual_export(
        "dl-ivr-prod",
        {
            "category": "ivr",
            "start_time": BAD.isoformat().replace("+00:00", "Z"),
            "end_time": (BAD + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "overwrite": False,
            "destination_prefix": "exports/ivr/backfill/",
        },
    )
    stack.world.advance(timedelta(hours=1))
    retry = _backfill(context, instance, keys, [bad])
    assert retry.status == BulkActionStatus.COMPLETED_SUCCESS
    truth = stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(days=DAYS))
    assert differences(truth, warehouse.read_table(session), list(session.key)) == []

    # the same backfill again changes nothing: same rows, one run per 24 partitions
    before = warehouse.read_table(session).sort_by([(k, "ascending") for k in session.key])
    again = _backfill(context, instance, keys, partitions)
    assert again.status == BulkActionStatus.COMPLETED_SUCCESS
    assert (
        warehouse.read_table(session)
        .sort_by([(k, "ascending") for k in session.key])
        .equals(before)
    )
    assert len(instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: again.backfill_id}))) == 2


FAILED_6H = START + timedelta(days=1, hours=6)
"""A 6-hour interval whose scheduled export FAILED, and nobody re-exported it (no sensors)."""


@pytest.mark.parametrize("workspace", [{"failed_intervals": (FAILED_6H,)}], indirect=True)
def test_six_hourly_backfill_is_one_ranged_run_and_a_missing_export_blocks_one_partition(
    workspace,  # type: ignore[no-untyped-def]
) -> None:
    stack, context, instance = workspace
    wfm = category("workforce_management")
    keys = _keys("workforce_management", "cxone_staged") + _keys("workforce_management", "cxone")
    partitions = _partitions("workforce_management")
    assert len(partitions) == 8
    missing = partition_key(FAILED_6H)
    backfill = _backfill(context, instance, keys, partitions)
    assert backfill.status == BulkActionStatus.COMPLETED_FAILED
    (run,) = instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
    (message,) = _failure_descriptions(instance, run.run_id)
    assert "1 of 8" in message and missing in message and "no COMPLETED export" in message
    assert "FAILED" in message  # the job's state, so a person knows to request a re-export
    warehouse = DuckDBWarehouse(Path(instance.root_directory).parent / "data" / "warehouse.duckdb")
    for dt in wfm.data_types:
        assert instance.get_materialized_partitions(dg.AssetKey(["cxone", dt.table])) == set(
            partitions
        ) - {missing}
        truth = stack.world.ground_truth(wfm.name, dt.name, START, START + timedelta(days=DAYS))
        assert differences(truth, warehouse.read_table(dt), list(dt.key)) == [], dt.table
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(["cxone_staged", dt.table]), ck.SCHEMA_DRIFT), limit=50
        )
        # evaluated per partition; the interval without an export was planned, never evaluated
        # (the UI shows it as an execution that failed with its run)
        status = {r.partition: r.status.value for r in checks}
        assert status == {p: "PLANNED" if p == missing else "SUCCEEDED" for p in partitions}


EARLY = START + timedelta(days=1, hours=5, minutes=30)
"""A clock at which the exports of day 2 from 05:00 on do not exist yet."""

REEXECUTE_BACKFILL = """
mutation($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


def _latest_check(
    instance: dg.DagsterInstance, key: dg.AssetKey, name: str
) -> dict[str, AssetCheckEvaluation]:
    """partition -> the newest evaluation of one check."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, name), limit=1000
    )
    out: dict[str, AssetCheckEvaluation] = {}
    for record in records:  # newest first
        if record.status.value not in ("SUCCEEDED", "FAILED") or record.partition is None:
            continue  # planned in a run that did not evaluate it
        out.setdefault(record.partition, _evaluation(record))
    return out


@pytest.mark.parametrize(
    "workspace", [{"advance_to": EARLY, "record_count_skew": ()}], indirect=True
)
def test_backfill_before_the_exports_exist_recovers_by_reexecution_without_a_new_backfill(
    workspace,  # type: ignore[no-untyped-def]
) -> None:
    stack, context, instance = workspace
    session = category("ivr").data_type("ivr_session")
    staged, table = (
        dg.AssetKey(["cxone_staged", session.table]),
        dg.AssetKey(["cxone", session.table]),
    )
    partitions = _partitions("ivr")
    exported = {p for p in partitions if p < partition_key(START + timedelta(days=1, hours=5))}
    missing = set(partitions) - exported
    assert len(missing) == 19

    backfill = _backfill(context, instance, [staged, table], partitions)
    assert backfill.status == BulkActionStatus.COMPLETED_FAILED

    # honest partition states: nothing staged is not "materialized", and every partition without
    # an export has a failed blocking check saying so; the BI table has exactly what loaded
    assert instance.get_materialized_partitions(staged) == exported
    assert instance.get_materialized_partitions(table) == exported
    completed = _latest_check(instance, staged, ck.COMPLETED_EXPORT)
    assert {p for p, e in completed.items() if not e.passed} == missing
    assert all(e.passed for p, e in completed.items() if p in exported)
    sample = completed[min(missing)]
    assert sample.blocking and sample.severity == dg.AssetCheckSeverity.ERROR
    assert "no export job for this interval yet" in (sample.description or "")
    data = backfill.asset_backfill_data
    assert data is not None
    assert (
        set(data.failed_and_downstream_subset.get_partitions_subset(table).get_partition_keys())
        == missing
    )
    (failed_run,) = [
        r
        for r in instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
        if r.status == dg.DagsterRunStatus.FAILURE
    ]

    # the exports complete; the user re-executes the failed run from failure: the load step
    # stages again what it merges, and skips what the first attempt merged
    stack.world.advance_to(START + timedelta(days=DAYS, hours=8))
    warehouse = DuckDBWarehouse(Path(instance.root_directory).parent / "data" / "warehouse.duckdb")
    reexecuted = dg.execute_job(
        ReconstructableRepository.for_module(
            "cxone_sync.definitions", "defs", working_directory=str(Path(__file__).parents[2])
        ).get_reconstructable_job(failed_run.job_name),
        instance=instance,
        reexecution_options=dg.ReexecutionOptions.from_failure(failed_run.run_id, instance),
        tags={
            k: v
            for k, v in failed_run.tags.items()
            if k.startswith("dagster/asset_partition_range")
        },
        raise_on_error=False,
    )
    assert reexecuted.success
    assert instance.get_materialized_partitions(table) == set(partitions)
    merged_by_reexecution = {
        e.partition for e in reexecuted.get_asset_materialization_events() if e.asset_key == table
    }
    # the whole failed range ran again: the 5 merged the first time changed nothing
    day2 = {p for p in partitions if p >= partitions[24]}
    assert merged_by_reexecution == day2
    completed = _latest_check(instance, staged, ck.COMPLETED_EXPORT)
    assert set(completed) == set(partitions) and all(e.passed for e in completed.values())
    for name in ck.GATE_CHECKS:
        latest = _latest_check(instance, staged, name)
        assert set(latest) == set(partitions) and all(e.passed for e in latest.values()), name
    truth = stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(days=DAYS))
    assert differences(truth, warehouse.read_table(session), list(session.key)) == []


@pytest.mark.parametrize(
    "workspace", [{"advance_to": EARLY, "record_count_skew": ()}], indirect=True
)
def test_reexecuting_a_backfills_failed_partitions_loads_them_once_the_exports_exist(
    workspace,  # type: ignore[no-untyped-def]
) -> None:
    from dagster_graphql.test.utils import execute_dagster_graphql

    stack, context, instance = workspace
    session = category("ivr").data_type("ivr_session")
    staged, table = (
        dg.AssetKey(["cxone_staged", session.table]),
        dg.AssetKey(["cxone", session.table]),
    )
    partitions = _partitions("ivr")
    backfill = _backfill(context, instance, [staged, table], partitions)
    assert backfill.status == BulkActionStatus.COMPLETED_FAILED

    stack.world.advance_to(START + timedelta(days=DAYS, hours=8))
    # what the UI's "Re-execute failed partitions" button sends
    result = execute_dagster_graphql(
        context.create_request_context(),
        REEXECUTE_BACKFILL,
        {"params": {"parentRunId": backfill.backfill_id, "strategy": "FROM_FAILURE"}},
    )
    answer = result.data["reexecutePartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    retry_id = answer["backfillId"]
    for _ in range(20):
        list(execute_backfill_iteration(context, LOG))
        retry = instance.get_backfill(retry_id)
        assert retry is not None
        if retry.status != BulkActionStatus.REQUESTED:
            break
    assert retry.status == BulkActionStatus.COMPLETED_SUCCESS
    # only the failed partitions were run again, in one ranged run
    (run,) = instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: retry_id}))
    assert run.tags[ASSET_PARTITION_RANGE_START_TAG] == partition_key(
        START + timedelta(days=1, hours=5)
    )
    assert instance.get_materialized_partitions(table) == set(partitions)
    assert instance.get_materialized_partitions(staged) == set(partitions)
    completed = _latest_check(instance, staged, ck.COMPLETED_EXPORT)
    assert all(e.passed for e in completed.values()) and set(completed) == set(partitions)
    warehouse = DuckDBWarehouse(Path(instance.root_directory).parent / "data" / "warehouse.duckdb")
    truth = stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(days=DAYS))
    assert differences(truth, warehouse.read_table(session), list(session.key)) == []
