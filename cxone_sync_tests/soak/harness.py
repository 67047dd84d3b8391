"""A soak on the real daemon (issue 11, item 7), importable by pytest and by a script.

What runs, all real and on loopback: the simulator (:class:`LocalStack`, in this process, with
``FaultConfig.chaos()``, breaking schema drift and named failed exports), ``dagster-daemon run``
as a subprocess on a temporary ``DAGSTER_HOME`` (queued run coordinator, the ``cxone_warehouse``
pool limited to 1, runs launched as separate processes by the default run launcher, run
monitoring on), the sensors turned on through Dagster's GraphQL API (``dagster-graphql``).

The harness moves the simulator's clock in steps (``plan.step`` per ``plan.step_seconds`` of
wall time, waiting while the run queue is longer than ``plan.max_backlog``), and at seeded
random moments kills the daemon with SIGKILL (then starts a new one) and kills a running run
worker (the process that executes a STARTED run, found through the run's own "Started process
for run (pid: N)" event) with its step processes. Then it lets the system settle: the clock
moves on until the failed exports are recovered or given up, the queue drains, the daemon is
restarted once with the reconciliation's minimum age at 0 (a final reconciliation of every
partition), the staging clean-up runs. The daemon is stopped and the result is checked:

* every BI table of the simulated categories equals the simulator's truth (``differences``);
* no run key ran twice;
* no concurrency slot of the pool is claimed (every run has ended by then);
* every partition of the simulated window is loaded, blocked by a gate the truth also blocks,
  or shows as UNRECOVERED with its reason (the ``recovered`` check's observation);
* the staging folder holds no folder of an ended run (the clean-up removed them).

Every process the harness starts runs in a session of its own; on exit (also on failure or
Ctrl-C) every process of those sessions is killed, the run workers and step processes included.
Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from cxone_sync.catalog import CATEGORIES, category
from cxone_sync.defs.automation.sensors import (
    RECONCILIATION_SENSOR,
    gap_sensor_name,
    jobs_sensor_name,
)
from cxone_sync.defs.ingest.names import WAREHOUSE_POOL, table_key
from cxone_sync.defs.launcher import worker_pid
from cxone_sync.defs.maintenance.staging import IN_FLIGHT, STAGING_CLEANUP_SENSOR, plan_cleanup
from cxone_sync.settings import INSTANCE_TEMPLATE, PROJECT_ROOT
from cxone_sync.simulator.config import DriftSpec, FaultConfig, SimConfig
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences

BIN = Path(sys.executable).parent
START = datetime(2024, 3, 15, tzinfo=UTC)
HOSTILE_IDS_KNOB = "hostile_job_ids"
HOSTILE_IDS_SHARE = 0.05
RUN_KEY_TAGS = ("dagster/run_key", "cxone/run_key")
# Variables that would point the platform somewhere other than the stack when left set.
_FOREIGN_ENV = (
    "CXONE_TOKEN_URL",
    "CXONE_ACCESS_KEY_ID",
    "CXONE_ACCESS_KEY_SECRET",
    "CXONE_DOWNLOAD_IDS",
    "CXONE_WAREHOUSE",
    "CXONE_DUCKDB_PATH",
    "CXONE_JOBS_SENSOR_INTERVALS",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)
RUN_MONITORING = """
run_monitoring:
  enabled: true
  start_timeout_seconds: {start_timeout}
  cancel_timeout_seconds: 60
  # A killed run worker is found by the launcher's health check (its pid is gone) within
  # poll_interval_seconds; this runtime limit is the backstop for a hung one.
  max_runtime_seconds: {max_runtime}
  poll_interval_seconds: 5
  free_slots_after_run_end_seconds: 5
"""


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SoakPlan:
    days: float
    categories: tuple[str, ...]
    daemon_kills: int
    worker_kills: int
    seed: int = 11
    scale: float = 0.05
    step: timedelta = timedelta(hours=1)
    step_seconds: float = 20.0
    """Minimum wall seconds per simulated step."""
    max_backlog: int = 8
    """Runs in flight beyond which the clock waits (at most ``step_timeout`` per step)."""
    step_timeout: float = 180.0
    jobs_sensor_seconds: int = 5
    gap_sensor_seconds: int = 20
    reconciliation_seconds: int = 120
    reconciliation_min_age_hours: int = 24
    cleanup_seconds: int = 20
    max_runtime_seconds: int = 300
    start_timeout_seconds: int = 120
    settle_hours: int = 10
    """Simulated hours past the end the clock may run while failed exports are recovered."""
    settle_timeout: float = 900.0
    """Wall seconds to wait for the queue to drain, at each of the two waits."""
    breaking_drift: bool = True
    hostile_ids: bool | None = None
    """Hostile job ids (``FaultConfig.hostile_job_ids``, branch h1-ids): None = on when the
    simulator has the knob, True = required, False = off."""

    @classmethod
    def full(cls, **overrides: Any) -> SoakPlan:
        """7 simulated days of every category, 2 daemon kills, 3 run-worker kills, the clock moved
        6 hours a step (each sensor tick sees a backlog: ranged runs, recoveries, late data);
        ``step=timedelta(hours=1)`` (``--step-hours 1``) is the hourly pace (more steps, runs)."""
        base = cls(
            days=7,
            categories=tuple(c.name for c in CATEGORIES),
            daemon_kills=2,
            worker_kills=3,
            step=timedelta(hours=6),
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def short(cls, **overrides: Any) -> SoakPlan:
        """1 simulated day of one 6-hourly category, one kill of each kind (CI: a few runs)."""
        base = cls(
            days=1,
            categories=("workforce_management",),
            daemon_kills=1,
            worker_kills=1,
            step=timedelta(hours=1),
            step_seconds=2.0,
            max_backlog=4,
            step_timeout=60.0,
            jobs_sensor_seconds=3,
            gap_sensor_seconds=10,
            reconciliation_seconds=30,
            cleanup_seconds=10,
            max_runtime_seconds=300,
            start_timeout_seconds=120,
            settle_hours=6,
            settle_timeout=600.0,
        )
        return dataclasses.replace(base, **overrides)

    @property
    def end(self) -> datetime:
        return START + timedelta(days=self.days)


def sim_config(plan: SoakPlan) -> SimConfig:
    """chaos() plus breaking drift, named failed and timed-out exports, and hostile job ids when
    the simulator offers them."""
    cats = [category(c) for c in plan.categories]
    failed = (START + timedelta(hours=7, minutes=30),)  # every category's interval holding it
    timed_out = (START + timedelta(hours=13, minutes=5),)
    drift: tuple[DriftSpec, ...] = ()
    if plan.breaking_drift:
        # one interval of one data type of the first category loses a key, one of the last
        # changes a type incompatibly: those partitions block (the truth blocks them too)
        first, last = cats[0], cats[-1]
        drift = (
            DriftSpec(
                first.data_types[0].name,
                START + timedelta(hours=18),
                START + timedelta(hours=18) + first.interval,
                kind="drop_key",
            ),
        )
        if last is not first:
            at = 24 if plan.days > 1 else 0  # clear of the named failures of the first day
            drift += (
                DriftSpec(
                    last.data_types[-1].name,
                    START + timedelta(hours=at),
                    START + timedelta(hours=at) + last.interval,
                    kind="incompatible_type",
                ),
            )
    extra: dict[str, Any] = {}
    if plan.hostile_ids is not False:
        names = {f.name for f in dataclasses.fields(FaultConfig)}
        if HOSTILE_IDS_KNOB in names:
            extra[HOSTILE_IDS_KNOB] = HOSTILE_IDS_SHARE
        elif plan.hostile_ids:
            raise ValueError(
                f"hostile_ids: this simulator has no FaultConfig.{HOSTILE_IDS_KNOB} yet "
                "(branch h1-ids adds it)"
            )
    faults = dataclasses.replace(
        FaultConfig.chaos(),
        failed_intervals=failed,
        timed_out_intervals=timed_out,
        drift=drift,
        **extra,
    )
    return SimConfig(start=START, scale=plan.scale, categories=plan.categories, faults=faults)


# --------------------------------------------------------------------------- the report


@dataclass
class Kill:
    kind: str
    """``daemon`` or ``worker``."""
    wall: float
    sim_time: str
    pid: int
    run_id: str | None = None
    what: str = ""


@dataclass
class SoakReport:
    plan: SoakPlan
    wall_seconds: float = 0.0
    runs: Counter[str] = field(default_factory=Counter)
    failed_runs: list[dict[str, str]] = field(default_factory=list)
    failures_recovered: int = 0
    recovered_by: Counter[str] = field(default_factory=Counter)
    """Trigger of the run that loaded a failed run's partition later (who repaired it)."""
    manual_exports: Counter[str] = field(default_factory=Counter)
    kills: list[Kill] = field(default_factory=list)
    tick_failures: dict[str, list[str]] = field(default_factory=dict)
    partitions: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sim_until: str = ""

    def summary(self) -> str:
        kills = Counter(k.kind for k in self.kills)
        lines = [
            f"soak: {self.plan.days:g} simulated day(s) of {', '.join(self.plan.categories)} "
            f"(simulated until {self.sim_until}), wall time {self.wall_seconds:.0f} s",
            f"runs: {sum(self.runs.values())} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(self.runs.items()))
            + ")",
            f"failed runs: {len(self.failed_runs)}, of which their partition was loaded later: "
            f"{self.failures_recovered}"
            + (
                " (loaded by: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.recovered_by.items()))
                + ")"
                if self.recovered_by
                else ""
            ),
            f"manual exports: {sum(self.manual_exports.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.manual_exports.items()))})",
            f"kills survived: daemon {kills['daemon']}, run worker {kills['worker']}",
            "partitions: " + ", ".join(f"{k} {v}" for k, v in sorted(self.partitions.items())),
            "sensor tick failures: "
            + (", ".join(f"{k} {len(v)}" for k, v in sorted(self.tick_failures.items())) or "none"),
            "faults injected: " + ", ".join(f"{k} {v}" for k, v in self.faults.most_common()),
        ]
        for k in self.kills:
            lines.append(f"  kill {k.kind} pid {k.pid} at {k.sim_time}: {k.what}")
        for f in self.failed_runs:
            lines.append(
                f"  failed run {f['run_id']} {f['job']} {f['partition']} ({f['trigger']}): "
                f"{f['reason']}"
            )
        for n in self.notes:
            lines.append(f"  note: {n}")
        lines.append(f"problems: {len(self.problems)}")
        lines.extend(f"  PROBLEM: {p}" for p in self.problems)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["plan"] = {k: str(v) for k, v in doc["plan"].items()}
        return _jsonable(doc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


# ------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process, None when gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st:
            parents.setdefault(st[0], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in parents.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class Processes:
    """The daemon (one at a time) and every process it spawns, in sessions of their own."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.sessions: set[int] = set()
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemons_started = 0

    def spawn(self, args: list[str], log: str, env: dict[str, str] | None = None) -> Any:
        out = open(self.logdir / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            cwd=PROJECT_ROOT,
            env=env or self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.sessions.add(proc.pid)
        return proc

    def start_daemon(self, extra_env: dict[str, str] | None = None) -> None:
        assert self.daemon is None or self.daemon.poll() is not None
        self.daemons_started += 1
        env = {**self.env, **(extra_env or {})}
        self.daemon = self.spawn(
            [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
            f"daemon-{self.daemons_started}.log",
            env,
        )

    def kill_daemon(self) -> int:
        assert self.daemon is not None
        pid = self.daemon.pid
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(timeout=30)
        return pid

    def stop_daemon(self, timeout: float = 90.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the daemon's code servers go with it."""
        if self.daemon is None or self.daemon.poll() is not None:
            return
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait(timeout=30)

    def members(self) -> list[int]:
        out = []
        for pid in _all_pids():
            st = _stat(pid)
            if st and st[1] in self.sessions and pid != os.getpid():
                out.append(pid)
        return out

    def kill_all(self, timeout: float = 30.0) -> list[int]:
        """SIGKILL every process of our sessions until none is left (bounded)."""
        deadline = time.monotonic() + timeout
        killed: set[int] = set()
        while time.monotonic() < deadline:
            pids = self.members()
            if not pids:
                break
            killed.update(pids)
            _kill(pids)
            time.sleep(0.2)
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.wait(timeout=10)
        return sorted(killed)


# ------------------------------------------------------------------------ the instance


def _wait(what: str, predicate: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
    """Poll until ``predicate``; raise TimeoutError naming ``what``. Returns the seconds spent."""
    began = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)


def in_flight(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT)))


def _chain(error: Any) -> str:
    """An error's message and its causes', on one line."""
    parts: list[str] = []
    while error is not None and len(parts) < 4:
        parts.append(" ".join((error.message or "").split()))
        error = error.cause
    return " <- ".join(p for p in parts if p)


def run_failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed: its first step failure (with the causes), what the run failure says,
    and any engine event about the worker (exited, terminated, exceeded its runtime)."""
    reasons: list[str] = []
    step_seen = False
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_FAILURE and not step_seen:
            step_seen = True
            error = getattr(event.event_specific_data, "error", None)
            reasons.append(f"step {event.step_key}: {_chain(error) or entry.message}")
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            reasons.append(f"run: {' '.join((entry.message or '').split())}")
        elif kind == dg.DagsterEventType.ENGINE_EVENT and re.search(
            r"exited|terminat|exceed|timed out|Detected run worker|forcibly", entry.message or ""
        ):
            reasons.append(f"engine: {' '.join((entry.message or '').split())}")
    return " | ".join(reasons)[:900] or "no failure event"


def sensor_ticks(instance: dg.DagsterInstance) -> dict[str, list[Any]]:
    """sensor name -> its ticks (newest first), read from the instance's schedule storage."""
    out: dict[str, list[Any]] = {}
    for state in instance.all_instigator_state():
        if state.instigator_type.value != "SENSOR":
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5000)
        out[state.name] = list(ticks)
    return out


def last_tick_after(instance: dg.DagsterInstance, sensor: str, after: float) -> bool:
    """The sensor finished a tick that began after ``after`` (epoch seconds)."""
    ticks = sensor_ticks(instance).get(sensor, [])
    return any(t.timestamp > after and t.status.value != "STARTED" for t in ticks)


# ---------------------------------------------------------------------------- the soak


def _environment(stack: LocalStack, plan: SoakPlan, work: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env.update(stack.environment())
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "CXONE_DATA_DIR": str(work / "data"),
            "CXONE_PARTITIONS_START": START.date().isoformat(),
            "CXONE_JOBS_SENSOR_INTERVAL_SECONDS": str(plan.jobs_sensor_seconds),
            "CXONE_GAP_SENSOR_INTERVAL_SECONDS": str(plan.gap_sensor_seconds),
            "CXONE_RECONCILIATION_INTERVAL_SECONDS": str(plan.reconciliation_seconds),
            "CXONE_RECONCILIATION_MIN_AGE_HOURS": str(plan.reconciliation_min_age_hours),
            "CXONE_RECONCILIATION_LOOKBACK_DAYS": str(int(plan.days) + 3),
            "CXONE_GAP_LOOKBACK_DAYS": str(int(plan.days) + 3),
            "CXONE_RECOVERY_BACKOFF_TICKS": "1",
            "CXONE_STAGING_CLEANUP_INTERVAL_SECONDS": str(plan.cleanup_seconds),
            "CXONE_STAGING_CLEANUP_GRACE_MINUTES": "0",
            "DAGSTER_DISABLE_TELEMETRY": "yes",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _write_instance_config(home: Path, plan: SoakPlan) -> None:
    """The project's dagster.yaml with the soak's run monitoring (short timeouts)."""
    home.mkdir(parents=True, exist_ok=True)
    config = INSTANCE_TEMPLATE.read_text()
    config = re.sub(r"(?m)^run_monitoring:\n(?:[ #].*\n|\n)*", "", config)
    config += RUN_MONITORING.format(
        start_timeout=plan.start_timeout_seconds, max_runtime=plan.max_runtime_seconds
    )
    (home / "dagster.yaml").write_text(config)


def sensor_names(plan: SoakPlan) -> list[str]:
    names = []
    for name in plan.categories:
        cat = category(name)
        names += [jobs_sensor_name(cat), gap_sensor_name(cat)]
    return [*names, RECONCILIATION_SENSOR, STAGING_CLEANUP_SENSOR]


def start_sensors(procs: Processes, names: list[str], timeout: float = 240.0) -> None:
    """Turn the sensors on through Dagster's GraphQL API (one ``dagster-graphql`` call)."""
    fields = " ".join(
        f's{i}: startSensor(sensorSelector: {{repositoryLocationName: "cxone_sync", '
        f'repositoryName: "__repository__", sensorName: "{name}"}}) {{ __typename '
        "... on Sensor { name sensorState { status } } ... on PythonError { message } "
        "... on SensorNotFoundError { message } ... on UnauthorizedError { message } }"
        for i, name in enumerate(names)
    )
    proc = procs.spawn(
        [
            str(BIN / "dagster-graphql"),
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-t",
            f"mutation {{ {fields} }}",
            "--output",
            str(procs.logdir / "start_sensors.json"),
        ],
        "start_sensors.log",
    )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise TimeoutError(
            f"dagster-graphql did not start the sensors in {timeout:.0f} s"
        ) from None
    doc = json.loads((procs.logdir / "start_sensors.json").read_text())
    states = {
        v.get("name"): (v.get("sensorState") or {}).get("status")
        for v in (doc.get("data") or {}).values()
    }
    if sorted(n for n, s in states.items() if s == "RUNNING") != sorted(names):
        raise RuntimeError(f"sensors not started: {doc}")


@contextmanager
def _managed(procs: Processes) -> Iterator[Processes]:
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, terminate)
    try:
        yield procs
    finally:
        procs.stop_daemon(timeout=20)
        procs.kill_all()
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous)


def run_soak(plan: SoakPlan, work: Path, log: Callable[[str], None] = print) -> SoakReport:
    """Run the soak in ``work`` (a fresh folder); returns the report (``problems`` empty = pass)."""
    began = time.monotonic()
    rng = random.Random(plan.seed)
    report = SoakReport(plan)
    if work.exists() and any(work.iterdir()):
        raise ValueError(f"the soak's work folder {work} must be new or empty")
    work.mkdir(parents=True, exist_ok=True)
    home, logs = work / "dagster_home", work / "logs"
    logs.mkdir(exist_ok=True)
    _write_instance_config(home, plan)
    with LocalStack(sim_config(plan)) as stack:
        world = stack.world
        env = _environment(stack, plan, work, home)
        procs = Processes(env, logs)
        with _managed(procs), dg.DagsterInstance.from_config(str(home)) as instance:
            _drive(plan, rng, stack, procs, instance, report, log)
            _settle(plan, stack, procs, instance, report, log)
            procs.stop_daemon()
            leftovers = procs.kill_all()
            if leftovers:
                report.notes.append(
                    f"{len(leftovers)} process(es) still alive after the daemon stopped "
                    "(killed by the harness)"
                )
            report.sim_until = world.now.isoformat()
            _check(plan, stack, instance, Path(env["CXONE_DATA_DIR"]), report)
    report.wall_seconds = time.monotonic() - began
    return report


def _drive(
    plan: SoakPlan,
    rng: random.Random,
    stack: LocalStack,
    procs: Processes,
    instance: dg.DagsterInstance,
    report: SoakReport,
    log: Callable[[str], None],
) -> None:
    world = stack.world
    steps = int((plan.end - START) / plan.step) + 2  # 2 more (>= 2 h): the last exports complete
    kills: dict[int, list[str]] = {}
    for kind, count in (("daemon", plan.daemon_kills), ("worker", plan.worker_kills)):
        for s in rng.sample(range(2, steps), count):
            kills.setdefault(s, []).append(kind)
    log(f"soak: {steps} steps of {plan.step}, kills at steps {dict(sorted(kills.items()))}")
    began = time.monotonic()
    procs.start_daemon()
    start_sensors(procs, sensor_names(plan))
    log(f"soak: daemon started and sensors on in {time.monotonic() - began:.0f} s")
    for n in range(steps):
        world.advance(plan.step)
        step_began = time.monotonic()
        todo = list(kills.get(n, []))
        rng.shuffle(todo)
        for kind in todo:
            time.sleep(rng.uniform(0, plan.step_seconds))
            if kind == "daemon":
                _kill_daemon(rng, procs, world.now, report, log)
            else:
                _kill_worker(rng, procs, instance, world.now, report, log)
        left = plan.step_seconds - (time.monotonic() - step_began)
        if left > 0:
            time.sleep(left)
        try:
            _wait(
                "the run queue to shorten",
                lambda: len(in_flight(instance)) <= plan.max_backlog,
                plan.step_timeout,
            )
        except TimeoutError as exc:
            report.notes.append(f"step {n} ({world.now.isoformat()}): {exc}; the clock moved on")
        if n % 6 == 0:
            log(
                f"soak: step {n}/{steps}, clock {world.now.isoformat()}, "
                f"in flight {len(in_flight(instance))}"
            )


def _kill_daemon(
    rng: random.Random,
    procs: Processes,
    now: datetime,
    report: SoakReport,
    log: Callable[[str], None],
) -> None:
    pid = procs.kill_daemon()
    time.sleep(rng.uniform(1, 5))
    procs.start_daemon()
    report.kills.append(Kill("daemon", time.monotonic(), now.isoformat(), pid, what="restarted"))
    log(f"soak: killed the daemon (pid {pid}) at {now.isoformat()}, started a new one")


def _kill_worker(
    rng: random.Random,
    procs: Processes,
    instance: dg.DagsterInstance,
    now: datetime,
    report: SoakReport,
    log: Callable[[str], None],
) -> None:
    """Kill the worker of a STARTED run (seeded choice) with its step processes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = sorted(
            (
                r.dagster_run
                for r in in_flight(instance)
                if r.dagster_run.status == dg.DagsterRunStatus.STARTED
            ),
            key=lambda r: r.run_id,
        )
        candidates = []
        for run in started:
            pid = worker_pid(instance, run.run_id)
            if pid is not None and pid in procs.members():
                candidates.append((run, pid))
        if candidates:
            run, pid = rng.choice(candidates)
            tree = [pid, *_descendants(pid)]
            _kill(tree)
            what = (
                f"run {run.run_id} {run.job_name} partition {run.tags.get('dagster/partition')} "
                f"({len(tree)} process(es))"
            )
            report.kills.append(
                Kill("worker", time.monotonic(), now.isoformat(), pid, run.run_id, what)
            )
            log(f"soak: killed run worker {pid}: {what}")
            return
        time.sleep(0.5)
    report.notes.append(f"worker kill at {now.isoformat()}: no STARTED run within 120 s, skipped")


def _pending_recoveries(stack: LocalStack, plan: SoakPlan, attempts: int = 3) -> list[str]:
    """Scheduled exports of the window that FAILED/TIMED_OUT and are neither covered by a
    COMPLETED job nor given up (``attempts`` manual exports ended badly)."""
    world = stack.world
    pending = []
    for name in plan.categories:
        jobs = list(world.list_jobs(world.download_ids()[name]))
        for j in jobs:
            if j["trigger"] != "SCHEDULED" or j["status"] not in ("FAILED", "TIMED_OUT"):
                continue
            same = [x for x in jobs if x["interval_start"] == j["interval_start"]]
            if any(x["status"] == "COMPLETED" for x in same):
                continue
            manual = [x for x in same if x["trigger"] == "MANUAL"]
            live = [x for x in manual if x["status"] in ("QUEUED", "RUNNING")]
            if live or len(manual) < attempts:
                pending.append(f"{name} {j['interval_start']}")
    return pending


def _settle(
    plan: SoakPlan,
    stack: LocalStack,
    procs: Processes,
    instance: dg.DagsterInstance,
    report: SoakReport,
    log: Callable[[str], None],
) -> None:
    world = stack.world
    limit = plan.end + timedelta(hours=plan.settle_hours)
    jobs_sensors = [jobs_sensor_name(category(name)) for name in plan.categories]
    while _pending_recoveries(stack, plan) and world.now < limit:
        world.advance(plan.step)
        advanced = time.time()
        time.sleep(plan.step_seconds)
        # the sensors' pace, not the wall clock's: on a slow machine each simulated hour of
        # recovery still gets a jobs-sensor tick that saw it, and that tick's runs end, before
        # the clock moves on
        with suppress(TimeoutError):
            _wait(
                "the recovery runs of this step",
                lambda after=advanced: (  # type: ignore[misc]
                    all(last_tick_after(instance, s, after) for s in jobs_sensors)
                    and not in_flight(instance)
                ),
                plan.step_timeout,
            )
    pending = _pending_recoveries(stack, plan)
    log(f"soak: settling, clock {world.now.isoformat()}, recoveries pending: {len(pending)}")
    if pending:
        report.notes.append(f"failed exports still being recovered at {world.now}: {pending}")
    log(f"soak: clock stopped at {world.now.isoformat()}; waiting for the queue to drain")
    quiet = max(3 * plan.jobs_sensor_seconds, 15)
    _drain(instance, quiet, plan.settle_timeout, report, "after the clock stopped")

    # the final reconciliation: every partition, whatever its age
    log("soak: restarting the daemon for a final reconciliation (minimum age 0)")
    procs.stop_daemon()
    restarted = time.time()
    procs.start_daemon({"CXONE_RECONCILIATION_MIN_AGE_HOURS": "0"})
    try:
        _wait(
            "the final reconciliation tick",
            lambda: last_tick_after(instance, RECONCILIATION_SENSOR, restarted),
            plan.settle_timeout,
            every=2,
        )
    except TimeoutError as exc:
        report.problems.append(str(exc))
    log("soak: final reconciliation ticked; waiting for its runs")
    _drain(instance, quiet, plan.settle_timeout, report, "after the final reconciliation")
    log("soak: waiting for a staging clean-up tick")
    # the staging clean-up: a tick after everything ended, and its run
    ended = time.time()
    try:
        _wait(
            "a staging clean-up tick after the last run",
            lambda: last_tick_after(instance, STAGING_CLEANUP_SENSOR, ended),
            plan.settle_timeout,
            every=2,
        )
    except TimeoutError as exc:
        report.problems.append(str(exc))
    _drain(instance, 0, plan.settle_timeout, report, "after the staging clean-up")
    log("soak: settled; checking")
    # ended runs' slots are freed by run monitoring (free_slots_after_run_end_seconds); any
    # left is reported by the checks, with the runs holding them
    with suppress(TimeoutError):
        _wait(
            "the pool's slots of ended runs to be freed",
            lambda: (
                not instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots
            ),
            60,
        )


def _drain(
    instance: dg.DagsterInstance, quiet: float, timeout: float, report: SoakReport, when: str
) -> None:
    """Wait until no run is in flight for ``quiet`` seconds in a row."""
    calm_since: list[float | None] = [None]

    def drained() -> bool:
        if in_flight(instance):
            calm_since[0] = None
            return False
        since = calm_since[0]
        if since is None:
            since = calm_since[0] = time.monotonic()
        return time.monotonic() - since >= quiet

    try:
        _wait(f"the run queue to drain {when}", drained, timeout)
    except TimeoutError as exc:
        runs = [
            f"{r.dagster_run.run_id} {r.dagster_run.job_name} {r.dagster_run.status.value}"
            for r in in_flight(instance)
        ]
        report.problems.append(f"{exc}: still in flight {runs}")


# ---------------------------------------------------------------------------- the checks


def _check(
    plan: SoakPlan, stack: LocalStack, instance: dg.DagsterInstance, data: Path, report: SoakReport
) -> None:
    from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse

    world = stack.world
    report.faults = Counter(f["kind"] for f in world.fault_log)
    # runs
    records = list(instance.get_run_records())
    report.runs = Counter(r.dagster_run.status.value for r in records)
    per_key: Counter[str] = Counter()
    for r in records:
        tags = r.dagster_run.tags
        key = next((tags[t] for t in RUN_KEY_TAGS if t in tags), None)
        if key is not None and not tags.get("dagster/parent_run_id"):
            per_key[key] += 1
    twice = {k: n for k, n in per_key.items() if n > 1}
    if twice:
        report.problems.append(f"run keys that ran more than once: {twice}")
    loaded: dict[str, set[str]] = {}
    for name in plan.categories:
        for dt in category(name).data_types:
            loaded[dt.table] = set(instance.get_materialized_partitions(table_key(dt)))
    for r in records:
        run = r.dagster_run
        if run.status != dg.DagsterRunStatus.FAILURE:
            continue
        partition = run.tags.get("dagster/partition", "")
        report.failed_runs.append(
            {
                "run_id": run.run_id,
                "job": run.job_name,
                "partition": partition,
                "trigger": run.tags.get("cxone/trigger", run.tags.get("dagster/sensor_name", "")),
                "reason": run_failure_reason(instance, run.run_id),
            }
        )
        owner = next((c for c in plan.categories if run.job_name == f"sync_{c}_job"), None)
        if owner and all(partition in loaded[dt.table] for dt in category(owner).data_types):
            report.failures_recovered += 1
            later = [
                x.dagster_run
                for x in records
                if x.dagster_run.status == dg.DagsterRunStatus.SUCCESS
                and x.dagster_run.job_name == run.job_name
                and x.dagster_run.tags.get("dagster/partition") == partition
                and x.create_timestamp > r.create_timestamp
            ]
            if later:  # records come newest first: the last one is the first success after
                trigger = later[-1].tags
                report.recovered_by[
                    "run retry (daemon)"
                    if trigger.get("dagster/parent_run_id")
                    else trigger.get("cxone/trigger", trigger.get("dagster/sensor_name", "by hand"))
                ] += 1
    # a killed load (or job-events) run is re-executed from failure by the daemon (those jobs'
    # run retries), not left to the next daily reconciliation
    by_parent = {
        r.dagster_run.tags.get("dagster/parent_run_id"): r.dagster_run
        for r in records
        if r.dagster_run.tags.get("dagster/parent_run_id")
    }
    jobs = {f"sync_{c}_job" for c in plan.categories} | {"record_job_events_job"}
    for kill in report.kills:
        if kill.kind != "worker" or kill.run_id is None:
            continue
        killed = instance.get_run_by_id(kill.run_id)
        if killed is None or killed.job_name not in jobs:
            continue
        retry = by_parent.get(kill.run_id)
        if retry is None:
            report.problems.append(f"killed run {kill.run_id} ({kill.what}) was not retried")
        else:
            report.notes.append(
                f"killed run {kill.run_id} retried by the daemon as {retry.run_id} "
                f"({retry.status.value})"
            )
    # manual exports
    for name in plan.categories:
        for j in world.list_jobs(world.download_ids()[name]):
            if j["trigger"] == "MANUAL":
                report.manual_exports[j["status"]] += 1
    # sensor ticks
    for sensor, ticks in sensor_ticks(instance).items():
        failures = [t for t in ticks if t.status.value == "FAILURE"]
        if failures:
            report.tick_failures[sensor] = [
                (t.error.message.strip()[:200] if t.error else "failed") for t in failures
            ]
    # the pool
    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    if info.claimed_slots:
        holders = [
            f"{s.run_id} {s.step_key} "
            f"({getattr(instance.get_run_by_id(s.run_id), 'status', 'unknown run')})"
            for s in info.claimed_slots
        ]
        report.problems.append(f"{WAREHOUSE_POOL} slots still claimed: {holders}")
    if info.pending_steps:
        report.problems.append(
            f"{WAREHOUSE_POOL} steps still pending: "
            f"{[(s.run_id, s.step_key) for s in info.pending_steps]}"
        )
    # every partition: loaded, blocked as the truth blocks it, or UNRECOVERED with its reason
    excluded = {
        (e["category"], e["data_type"], e["partition_start"]): e for e in world.truth_exclusions()
    }
    for name in plan.categories:
        cat = category(name)
        for dt in cat.data_types:
            for t in cat.interval_starts(START, plan.end):
                key = t.strftime("%Y-%m-%d-%H:%M")
                iso_start = t.strftime("%Y-%m-%dT%H:%M:%SZ")
                if key in loaded[dt.table]:
                    report.partitions["loaded"] += 1
                    continue
                why = excluded.get((name, dt.name, iso_start))
                unrecovered = _unrecovered(instance, table_key(dt), key)
                if unrecovered:
                    report.partitions["UNRECOVERED"] += 1
                elif why is not None and why["reason"] not in ("job_failed", "job_timed_out"):
                    report.partitions[f"blocked ({why['reason']})"] += 1
                else:
                    report.partitions["HOLE"] += 1
                    report.problems.append(
                        f"{dt.table} {key}: not loaded and not shown as UNRECOVERED"
                        + (f" (truth: {why['reason']} by {why['job_id']})" if why else "")
                    )
    # the tables
    warehouse = DuckDBWarehouse(data / "warehouse.duckdb")
    for name in plan.categories:
        for dt in category(name).data_types:
            truth = world.ground_truth(name, dt.name)
            try:
                table = warehouse.read_table(dt)
            except Exception as exc:
                report.problems.append(f"{dt.table}: cannot read the table ({exc})")
                continue
            diff = differences(truth, table, list(dt.key))
            if diff:
                report.problems.append(f"{dt.table} differs from the truth: {diff}")
    # staging
    left = plan_cleanup(instance, data / "staging", grace_seconds=0)
    orphans = [f"{d.folder.path.relative_to(data)}: {d.reason}" for d in left if d.remove]
    live = [f"{d.folder.path.relative_to(data)}: {d.reason}" for d in left if not d.remove]
    if orphans:
        report.problems.append(f"staging orphans of ended runs: {orphans}")
    if live:
        report.problems.append(f"staging folders of runs still live at the end: {live}")


def _unrecovered(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> str | None:
    """The reason of the newest UNRECOVERED observation of the partition, if any."""
    result = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=20
    )
    for record in result.records:
        obs = record.asset_observation
        if obs is None:
            continue
        meta = obs.metadata
        if "cxone/recovery" in meta and getattr(meta["cxone/recovery"], "value", "") == "exhausted":
            return str(getattr(meta.get("reason"), "value", obs.description or "exhausted"))
    return None
