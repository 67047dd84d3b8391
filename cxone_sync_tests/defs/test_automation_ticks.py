"""Sensors a user can preview and turn on safely, gap detection by CXone's clock through a full
export outage, and bounded ticks that resume: against the simulator over real sockets, real
DuckDB files and a real on-disk Dagster instance (``dagster sensor preview`` as a subprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from cxone_sync.automation.state import GapCursor, JobsCursor, ReconciliationCursor
from cxone_sync.catalog import category
from cxone_sync.cxone.client import CXoneClient
from cxone_sync.cxone.models import Job, JobStatus, JobTrigger
from cxone_sync.defs.automation.job_events import JobEventConfig, may_wait
from cxone_sync.defs.automation.jobs_tick import jobs_tick
from cxone_sync.defs.automation.reconcile_tick import reconcile_tick
from cxone_sync.defs.automation.run_requests import carry_events, load_requests
from cxone_sync.defs.automation.sensors import RECONCILIATION_SENSOR
from cxone_sync.defs.automation.tick_common import TAG_RANGE_END, TAG_RANGE_START, Tick
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.settings import INSTANCE_TEMPLATE, PROJECT_ROOT, AutomationSettings, get_settings
from cxone_sync.simulator.config import Outage
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

START = datetime(2024, 3, 15, tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _key(value: datetime) -> str:
    return value.strftime("%Y-%m-%d-%H:%M")


def on_disk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_TEMPLATE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def control_tables() -> dict[str, list[str]]:
    """Every row of every table in the warehouse file (control tables and BI tables)."""
    with duckdb.connect(str(get_settings().duckdb_path), read_only=True) as con:
        names = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL"
        ).fetchall()
        return {
            f"{s}.{t}": sorted(map(repr, con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall()))
            for s, t in names
        }


LOADED = timedelta(hours=6)
"""What ``load_some`` syncs (like ``make demo``, shorter); the next LOADED hours stay unloaded."""


def load_some(
    make_stack: MakeStack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    categories: tuple[str, ...] = ("ivr",),
) -> LocalStack:
    """Like ``make demo``: hours loaded by ``cxone-sync sync``, then as many more hours of
    exports that nothing has loaded yet."""
    from cxone_sync.sync_command import sync

    stack = make_stack(start=START, scale=0.02, categories=categories)
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    on_disk_home(tmp_path, monkeypatch)
    stack.world.advance_to(START + LOADED + timedelta(hours=2))
    assert sync(START, START + LOADED, list(categories)) == 0
    stack.world.advance(LOADED)
    return stack


def completed_partitions(stack: LocalStack, cat: str, since: datetime) -> list[str]:
    return sorted(
        {
            _key(datetime.fromisoformat(j["interval_start"].replace("Z", "+00:00")))
            for j in jobs_of(stack, cat)
            if j["status"] == "COMPLETED" and j["interval_start"] >= _iso(since)
        }
    )


def test_a_preview_after_a_loaded_day_writes_nothing_and_asks_for_ranged_runs_of_the_rest(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cats = ("ivr",)
    stack = load_some(make_stack, monkeypatch, tmp_path, cats)
    before = control_tables()
    jobs_before = {c: jobs_of(stack, c) for c in cats}
    from cxone_sync.definitions import defs as build_defs

    defs = build_defs()
    with dg.DagsterInstance.get() as instance:
        runs_before = len(instance.get_runs())
        daemon = Daemon(defs, instance)
        evaluated = {
            name: daemon.evaluate(name)
            for name in ("ivr_jobs_sensor", "ivr_gap_sensor", RECONCILIATION_SENSOR)
        }
        # the evaluations wrote nothing: same warehouse rows, no run, no CXone export
        assert control_tables() == before
        assert len(instance.get_runs()) == runs_before
        assert {c: jobs_of(stack, c) for c in cats} == jobs_before

        for cat, per_run in (("ivr", 24),):
            data = evaluated[f"{cat}_jobs_sensor"]
            # the loaded day is skipped (loaded from the same jobs); the rest comes in ranges
            expected = completed_partitions(stack, cat, START + LOADED)
            requested = loads(data)
            assert requested and all(r.partition_key is None for r in requested)
            covered: list[str] = []
            pdef = partitions_for(category(cat), START.date())
            for r in requested:
                keys = pdef.get_partition_keys_in_range(
                    dg.PartitionKeyRange(r.tags[TAG_RANGE_START], r.tags[TAG_RANGE_END])
                )
                assert len(keys) <= per_run
                covered += keys
                # readable: the run config names the partitions and the jobs
                (op,) = r.run_config["ops"].values()
                assert op["config"]["cxone_request"]["partitions"] == (f"{keys[0]} .. {keys[-1]}")
            assert covered == expected, cat
            assert len(requested) == -(-len(expected) // per_run)
            assert not exports(data)
            # the state changes ride in the first ranged run: no run of their own
            assert "cxone/events" in requested[0].tags
            assert not [r for r in data.run_requests or [] if r.job_name == "record_job_events_job"]
            events = carried_events(data)
            assert {e["job_id"] for e in events} == {j["id"] for j in jobs_before[cat]}
        # reconciliation: nothing of the loaded day (its loads considered every job)
        reconciled = evaluated[RECONCILIATION_SENSOR].run_requests or []
        assert all((r.partition_key or "") >= _key(START + LOADED) for r in reconciled)
        assert not exports(evaluated[RECONCILIATION_SENSOR])
        for name in ("ivr_gap_sensor",):
            assert not evaluated[name].run_requests
            assert not GapCursor.loads(evaluated[name].cursor).owed

        # turned on: the ranged runs load the second day, and the tables equal the truth
        for cat in cats:
            name = f"{cat}_jobs_sensor"
            assert all(ok for _, ok in daemon.launch(name, evaluated[name]))
            assert not loads(daemon.evaluate(name))
        warehouse = DuckDBWarehouse(get_settings().duckdb_path)
        for cat in cats:
            for dt in category(cat).data_types:
                last = completed_partitions(stack, cat, START)[-1]
                end = category(cat).interval + datetime.strptime(last, "%Y-%m-%d-%H:%M").replace(
                    tzinfo=UTC
                )
                truth = stack.world.ground_truth(cat, dt.name, START, end)
                assert same_rows(truth, warehouse.read_table(dt), dt.key) == (True, "equal")


def test_dagster_sensor_preview_on_disk_writes_nothing_and_prints_readable_requests(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_some(make_stack, monkeypatch, tmp_path)
    before = control_tables()
    digest = Path(get_settings().duckdb_path).read_bytes()
    with dg.DagsterInstance.get() as instance:
        runs_before = len(instance.get_runs())
    jobs_before = jobs_of(stack, "ivr")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "sensor",
            "preview",
            "ivr_jobs_sensor",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    # one ranged load of the unloaded hours, carrying the job state changes
    assert "Sensor returning run requests for 1 run(s)" in out, out[-3000:]
    new = completed_partitions(stack, "ivr", START + LOADED)
    assert len(new) >= 4 and f"partitions: {new[0]} .. {new[-1]}" in out
    assert "job_events" in out and jobs_before[-1]["id"] in out
    assert "\n{}\n" not in out  # no request without a readable config
    assert control_tables() == before
    assert Path(get_settings().duckdb_path).read_bytes() == digest
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == runs_before
    assert jobs_of(stack, "ivr") == jobs_before


def test_a_full_export_outage_is_detected_by_cxones_clock_requested_and_filled(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # CXone exports nothing for six hours: no job at all, so the newest updated_at stands still
    outage = Outage(START + timedelta(hours=2), START + timedelta(hours=8))
    stack = make_stack(start=START, scale=0.05, categories=("ivr",), outages=(outage,))
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    from cxone_sync.definitions import defs as build_defs

    instance = dg.DagsterInstance.ephemeral()
    daemon = Daemon(build_defs(), instance)
    world = stack.world
    asked_during_outage: set[str] = set()
    while world.now < START + timedelta(hours=12):
        world.advance(timedelta(hours=1))
        daemon.tick("ivr_jobs_sensor")
        data = daemon.evaluate("ivr_gap_sensor")
        for r in exports(data):
            reason = r.run_config["ops"]["request_manual_export"]["config"]["reason"]
            assert "no export job by" in reason and "CXone's clock" in reason  # reported
            if world.now < outage.end:
                asked_during_outage.add(r.tags["cxone/interval"])
        daemon.launch("ivr_gap_sensor", data)
        cursor = GapCursor.loads(data.cursor)
        # the gap sensor's now is the simulator's clock (its HTTP Date), not the newest job
        clock = cursor.clock
        assert clock is not None and world.now <= clock < world.now + timedelta(hours=1)
    daemon.tick("ivr_jobs_sensor")
    skipped = {f["interval_start"] for f in world.fault_log if f["kind"] == "outage"}
    assert len(skipped) == 6  # hours 1..6 (due 02:20 .. 07:20) were never exported
    hour = timedelta(hours=1)
    # overdue hours were requested while CXone still exported nothing, and reported as such
    assert {
        f"{_iso(START + k * hour)}/{_iso(START + (k + 1) * hour)}" for k in range(1, 6)
    } <= asked_during_outage
    manual = [j for j in jobs_of(stack, "ivr") if j["trigger"] == "MANUAL"]
    assert sorted(j["interval_start"] for j in manual) == sorted(skipped)
    assert {j["status"] for j in manual} == {"COMPLETED"}
    assert max(Counter(j["interval_start"] for j in manual).values()) == 1
    dt = category("ivr").data_type("ivr_session")
    truth = world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=10))
    table = DuckDBWarehouse(get_settings().duckdb_path).read_table(dt)
    table = table.filter(duckdb_partitions_before(table, _key(START + timedelta(hours=10))))
    assert same_rows(truth, table, dt.key) == (True, "equal")
    assert not [ok for _, _, ok in daemon.results if not ok]
    instance.dispose()


def duckdb_partitions_before(table: Any, key: Any) -> Any:
    import pyarrow.compute as pc

    return pc.less(table.column("_cxone_partition"), key)


def test_ticks_do_bounded_work_and_resume_where_they_stopped(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_some(make_stack, monkeypatch, tmp_path)
    cat = category("ivr")
    pdef = partitions_for(cat, START.date())
    settings = AutomationSettings(
        CXONE_SENSOR_MAX_JOBS_PER_TICK=7, CXONE_RECONCILIATION_MAX_HEADS_PER_TICK=5
    )
    client = CXoneClient(
        base_url=stack.api_url,
        client_id=stack.config.client_id,
        client_secret=stack.config.client_secret,
        download_ids=stack.world.download_ids(),
    )
    total = len(jobs_of(stack, "ivr"))
    with client, dg.DagsterInstance.get() as instance:
        cursor: str | None = None
        requested: list[str] = []
        seen = 0
        ticks = []
        for _ in range(20):
            tick = jobs_tick(
                category=cat,
                pdef=pdef,
                source=client,
                instance=instance,
                cursor_text=cursor,
                settings=settings,
                history_start=START,
                sensor="ivr_jobs_sensor",
            )
            ticks.append(tick)
            assert tick.jobs_seen <= 7
            seen += tick.jobs_seen
            requested += tick.partitions_requested
            cursor = tick.cursor
            if not tick.stopped_early:
                break
        assert len(ticks) == -(-total // 7)  # bounded, and resumed until the end
        assert all("STOPPED EARLY" in t.lines[0] for t in ticks[:-1])
        assert "STOPPED EARLY" not in ticks[-1].lines[0]
        assert seen == total
        assert sorted(requested) == completed_partitions(stack, "ivr", START + LOADED)
        assert len(set(requested)) == len(requested)  # no partition requested twice

        # the file audit checks a bounded slice per tick and goes on from there
        s3 = stack.s3_client()
        warehouse = DuckDBWarehouse(get_settings().duckdb_path)
        rcursor: str | None = None
        audited = []
        for _ in range(10):
            rtick = reconcile_tick(
                categories=[cat],
                pdefs={"ivr": pdef},
                source=client,
                instance=instance,
                warehouse=warehouse,
                s3_client=s3,
                cursor_text=rcursor,
                settings=settings,
                history_start=START,
                sensor=RECONCILIATION_SENSOR,
            )
            rcursor = rtick.cursor
            audited.append(ReconciliationCursor.loads(rcursor).audit_after)
            if not rtick.stopped_early:
                break
        (line,) = [x for x in rtick.lines if x.startswith("file audit:")]
        files = 6  # one ivr_session file per loaded hour
        assert len(audited) == -(-files // 5)
        assert audited[-1] is None and all(audited[:-1])
        positions = [a or "" for a in audited[:-1]]
        assert positions == sorted(positions)
        assert f"of {files} loaded file(s)" in line


def test_reconciliation_does_not_request_a_partition_whose_load_run_is_queued(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cxone_sync.definitions import defs

    stack = load_some(make_stack, monkeypatch, tmp_path)
    cat = category("ivr")
    pdef = partitions_for(cat, START.date())
    # every unloaded hour is old enough to reconcile
    settings = AutomationSettings(CXONE_RECONCILIATION_MIN_AGE_HOURS=1)
    client = CXoneClient(
        base_url=stack.api_url,
        client_id=stack.config.client_id,
        client_secret=stack.config.client_secret,
        download_ids=stack.world.download_ids(),
    )
    queued_key = _key(START + LOADED + timedelta(hours=1))
    with client, dg.DagsterInstance.get() as instance:

        def tick() -> Any:
            return reconcile_tick(
                categories=[cat],
                pdefs={"ivr": pdef},
                source=client,
                instance=instance,
                warehouse=DuckDBWarehouse(get_settings().duckdb_path).reader(),
                s3_client=stack.s3_client(),
                cursor_text=None,
                settings=settings,
                history_start=START,
                sensor=RECONCILIATION_SENSOR,
            )

        def requested(t: Any) -> set[str]:
            keys: set[str] = set()
            for r in t.run_requests:
                if r.partition_key:
                    keys.add(r.partition_key)
                else:
                    keys.update(
                        pdef.get_partition_keys_in_range(
                            dg.PartitionKeyRange(
                                r.tags["dagster/asset_partition_range_start"],
                                r.tags["dagster/asset_partition_range_end"],
                            )
                        )
                    )
            return keys

        before = requested(tick())
        assert queued_key in before and len(before) >= 4, before
        # the jobs sensor's run for that hour exists and has not finished (not started yet)
        job = defs().resolve_job_def("sync_ivr_job")
        instance.create_run_for_job(
            job,
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags={"dagster/partition": queued_key, "cxone/trigger": "ivr_jobs_sensor"},
        )
        after = tick()
        assert requested(after) == before - {queued_key}
        (line,) = [x for x in after.lines if "COMPLETED jobs their last load" in x]
        assert "1 more with a load run already queued or running" in line, line
        assert f"ivr {queued_key}" in line, line


def test_jobs_for_partitions_dagster_has_not_opened_yet_wait_in_the_cursor(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CXone's clock (here: the simulator's) ahead of this machine's: a COMPLETED job for an
    interval that has not ended by the local clock names a partition Dagster does not have yet
    (a request for it would fail the tick). It waits in the cursor and is requested once the
    partition opens, with no new state change from CXone."""
    stack = make_stack(start=START, scale=0.02, categories=("ivr",))
    point_platform_at(stack, monkeypatch, tmp_path / "data")
    stack.world.advance_to(START + timedelta(hours=6))
    cat = category("ivr")
    pdef = partitions_for(cat, START.date())
    client = CXoneClient(
        base_url=stack.api_url,
        client_id=stack.config.client_id,
        client_secret=stack.config.client_secret,
        download_ids=stack.world.download_ids(),
    )
    completed = completed_partitions(stack, "ivr", START)
    assert len(completed) >= 5, completed

    def requested(t: Any) -> list[str]:
        keys: list[str] = []
        for r in t.run_requests:
            if r.job_name != "sync_ivr_job":
                continue
            if r.partition_key:
                keys.append(r.partition_key)
            else:
                keys += pdef.get_partition_keys_in_range(
                    dg.PartitionKeyRange(
                        r.tags["dagster/asset_partition_range_start"],
                        r.tags["dagster/asset_partition_range_end"],
                    )
                )
        return sorted(set(keys))

    with client:
        common: dict[str, Any] = {
            "category": cat,
            "pdef": pdef,
            "source": client,
            "instance": None,
            "settings": AutomationSettings(),
            "history_start": START,
            "sensor": "ivr_jobs_sensor",
        }
        local_now = START + timedelta(hours=3, minutes=10)  # hours 0-2 have ended here
        first = jobs_tick(cursor_text=None, now=local_now, **common)
        assert requested(first) == [k for k in completed if k < _key(START + timedelta(hours=3))]
        held = JobsCursor.loads(first.cursor).waiting
        assert sorted(held) == [k for k in completed if k >= _key(START + timedelta(hours=3))]
        assert "wait for Dagster to open them" in " ".join(first.lines)
        # nothing new from CXone; the local clock has passed every interval
        later = jobs_tick(cursor_text=first.cursor, now=START + timedelta(hours=7), **common)
        assert later.jobs_seen == 0
        assert requested(later) == sorted(held)
        assert JobsCursor.loads(later.cursor).waiting == {}


# ------------------------------------------------------- where a tick's job events travel


def _job(n: int, status: str = "COMPLETED") -> Job:
    start = START + timedelta(hours=n)
    return Job(
        id=f"job-{n}",
        download_id="dl-ivr",
        category="ivr",
        status=JobStatus(status),
        trigger=JobTrigger("SCHEDULED"),
        interval_start=start,
        interval_end=start + timedelta(hours=1),
        updated_at=start + timedelta(hours=1, minutes=5),
        output_files=[],
        record_count=0,
    )


def _earlier_run() -> dg.JobDefinition:
    @dg.op
    def noop() -> None:
        pass

    @dg.job(name="sync_ivr_job")
    def earlier() -> None:
        noop()

    return earlier


def test_job_events_ride_on_a_fresh_load_run_else_in_a_run_that_queues_behind_loads(
    tmp_path: Path,
) -> None:
    ivr = category("ivr")
    pdef = partitions_for(ivr, START.date())
    jobs = [_job(0), _job(1, "FAILED")]
    events = [JobEventConfig.of(j) for j in jobs]
    with dg.DagsterInstance.ephemeral() as instance:
        # a load request: the first one carries every state change of the tick
        tick = Tick()
        load_requests(tick, ivr, pdef, instance, [jobs[0]], AutomationSettings(), "s")
        assert carry_events(tick, ivr, events, instance, "s")
        (carrier,) = tick.run_requests
        assert carrier.job_name == "sync_ivr_job" and carrier.tags["cxone/events"] == "2"
        (cfg,) = [op["config"] for op in carrier.run_config["ops"].values()]
        assert [e["job_id"] for e in cfg["job_events"]["events"]] == ["job-0", "job-1"]
        assert cfg["cxone_request"]["jobs"] == ["job-0"]  # what it loads is unchanged
        # that run key has run already (a tick evaluated again): Dagster would drop the
        # request and its events with it, so they go in a run of their own, behind the loads
        _earlier_run().execute_in_process(
            instance=instance, tags={"cxone/run_key": carrier.run_key or ""}
        )
        again = Tick()
        load_requests(again, ivr, pdef, instance, [jobs[0]], AutomationSettings(), "s")
        assert carry_events(again, ivr, events, instance, "s")
        load, own = again.run_requests
        assert "cxone/events" not in load.tags and "job_events" not in str(load.run_config)
        assert own.job_name == "record_job_events_job" and own.tags["dagster/priority"] == "-1"
        recorded = own.run_config["ops"]["record_job_events"]["config"]["events"]
        assert [e["job_id"] for e in recorded] == ["job-0", "job-1"]
    # no load in the tick (only a failure): a run of their own
    alone = Tick()
    assert carry_events(alone, ivr, events[1:], None, "s", may_wait=may_wait(events[1:]))
    assert [r.job_name for r in alone.run_requests] == ["record_job_events_job"]
    # no job ended (QUEUED, RUNNING only) and nothing to load: they may wait for a later tick
    started = [JobEventConfig.of(_job(2, "QUEUED")), JobEventConfig.of(_job(2, "RUNNING"))]
    quiet = Tick()
    assert may_wait(started) and not may_wait([*started, events[0]])
    assert not carry_events(quiet, ivr, started, None, "s", may_wait=True)
    assert quiet.run_requests == []
