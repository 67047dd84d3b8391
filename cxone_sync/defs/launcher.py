"""The default run launcher, plus a health check of run workers on this host.

Dagster's ``DefaultRunLauncher`` (each run in its own ``dagster api execute_run`` process, spawned
by the code location's server on this machine) cannot tell run monitoring that a worker died: a
run whose worker was killed (kill -9, OOM) stays STARTED until ``max_runtime_seconds`` (2 hours
in ``config/dagster.yaml``) and holds its ``cxone_warehouse`` slot all that time, while its
partitions wait. This launcher answers the monitoring daemon's health check from the pid the
worker reported when it started (its "Started process for run (pid: N)" engine event): a pid
that no longer exists, or that now belongs to a process started after the run, means the worker
died. Run monitoring then marks the run failed within ``poll_interval_seconds``, frees its pool
slots, and the run retries of the category jobs re-execute it from failure.

Assumption: run workers run on the machine of the daemon (true for ``dagster dev``, the
``dagster-daemon`` of the local deployment and the workspace's ``python_module`` code location;
DuckDB needs one machine anyway). A run without such an event (a run of ``cxone-sync sync``,
executed in the command's own process) or a worker on another machine is reported RUNNING: the
runtime limit still applies to it. With workers elsewhere (Kubernetes, ECS), use that platform's
launcher, which has its own health check.

Dagster 1.13 (tested: 1.13.27) exports ``DefaultRunLauncher`` but not the health-check types
(``CheckRunHealthResult``, ``WorkerStatus``): they are imported from ``dagster._core.launcher``
here. This module and :mod:`cxone_sync.defs.runs` are the only ones in ``cxone_sync/`` that
import private Dagster modules (adapters, one per need): on a Dagster upgrade, check them first.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult
from dagster._core.launcher import WorkerStatus as WorkerStatus  # re-exported: tests read it

HOST = socket.gethostname()


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def process_started_at(pid: int) -> float | None:
    """Unix time the process ``pid`` started (Linux /proc), None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the command name (which may hold spaces and parentheses)
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] == "Z":  # a zombie: dead, not yet reaped
        return None
    boot = _boot_time()
    if boot is None or len(fields) < 20:
        return 0.0  # exists; start unknown
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's worker, from its "Started process for run" engine event."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    for entry in records:
        event = entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        metadata = getattr(data, "metadata", None) or {}
        if "Started process for run" in (entry.message or "") and "pid" in metadata:
            value = getattr(metadata["pid"], "value", metadata["pid"])
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


class LocalWorkerHealthRunLauncher(dg.DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers' health run monitoring can check (this host)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        instance = self._instance
        if instance is None or not Path("/proc").is_dir():
            return CheckRunHealthResult(WorkerStatus.RUNNING, "cannot check: no instance or /proc")
        pid = worker_pid(instance, run.run_id)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid reported")
        record = instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record is not None else None
        alive_since = process_started_at(pid)
        if alive_since is None:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"run worker pid {pid} on {HOST} no longer exists"
            )
        if started is not None and alive_since > started + 5:
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"run worker pid {pid} on {HOST} is gone (the pid now belongs to a process "
                "started after the run)",
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING)
