"""Live automation at production pace: the real ``dagster-daemon``, every sensor on, a seeded chaos
simulator whose clock moves at a fixed pace (issue 14).

Two phases, on a fresh data folder and Dagster instance:

* ``catch-up``: ``--catchup-hours`` of exports (every category) exist before the daemon starts,
  as after a day with the platform down; the sensors are turned on and the clock stays put.
  Measured: seconds from the sensors on to every partition with a COMPLETED export loaded.
* ``steady``: the clock moves ``--pace-hours`` every ``--pace-seconds`` (default 2 h every 77 s:
  about 7 partition loads offered a minute with every category) for ``--hours``; half-way, another
  process holds the DuckDB file for ``--lock-seconds``. Then the clock stops and the queue drains.
  Measured: the latency from an export completing (the wall time the simulator's clock passed its
  end) to its partition loaded in every table (the first materialization that lists the job),
  p50 / p90 / max, for the first and second half of the phase (growth = falling behind); the
  run queue's depth over time.

At the end: runs by job and status, runs retried by the daemon, manual exports, and every table
compared with the simulator's truth. Run: ``python bench/bench_live.py`` (about 25 minutes on 2
cores); ``--hours 4 --catchup-hours 6`` for a quick look. Results: ``bench/results/live.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from cxone_sync.catalog import CATEGORIES
from cxone_sync.defs.ingest.names import JOB_IDS_JSON, table_key
from cxone_sync.simulator.config import FaultConfig, SimConfig
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.timefmt import parse_utc
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse

# the soak harness's daemon and process handling (cxone_sync_tests is not installed)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxone_sync_tests.lockholder import LockHolder
from cxone_sync_tests.soak.harness import (
    RECONCILIATION_SENSOR,
    START,
    Processes,
    SoakPlan,
    _environment,
    _managed,
    _wait,
    _write_instance_config,
    in_flight,
    last_tick_after,
    start_sensors,
)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _loaded_at(instance: dg.DagsterInstance, tables: list[Any]) -> dict[str, dict[str, float]]:
    """table -> job id -> wall time of the first materialization of the table that lists it."""
    out: dict[str, dict[str, float]] = {}
    for dt in tables:
        first: dict[str, float] = {}
        cursor = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=table_key(dt)),
                limit=1000,
                cursor=cursor,
                ascending=True,
            )
            for record in result.records:
                mat = record.asset_materialization
                ids = getattr(mat.metadata.get(JOB_IDS_JSON), "value", None) if mat else None
                for job_id in ids or []:
                    first.setdefault(str(job_id), record.timestamp)
            if not result.has_more:
                break
            cursor = result.cursor
        out[dt.table] = first
    return out


class QueueSampler(threading.Thread):
    """Samples the number of runs in flight every ``every`` seconds."""

    def __init__(self, instance_home: Path, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.home = instance_home
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            while not self.stop.is_set():
                self.samples.append((time.time(), len(in_flight(instance))))
                self.stop.wait(self.every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catchup-hours", type=int, default=24)
    parser.add_argument("--hours", type=int, default=24, help="simulated hours of the steady phase")
    parser.add_argument("--pace-hours", type=int, default=2)
    parser.add_argument("--pace-seconds", type=float, default=77.0)
    parser.add_argument("--lock-seconds", type=float, default=60.0)
    parser.add_argument("--jobs-sensor-seconds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", default="bench/results/live.json")
    args = parser.parse_args()

    names = tuple(c.name for c in CATEGORIES)
    tables = [dt for c in CATEGORIES for dt in c.data_types]
    plan = dataclasses.replace(
        SoakPlan.full(),
        days=(args.catchup_hours + args.hours) / 24 + 1,
        jobs_sensor_seconds=args.jobs_sensor_seconds,
        gap_sensor_seconds=120,
        reconciliation_seconds=3600,
        max_runtime_seconds=1800,
    )
    faults = dataclasses.replace(FaultConfig.chaos(), drift=())
    config = SimConfig(
        start=START, scale=args.scale, categories=names, faults=faults, seed=args.seed
    )
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cxone-live-"))
    work.mkdir(parents=True, exist_ok=True)
    home, logs = work / "dagster_home", work / "logs"
    logs.mkdir(exist_ok=True)
    _write_instance_config(home, plan)
    print(f"live bench: work folder {work}", flush=True)
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with LocalStack(config) as stack:
        world = stack.world
        env = _environment(stack, plan, work, home)
        procs = Processes(env, logs)
        duckdb_path = Path(env["CXONE_DATA_DIR"]) / "warehouse.duckdb"
        with _managed(procs), dg.DagsterInstance.from_config(str(home)) as instance:
            # ---- catch-up: a day of exports waiting when the platform starts
            world.advance(timedelta(hours=args.catchup_hours) + timedelta(minutes=90))
            caught_up_at = world.now
            procs.start_daemon()
            sensors = [f"{n}_jobs_sensor" for n in names] + [f"{n}_gap_sensor" for n in names]
            start_sensors(procs, sensors)
            sensors_on = time.time()
            sampler = QueueSampler(home)
            sampler.start()

            def pending_catchup() -> int:
                done = _loaded_at(instance, tables)
                missing = 0
                for c in CATEGORIES:
                    for j in world.list_jobs(world.download_ids()[c.name]):
                        if j["status"] != "COMPLETED":
                            continue
                        for dt in c.data_types:
                            if j["id"] not in done[dt.table]:
                                missing += 1
                return missing

            try:
                catchup = _wait("the catch-up", lambda: pending_catchup() == 0, 3600, every=5)
            except TimeoutError:
                catchup = float("nan")
            print(f"live bench: catch-up of {args.catchup_hours} h: {catchup:.0f} s", flush=True)
            result["catchup_seconds"] = round(catchup, 1)

            # ---- steady: the clock moves at a fixed pace; a lock half-way
            marks: list[tuple[float, datetime]] = [(time.time(), world.now)]
            steps = max(1, args.hours // args.pace_hours)
            steady_began = time.time()
            holder: LockHolder | None = None
            for n in range(steps):
                began = time.monotonic()
                world.advance(timedelta(hours=args.pace_hours))
                marks.append((time.time(), world.now))
                if n == steps // 2 and args.lock_seconds > 0:
                    holder = LockHolder(duckdb_path)
                    holder.__enter__()
                    lock_began = time.monotonic()
                    print(f"live bench: holding {duckdb_path.name} for {args.lock_seconds:g} s")
                if holder is not None and time.monotonic() - lock_began >= args.lock_seconds:
                    holder.__exit__(None, None, None)
                    holder = None
                left = args.pace_seconds - (time.monotonic() - began)
                while left > 0:
                    time.sleep(min(left, 1.0))
                    if holder is not None and time.monotonic() - lock_began >= args.lock_seconds:
                        holder.__exit__(None, None, None)
                        holder = None
                    left = args.pace_seconds - (time.monotonic() - began)
                print(
                    f"live bench: step {n + 1}/{steps}, clock {world.now.isoformat()}, "
                    f"in flight {len(in_flight(instance))}",
                    flush=True,
                )
            if holder is not None:
                holder.__exit__(None, None, None)
            steady_ended = time.time()
            world.advance(timedelta(minutes=90))  # the last intervals' exports
            marks.append((time.time(), world.now))
            try:
                drain = _wait(
                    "the queue to drain",
                    lambda: not in_flight(instance),
                    args.drain_timeout,
                    every=5,
                )
            except TimeoutError:
                drain = float("nan")
            time.sleep(3 * args.jobs_sensor_seconds)
            _wait(
                "the queue to drain again",
                lambda: not in_flight(instance),
                args.drain_timeout,
                every=5,
            )
            sampler.stop.set()
            sampler.join()
            # ---- latency: export completed (wall, via the marks) -> loaded in every table
            done = _loaded_at(instance, tables)

            # ---- the late data: what the daily reconciliation applies (late re-deliveries of
            # earlier intervals), run once now with minimum age 0, as the soak's last step
            procs.stop_daemon()
            restarted = time.time()
            procs.start_daemon({"CXONE_RECONCILIATION_MIN_AGE_HOURS": "0"})
            start_sensors(procs, [RECONCILIATION_SENSOR])
            with suppress(TimeoutError):
                _wait(
                    "the final reconciliation tick",
                    lambda: last_tick_after(instance, RECONCILIATION_SENSOR, restarted),
                    args.drain_timeout,
                    every=3,
                )
                time.sleep(10)
                _wait("its runs", lambda: not in_flight(instance), args.drain_timeout, every=5)
            procs.stop_daemon()

            def completed_wall(end: datetime) -> float:
                for wall, sim in marks:
                    if sim >= end:
                        return wall
                return marks[-1][0]

            latencies: list[tuple[float, float]] = []  # (completed wall, latency)
            unloaded: list[str] = []
            for c in CATEGORIES:
                for j in world.list_jobs(world.download_ids()[c.name]):
                    if j["status"] != "COMPLETED" or not j.get("end_time"):
                        continue
                    ended = parse_utc(j["end_time"])
                    if ended <= caught_up_at:
                        continue  # the catch-up's
                    wall = completed_wall(ended)
                    loaded = [done[dt.table].get(j["id"]) for dt in c.data_types]
                    if any(t is None for t in loaded):
                        unloaded.append(f"{c.name} {j['interval_start']} {j['id']}")
                        continue
                    latencies.append((wall, max(t for t in loaded if t is not None) - wall))
            half = steady_began + (steady_ended - steady_began) / 2
            first = [lat for wall, lat in latencies if wall < half]
            second = [lat for wall, lat in latencies if wall >= half]
            every = [lat for _, lat in latencies]
            result["latency_seconds"] = {
                "exports": len(every),
                "p50": _pct(every, 0.5),
                "p90": _pct(every, 0.9),
                "max": round(max(every), 1) if every else None,
                "mean": round(statistics.mean(every), 1) if every else None,
                "first_half_p90": _pct(first, 0.9),
                "second_half_p90": _pct(second, 0.9),
            }
            result["not_loaded"] = unloaded
            result["drain_seconds"] = round(drain, 1)
            depth = sampler.samples
            result["queue_depth"] = {
                "max": max((d for _, d in depth), default=0),
                "by_tenth_of_the_run": [
                    max(
                        (d for t, d in depth if lo <= t < lo + (depth[-1][0] - depth[0][0]) / 10),
                        default=0,
                    )
                    for lo in [
                        depth[0][0] + i * (depth[-1][0] - depth[0][0]) / 10 for i in range(10)
                    ]
                ]
                if len(depth) > 1
                else [],
            }
            # ---- runs
            records = list(instance.get_run_records())
            result["runs"] = Counter(
                f"{r.dagster_run.job_name} {r.dagster_run.status.value}" for r in records
            )
            result["runs_total"] = len(records)
            result["runs_retried_by_daemon"] = sum(
                1 for r in records if r.dagster_run.tags.get("dagster/parent_run_id")
            )
            result["manual_exports"] = Counter(
                j["status"]
                for c in CATEGORIES
                for j in world.list_jobs(world.download_ids()[c.name])
                if j["trigger"] == "MANUAL"
            )
            # ---- truth: every table whole against the simulator's truth of every loadable
            # partition up to the final clock (as the soak compares). Not a cut at a partition:
            # a key first seen before a cut whose newest version came in a later partition
            # (a late update) carries that later partition, so a cut by `_cxone_partition`
            # drops it from the table side only (19 cdr and 14 ivr rows in the 2026-12-01 run)
            warehouse = DuckDBWarehouse(duckdb_path, read_only=True)
            diffs: dict[str, Any] = {}
            for c in CATEGORIES:
                for dt in c.data_types:
                    diff = differences(
                        world.ground_truth(c.name, dt.name), warehouse.read_table(dt), list(dt.key)
                    )
                    if diff:
                        diffs[dt.table] = diff[:3]
            result["truth_until"] = world.now.isoformat()
            result["truth_differences"] = diffs
            result["sensors_on_to_end_seconds"] = round(time.time() - sensors_on, 1)
    print(json.dumps(result, indent=1, default=str))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
