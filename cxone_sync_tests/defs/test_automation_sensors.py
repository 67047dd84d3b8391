"""The automation sensors, tick by tick, against the simulator over real sockets and a real
Dagster instance: run requests, run keys, cursors, job events, manual exports, observations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cxone_sync.automation.state import GapCursor, JobsCursor, StreamPosition
from cxone_sync.catalog import category
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.untrusted import label
from cxone_sync.defs.automation.sensors import RECONCILIATION_SENSOR
from cxone_sync.defs.automation.tick_common import RECOVERY_METADATA, TAG_JOB_ID
from cxone_sync.defs.ingest.names import table_key
from cxone_sync.ingest import checks as ck
from cxone_sync.settings import get_settings
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.defs.test_automation_support import (
    Daemon,
    carried_events,
    exports,
    jobs_of,
    loads,
    point_platform_at,
    same_rows,
)
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.lockholder import LockHolder, release_after_waits

START = datetime(2024, 3, 15, tzinfo=UTC)


class Platform:
    def __init__(self, stack: LocalStack, daemon: Daemon) -> None:
        self.stack = stack
        self.world = stack.world
        self.daemon = daemon
        self.instance = daemon.instance

    def manual_jobs(self, cat: str) -> list[dict[str, Any]]:
        return [j for j in jobs_of(self.stack, cat) if j["trigger"] == "MANUAL"]

    def events(self) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(get_settings().duckdb_path), read_only=True) as con:
            return con.execute(
                "SELECT job_id, status, updated_at FROM cxone_sync.job_events ORDER BY ALL"
            ).fetchall()


@pytest.fixture
def platform(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., Platform]]:
    instances: list[dg.DagsterInstance] = []

    def factory(env: dict[str, str] | None = None, **overrides: Any) -> Platform:
        overrides.setdefault("scale", 0.05)
        overrides.setdefault("categories", ("ivr", "workforce_management"))
        stack = make_stack(start=START, **overrides)
        point_platform_at(stack, monkeypatch, tmp_path)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        from cxone_sync.definitions import defs as build_defs

        instance = dg.DagsterInstance.ephemeral()
        instances.append(instance)
        return Platform(stack, Daemon(build_defs(), instance))

    yield factory
    for instance in instances:
        instance.dispose()


def in_partitions(table: pa.Table, column: str, values: list[str]) -> pa.ChunkedArray:
    return pc.is_in(table.column(column), value_set=pa.array(values))


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------ the definitions


def test_every_category_gets_its_sensors_from_one_factory(
    platform: Callable[..., Platform],
) -> None:
    p = platform()
    defs = p.daemon.defs
    names = {s.name for s in defs.sensors or []}
    for cat in ("telephony", "ivr", "speech", "digital", "workforce_management"):
        jobs_sensor = defs.resolve_sensor_def(f"{cat}_jobs_sensor")
        # the load job plus the two jobs that carry the tick's side effects (nothing else)
        assert [t.job_name for t in jobs_sensor.targets] == [
            f"sync_{cat}_job",
            "record_job_events_job",
            "request_manual_export_job",
        ]
        assert jobs_sensor.minimum_interval_seconds == 25 * 60
        assert jobs_sensor.default_status == dg.DefaultSensorStatus.STOPPED
        assert f"{cat}_gap_sensor" in names
    reconciliation = defs.resolve_sensor_def(RECONCILIATION_SENSOR)
    assert {j.name for j in reconciliation.jobs} >= {"sync_ivr_job", "sync_quality_management_job"}


# ------------------------------------------------------------------------------ the cursor


def _job(job_id: str, updated: datetime, status: str = "COMPLETED") -> Job:
    return Job.parse(
        {
            "id": job_id,
            "download_id": "dl-ivr-prod",
            "category": "ivr",
            "status": status,
            "trigger": "SCHEDULED",
            "interval_start": "2024-03-15T00:00:00Z",
            "interval_end": "2024-03-15T01:00:00Z",
            "updated_at": _iso(updated),
            "output_files": [],
            "record_count": 0,
        }
    )


def test_stream_position_never_misses_or_repeats_jobs_sharing_a_timestamp() -> None:
    t = START + timedelta(hours=1, minutes=25)
    api = [_job("a", t), _job("b", t), _job("c", t), _job("d", t + timedelta(seconds=1))]

    def answer(pos: StreamPosition) -> list[Job]:  # the API's inclusive updated_since filter
        return [j for j in api if pos.high_water is None or j.updated_at >= pos.high_water]

    pos = StreamPosition()
    taken: list[str] = []
    for _ in range(6):  # two jobs a tick: the mark sits on t while a, b, c are split
        fresh, _more = pos.take(answer(pos), limit=2)
        taken += [j.id for j in fresh]
        pos = StreamPosition.from_json(json.loads(json.dumps(pos.to_json())))
    assert taken == ["a", "b", "c", "d"]
    assert pos.to_json() == {
        "updated_since": _iso(t + timedelta(seconds=1)),
        "seen_at_mark": ["d|COMPLETED"],
    }
    # a new state of a job already seen at the mark is a new event
    api.append(_job("d", t + timedelta(seconds=1), status="FAILED"))
    fresh, _ = pos.take(answer(pos), limit=10)
    assert [(j.id, j.status.value) for j in fresh] == [("d", "FAILED")]


# -------------------------------------------------------------------------- jobs sensor


def test_jobs_sensor_loads_each_completed_job_once_and_records_every_transition(
    platform: Callable[..., Platform],
) -> None:
    p = platform(duplicate_export_intervals=(START + timedelta(hours=1),))
    p.world.advance(timedelta(hours=3))
    first = p.daemon.evaluate("ivr_jobs_sensor")
    completed = [j for j in jobs_of(p.stack, "ivr") if j["status"] == "COMPLETED"]
    assert len(completed) == 3  # hours 0 and 1 (twice: a duplicate export); hour 2 not due
    assert sorted(r.run_key or "" for r in loads(first)) == sorted(
        f"{j['id']}:{j['interval_start'][:13].replace('T', '-')}:00" for j in completed
    )
    assert {r.tags[TAG_JOB_ID] for r in loads(first)} == {j["id"] for j in completed}
    cursor = JobsCursor.loads(first.cursor)
    newest = max(j["updated_at"] for j in jobs_of(p.stack, "ivr"))
    assert _iso(cursor.position.high_water or START) == newest
    # the evaluation wrote nothing (no warehouse yet): the transitions ride in the first load
    # run (no run of their own), which records them
    assert not get_settings().duckdb_path.exists()
    assert len(first.run_requests or []) == 3 and not [
        r for r in first.run_requests or [] if r.job_name == "record_job_events_job"
    ]
    (carrier,) = [r for r in loads(first) if "cxone/events" in r.tags]
    assert carrier is (first.run_requests or [])[0]
    assert {e["job_id"] for e in carried_events(first)} == {
        j["id"] for j in jobs_of(p.stack, "ivr")
    }
    p.daemon.launch("ivr_jobs_sensor", first)
    assert p.events() == sorted(
        (j["id"], j["status"], datetime.fromisoformat(j["updated_at"].replace("Z", "+00:00")))
        for j in jobs_of(p.stack, "ivr")
    )
    # nothing changed: the next tick asks from the mark, skips what it saw, requests nothing
    again = p.daemon.evaluate("ivr_jobs_sensor")
    assert not again.run_requests and again.skip_message
    assert JobsCursor.loads(again.cursor).position == cursor.position
    # the clock moves: only the new transitions are recorded, only the new job is loaded
    before = len(p.events())
    p.world.advance(timedelta(hours=1))
    later = p.daemon.evaluate("ivr_jobs_sensor")
    new_keys = {r.run_key for r in loads(later)}
    assert new_keys and not new_keys & {r.run_key for r in loads(first)}
    p.daemon.launch("ivr_jobs_sensor", later)
    assert len(p.events()) > before


def test_state_changes_of_live_jobs_wait_in_the_cursor_for_a_run_that_carries_them(
    platform: Callable[..., Platform],
) -> None:
    p = platform(categories=("ivr",))
    p.world.advance(timedelta(hours=1, minutes=21))  # hour 0's export has started, not ended
    early = p.daemon.evaluate("ivr_jobs_sensor")
    live = {j["id"]: j["status"] for j in jobs_of(p.stack, "ivr")}
    assert live and set(live.values()) <= {"QUEUED", "RUNNING"}, live
    # no job ended: no run at all (not one per tick for QUEUED/RUNNING), the changes wait
    assert not early.run_requests
    held = JobsCursor.loads(early.cursor).unrecorded
    assert {(e["job_id"], e["status"]) for e in held} == set(live.items())
    p.world.advance(timedelta(hours=1))
    later = p.daemon.evaluate("ivr_jobs_sensor")
    # the export ended: the load run carries the waiting changes with the new ones
    assert set(live.items()) <= {(e["job_id"], e["status"]) for e in carried_events(later)}
    assert not JobsCursor.loads(later.cursor).unrecorded
    assert all(ok for _, ok in p.daemon.launch("ivr_jobs_sensor", later))
    recorded = {(job_id, status) for job_id, status, _ in p.events()}
    assert set(live.items()) <= recorded
    assert {(j["id"], "COMPLETED") for j in jobs_of(p.stack, "ivr") if j["id"] in live} <= recorded


def test_hostile_job_ids_get_safe_run_keys_and_tags_and_still_load(
    platform: Callable[..., Platform],
) -> None:
    p = platform(
        hostile_job_ids=1.0,
        categories=("ivr",),
        duplicate_export_intervals=(START + timedelta(hours=1),),
    )
    p.world.advance(timedelta(hours=4))
    completed = [j for j in jobs_of(p.stack, "ivr") if j["status"] == "COMPLETED"]
    ran = [
        (r, ok)
        for r, ok in p.daemon.tick("ivr_jobs_sensor")
        if (r.job_name or "").startswith("sync_")
    ]  # the partition loads (the first one carries the job events)
    assert len(ran) == len(completed) == 4 and all(ok for _, ok in ran)
    requests = [r for r, _ in ran]
    assert len({r.run_key for r in requests}) == len(requests)
    assert sorted(r.tags[TAG_JOB_ID] for r in requests) == sorted(label(j["id"]) for j in completed)
    for request in requests:
        tag = request.tags[TAG_JOB_ID]
        assert re.fullmatch(r"sha256-[0-9a-f]{32}", tag), tag  # Dagster's strict tag rule
        assert request.run_key == f"{tag}:{request.partition_key}"
    stored = {run.tags[TAG_JOB_ID] for run in p.instance.get_runs() if TAG_JOB_ID in run.tags}
    assert stored == {r.tags[TAG_JOB_ID] for r in requests}
    # the job-events table keeps the raw ids (bound values), NUL and 1,000 characters included
    assert {e[0] for e in p.events()} == {j["id"] for j in jobs_of(p.stack, "ivr")}
    dt = category("ivr").data_type("ivr_session")
    truth = p.world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=3))
    table = DuckDBWarehouse(get_settings().duckdb_path).read_table(dt)
    assert same_rows(truth, table, dt.key) == (True, "equal")
    # the table's materialization maps each hashed tag back to its raw id
    record = p.instance.get_latest_materialization_event(table_key(dt))
    assert record is not None and record.asset_materialization is not None
    labels = record.asset_materialization.metadata["job_labels"].value
    assert isinstance(labels, dict) and all(label(raw) == tag for tag, raw in labels.items())
    # nothing new: a second tick requests nothing
    assert p.daemon.tick("ivr_jobs_sensor") == []


def test_a_failed_interval_is_recovered_through_one_manual_export(
    platform: Callable[..., Platform],
) -> None:
    failed_hour = START + timedelta(hours=1)
    p = platform(failed_intervals=(failed_hour + timedelta(minutes=1),), categories=("ivr",))
    p.world.advance(timedelta(hours=3))  # the hour-1 export has failed by now
    for _ in range(2):
        p.daemon.tick("ivr_jobs_sensor")
    manual = p.manual_jobs("ivr")
    assert [(j["interval_start"], j["interval_end"], j["status"]) for j in manual] == [
        (_iso(failed_hour), _iso(failed_hour + timedelta(hours=1)), "QUEUED")
    ]  # asked once: the second tick saw it QUEUED (live) and waited
    owed = JobsCursor.loads(p.daemon.cursors["ivr_jobs_sensor"]).owed
    assert [(r.attempts, r.export_jobs) for r in owed.values()] == [(1, [manual[0]["id"]])]
    p.world.advance(timedelta(minutes=30))
    ran = [
        (r.partition_key, r.tags.get(TAG_JOB_ID), ok) for r, ok in p.daemon.tick("ivr_jobs_sensor")
    ]
    assert ("2024-03-15-01:00", manual[0]["id"], True) in ran
    done = p.manual_jobs("ivr")[0]
    assert done["status"] == "COMPLETED"
    assert all("exports/ivr/backfill/" in uri for uri in done["output_files"])
    assert not JobsCursor.loads(p.daemon.cursors["ivr_jobs_sensor"]).owed
    for _ in range(3):
        p.daemon.tick("ivr_jobs_sensor")
    assert len(p.manual_jobs("ivr")) == 1
    dt = category("ivr").data_type("ivr_session")
    truth = p.world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=3))
    table = DuckDBWarehouse(get_settings().duckdb_path).read_table(dt)
    table = table.filter(
        in_partitions(
            table, "_cxone_partition", ["2024-03-15-00:00", "2024-03-15-01:00", "2024-03-15-02:00"]
        )
    )
    assert same_rows(truth, table, dt.key) == (True, "equal")


def test_a_running_manual_export_answers_409_and_is_not_counted(
    platform: Callable[..., Platform],
) -> None:
    failed_hour = START + timedelta(hours=1)
    p = platform(failed_intervals=(failed_hour,), categories=("ivr",))
    p.world.advance(timedelta(hours=3))
    body = {
        "category": "ivr",
        "start_time": _iso(failed_hour),
        "end_time": _iso(failed_hour + timedelta(hours=1)),
        "destination_prefix": "exports/ivr/other/",
    }
    theirs = p.world.manual_export("dl-ivr-prod", body)  # someone else's export, still queued
    assert theirs["status"] == "QUEUED"
    # the sensor sees the failure; the only live job is the other export: it waits, no 409 spam
    data = p.daemon.evaluate("ivr_jobs_sensor")
    owed = JobsCursor.loads(data.cursor).owed
    assert [r.attempts for r in owed.values()] == [0]
    assert [j["id"] for j in p.manual_jobs("ivr")] == [theirs["id"]]
    p.world.advance(timedelta(minutes=30))
    p.daemon.tick("ivr_jobs_sensor")
    assert not JobsCursor.loads(p.daemon.cursors["ivr_jobs_sensor"]).owed


def test_recovery_gives_up_after_bounded_attempts_and_marks_the_partition(
    platform: Callable[..., Platform],
) -> None:
    # every export fails, manual ones too: two attempts, then an observation a person sees
    p = platform(
        env={"CXONE_RECOVERY_MAX_ATTEMPTS": "2"},
        failed_rate=1.0,
        categories=("workforce_management",),
    )
    p.world.advance(timedelta(hours=7))
    sensor = "workforce_management_jobs_sensor"
    ticks = 0
    while ticks < 12:
        p.world.advance(timedelta(minutes=15))
        p.daemon.tick(sensor)
        ticks += 1
        owed = JobsCursor.loads(p.daemon.cursors[sensor]).owed
        if owed and all(r.exhausted for r in owed.values()):
            break
    manual = p.manual_jobs("workforce_management")
    assert len(manual) == 2 and {j["status"] for j in manual} == {"FAILED"}
    (r,) = JobsCursor.loads(p.daemon.cursors[sensor]).owed.values()
    assert (r.attempts, r.exhausted, sorted(r.export_jobs)) == (
        2,
        True,
        sorted(j["id"] for j in manual),
    )
    assert any("GAVE UP" in s for s in p.daemon.skips[sensor])
    dt = category("workforce_management").data_types[0]
    records = p.instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=table_key(dt)), limit=10
    ).records
    assert len(records) == 1
    obs = records[0].asset_observation
    assert obs is not None and obs.partition == "2024-03-15-00:00"
    assert obs.metadata[RECOVERY_METADATA].value == "exhausted"
    assert "failed" in str(obs.metadata["reason"].value).lower()
    # the partition shows as failing: the table's `recovered` check is red for it, with the reason
    check_key = dg.AssetCheckKey(table_key(dt), ck.RECOVERED)
    (record,) = p.instance.event_log_storage.get_asset_check_execution_history(check_key, limit=5)
    assert record.partition == "2024-03-15-00:00"
    event = record.event.dagster_event if record.event else None
    evaluation = event.event_specific_data if event else None
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert (
        "UNRECOVERED" in (evaluation.description or "")
        and "FAILED" in (evaluation.description or "").upper()
    )
    # given up: later ticks do not ask again
    for _ in range(3):
        p.world.advance(timedelta(minutes=15))
        p.daemon.tick(sensor)
    assert (
        len([j for j in p.manual_jobs("workforce_management") if j["interval_start"] == r.start])
        == 2
    )


def test_a_locked_warehouse_never_loses_job_state_changes(
    platform: Callable[..., Platform], tmp_path: Path
) -> None:
    # The sensor does not open the warehouse (it writes nothing): another process holding the
    # lock does not stop the tick; the state changes travel in the tick's first load run.
    p = platform(categories=("ivr",))
    p.world.advance(timedelta(hours=3))
    path = get_settings().duckdb_path
    DuckDBWarehouse(path).ensure_control_tables()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locked = p.daemon.evaluate("ivr_jobs_sensor")
    finally:
        holder.kill()
        holder.wait()
    assert len(loads(locked)) == 2 and locked.cursor is not None
    assert not p.events()  # nothing written by the evaluation
    assert p.daemon.launch("ivr_jobs_sensor", locked)[0][1]  # the carrying run succeeds
    assert {e[0] for e in p.events()} == {j["id"] for j in jobs_of(p.stack, "ivr")}
    again = p.daemon.evaluate("ivr_jobs_sensor")
    assert not again.run_requests


def test_the_run_carrying_job_events_waits_for_a_warehouse_held_briefly_instead_of_failing(
    platform: Callable[..., Platform],
) -> None:
    # The sensor writes nothing; the run that records its job events (the first load run)
    # opens the warehouse for writing, meets the lock another process holds, waits, and
    # records once it is released.
    p = platform(categories=("ivr",), env={"CXONE_WAREHOUSE_LOCK_WAIT_SECONDS": "60"})
    p.world.advance(timedelta(hours=3))
    path = get_settings().duckdb_path
    DuckDBWarehouse(path).ensure_control_tables()
    data = p.daemon.evaluate("ivr_jobs_sensor")
    assert "cxone/events" in (data.run_requests or [])[0].tags
    with LockHolder(path) as holder, release_after_waits(holder) as waits:
        launched = p.daemon.launch("ivr_jobs_sensor", data)
    assert waits and f"PID {holder.pid}" in waits[0]  # the run met the lock and waited
    assert len(launched) == 2 and all(ok for _, ok in launched)  # 2 loads, one carrying events
    assert {e[0] for e in p.events()} == {j["id"] for j in jobs_of(p.stack, "ivr")}


# --------------------------------------------------------------------------- gap sensor


def test_gap_sensor_leaves_a_failed_export_to_the_jobs_sensor(
    platform: Callable[..., Platform],
) -> None:
    # speech exports start 45-90 min late: an hour is due only 20 + 90 + 10 min after its end
    failed_hour = START + timedelta(hours=2)
    p = platform(failed_intervals=(failed_hour,), categories=("speech",))
    p.world.advance(timedelta(hours=3, minutes=50))
    first = p.daemon.evaluate("speech_gap_sensor")
    # hours 0 and 1 have COMPLETED jobs (not loaded, but live): not gaps; hour 2 failed but is
    # not due yet by the API's clock; hour 3 is not over
    assert not p.manual_jobs("speech")
    cursor = GapCursor.loads(first.cursor)
    newest = max(j["updated_at"] for j in jobs_of(p.stack, "speech"))
    assert _iso(cursor.now or START) == newest  # the API's now, not the wall clock (2026)
    p.world.advance(timedelta(hours=2))
    due = p.daemon.evaluate("speech_gap_sensor")
    # hour 2 is due and not loaded, but its export job FAILED: the jobs sensor saw that and owns
    # the recovery (one owner per interval): the gap sensor asks for nothing and says why
    assert not due.run_requests
    assert "1 more whose export job failed, recovered by the jobs sensor" in (
        due.skip_message or ""
    ), due.skip_message
    for _ in range(2):
        p.daemon.tick("speech_jobs_sensor")
    manual = p.manual_jobs("speech")
    assert [(j["interval_start"], j["status"]) for j in manual] == [(_iso(failed_hour), "QUEUED")]
    p.daemon.tick("speech_gap_sensor")  # live now: not asked again
    assert len(p.manual_jobs("speech")) == 1
    # once loaded, nothing is owed
    p.world.advance(timedelta(minutes=30))
    for _ in range(2):
        p.daemon.tick("speech_jobs_sensor")
    p.daemon.evaluate("speech_gap_sensor")
    assert not GapCursor.loads(p.daemon.cursors["speech_gap_sensor"]).owed
    assert len(p.manual_jobs("speech")) == 1


# -------------------------------------------------------------- late-data reconciliation


def test_reconciliation_reloads_exactly_the_partitions_missing_a_completed_job(
    platform: Callable[..., Platform],
) -> None:
    twin_hour = START + timedelta(hours=2)
    p = platform(duplicate_export_intervals=(twin_hour,), categories=("ivr",))

    def twins(status: str) -> list[str]:
        return [
            j["id"]
            for j in jobs_of(p.stack, "ivr")
            if j["interval_start"] == _iso(twin_hour) and j["status"] == status
        ]

    p.world.advance(timedelta(hours=3, minutes=20))
    while not twins("COMPLETED"):  # load the hour as soon as its first export completes
        p.world.advance(timedelta(minutes=1))
    (loaded,) = twins("COMPLETED")
    p.daemon.tick("ivr_jobs_sensor")
    p.world.advance(timedelta(hours=1))
    (lost,) = set(twins("COMPLETED")) - {loaded}
    data = p.daemon.evaluate("ivr_jobs_sensor")
    job = p.daemon.defs.resolve_job_def("sync_ivr_job")
    for request in loads(data):
        if request.tags[TAG_JOB_ID] != lost:  # the duplicate's run is "lost": never launched
            assert job.execute_in_process(
                partition_key=request.partition_key, instance=p.instance, tags=request.tags
            ).success
    p.world.advance(timedelta(hours=26))
    p.daemon.tick("ivr_jobs_sensor")  # the later hours load normally
    first = p.daemon.evaluate(RECONCILIATION_SENSOR)
    assert [
        (r.partition_key, r.job_name, r.tags[TAG_JOB_ID]) for r in first.run_requests or []
    ] == [("2024-03-15-02:00", "sync_ivr_job", lost)]
    p.daemon.tick(RECONCILIATION_SENSOR)  # same request: the same run key, launched once
    runs = p.daemon.runs_per_run_key()
    assert first.run_requests
    assert [k for k in runs if k.startswith("reconcile:")] == [first.run_requests[0].run_key]
    assert not p.daemon.evaluate(RECONCILIATION_SENSOR).run_requests
    dt = category("ivr").data_type("ivr_session")
    table = DuckDBWarehouse(get_settings().duckdb_path).read_table(dt)
    assert lost in set(table.column("_cxone_job_id").to_pylist())


def test_reconciliation_reverifies_loaded_files_against_s3(
    platform: Callable[..., Platform],
) -> None:
    hour = START + timedelta(hours=1)
    p = platform(replaced_bytes=(hour,), categories=("ivr",))
    # load hour 1 right after its job completes, before the bytes are replaced (10 min later)
    p.world.advance(timedelta(hours=2, minutes=20))
    for _ in range(30):
        p.world.advance(timedelta(minutes=1))
        if any(
            j["interval_start"] == _iso(hour) and j["status"] == "COMPLETED"
            for j in jobs_of(p.stack, "ivr")
        ):
            break
    p.daemon.tick("ivr_jobs_sensor")
    assert not [f for f in p.world.fault_log if f["kind"] == "replaced_bytes"]
    p.world.advance(timedelta(hours=26))
    assert [f for f in p.world.fault_log if f["kind"] == "replaced_bytes"]
    p.daemon.tick("ivr_jobs_sensor")
    first = p.daemon.evaluate(RECONCILIATION_SENSOR)
    assert not p.manual_jobs("ivr")  # the evaluation asks; its request_manual_export_job POSTs
    assert [r.tags["cxone/interval"] for r in exports(first)] == [
        f"{_iso(hour)}/{_iso(hour + timedelta(hours=1))}"
    ]
    p.daemon.launch(RECONCILIATION_SENSOR, first)
    manual = p.manual_jobs("ivr")
    assert [(j["interval_start"], j["status"]) for j in manual] == [(_iso(hour), "QUEUED")]
    assert not loads(first)
    observed = p.instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=table_key(category("ivr").data_types[0])), limit=5
    ).records
    assert [r.asset_observation.partition for r in observed if r.asset_observation] == [
        "2024-03-15-01:00"
    ]
    p.daemon.tick(RECONCILIATION_SENSOR)  # acknowledged in the cursor: asked once
    assert len(p.manual_jobs("ivr")) == 1


def test_reconciliation_reads_the_ledger_read_only_beside_another_reader(
    platform: Callable[..., Platform],
) -> None:
    p = platform(categories=("ivr",), env={"CXONE_RECONCILIATION_MIN_AGE_HOURS": "1"})
    p.world.advance(timedelta(hours=3))
    p.daemon.tick("ivr_jobs_sensor")  # loads hours 0 and 1
    path = get_settings().duckdb_path
    # another process reads the warehouse (a BI tool, a DuckDB shell, the doctor)
    with LockHolder(path, read_only=True):
        data = p.daemon.evaluate(RECONCILIATION_SENSOR)
        # the tick holds nothing once it returns: a reader is all that is left
        assert DuckDBWarehouse(path, read_only=True, lock_wait_seconds=0).partition_loads(
            category("ivr").data_types[0]
        )
    assert not data.run_requests
    text = data.skip_message or ""
    assert "locked" not in text and "file audit skipped" not in text, text
    audited = re.search(r"file audit: (\d+) of \d+ loaded file\(s\) checked, 0 differ", text)
    assert audited and int(audited.group(1)) > 0, text
