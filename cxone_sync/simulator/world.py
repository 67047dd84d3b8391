"""The simulated CXone tenant: a clock, the Data Download jobs it runs and the files they write.

Time moves only in :meth:`World.advance_to`. A scheduled export of every category interval is
created ``offset_minutes`` (plus the category's lag) after the interval ends, turns RUNNING, and
ends COMPLETED (writing its Parquet files to S3), FAILED or TIMED_OUT. Manual exports follow the
same life cycle from the moment they are requested. Every decision is a pure function of the
config and the calls made, and every fault injected is recorded in :attr:`World.fault_log`.
"""

from __future__ import annotations

import heapq
import itertools
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from cxone_sync.catalog import DEFAULT_OFFSET, Category, DataType, category, default_download_id
from cxone_sync.simulator import _rand as rnd
from cxone_sync.simulator import generator as gen
from cxone_sync.simulator import truth
from cxone_sync.simulator.config import SimConfig, iso, parse_time, utc

QUEUED, RUNNING, COMPLETED, FAILED, TIMED_OUT = (
    "QUEUED",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "TIMED_OUT",
)
SCHEDULED, MANUAL = "SCHEDULED", "MANUAL"
ACTIVE = (QUEUED, RUNNING)
TIMEOUT_AFTER = timedelta(minutes=60)
REWRITE_AFTER = timedelta(minutes=10)
SPOOL_BYTES = 64 * 1024 * 1024


HOSTILE_ID_FORMS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("traversal", lambda h: f"../../../../tmp/x-{h}"),
    ("deep_traversal", lambda h: "../" * 32 + f"tmp/cxone-hostile/deep-{h}"),
    ("absolute", lambda h: f"/tmp/cxone-hostile/abs-{h}"),  # noqa: S108 - a hostile id, not a path we use
    ("slash_query_fragment", lambda h: f"job/{h}?status=FAILED#x"),
    ("unicode_space", lambda h: f"jöb ünïcødé {h} ✓"),
    ("very_long", lambda h: f"job-{h}-" + "L" * 1000),
    ("control_chars", lambda h: f"job\x00{h}\n\x1b[31m\u202e"),
    ("comma_percent", lambda h: f"job-{h}, %2e%2e, other"),
)
"""Job ids a hostile or careless API could send (``FaultConfig.hostile_job_ids``): each form
names what it tries (a path out of the staging folder, another endpoint, a log injection...).
Hostile ids take the forms in turn, in the order jobs are created; the 16 hex digits keep every
id unique."""


class BadRequest(Exception):
    """The request is malformed or not allowed (HTTP 400)."""


class Conflict(Exception):
    """An overlapping manual export is still queued or running (HTTP 409)."""


class NotFound(Exception):
    """Unknown download id (HTTP 404)."""


@dataclass(eq=False)
class _File:
    key: str
    data_type: DataType
    hour: datetime
    rows: int
    manifest_count: int
    size_bytes: int


@dataclass(eq=False)
class _Job:
    id: str
    category: Category
    trigger: str
    interval_start: datetime
    interval_end: datetime
    prefix: str
    created_at: datetime
    outcome: str
    attempt: int = 0
    overwrite: bool = False
    skew_percent: float = 0.0
    null_keys: bool = False
    denied: bool = False
    placeholders: bool = False
    omit_files: bool = False
    replace_bytes: bool = False
    status: str = QUEUED
    start_time: datetime | None = None
    end_time: datetime | None = None
    updated_at: datetime | None = None
    error: str | None = None
    keys: dict[tuple[str, datetime], str] = field(default_factory=dict)
    files: list[_File] = field(default_factory=list)

    @property
    def download_id(self) -> str:
        return default_download_id(self.category.name)

    def intervals(self) -> list[datetime]:
        step = self.category.interval
        count = (self.interval_end - self.interval_start) // step
        return [self.interval_start + k * step for k in range(count)]


class World:
    """The simulated tenant; thread-safe (every public method holds one re-entrant lock)."""

    def __init__(self, config: SimConfig, s3_client: Any) -> None:
        self.config = config
        self.now: datetime = config.start
        self.fault_log: list[dict[str, Any]] = []
        self._s3 = s3_client
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._events: list[tuple[datetime, int, str, _Job]] = []
        self._seq = itertools.count()
        self._manual_seq = itertools.count()
        self._next_interval = {name: config.start for name in config.categories}
        self._parts: dict[str, int] = {}
        self._objects: dict[str, gen.FilePlan | None] = {}
        self._denied: set[str] = set()
        self._hostile: dict[str, str] = {}

    # -------------------------------------------------------------------------------- clock

    def advance_to(self, t: datetime) -> list[dict[str, Any]]:
        """Run everything due up to ``t``; returns the jobs whose state changed (latest state)."""
        t = utc(t)
        with self._lock:
            if t < self.now:
                raise ValueError(f"the clock cannot go back from {iso(self.now)} to {iso(t)}")
            self._schedule_until(t)
            changed: dict[str, _Job] = {}
            while self._events and self._events[0][0] <= t:
                when, _, kind, job = heapq.heappop(self._events)
                self.now = when
                if self._handle(kind, job):
                    changed.pop(job.id, None)
                    changed[job.id] = job
            self.now = t
            return [self._job_dict(job) for job in changed.values()]

    def advance(self, delta: timedelta) -> list[dict[str, Any]]:
        with self._lock:
            return self.advance_to(self.now + delta)

    def _schedule_until(self, t: datetime) -> None:
        for name, interval in self._next_interval.items():
            cat = category(name)
            while (due := self.scheduled_at(cat, interval)) <= t:
                self._push(due, "create", self._scheduled_job(cat, interval, due))
                interval += cat.interval
            self._next_interval[name] = interval

    def scheduled_at(self, cat: Category, interval_start: datetime) -> datetime:
        """When the scheduled export of an interval is created (offset plus the category's lag)."""
        lag = cat.lag_min
        if cat.lag_max > cat.lag_min:
            span = (cat.lag_max - cat.lag_min) // timedelta(minutes=1)
            draw = rnd.scalar_unit(self.config.seed, "lag", cat.name, iso(interval_start))
            lag += timedelta(minutes=int(draw * (span + 1)))
        return interval_start + cat.interval + DEFAULT_OFFSET + lag

    def _push(self, when: datetime, kind: str, job: _Job) -> None:
        heapq.heappush(self._events, (when, next(self._seq), kind, job))

    def _draw(self, *parts: object) -> float:
        return rnd.scalar_unit(self.config.seed, *parts)

    # -------------------------------------------------------------------------- job faults

    def _hit(self, kind: str, rate: float, chosen: Sequence[datetime], job: _Job) -> bool:
        """Whether a fault strikes a scheduled job: its interval named, or a draw under ``rate``."""
        start, end = job.interval_start, job.interval_end
        if any(start <= t < end for t in chosen):
            return True
        return self._draw(kind, job.category.name, iso(start), job.attempt) < rate

    def _skew(self, job: _Job) -> float:
        faults = self.config.faults
        for skew in faults.record_count_skew:
            if skew.category == job.category.name and skew.interval_start == job.interval_start:
                return skew.percent
        if self._hit("skew", faults.record_count_skew_rate, (), job):
            sign = 1 if self._draw("skew_sign", job.id) < 0.5 else -1
            return sign * faults.record_count_skew_percent
        return 0.0

    def _scheduled_job(
        self, cat: Category, interval: datetime, due: datetime, attempt: int = 0
    ) -> _Job:
        """A scheduled export with every job-level fault decided (not yet registered)."""
        faults = self.config.faults
        job_id = self._job_id(cat.name, SCHEDULED, iso(interval), attempt)
        job = _Job(
            job_id, cat, SCHEDULED, interval, interval + cat.interval, self._prefix(cat.name),
            due, COMPLETED, attempt,
        )  # fmt: skip
        if self._hit("failed", faults.failed_rate, faults.failed_intervals, job):
            job.outcome = FAILED
        elif self._hit("timed_out", faults.timed_out_rate, faults.timed_out_intervals, job):
            job.outcome = TIMED_OUT
        job.skew_percent = self._skew(job)
        job.null_keys = self._hit("null_key", 0.0, faults.null_key_intervals, job)
        job.denied = self._hit("denied", 0.0, faults.denied_read, job)
        job.replace_bytes = self._hit("replaced", 0.0, faults.replaced_bytes, job)
        job.placeholders = self._hit("placeholder", faults.placeholder_rate, (), job)
        job.omit_files = self._hit("omit_files", faults.omit_files_rate, (), job)
        return job

    def _create(self, job: _Job) -> None:
        self._register(job)
        faults = self.config.faults
        rate, chosen = faults.duplicate_export_rate, faults.duplicate_export_intervals
        if job.trigger == SCHEDULED and job.attempt == 0 and self._hit("dup", rate, chosen, job):
            later = self.now + timedelta(minutes=3 + int(self._draw("dup_delay", job.id) * 10))
            twin = self._scheduled_job(job.category, job.interval_start, later, attempt=1)
            self._push(later, "create", twin)
            self._log("duplicate_export", job, detail={"duplicate_job_id": twin.id})

    def _in_outage(self, t: datetime) -> bool:
        return any(o.covers(t) for o in self.config.faults.outages)

    def _job_id(self, *parts: object) -> str:
        plain = rnd.salt(self.config.seed, *parts)
        rate = self.config.faults.hostile_job_ids
        if rate and self._draw("hostile_id", *parts) < rate:
            form, make = HOSTILE_ID_FORMS[len(self._hostile) % len(HOSTILE_ID_FORMS)]
            job_id = make(f"{plain:016x}")
            self._hostile[job_id] = form
            return job_id
        return f"job-{plain:016x}"

    def _register(self, job: _Job) -> None:
        if job.id in self._hostile:
            self._log("hostile_job_id", job, detail={"form": self._hostile[job.id]})
        job.updated_at = job.created_at
        self._jobs[job.id] = job
        delay = timedelta(seconds=30 + int(self._draw("queued_for", job.id) * 60))
        self._push(job.created_at + delay, "run", job)

    # ------------------------------------------------------------------------ job life cycle

    def _handle(self, kind: str, job: _Job) -> bool:
        """Apply one event; returns whether ``job`` itself changed state."""
        if kind == "create" and job.trigger == SCHEDULED and self._in_outage(job.created_at):
            self._log("outage", job, detail={"due": iso(job.created_at)})
            return False
        if kind == "create":
            self._create(job)
        elif kind == "run":
            self._run(job)
        elif kind == "finish":
            self._finish(job)
        else:
            self._rewrite(job)
            return False
        return True

    def _run(self, job: _Job) -> None:
        job.status = RUNNING
        job.start_time = job.updated_at = self.now
        for dt in job.category.data_types:
            for interval in job.intervals():
                job.keys[(dt.name, interval)] = self._reserve(job, dt, interval)
        if job.trigger == SCHEDULED and (job.placeholders or job.outcome != COMPLETED):
            self._write_placeholders(job)
        draw = self._draw("duration", job.id)
        if job.outcome == TIMED_OUT:
            took = TIMEOUT_AFTER
        elif job.trigger == MANUAL:
            took = timedelta(seconds=120 + int(draw * 180))
        else:
            took = timedelta(seconds=120 + int(draw * 600))
        self._push(self.now + took, "finish", job)

    def _reserve(self, job: _Job, dt: DataType, hour: datetime) -> str:
        folder = hour_folder(job.prefix, dt.name, hour)
        if folder not in self._parts and self.config.manifests_only:
            self._parts[folder] = 0
        if folder not in self._parts:
            self._parts[folder] = self._first_free_part(folder)
        part = 0 if job.overwrite else self._parts[folder]
        self._parts[folder] = max(self._parts[folder], part + 1)
        return f"{folder}part-{part:05d}.parquet"

    def _first_free_part(self, folder: str) -> int:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=folder
        )
        taken = [
            int(obj["Key"].rsplit("part-", 1)[1].split(".", 1)[0])
            for page in pages
            for obj in page.get("Contents", [])
            if obj["Key"].rsplit("/", 1)[1].startswith("part-")
        ]
        return max(taken, default=-1) + 1

    def _write_placeholders(self, job: _Job) -> None:
        for n, key in enumerate(sorted(job.keys.values())):
            body = b"" if n % 2 else b"PAR1\x15\x04\x15" + bytes(range(64))
            self._put(key, body)
            self._objects[key] = None
            self._log("placeholder", job, uri=self._uri(key), detail={"bytes": len(body)})

    def _finish(self, job: _Job) -> None:
        job.status = job.outcome
        job.end_time = job.updated_at = self.now
        if job.outcome == FAILED:
            job.error = "Export failed: the reporting data source returned an internal error"
            self._log("failed", job)
            return
        if job.outcome == TIMED_OUT:
            minutes = TIMEOUT_AFTER // timedelta(minutes=1)
            job.error = f"Export timed out after {minutes} minutes"
            self._log("timed_out", job)
            return
        for (name, interval), key in sorted(job.keys.items()):
            dt = job.category.data_type(name)
            if self.config.manifests_only:
                job.files.append(_File(key, dt, interval, 0, 0, 0))
                continue
            job.files.append(self._write_file(job, dt, interval, key))
        if job.skew_percent:
            self._log("record_count_skew", job, detail={"percent": job.skew_percent})
        if job.omit_files:
            self._log("omit_files", job)
        if job.replace_bytes:
            self._push(self.now + REWRITE_AFTER, "rewrite", job)

    def _write_file(self, job: _Job, dt: DataType, interval: datetime, key: str) -> _File:
        plan = gen.plan_file(
            self.config,
            dt,
            interval,
            order_salt=job.id,
            null_keys=job.null_keys,
            clean=job.trigger == MANUAL,
        )
        size = self._write_plan(key, plan)
        rows = plan.num_rows
        skewed = round(rows * (1 + job.skew_percent / 100))
        if job.denied:
            self._denied.add(key)
            self._log("denied_read", job, dt.name, self._uri(key))
        else:  # a new object under the current KMS grant (an overwriting manual export)
            self._denied.discard(key)
        self._log_content(job, dt, key, plan)
        return _File(key, dt, interval, rows, skewed, size)

    def _log_content(self, job: _Job, dt: DataType, key: str, plan: gen.FilePlan) -> None:
        uri = self._uri(key)
        for kind, version in (
            ("late_update", gen.LATE_UPDATE),
            ("stale_redelivery", gen.STALE),
            ("in_file_duplicate", gen.IN_FILE_DUPLICATE),
        ):
            if rows := plan.rows_of(version):
                self._log(kind, job, dt.name, uri, detail={"rows": rows})
        if plan.null_keys:
            self._log("null_key", job, dt.name, uri, detail={"column": dt.key[0]})
        if plan.order_seed is not None:
            self._log("shuffle_rows", job, dt.name, uri)
        for drift in plan.drift:
            detail = {"drift": drift.kind, "column": drift.column, "breaking": drift.breaking(dt)}
            self._log("drift", job, dt.name, uri, detail=detail)

    def _rewrite(self, job: _Job) -> None:
        for f in job.files:
            plan = self._objects[f.key]
            assert plan is not None
            reordered = plan.with_order(rnd.salt(self.config.seed, "rewrite", f.key))
            self._write_plan(f.key, reordered)
            self._log("replaced_bytes", job, f.data_type.name, self._uri(f.key))

    def _write_plan(self, key: str, plan: gen.FilePlan) -> int:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as sink:
            gen.write_parquet(plan, sink, self.config.compression)
            size = sink.tell()
            sink.seek(0)
            self._put(key, sink)
        self._objects[key] = plan
        return size

    def _put(self, key: str, body: Any) -> None:
        self._s3.put_object(
            Bucket=self.config.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256"
        )

    def _log(
        self,
        kind: str,
        job: _Job,
        data_type: str | None = None,
        uri: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "kind": kind,
            "category": job.category.name,
            "interval_start": iso(job.interval_start),
            "job_id": job.id,
            "at": iso(self.now),
        }
        if data_type is not None:
            entry["data_type"] = data_type
        if uri is not None:
            entry["uri"] = uri
        if detail:
            entry["detail"] = detail
        self.fault_log.append(entry)

    # --------------------------------------------------------------------------- the API

    def download_ids(self) -> dict[str, str]:
        return {name: default_download_id(name) for name in self.config.categories}

    def download_config(self, download_id: str) -> dict[str, Any] | None:
        name = self._category_of(download_id)
        if name is None:
            return None
        cat = category(name)
        return {
            "download_id": download_id,
            "category": name,
            "data_types": [dt.name for dt in cat.data_types],
            "format": "parquet",
            "compression": self.config.compression,
            "partitioning": {
                "enabled": True,
                "structure": "year={yyyy}/month={MM}/day={dd}/hour={HH}",
            },
            "schedule": {
                "frequency": "HOURLY" if cat.hours == 1 else f"EVERY_{cat.hours}_HOURS",
                "offset_minutes": DEFAULT_OFFSET // timedelta(minutes=1),
            },
            "destination": {
                "type": "aws_s3",
                "bucket": self.config.bucket,
                "prefix": self._prefix(name),
            },
        }

    def list_jobs(
        self,
        download_id: str,
        *,
        category: str | None = None,
        statuses: Sequence[str] = (),
        updated_since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs of a download sorted by (updated_at, id); ``updated_since`` is inclusive.
        ``after``/``limit``: only the page after that (updated_at, id), at most ``limit`` jobs
        (the dicts of the other jobs are never built: a year of history pages quickly)."""
        with self._lock:
            name = self._require(download_id)
            since = utc(updated_since) if updated_since is not None else None
            jobs = [
                job
                for job in self._jobs.values()
                if job.category.name == name
                and category in (None, name)
                and (not statuses or job.status in statuses)
                and (since is None or (job.updated_at is not None and job.updated_at >= since))
            ]
            jobs.sort(key=lambda j: (j.updated_at, j.id))
            if after is not None:
                jobs = [j for j in jobs if (j.updated_at, j.id) > after]
            if limit is not None:
                jobs = jobs[:limit]
            return [self._job_dict(job) for job in jobs]

    def get_job(self, download_id: str, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.download_id != download_id:
                return None
            return self._job_dict(job)

    def manual_export(self, download_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a manual export (see the module docs); raises BadRequest, Conflict, NotFound."""
        with self._lock:
            name = self._require(download_id)
            cat = category(name)
            start, end, overwrite, prefix = self._validate_manual(cat, body)
            for other in self._jobs.values():
                if (
                    other.trigger == MANUAL
                    and other.category is cat
                    and other.status in ACTIVE
                    and other.interval_start < end
                    and start < other.interval_end
                ):
                    raise Conflict(f"manual export {other.id} overlapping this range is running")
            job_id = self._job_id(download_id, MANUAL, next(self._manual_seq))
            job = _Job(job_id, cat, MANUAL, start, end, prefix, self.now, COMPLETED)
            job.overwrite = overwrite
            if self._draw("manual_failed", job_id) < self.config.faults.failed_rate:
                job.outcome = FAILED
            self._create(job)
            return self._job_dict(job)

    def _validate_manual(self, cat: Category, body: Any) -> tuple[datetime, datetime, bool, str]:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        if body.get("category") != cat.name:
            raise BadRequest(f"category must be {cat.name!r} for this download")
        start, end = _time_field(body, "start_time"), _time_field(body, "end_time")
        if end <= start:
            raise BadRequest("end_time must be after start_time")
        for name, value in (("start_time", start), ("end_time", end)):
            if (value - self.config.start) % cat.interval:
                raise BadRequest(f"{name} must lie on a {cat.hours}-hour interval boundary")
        if start < self.config.start:
            raise BadRequest(
                f"start_time is before the first exported interval {iso(self.config.start)}"
            )
        if end > self.now:
            raise BadRequest("end_time is in the future")
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise BadRequest("overwrite must be a boolean")
        prefix = body.get("destination_prefix") or self._prefix(cat.name)
        if not isinstance(prefix, str):
            raise BadRequest("destination_prefix must be a string")
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        if not prefix.startswith(self._prefix(cat.name)) or ".." in prefix.split("/"):
            raise BadRequest(f"destination_prefix must lie under {self._prefix(cat.name)!r}")
        return start, end, overwrite, prefix

    def unreadable_keys(self) -> frozenset[tuple[str, str]]:
        """(bucket, key) of every object the reader may not decrypt (denied_read fault)."""
        with self._lock:
            return frozenset((self.config.bucket, key) for key in self._denied)

    # ------------------------------------------------------------------------ ground truth

    def ground_truth(
        self,
        category: str,
        data_type: str,
        start: datetime | None = None,
        end: datetime | None = None,
        tolerance: float = 0.05,
    ) -> pa.Table:
        """Newest version of every key of the loadable partitions inside ``[start, end)``."""
        with self._lock:
            dt = _category(category).data_type(data_type)
            lo = utc(start) if start is not None else self.config.start
            hi = utc(end) if end is not None else self.now
            return truth.ground_truth(dt, self._partitions(dt, lo, hi, tolerance))

    def truth_exclusions(self, tolerance: float = 0.05) -> list[dict[str, Any]]:
        """Partitions a correct platform must not load now: blocked, or only failed exports."""
        with self._lock:
            out: list[dict[str, Any]] = []
            for name in self.config.categories:
                ended = [
                    (job.interval_start, job.status, job.id)
                    for job in sorted(self._jobs.values(), key=lambda j: (j.updated_at, j.id))
                    if job.category.name == name
                    and job.status in (FAILED, TIMED_OUT)
                    and job.trigger == SCHEDULED
                ]
                for dt in category(name).data_types:
                    parts = self._partitions(dt, self.config.start, self.now, tolerance)
                    out += truth.exclusions(parts)
                    out += truth.unfilled(dt, parts, ended)
            return out

    def _partitions(
        self, dt: DataType, start: datetime, end: datetime, tolerance: float
    ) -> list[truth.Partition]:
        return truth.partitions(dt, self._truth_jobs(dt.category), start, end, tolerance)

    def _truth_jobs(self, name: str) -> list[truth.TruthJob]:
        jobs = []
        for job in self._jobs.values():
            if job.category.name != name or job.status != COMPLETED:
                continue
            assert job.end_time is not None
            files = tuple(
                truth.TruthFile(
                    key=f.key,
                    data_type=f.data_type.name,
                    hour=f.hour,
                    manifest_count=None if job.omit_files else f.manifest_count,
                    plan=self._current(f.key),
                    denied=f.key in self._denied,
                )
                for f in job.files
            )
            jobs.append(
                truth.TruthJob(job.id, job.end_time, _record_count(job), not job.omit_files, files)
            )
        return jobs

    def _current(self, key: str) -> gen.FilePlan:
        plan = self._objects[key]
        assert plan is not None, f"{key} holds a placeholder"
        return plan

    # ----------------------------------------------------------------------------- helpers

    def _category_of(self, download_id: str) -> str | None:
        return next((c for c, d in self.download_ids().items() if d == download_id), None)

    def _require(self, download_id: str) -> str:
        name = self._category_of(download_id)
        if name is None:
            raise NotFound(f"unknown download id {download_id!r}")
        return name

    @staticmethod
    def _prefix(name: str) -> str:
        return f"exports/{name}/"

    def _uri(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}"

    def _job_dict(self, job: _Job) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": job.id,
            "download_id": job.download_id,
            "category": job.category.name,
            "status": job.status,
            "trigger": job.trigger,
            "interval_start": iso(job.interval_start),
            "interval_end": iso(job.interval_end),
            "start_time": iso(job.start_time) if job.start_time else None,
            "end_time": iso(job.end_time) if job.end_time else None,
            "updated_at": iso(job.updated_at or job.created_at),
            "output_files": [self._uri(f.key) for f in job.files],
            "record_count": _record_count(job),
            "error_details": job.error,
        }
        if not job.omit_files:
            out["files"] = [
                {
                    "uri": self._uri(f.key),
                    "data_type": f.data_type.name,
                    "record_count": f.manifest_count,
                    "size_bytes": f.size_bytes,
                }
                for f in job.files
            ]
        return out


def hour_folder(prefix: str, data_type: str, hour: datetime) -> str:
    """``{prefix}{data_type}/year=YYYY/month=MM/day=DD/hour=HH/`` (CONTRACT §2)."""
    return f"{prefix}{data_type}/{hour:year=%Y/month=%m/day=%d/hour=%H}/"


def _record_count(job: _Job) -> int:
    if job.omit_files:
        return round(sum(f.rows for f in job.files) * (1 + job.skew_percent / 100))
    return sum(f.manifest_count for f in job.files)


def _time_field(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} is required (ISO-8601, e.g. 2024-03-15T14:00:00Z)")
    try:
        return parse_time(value)
    except ValueError:
        raise BadRequest(f"{name} is not an ISO-8601 timestamp: {value!r}") from None


def _category(name: str) -> Category:
    return category(name)
