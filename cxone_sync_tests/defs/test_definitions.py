"""The whole code location loads, and every data type has its assets, checks, jobs and pools."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from cxone_sync.catalog import CATEGORIES, all_data_types
from cxone_sync.definitions import defs as build_defs
from cxone_sync.defs.ingest.names import WAREHOUSE_POOL, load_step_name, staged_key, table_key
from cxone_sync.ingest import checks as ck
from cxone_sync.settings import get_settings


def test_every_data_type_has_its_chain_and_blocking_partitioned_checks() -> None:
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    for dt in all_data_types():
        staged = defs.resolve_assets_def(staged_key(dt))
        table = defs.resolve_assets_def(table_key(dt))
        # one step stages and merges: a re-execution from failure re-stages what it merges
        assert staged is table and staged.op.name == load_step_name(dt)
        assert not staged.can_subset
        assert staged_key(dt) in graph.get(table_key(dt)).parent_keys
        assert table.group_names_by_key[table_key(dt)] == dt.category
        specs = {s.name: s for s in staged.check_specs if s.asset_key == staged_key(dt)}
        assert set(specs) == set(ck.BLOCKING_CHECKS)
        assert ck.COMPLETED_EXPORT in specs
        for spec in specs.values():
            assert spec.blocking, spec.name
            assert spec.partitions_def == staged.partitions_def, spec.name
        table_checks = [s for s in table.check_specs if s.asset_key == table_key(dt)]
        assert {s.name for s in table_checks} == {ck.RECOVERED}
        assert not any(s.blocking for s in table_checks)
        assert staged.op.pool == WAREHOUSE_POOL
        assert "duckdb" in table.specs_by_key[table_key(dt)].kinds


def test_partitions_follow_the_catalog() -> None:
    defs = build_defs()
    for cat in CATEGORIES:
        pdef = defs.resolve_assets_def(table_key(cat.data_types[0])).partitions_def
        assert isinstance(pdef, dg.TimeWindowPartitionsDefinition)
        keys = pdef.get_partition_keys_in_range(
            dg.PartitionKeyRange("2024-03-15-00:00", "2024-03-15-12:00")
        )
        assert len(keys) == (13 if cat.hours == 1 else 3), cat.name


def test_jobs_sensors_and_storage_checks_are_registered() -> None:
    defs = build_defs()
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    for cat in CATEGORIES:
        assert f"sync_{cat.name}_job" in jobs
    assert {"sync_hourly_categories_job", "sync_6h_categories_job"} <= jobs
    # the sensors' side effects run as jobs of their own (a sensor evaluation writes nothing)
    assert {"record_job_events_job", "request_manual_export_job"} <= jobs
    for cat in CATEGORIES:
        targets = defs.resolve_sensor_def(f"{cat.name}_gap_sensor").targets
        assert [t.job_name for t in targets] == ["request_manual_export_job"]
    sensors = {s.name for s in defs.sensors or []}
    for cat in CATEGORIES:
        assert f"{cat.name}_jobs_sensor" in sensors
    assert "staging_cleanup_sensor" in sensors and "clean_staging_job" in jobs
    bucket_checks = [
        k
        for k in defs.resolve_asset_graph().asset_check_keys
        if k.asset_key == dg.AssetKey(["s3", "cxone_export_bucket"])
    ]
    assert len(bucket_checks) == 5


def test_jobs_sensor_interval_is_configurable_per_category(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXONE_JOBS_SENSOR_INTERVALS", '{"workforce_management": 3600}')
    defs = build_defs()
    wfm = defs.resolve_sensor_def("workforce_management_jobs_sensor")
    ivr = defs.resolve_sensor_def("ivr_jobs_sensor")
    assert (wfm.minimum_interval_seconds, ivr.minimum_interval_seconds) == (3600, 25 * 60)

    monkeypatch.setenv("CXONE_JOBS_SENSOR_INTERVALS", '{"telephone": 600}')
    with pytest.raises(ValueError, match="unknown categories \\['telephone'\\]"):
        get_settings()
    monkeypatch.setenv("CXONE_JOBS_SENSOR_INTERVALS", "{telephony: 600}")
    with pytest.raises(ValueError, match="CXONE_JOBS_SENSOR_INTERVALS must be a JSON object"):
        get_settings()


def test_the_duckdb_code_location_does_not_import_the_snowflake_stack() -> None:
    # every run process and code server loads the definitions: on DuckDB they must not pay for
    # dagster-snowflake (snowflake.core, snowpark: seconds of CPU per process)
    probe = (
        "import sys; from cxone_sync.definitions import defs; d = defs(); "
        "print(sorted(m for m in sys.modules if m.startswith(('dagster_snowflake', 'snowflake.'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "CXONE_"))}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
