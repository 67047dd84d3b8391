"""CXONE_SOURCE=reporting end to end: the world's records through the fake Reporting API
(updatedSince with a literal Z, skip/top paging, 204 at the end, 429), the bridge and the
platform's load path into DuckDB; a partition holds the records updated in it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cxone_sync.bridge.pacing import FakeClock
from cxone_sync.bridge.reporting import records_to_table
from cxone_sync.bridge.source import build_bridge
from cxone_sync.catalog import category
from cxone_sync.cxone.models import JobStatus
from cxone_sync.ingest.load import load_partition
from cxone_sync.settings import Settings
from cxone_sync.simulator.extraction import (
    FAKE_ACCESS_KEY_ID,
    FAKE_ACCESS_KEY_SECRET,
    FAKE_CLIENT_ID,
    FAKE_CLIENT_SECRET,
    ExtractionFake,
    FakeConfig,
    world_reports,
)
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack

CATEGORIES = ["ivr", "quality_management"]


def test_reporting_through_the_bridge_equals_the_truth_by_update_time(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = make_stack(scale=0.1)
    start = stack.config.start
    end = start + timedelta(hours=6)
    stack.world.advance_to(end + timedelta(hours=3))
    clock = FakeClock()
    reports, mapping = world_reports(stack.world, CATEGORIES)
    config = FakeConfig(page_size=400, reporting_busy_calls=2)
    with ExtractionFake(
        lambda *a: pa.table({}), {}, clock=clock, config=config, reports=reports
    ) as fake:
        for key, value in {
            **stack.environment(),
            "CXONE_SOURCE": json.dumps({c: "reporting" for c in CATEGORIES}),
            "CXONE_EXTRACTION_ENTITIES": mapping,
            "CXONE_AUTH_URL": fake.url,
            "CXONE_CLIENT_ID": FAKE_CLIENT_ID,
            "CXONE_CLIENT_SECRET": FAKE_CLIENT_SECRET,
            "CXONE_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "CXONE_ACCESS_KEY_SECRET": FAKE_ACCESS_KEY_SECRET,
            "CXONE_DATA_DIR": str(tmp_path),
        }.items():
            monkeypatch.setenv(key, value)
        bridge = build_bridge(
            Settings(),
            stack.s3.writer_client(),
            clock=clock,
            sleep=clock.sleep,
            now=lambda: stack.world.now,
        )
        jobs = [j for c in CATEGORIES for j in bridge.sync(c, start, end)]
        calls = [r for r in fake.requests if r.path.startswith("/inContactAPI/")]

    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 7
    assert fake.refusals == [429, 429]
    first = calls[0]
    assert first.auth == "bearer"
    assert first.query["updatedSince"] == ["2024-03-15T00:00:00Z"]
    assert first.query["skip"] == ["0"] and first.query["top"] == ["10000"]
    assert any(int(r.query["skip"][0]) >= 400 for r in calls), "paged with skip"

    warehouse = DuckDBWarehouse(tmp_path / "reporting.duckdb")
    source = bridge.source
    for name in CATEGORIES:
        cat = category(name)
        prefix = source.download_config(name).destination.prefix
        for dt in cat.data_types:
            for t in cat.interval_starts(start, end):
                outcome = load_partition(
                    data_type=dt,
                    start=t,
                    end=t + cat.interval,
                    source=source,
                    s3_client=stack.s3_client(),
                    warehouse=warehouse,
                    bucket=stack.config.bucket,
                    prefix=prefix,
                    staging_dir=tmp_path / "staging" / dt.table / f"{t:%Y%m%d%H}",
                )
                assert outcome.merged is not None, outcome.reason
            everything = stack.world.ground_truth(name, dt.name)
            stamps = everything.column("updated_at")
            lo = pa.scalar(start, stamps.type)
            hi = pa.scalar(end, stamps.type)
            expected = everything.filter(pc.and_(pc.greater_equal(stamps, lo), pc.less(stamps, hi)))
            table = warehouse.read_table(dt)
            assert table.num_rows > 0
            assert differences(expected, table, list(dt.key)) == [], dt.table


def test_json_records_get_declared_types_and_text_for_the_rest() -> None:
    records: list[dict[str, Any]] = [
        {"contactId": 7, "lastUpdateTime": "2024-03-15T14:30:00Z", "tags": ["a"], "n": 3},
        {"contactId": 8, "lastUpdateTime": "2024-03-15T15:30:00Z", "tags": None, "n": None},
        {"contactId": 9, "lastUpdateTime": None, "note": "no time"},
    ]
    table = records_to_table(
        records,
        {"contactId": "int64", "lastUpdateTime": "timestamp"},
        what="t",
        updated_at="lastUpdateTime",
        start=datetime.fromisoformat("2024-03-15T14:00:00+00:00"),
        end=datetime.fromisoformat("2024-03-15T15:00:00+00:00"),
    )
    # 15:30 belongs to a later partition; a record without a time is kept (the gate blocks)
    assert table.column("contactId").to_pylist() == [7, 9]
    assert table.schema.field("contactId").type == pa.int64()
    assert table.column("tags").to_pylist() == ['["a"]', None]
    assert table.column("n").to_pylist() == ["3", None]
    assert table.column("updated_at").null_count == 1
