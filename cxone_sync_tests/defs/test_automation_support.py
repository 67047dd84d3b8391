"""A stand-in for the sensor daemon, shared by the automation tests (no tests of its own).

It evaluates a sensor's tick against a real instance and the real Definitions (resources bound
through ``build_sensor_context(definitions=...)``), keeps each sensor's cursor, stores the asset
events a tick reports (as the daemon does) and executes the requested runs in process, skipping
a run key the sensor already launched (the daemon's rule).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData

from cxone_sync.defs.automation.tick_common import TAG_RUN_KEY
from cxone_sync.simulator.stack import LocalStack
from cxone_sync_tests.fixtures import _FOREIGN_ENV


def point_platform_at(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for name in _FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CXONE_DATA_DIR", str(data_dir))


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class Daemon:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    requested: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(sensor, run key) -> how often a tick requested it."""
    launched: set[tuple[str, str]] = field(default_factory=set)
    results: list[tuple[str, dg.RunRequest, bool]] = field(default_factory=list)
    skips: dict[str, list[str]] = field(default_factory=dict)

    def evaluate(self, sensor_name: str) -> SensorExecutionData:
        sensor = self.defs.resolve_sensor_def(sensor_name)
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor_name),
            definitions=self.defs,
            sensor_name=sensor_name,
            resources=self.defs.resources,
        )
        with context:
            data = sensor.evaluate_tick(context)
        if data.cursor is not None:
            self.cursors[sensor_name] = data.cursor
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        if data.skip_message:
            self.skips.setdefault(sensor_name, []).append(data.skip_message)
        for request in data.run_requests or []:
            self.requested[(sensor_name, request.run_key or "")] += 1
        return data

    def tick(self, sensor_name: str) -> list[tuple[dg.RunRequest, bool]]:
        """Evaluate, then launch every new run key in process; (request, success) per run."""
        return self.launch(sensor_name, self.evaluate(sensor_name))

    def launch(
        self, sensor_name: str, data: SensorExecutionData
    ) -> list[tuple[dg.RunRequest, bool]]:
        """Launch the new run keys of an evaluation in process; (request, success) per run."""
        sensor = self.defs.resolve_sensor_def(sensor_name)
        out = []
        for request in data.run_requests or []:
            key = (sensor_name, request.run_key or "")
            if key in self.launched:
                continue
            self.launched.add(key)
            job_name = request.job_name or sensor.job_name
            assert job_name, f"{sensor_name} requested a run without a job"
            result = self.defs.resolve_job_def(job_name).execute_in_process(
                partition_key=request.partition_key,
                instance=self.instance,
                tags={**request.tags, "dagster/sensor_name": sensor_name},
                raise_on_error=False,
                run_config={**request.run_config, **QUIET},  # the request's, as the daemon
            )
            self.results.append((sensor_name, request, result.success))
            out.append((request, result.success))
        return out

    def runs_per_run_key(self) -> Counter[str]:
        """From the instance: how many runs carry each run key tag."""
        counts: Counter[str] = Counter()
        for run in self.instance.get_runs():
            if TAG_RUN_KEY in run.tags:
                counts[run.tags[TAG_RUN_KEY]] += 1
        return counts


def same_rows(truth: pa.Table, table: pa.Table, key: Iterable[str]) -> tuple[bool, str]:
    """The table equals the truth on the truth's columns, both sorted by the natural key."""
    order = [(k, "ascending") for k in key]
    missing = [c for c in truth.column_names if c not in table.column_names]
    if missing:
        return False, f"table lacks columns {missing}"
    if table.num_rows != truth.num_rows:
        return False, f"{table.num_rows} rows, truth {truth.num_rows}"
    left = truth.sort_by(order)
    right = table.select(truth.column_names).cast(left.schema).sort_by(order)
    if left.equals(right):
        return True, "equal"
    for name in truth.column_names:
        if not left.column(name).equals(right.column(name)):
            return False, f"column {name} differs"
    return False, "differs"


def loads(data: SensorExecutionData) -> list[dg.RunRequest]:
    """The partition-load requests of an evaluation (not its job-events or export runs)."""
    return [r for r in data.run_requests or [] if (r.job_name or "").startswith("sync_")]


def carried_events(data: SensorExecutionData) -> list[dict[str, Any]]:
    """The job state changes an evaluation hands to runs: in its first load run's config (the
    category's first load step) or in ``record_job_events_job`` runs."""
    out: list[dict[str, Any]] = []
    for r in data.run_requests or []:
        for op in (r.run_config or {}).get("ops", {}).values():
            cfg = op.get("config") or {}
            events = cfg.get("job_events") or (
                cfg if r.job_name == "record_job_events_job" else None
            )
            if events:
                out.extend(events["events"])
    return out


def exports(data: SensorExecutionData) -> list[dg.RunRequest]:
    """The manual-export requests of an evaluation."""
    return [r for r in data.run_requests or [] if r.job_name == "request_manual_export_job"]


def jobs_of(stack: Any, category: str) -> list[dict[str, Any]]:
    """Every job of a category as the simulator holds it (its API view, no faults)."""
    world = stack.world
    return list(world.list_jobs(world.download_ids()[category]))
