"""End to end: two simulated days of every catalog category with every fault on, the automation
sensors ticking as the daemon would against a real Dagster instance, every run they request
executed, and the BI tables equal to the simulator's truth.

The instance lives in a temporary DAGSTER_HOME: the project's ``dagster.yaml`` plus Dagster's
consolidated SQLite event log (one database file instead of one per run: ~15% faster here).

The default test runs the API faults (429, 5xx, non-JSON, truncated, slow) at rates that still
hit each kind several times, as every retry costs the client a real 1-2 s wait; the ``soak``
test runs them at :meth:`FaultConfig.chaos`'s full rates (``make soak``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from cxone_sync.automation.state import JobsCursor
from cxone_sync.catalog import CATEGORIES as CATALOG
from cxone_sync.catalog import category
from cxone_sync.defs.automation.sensors import RECONCILIATION_SENSOR
from cxone_sync.settings import INSTANCE_TEMPLATE, get_settings
from cxone_sync.simulator.config import FaultConfig, SimConfig
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.defs.test_automation_support import (
    Daemon,
    jobs_of,
    point_platform_at,
    same_rows,
)
from cxone_sync_tests.fixtures import MakeStack

CATEGORIES = tuple(c.name for c in CATALOG)
START = datetime(2024, 3, 15, tzinfo=UTC)
DAYS = 2
STEP = timedelta(minutes=30)
FAILED = (START + timedelta(hours=5, minutes=30), START + timedelta(days=1, hours=13, minutes=10))
TIMED_OUT = (START + timedelta(hours=9, minutes=5),)
"""A named instant fails the interval containing it in every category, hourly and 6-hourly."""
DEFAULT_API_RATES: dict[str, Any] = {
    "api_429_rate": 0.005,
    "api_5xx_rate": 0.005,
    "api_non_json_rate": 0.005,
    "api_truncated_rate": 0.005,
    "api_slow_rate": 0.005,
}
FAULT_KINDS = (
    "failed",
    "timed_out",
    "duplicate_export",
    "placeholder",
    "late_update",
    "stale_redelivery",
    "in_file_duplicate",
    "shuffle_rows",
    "omit_files",
    "api_429",
    "api_5xx",
    "api_non_json",
    "api_truncated",
    "api_slow",
    "api_token_expired",
    "api_token_revoked",
)
"""Every fault kind the run must have met at least once (``world.fault_log``)."""
CONSOLIDATED_EVENT_LOG = """
event_log_storage:
  module: dagster._core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config:
    base_dir: {base_dir}
"""


def chaos_config(**api_rates: Any) -> SimConfig:
    """chaos() with named failed and timed-out intervals and expiring, revoked tokens."""
    faults = dataclasses.replace(
        FaultConfig.chaos(),
        failed_intervals=FAILED,
        timed_out_intervals=TIMED_OUT,
        token_ttl_calls=2,  # a session with a third call meets an expired token
        revoke_tokens_every=150,
        **api_rates,
    )
    return SimConfig(start=START, scale=0.1, categories=CATEGORIES, faults=faults)


def temporary_dagster_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home.mkdir()
    config = INSTANCE_TEMPLATE.read_text()
    config += CONSOLIDATED_EVENT_LOG.format(base_dir=json.dumps(str(home / "history")))
    (home / "dagster.yaml").write_text(config)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.mark.timeout(900)  # ~4 min on a 2-core machine
def test_two_days_of_chaos_end_with_tables_equal_to_truth(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    two_days_of_chaos(chaos_config(**DEFAULT_API_RATES), make_stack, monkeypatch, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_two_days_of_full_chaos_end_with_tables_equal_to_truth(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    two_days_of_chaos(chaos_config(), make_stack, monkeypatch, tmp_path)


def two_days_of_chaos(
    config: SimConfig, make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    began = time.monotonic()
    stack = make_stack(config)
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    home = temporary_dagster_home(tmp_path / "dagster_home", monkeypatch)
    from cxone_sync.definitions import defs as build_defs

    defs = build_defs()
    world = stack.world
    end = START + timedelta(days=DAYS)
    jobs_sensors = [f"{c}_jobs_sensor" for c in CATEGORIES]
    gap_sensors = [f"{c}_gap_sensor" for c in CATEGORIES]

    def failed_intervals() -> set[tuple[str, str]]:
        return {
            (j["category"], j["interval_start"])
            for c in CATEGORIES
            for j in jobs_of(stack, c)
            if j["trigger"] == "SCHEDULED"
            and j["status"] in ("FAILED", "TIMED_OUT")
            and datetime.fromisoformat(j["interval_end"].replace("Z", "+00:00")) <= end
        }

    def recovered(cat: str, interval_start: str) -> bool:
        return any(
            j["status"] == "COMPLETED" and j["interval_start"] == interval_start
            for j in jobs_of(stack, cat)
        )

    with dg.DagsterInstance.get() as instance:
        assert instance.is_persistent and instance.root_directory == str(home)
        daemon = Daemon(defs, instance)
        steps = 0
        while True:
            world.advance(STEP)
            steps += 1
            for name in jobs_sensors:
                daemon.tick(name)
            if steps % 4 == 0:
                for name in gap_sensors:
                    daemon.tick(name)
            if steps % 48 == 0:
                daemon.tick(RECONCILIATION_SENSOR)
            if world.now < end:
                continue
            pending = [f for f in failed_intervals() if not recovered(*f)]
            if not pending or world.now >= end + timedelta(hours=10):
                break
        for name in jobs_sensors:  # after the last move of the clock: nothing left unseen
            daemon.tick(name)

        # every fault kind struck, failures in every category (hourly and 6-hourly ones)
        faults = Counter(f["kind"] for f in world.fault_log)
        assert not [kind for kind in FAULT_KINDS if not faults[kind]], faults
        failures = failed_intervals()
        assert {cat for cat, _ in failures} == set(CATEGORIES), failures
        assert len({f[1] for f in failures}) >= 3, failures

        # every failed interval of the two days was recovered, through a manual export
        for cat, interval_start in failures:
            manual = [
                j
                for j in jobs_of(stack, cat)
                if j["trigger"] == "MANUAL" and j["interval_start"] == interval_start
            ]
            done = [j for j in manual if j["status"] == "COMPLETED"]
            assert done, f"{cat} {interval_start} not recovered: {manual}"
            assert all("/backfill/" in uri for j in done for uri in j["output_files"])
            # no superfluous export: every manual export but the one that completed had failed
            assert len(done) == 1 and all(
                j["status"] in ("FAILED", "TIMED_OUT") for j in manual if j not in done
            ), manual

        # every BI table equals the truth
        warehouse = DuckDBWarehouse(get_settings().duckdb_path)
        for name in CATEGORIES:
            for dt in category(name).data_types:
                truth = world.ground_truth(name, dt.name)
                assert truth.num_rows > 0
                ok, why = same_rows(truth, warehouse.read_table(dt), dt.key)
                assert ok, f"{dt.table}: {why}"

        # no run key ran twice, and the job sensors never asked for one twice
        per_key = daemon.runs_per_run_key()
        assert per_key and max(per_key.values()) == 1
        jobs_requests = {k: n for k, n in daemon.requested.items() if k[0] in jobs_sensors}
        assert max(jobs_requests.values()) == 1
        failed_runs = [(s, r.partition_key) for s, r, ok in daemon.results if not ok]
        assert not failed_runs, failed_runs

        # cursors: high-water mark = newest updated_at the API holds, ids at it recorded
        for name in CATEGORIES:
            cursor = JobsCursor.loads(daemon.cursors[f"{name}_jobs_sensor"])
            jobs = jobs_of(stack, name)
            newest = max(j["updated_at"] for j in jobs)
            assert cursor.position.high_water == datetime.fromisoformat(
                newest.replace("Z", "+00:00")
            )
            assert sorted(cursor.position.seen_at_mark) == sorted(
                f"{j['id']}|{j['status']}" for j in jobs if j["updated_at"] == newest
            )
            assert not [r for r in cursor.owed.values() if not r.exhausted]

        # job events: the last state of every job is in the ledger, every failure too; the
        # state of a job that has not ended (QUEUED, RUNNING) may still wait in its sensor's
        # cursor for the run that records it (the next load, or the job's end): never lost
        with duckdb.connect(str(get_settings().duckdb_path), read_only=True) as con:
            rows = con.execute(
                "SELECT job_id, status, count(*) FROM cxone_sync.job_events GROUP BY ALL"
            ).fetchall()
        ledger = {(job_id, status) for job_id, status, _ in rows}
        assert all(n == 1 for _, _, n in rows)
        for name in CATEGORIES:
            waiting = {
                (e["job_id"], e["status"])
                for e in JobsCursor.loads(daemon.cursors[f"{name}_jobs_sensor"]).unrecorded
            }
            assert all(status in ("QUEUED", "RUNNING") for _, status in waiting), waiting
            for j in jobs_of(stack, name):
                assert (j["id"], j["status"]) in ledger | waiting
        statuses = Counter(status for _, status in ledger)
        assert statuses["FAILED"] + statuses["TIMED_OUT"] >= len(failures)
        manual_jobs: list[dict[str, Any]] = [
            j for c in CATEGORIES for j in jobs_of(stack, c) if j["trigger"] == "MANUAL"
        ]
        print(  # shown with -s: the numbers of the run
            f"\nsimulated until {world.now.isoformat()}: {len(daemon.results)} runs, "
            f"{len(failures)} failed intervals, {len(manual_jobs)} manual exports "
            f"({Counter(j['status'] for j in manual_jobs)}), job events {dict(statuses)}, "
            f"faults {dict(faults.most_common())}, {time.monotonic() - began:.0f} s"
        )
