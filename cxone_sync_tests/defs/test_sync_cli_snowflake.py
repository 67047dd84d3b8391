"""``cxone-sync sync`` with CXONE_WAREHOUSE=snowflake: real Dagster runs, the real connector over
HTTP to the emulator's server (as ``cxone-sync local-snowflake`` serves it), COPY from the
simulator's export bucket. Blocked partition, repair by manual export, re-run: as on DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from cxone_sync.catalog import category
from cxone_sync.cli import main
from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION
from cxone_sync.simulator.config import CountSkew
from cxone_sync.simulator.truth import differences
from cxone_sync_tests.fixtures import MakeStack

pytest.importorskip("fakesnow", reason="the Snowflake emulator needs the 'local' extra")

from cxone_sync.defs.resources import WarehouseResource, build_resources
from cxone_sync.settings import get_settings
from cxone_sync.warehouse.snowflake_emulator import (
    DEFAULT_DATABASE,
    DEFAULT_STAGE,
    Emulator,
    S3Wiring,
    environment,
    serve,
)

START = datetime(2024, 3, 15, tzinfo=UTC)


@pytest.fixture
def env(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Any, Path]]:
    stack = make_stack(
        scale=0.2,
        record_count_skew=(CountSkew("telephony", START + timedelta(hours=2), 10.0),),
        duplicate_export_rate=0.3,
    )
    for key, value in stack.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CXONE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    stack.world.advance_to(START + timedelta(hours=5))
    emulator = Emulator(S3Wiring(stack.s3_url, SIM_AWS_KEY, SIM_AWS_KEY, SIM_AWS_REGION))
    emulator.create_stage(DEFAULT_STAGE, f"s3://{stack.config.bucket}/")
    with serve(emulator) as params:
        for key, value in environment(params, DEFAULT_DATABASE, DEFAULT_STAGE).items():
            monkeypatch.setenv(key, value)
        yield stack, tmp_path
    emulator.close()


@pytest.mark.soak
def test_sync_on_snowflake_blocks_one_partition_then_repairs(env, capsys) -> None:  # type: ignore[no-untyped-def]
    stack, _tmp = env
    args = ["sync", "--start", "2024-03-15T00:00Z", "--end", "2024-03-15T04:00Z"]
    code = main([*args, "--category", "telephony"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "record_count" in out and "2024-03-15-02:00" in out
    with dg.DagsterInstance.get() as instance:
        table_key = dg.AssetKey(["cxone", "telephony__cdr"])
        assert instance.get_materialized_partitions(table_key) == {
            f"2024-03-15-{h:02d}:00" for h in (0, 1, 3)
        }
        pools = instance.event_log_storage.get_pool_limits()
        assert {p.name: p.limit for p in pools}.get("cxone_warehouse") == 8
    resource = build_resources(get_settings())["warehouse"]
    assert isinstance(resource, WarehouseResource) and resource.kind == "snowflake"
    warehouse = resource.get()
    cdr = category("telephony").data_type("cdr")
    partitions = set(warehouse.read_table(cdr).column("_cxone_partition").to_pylist())
    assert partitions == {f"2024-03-15-{h:02d}:00" for h in (0, 1, 3)}

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
    repair = ["sync", "--start", "2024-03-15T02:00Z", "--end", "2024-03-15T03:00Z"]
    assert main([*repair, "--category", "telephony"]) == 0
    for dt in category("telephony").data_types:
        truth = stack.world.ground_truth("telephony", dt.name, START, START + timedelta(hours=4))
        assert differences(truth, warehouse.read_table(dt), list(dt.key)) == [], dt.table
    before = warehouse.read_table(cdr).sort_by("call_uuid").drop_columns(["_cxone_loaded_at"])
    assert main([*args, "--category", "telephony"]) == 0
    after = warehouse.read_table(cdr).sort_by("call_uuid").drop_columns(["_cxone_loaded_at"])
    assert after.equals(before)
