"""The truth suite on Snowflake (the emulator): the same loads as on DuckDB, the same tables.

Loads go through the platform's own code path (``load_partition``: API, S3 over HTTP, staging,
gates) and then Snowflake's: COPY from the stage over the export bucket (on moto's S3 server),
dedup and one MERGE per partition. All of it runs in ``make soak``: the emulator spends ~0.2-1 s
per statement, so even six hours (38 partitions) take ~1.5-2.5 min on this machine. The default
run covers the Snowflake merge semantics in ``cxone_sync_tests/warehouse/test_backends.py``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cxone_sync.catalog import all_data_types
from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.warehouse.base import Warehouse
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.ingest.test_truth_e2e import FAULTS
from cxone_sync_tests.truth import assert_tables_equal_truth, load_range

pytest.importorskip("fakesnow", reason="the Snowflake emulator needs the 'local' extra")

from cxone_sync.warehouse.snowflake_emulator import DEFAULT_STAGE, Emulator, S3Wiring
from cxone_sync.warehouse.snowflake_warehouse import SnowflakeWarehouse

_DATABASES = iter(range(1000))


def snowflake_on(emulator: Emulator, stack: LocalStack) -> SnowflakeWarehouse:
    """A fresh database in the emulator, its stage over the stack's export bucket."""
    database = f"TRUTH_{next(_DATABASES)}"
    url = f"s3://{stack.config.bucket}/"
    emulator.create_stage(DEFAULT_STAGE, url, database=database)
    return SnowflakeWarehouse(
        lambda: emulator.connection(database),
        stage=DEFAULT_STAGE,
        stage_url=url,
        s3_client=stack.s3_client(),
    )


def snapshot(warehouse: Warehouse) -> dict[str, pa.Table]:
    return {
        dt.table: warehouse.read_table(dt)
        .drop_columns(["_cxone_loaded_at"])
        .sort_by([(k, "ascending") for k in dt.key])
        for dt in all_data_types()
        if warehouse.table_columns(dt) is not None
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Emulator, Path]]:
    from cxone_sync.simulator.config import SimConfig
    from cxone_sync_tests.fixtures import build_config

    stack = LocalStack(build_config(SimConfig(), **FAULTS))
    stack.world.advance_to(stack.config.start + timedelta(days=2, hours=3))
    emulator = Emulator(S3Wiring(stack.s3_url, SIM_AWS_KEY, SIM_AWS_KEY, SIM_AWS_REGION))
    yield stack, emulator, tmp_path_factory.mktemp("sf")
    emulator.close()
    stack.stop()


def _equal_across_backends(duck: Warehouse, snow: Warehouse) -> None:
    a, b = snapshot(duck), snapshot(snow)
    assert set(a) == set(b)
    for table, rows in a.items():
        other = b[table].select(rows.column_names).cast(rows.schema)
        assert other.equals(rows), table


def _run(
    world: Any,
    start: datetime,
    end: datetime,
    order: list[int] | None = None,
    rerun: bool = True,
) -> None:
    stack, emulator, tmp = world
    snow = snowflake_on(emulator, stack)
    outcomes = load_range(stack, snow, start, end, tmp / "s", order=order)
    blocked = [k for k, o in outcomes.items() if not isinstance(o, str) and o.staged.blocked]
    assert blocked == []
    assert_tables_equal_truth(stack, snow, start, end)
    duck = DuckDBWarehouse(tmp / f"duck-{next(_DATABASES)}.duckdb")
    load_range(stack, duck, start, end, tmp / "d")
    _equal_across_backends(duck, snow)
    if not rerun:
        return
    before = snapshot(snow)
    again = load_range(stack, snow, start, end, tmp / "s2")
    merged = [o.merged for o in again.values() if not isinstance(o, str) and o.merged]
    assert sum(m.files_loaded for m in merged) == 0
    after = snapshot(snow)
    for table, rows in before.items():
        assert rows.equals(after[table]), f"{table} changed on the re-run"


@pytest.mark.soak
def test_six_hours_with_faults_equal_truth_and_duckdb(world: Any) -> None:
    stack = world[0]
    start = stack.config.start
    _run(world, start, start + timedelta(hours=6), rerun=False)


@pytest.mark.soak
def test_two_days_with_faults_equal_truth_and_duckdb(world: Any) -> None:
    stack = world[0]
    start = stack.config.start
    _run(world, start, start + timedelta(days=2))


@pytest.mark.soak
def test_two_days_in_a_shuffled_order_equal_truth(world: Any) -> None:
    stack = world[0]
    start = stack.config.start
    order = list(range(120))
    random.Random(7).shuffle(order)
    _run(world, start, start + timedelta(days=2), order=order)
