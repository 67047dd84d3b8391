"""Two simulated days of all six categories, with the source misbehaving, against the truth.

Loads go through the platform's own code path (``load_partition``: API, S3 over HTTP, staging,
gates, MERGE into a DuckDB file); the Dagster wiring of the same code is tested in
``cxone_sync_tests/defs``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from cxone_sync.catalog import all_data_types
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.truth import assert_tables_equal_truth, load_range

FAULTS = dict(
    scale=0.3,
    duplicate_export_rate=0.15,
    late_update_rate=0.05,
    late_update_delay=timedelta(hours=20),
    stale_redelivery_rate=0.05,
    in_file_duplicate_rate=0.05,
    placeholder_rate=0.3,
    omit_files_rate=0.1,
)


def snapshot(warehouse: DuckDBWarehouse) -> dict[str, pa.Table]:
    return {
        dt.table: warehouse.read_table(dt).sort_by([(k, "ascending") for k in dt.key])
        for dt in all_data_types()
    }


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from cxone_sync.simulator.config import SimConfig
    from cxone_sync_tests.fixtures import build_config

    stack = LocalStack(build_config(SimConfig(), **FAULTS))
    start = stack.config.start
    end = start + timedelta(days=2)
    stack.world.advance_to(end + timedelta(hours=3))
    yield stack, start, end, tmp_path_factory.mktemp("e2e")
    stack.stop()


@pytest.fixture(scope="module")
def ordered_load(two_days):  # type: ignore[no-untyped-def]
    """The reference load: every partition once, in time order."""
    stack, start, end, tmp = two_days
    warehouse = DuckDBWarehouse(tmp / "ordered.duckdb")
    outcomes = load_range(stack, warehouse, start, end, tmp / "staging_ordered")
    return warehouse, outcomes


def test_two_days_equal_truth_and_rerun_changes_nothing(two_days, ordered_load) -> None:  # type: ignore[no-untyped-def]
    stack, start, end, tmp = two_days
    kinds = {entry["kind"] for entry in stack.world.fault_log}
    assert {"duplicate_export", "late_update", "stale_redelivery", "in_file_duplicate"} <= kinds

    warehouse, outcomes = ordered_load
    blocked = [k for k, o in outcomes if not isinstance(o, str) and o.staged.blocked]
    assert blocked == []
    counts = assert_tables_equal_truth(stack, warehouse, start, end)
    assert counts["telephony__cdr"] > 1000
    merged = [o.merged for o in outcomes.values() if not isinstance(o, str) and o.merged]
    assert sum(m.duplicates_dropped for m in merged) > 0, "in-file duplicates were dropped"
    assert sum(m.rows_stale for m in merged) > 0, "stale re-deliveries and duplicate jobs ignored"

    before = snapshot(warehouse)
    again = load_range(stack, warehouse, start, end, tmp / "staging2")
    after = snapshot(warehouse)
    for table, rows in before.items():
        assert rows.equals(after[table]), f"{table} changed on the second run"
    second = [o.merged for o in again.values() if not isinstance(o, str) and o.merged]
    assert sum(m.rows_inserted + m.rows_updated for m in second) == 0
    assert sum(m.files_loaded for m in second) == 0, "files in the audit ledger are skipped"


def test_any_order_gives_the_same_tables(two_days, ordered_load) -> None:  # type: ignore[no-untyped-def]
    stack, start, end, tmp = two_days
    ordered, _ = ordered_load
    shuffled = DuckDBWarehouse(tmp / "shuffled.duckdb")
    order = list(range(120))
    random.Random(7).shuffle(order)
    # random partitions first (some twice), then every partition once more
    load_range(stack, shuffled, start, end, tmp / "s_shuffled", order=order)
    assert_tables_equal_truth(stack, shuffled, start, end)
    a, b = snapshot(ordered), snapshot(shuffled)
    for table in a:
        cols = [c for c in a[table].column_names if c != "_cxone_loaded_at"]
        assert a[table].select(cols).equals(b[table].select(cols)), table


def test_killed_mid_way_then_rerun_equals_truth(two_days, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A loader process killed with SIGKILL mid-way leaves nothing half-written."""
    stack, start, end, _ = two_days
    db = tmp_path / "killed.duckdb"
    progress = tmp_path / "progress"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxone_sync_tests.ingest.killable_loader",
            str(db),
            stack.api_url,
            stack.s3_url,
            stack.config.bucket,
            start.isoformat(),
            end.isoformat(),
            str(tmp_path / "stage"),
            str(progress),
        ],
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if progress.exists() and int(progress.read_text() or 0) >= 20:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = int(progress.read_text())
    assert done >= 20, "the loader was killed after loading some partitions"
    warehouse = DuckDBWarehouse(db)
    partial = sum(
        warehouse.read_table(dt).num_rows
        for dt in all_data_types()
        if warehouse.table_columns(dt) is not None
    )
    assert partial > 0
    load_range(stack, warehouse, start, end, tmp_path / "stage_rerun")
    assert_tables_equal_truth(stack, warehouse, start, end)
