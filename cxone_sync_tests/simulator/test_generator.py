"""Row generation and file plans (pure, no S3), and the simulator's config round trip."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cxone_sync.catalog import DEFAULT_OFFSET, UPDATED_AT, DataType, all_data_types, category
from cxone_sync.simulator import generator as gen
from cxone_sync.simulator.config import CountSkew, DriftKind, DriftSpec, FaultConfig, SimConfig
from cxone_sync_tests.simulator.test_world import T0

CONFIG = SimConfig(scale=0.1, start=T0)
CDR = category("telephony").data_type("cdr")
LATER = T0 + timedelta(days=1)


def build(
    config: SimConfig = CONFIG, dt: DataType = CDR, interval: datetime = T0, null_keys: bool = False
) -> pa.Table:
    return gen.materialize(gen.plan_file(config, dt, interval, order_salt="t", null_keys=null_keys))


@pytest.mark.parametrize("dt", all_data_types(), ids=lambda d: d.name)
def test_every_data_type_has_unique_non_null_keys_and_utc_updated_at(dt: DataType) -> None:
    cat = category(dt.category)
    table = build(dt=dt)
    assert table.num_rows == gen.rows_per_interval(CONFIG.seed, CONFIG.scale, dt, T0)
    keys = table.select(list(dt.key))
    assert all(keys[k].null_count == 0 for k in dt.key)
    assert len(set(zip(*(keys[k].to_pylist() for k in dt.key), strict=True))) == table.num_rows
    assert table.schema.field(UPDATED_AT).type == pa.timestamp("us", tz="UTC")
    updated = table[UPDATED_AT]
    assert pc.min(updated).as_py() >= T0
    assert pc.max(updated).as_py() <= T0 + cat.interval + DEFAULT_OFFSET + cat.lag_min
    assert len(table.column_names) >= 10
    for name in dt.key:
        assert pa.types.is_string(table.schema.field(name).type) or pa.types.is_timestamp(
            table.schema.field(name).type
        )


def test_rows_are_deterministic_by_seed_and_scale_linearly() -> None:
    assert build().equals(build())
    other = build(SimConfig(scale=0.1, start=T0, seed=43))
    assert set(other["call_uuid"].to_pylist()).isdisjoint(build()["call_uuid"].to_pylist())
    assert build(dt=CDR, interval=T0 + timedelta(hours=1))["call_uuid"].to_pylist() != (
        build()["call_uuid"].to_pylist()
    )
    ten = gen.rows_per_interval(1, 10.0, CDR, T0)
    one = gen.rows_per_interval(1, 1.0, CDR, T0)
    assert 2500 < one < 3500 and abs(ten - 10 * one) <= 10


def test_unshuffled_rows_are_in_event_order_and_shuffled_ones_are_not() -> None:
    ordered = build(SimConfig(scale=0.1, start=T0, faults=FaultConfig(shuffle_rows=False)))
    starts = ordered["contact_start"].to_pylist()
    assert starts == sorted(starts)
    shuffled = build()["contact_start"].to_pylist()
    assert shuffled != sorted(shuffled) and sorted(shuffled) == starts


def test_streamed_parquet_in_row_groups_equals_the_materialized_file() -> None:
    faults = FaultConfig(late_update_rate=0.1, in_file_duplicate_rate=0.1)
    plan = gen.plan_file(SimConfig(scale=0.2, start=T0, faults=faults), CDR, LATER, order_salt=1)
    sink = io.BytesIO()
    assert gen.write_parquet(plan, sink, "zstd", batch_rows=100) == plan.num_rows
    parquet = pq.ParquetFile(io.BytesIO(sink.getvalue()))
    assert parquet.metadata.num_row_groups == -(-plan.num_rows // 100)
    assert parquet.read().equals(gen.materialize(plan))


def test_late_stale_and_in_file_versions_reuse_keys_with_newer_or_older_updated_at() -> None:
    faults = FaultConfig(
        late_update_rate=0.1, stale_redelivery_rate=0.1, in_file_duplicate_rate=0.1
    )
    config = SimConfig(scale=0.2, start=T0, faults=faults)
    plan = gen.plan_file(config, CDR, LATER, order_salt=1)
    assert all(plan.rows_of(v) > 0 for v in (gen.LATE_UPDATE, gen.STALE, gen.IN_FILE_DUPLICATE))
    earlier = build(config, interval=T0)
    first = dict(
        zip(earlier["call_uuid"].to_pylist(), earlier[UPDATED_AT].to_pylist(), strict=True)
    )
    rows = gen.materialize(plan).to_pylist()
    reused = [r for r in rows if r["call_uuid"] in first]
    newer = [r for r in reused if r[UPDATED_AT] > first[r["call_uuid"]]]
    older = [r for r in reused if r[UPDATED_AT] < first[r["call_uuid"]]]
    assert len(newer) == plan.rows_of(gen.LATE_UPDATE)
    assert len(older) == plan.rows_of(gen.STALE)
    assert all(r[UPDATED_AT] >= LATER for r in newer)
    keys = [r["call_uuid"] for r in rows if r["call_uuid"] not in first]
    assert len(keys) - len(set(keys)) == plan.rows_of(gen.IN_FILE_DUPLICATE)


def test_null_keys_only_on_the_intervals_own_rows() -> None:
    table = build(null_keys=True)
    assert 1 <= table["call_uuid"].null_count < table.num_rows * 0.05


@pytest.mark.parametrize(
    ("kind", "column", "check"),
    [
        ("add_column", "queue_name", lambda t: t.schema.field("queue_name").type == pa.string()),
        ("reorder", None, lambda t: t.column_names[0] == UPDATED_AT),
        ("widen", "talk_seconds", lambda t: t.schema.field("talk_seconds").type == pa.int64()),
        ("drop_column", "ani", lambda t: "ani" not in t.column_names),
        ("drop_key", None, lambda t: "call_uuid" not in t.column_names),
        ("incompatible_type", None, lambda t: t.schema.field("contact_id").type == pa.string()),
    ],
)
def test_drift_kinds_change_the_schema(
    kind: DriftKind, column: str | None, check: Callable[[pa.Table], bool]
) -> None:
    spec = DriftSpec("cdr", T0, T0 + timedelta(hours=1), kind, column)
    config = SimConfig(scale=0.05, start=T0, faults=FaultConfig(drift=(spec,)))
    drifted = build(config)
    assert check(drifted)
    assert drifted.num_rows == build(SimConfig(scale=0.05, start=T0)).num_rows
    assert build(config, interval=T0 + timedelta(hours=1)).schema == gen.base_schema(CDR)
    assert spec.breaking(CDR) == (kind in ("drop_key", "incompatible_type"))
    clean = gen.plan_file(config, CDR, T0, order_salt=0, clean=True)
    assert clean.drift == (() if spec.breaking(CDR) else (spec,))


def test_config_round_trips_through_json() -> None:
    config = SimConfig(
        seed=9,
        scale=2.5,
        categories=("telephony", "speech"),
        faults=FaultConfig(
            failed_intervals=(T0,),
            late_update_delay=timedelta(hours=6),
            drift=(DriftSpec("cdr", T0, None, "widen", "talk_seconds"),),
            record_count_skew=(CountSkew("telephony", T0, -7.5),),
            api_429_rate=0.1,
        ),
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["start"] == "2024-03-15T00:00:00Z"
    assert data["faults"]["failed_intervals"] == ["2024-03-15T00:00:00Z"]
    assert SimConfig.from_dict(data) == config
    assert SimConfig.from_dict({}) == SimConfig()
    chaos = FaultConfig.chaos()
    assert chaos.failed_rate > 0 and chaos.late_update_rate > 0 and chaos.api_429_rate > 0
    assert chaos.shuffle_rows and chaos.omit_files_rate > 0 and chaos.drift == ()


@pytest.mark.parametrize(
    "data",
    [
        {"scale": 0},
        {"compression": "gzip"},
        {"categories": ["nope"]},
        {"faults": {"failed_rate": 1.5}},
        {"faults": {"drift": [{"data_type": "cdr", "start": "2024-03-15T00:00:00Z", "kind": "x"}]}},
        {"colour": "blue"},
        {"start": "2024-03-15T00:30:00Z"},
    ],
)
def test_config_rejects_invalid_values(data: dict[str, object]) -> None:
    with pytest.raises((ValueError, KeyError)):
        SimConfig.from_dict(data)
