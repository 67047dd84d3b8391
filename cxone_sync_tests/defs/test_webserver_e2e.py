"""As a user works: the real ``dagster-webserver`` and daemon on an on-disk instance, driven
through the webserver's GraphQL API (what the UI sends), against the simulator stack.

One module-scoped world: six hours of IVR exports, one hour's manifest overstating its rows by 10%
(``record_count`` fails for that partition). A UI backfill of the six hours is launched with
``launchPartitionBackfill``; per-partition check results and materializations are read back
through GraphQL. A run started by ``cxone-sync sync`` is re-executed from the UI's API. After a
manual export repairs the bad hour, ``reexecutePartitionBackfill`` loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxone_sync.catalog import category, partition_key
from cxone_sync.simulator.config import CountSkew, FaultConfig, SimConfig
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.dagster_processes import (
    TERMINAL,
    DagsterProcesses,
    dagster_processes,
    wait_for,
)

START = datetime(2024, 3, 15, tzinfo=UTC)
DAY = START + timedelta(days=1)
HOURS = 6
BAD = DAY + timedelta(hours=3)
"""The hour whose manifest overstates its rows by 10%: ``record_count`` blocks it."""
IVR = category("ivr")
SESSION = IVR.data_type("ivr_session")
STAGED = ["cxone_staged", SESSION.table]
TABLE = ["cxone", SESSION.table]
PARTITIONS = [partition_key(t) for t in IVR.interval_starts(DAY, DAY + timedelta(hours=HOURS))]
BLOCKING = ("record_count", "checksum", "schema_drift", "readable_through_kms", "file_location")

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}"""
REEXECUTE_BACKFILL = """
mutation($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}"""
BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions
      runs(limit: 50) { runId status tags { key value } }
    }
  }
}"""
CHECK_EXECUTIONS = """
query($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 500) {
    runId partition status
    evaluation { success partition description severity }
  }
}"""
MATERIALIZATIONS = """
query($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } }
  }
}"""
RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run {
      runId status jobName parentRunId
      repositoryOrigin { repositoryLocationName repositoryName }
    }
  }
}"""
REEXECUTE_RUN = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
  }
}"""


@dataclass
class World:
    stack: LocalStack
    dagster: DagsterProcesses
    backfill_id: str

    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.dagster.data_dir / "warehouse.duckdb")


def wait_backfill(dagster: DagsterProcesses, backfill_id: str, timeout: float = 180) -> Any:
    def done() -> Any:
        data = dagster.graphql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        assert data["__typename"] == "PartitionBackfill", data
        return data if data["status"] in TERMINAL else None

    try:
        return wait_for(f"backfill {backfill_id}", done, timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{dagster.log_tail()}") from None


def wait_run(dagster: DagsterProcesses, run_id: str, timeout: float = 120) -> Any:
    def done() -> Any:
        run = dagster.graphql(RUN, id=run_id)["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    try:
        return wait_for(f"run {run_id}", done, timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{dagster.log_tail()}") from None


def checks_by_partition(dagster: DagsterProcesses, asset: list[str], check: str) -> dict:
    executions = dagster.graphql(CHECK_EXECUTIONS, key={"path": asset}, check=check)
    latest: dict[str, Any] = {}
    for execution in executions["assetCheckExecutions"]:  # newest first
        latest.setdefault(execution["partition"], execution)
    return latest


def materialized(dagster: DagsterProcesses, asset: list[str]) -> set[str]:
    data = dagster.graphql(MATERIALIZATIONS, key={"path": asset}, partitions=PARTITIONS)
    return {m["partition"] for m in data["assetOrError"]["assetMaterializations"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    faults = FaultConfig(record_count_skew=(CountSkew("ivr", BAD, 10.0),))
    stack = LocalStack(SimConfig(start=START, scale=0.05, categories=("ivr",), faults=faults))
    try:
        stack.world.advance_to(DAY + timedelta(hours=HOURS + 2))
        with dagster_processes(stack, tmp_path_factory.mktemp("webserver")) as dagster:
            launched = dagster.graphql(
                LAUNCH_BACKFILL,
                params={
                    "assetSelection": [{"path": STAGED}, {"path": TABLE}],
                    "partitionNames": PARTITIONS,
                },
            )["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]
            wait_backfill(dagster, backfill_id)
            yield World(stack, dagster, backfill_id)
    finally:
        stack.stop()


def test_ui_backfill_reports_checks_and_materializations_per_partition(world: World) -> None:
    dagster = world.dagster
    backfill = dagster.graphql(BACKFILL, id=world.backfill_id)["partitionBackfillOrError"]
    assert backfill["status"] == "COMPLETED_FAILED"
    assert backfill["numPartitions"] == HOURS
    (run,) = backfill["runs"]  # up to 24 partitions per run: one ranged run, not one per hour
    tags = {t["key"]: t["value"] for t in run["tags"]}
    span = (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])
    assert span == (PARTITIONS[0], PARTITIONS[-1])
    assert run["status"] == "FAILURE"
    bad = partition_key(BAD)

    # every blocking check evaluated once per partition; record_count red exactly on the bad hour
    record_count = checks_by_partition(dagster, STAGED, "record_count")
    assert set(record_count) == set(PARTITIONS)
    failed = {p for p, e in record_count.items() if not e["evaluation"]["success"]}
    assert failed == {bad}
    evaluation = record_count[bad]["evaluation"]
    assert evaluation["severity"] == "ERROR" and evaluation["partition"] == bad
    assert record_count[bad]["status"] == "FAILED"
    assert {e["status"] for p, e in record_count.items() if p != bad} == {"SUCCEEDED"}
    for check in BLOCKING[1:]:
        executions = checks_by_partition(dagster, STAGED, check)
        assert set(executions) == set(PARTITIONS), check
        assert all(e["evaluation"]["success"] for e in executions.values()), check

    # the BI table is materialized for every partition but the blocked one, and holds its rows
    assert materialized(dagster, TABLE) == set(PARTITIONS) - {bad}
    loaded = set(world.warehouse().read_table(SESSION).column("_cxone_partition").to_pylist())
    assert loaded == set(PARTITIONS) - {bad}


def test_cli_run_is_first_class_and_reexecutes_through_graphql(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxone_sync.cli import main

    dagster = world.dagster
    for name, value in dagster.env.items():
        monkeypatch.setenv(name, value)
    day0 = ["--start", "2024-03-15T00:00Z", "--end", "2024-03-15T02:00Z", "--category", "ivr"]
    assert main(["sync", *day0]) == 0
    runs = dagster.graphql(
        '{ runsOrError(filter: {tags: [{key: "cxone/trigger", value: "cli-sync"}]}) '
        "{ ... on Runs { results { runId } } } }"
    )["runsOrError"]["results"]
    assert len(runs) == 1
    parent = dagster.graphql(RUN, id=runs[0]["runId"])["runOrError"]
    # the code-location origin: what puts a run on the Overview timeline and lets it re-execute
    assert parent["repositoryOrigin"] == {
        "repositoryLocationName": "cxone_sync",
        "repositoryName": "__repository__",
    }
    assert parent["status"] == "SUCCESS"

    launched = dagster.graphql(
        REEXECUTE_RUN, params={"parentRunId": parent["runId"], "strategy": "ALL_STEPS"}
    )["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    child = wait_run(dagster, launched["run"]["runId"])
    assert child["status"] == "SUCCESS", dagster.log_tail()
    assert child["parentRunId"] == parent["runId"]
    assert child["jobName"] == parent["jobName"]
    truth = world.stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=2))
    table = world.warehouse().read_table(SESSION)
    mine = table.filter(
        [
            p in ("2024-03-15-00:00", "2024-03-15-01:00")
            for p in table["_cxone_partition"].to_pylist()
        ]
    )
    assert mine.num_rows == truth.num_rows and differences(truth, mine, list(SESSION.key)) == []


def test_reexecuting_the_failed_backfill_after_a_manual_export_loads_every_partition(
    world: World,
) -> None:
    dagster = world.dagster
    bad = partition_key(BAD)
    world.stack.world.manual_export(
        "dl-ivr-prod",
        {
            "category": "ivr",
            "start_time": BAD.isoformat().replace("+00:00", "Z"),
            "end_time": (BAD + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "overwrite": False,
            "destination_prefix": "exports/ivr/backfill/",
        },
    )
    world.stack.world.advance(timedelta(hours=1))

    launched = dagster.graphql(
        REEXECUTE_BACKFILL, params={"parentRunId": world.backfill_id, "strategy": "FROM_FAILURE"}
    )["reexecutePartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    again = wait_backfill(dagster, launched["backfillId"])
    assert again["status"] == "COMPLETED_SUCCESS", dagster.log_tail()
    # both layers re-ran for the failed partition only
    (run,) = again["runs"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/partition", tags.get("dagster/asset_partition_range_start")) == bad

    assert materialized(dagster, TABLE) == set(PARTITIONS)
    for check in BLOCKING:
        executions = checks_by_partition(dagster, STAGED, check)
        assert all(e["evaluation"]["success"] for e in executions.values()), check
    truth = world.stack.world.ground_truth("ivr", "ivr_session", DAY, DAY + timedelta(hours=HOURS))
    table = world.warehouse().read_table(SESSION)
    day = table.filter([p in PARTITIONS for p in table["_cxone_partition"].to_pylist()])
    assert differences(truth, day, list(SESSION.key)) == []
