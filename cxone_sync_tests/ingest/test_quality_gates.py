"""Each fault of the source against the gates: outcome and severity, the blocked partition absent
while its neighbours load, and a clean re-export repairing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxone_sync.catalog import category
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import PartitionLoadOutcome
from cxone_sync.simulator.config import CountSkew, DriftSpec
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.truth import client_for

START = datetime(2024, 3, 15, tzinfo=UTC)
BAD = START + timedelta(hours=2)
CDR = category("telephony").data_type("cdr")


def _load(stack: Any, warehouse: DuckDBWarehouse, tmp: Path, hour: int) -> PartitionLoadOutcome:
    from cxone_sync.ingest.load import load_partition

    t = START + timedelta(hours=hour)
    with client_for(stack.api_url) as client:
        return load_partition(
            data_type=CDR,
            start=t,
            end=t + timedelta(hours=1),
            source=client,
            s3_client=stack.s3_client(),
            warehouse=warehouse,
            bucket=stack.config.bucket,
            prefix="exports/telephony/",
            staging_dir=tmp / f"stage{hour}-{len(list(tmp.iterdir()))}",
        )


def _outcome(result: PartitionLoadOutcome, name: str) -> ck.CheckOutcome:
    return next(o for o in result.staged.outcomes if o.name == name)


CASES: dict[str, tuple[dict[str, Any], str, bool, str, str | None]] = {
    # name: (faults, check, passed, severity, text in description)
    "count_3pct": (
        {"record_count_skew": (CountSkew("telephony", BAD, 3.0),)},
        ck.RECORD_COUNT,
        True,
        "WARN",
        "within",
    ),
    "count_10pct": (
        {"record_count_skew": (CountSkew("telephony", BAD, 10.0),)},
        ck.RECORD_COUNT,
        False,
        "ERROR",
        "exceeds",
    ),
    "denied_read": ({"denied_read": (BAD,)}, ck.READABLE, False, "ERROR", "kms:Decrypt"),
    "null_keys": ({"null_key_intervals": (BAD,)}, ck.SCHEMA_DRIFT, False, "ERROR", "null"),
    "missing_key": (
        {"drift": (DriftSpec("cdr", BAD, BAD + timedelta(hours=1), "drop_key"),)},
        ck.SCHEMA_DRIFT,
        False,
        "ERROR",
        "call_uuid",
    ),
    "incompatible_type": (
        {"drift": (DriftSpec("cdr", BAD, BAD + timedelta(hours=1), "incompatible_type"),)},
        ck.SCHEMA_DRIFT,
        False,
        "ERROR",
        "incompatibl",
    ),
    "additive": (
        {"drift": (DriftSpec("cdr", BAD, None, "add_column"),)},
        ck.SCHEMA_DRIFT,
        True,
        "WARN",
        "ADD COLUMN",
    ),
    "reordered": (
        {"drift": (DriftSpec("cdr", BAD, None, "reorder"),)},
        ck.SCHEMA_DRIFT,
        True,
        "ERROR",
        None,
    ),
    "widened": (
        {"drift": (DriftSpec("cdr", BAD, None, "widen"),)},
        ck.SCHEMA_DRIFT,
        True,
        "WARN",
        "ALTER COLUMN",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fault_against_gates_and_repair(case: str, make_stack: MakeStack, tmp_path: Path) -> None:
    faults, check, passed, severity, text = CASES[case]
    stack = make_stack(scale=0.2, **faults)
    stack.world.advance_to(START + timedelta(hours=6))
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
    work = tmp_path / "stage"
    work.mkdir()
    for hour in (0, 1):
        assert not _load(stack, warehouse, work, hour).staged.blocked
    result = _load(stack, warehouse, work, 2)
    outcome = _outcome(result, check)
    assert outcome.passed is passed, outcome.description
    assert outcome.severity == severity, outcome.description
    if text:
        assert text in outcome.description, outcome.description
    assert _load(stack, warehouse, work, 3).merged is not None, "the neighbour still loads"
    loaded = {p.partition_key for p in warehouse.partition_loads(CDR)}
    truth = stack.world.ground_truth("telephony", "cdr", START, START + timedelta(hours=4))
    if passed:
        assert result.merged is not None and "2024-03-15-02:00" in loaded
        assert differences(truth, warehouse.read_table(CDR), ["call_uuid"]) == []
        return
    assert result.staged.blocked and result.merged is None
    assert "2024-03-15-02:00" not in loaded
    table = warehouse.read_table(CDR)
    assert set(table.column("_cxone_partition").to_pylist()) == {
        "2024-03-15-00:00",
        "2024-03-15-01:00",
        "2024-03-15-03:00",
    }
    # repair: a clean manual export of the interval supersedes the bad job
    stack.world.manual_export(
        "dl-telephony-prod",
        {
            "category": "telephony",
            "start_time": "2024-03-15T02:00:00Z",
            "end_time": "2024-03-15T03:00:00Z",
            "overwrite": False,
            "destination_prefix": "exports/telephony/backfill/",
        },
    )
    stack.world.advance(timedelta(hours=1))
    repaired = _load(stack, warehouse, work, 2)
    assert not repaired.staged.blocked, [o.description for o in repaired.staged.outcomes]
    assert repaired.merged is not None and repaired.merged.rows_inserted > 0
    assert _outcome(repaired, check).passed
    truth = stack.world.ground_truth("telephony", "cdr", START, START + timedelta(hours=4))
    assert differences(truth, warehouse.read_table(CDR), ["call_uuid"]) == []
