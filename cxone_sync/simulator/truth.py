"""The ground truth: what a correct platform holds, derived from the load rules alone.

A partition is (data type, interval of its category). Its candidates are the files of that data
type of every COMPLETED job whose hour folder lies in the partition window. A job's files for a
partition fail on a record-count mismatch beyond the tolerance (per file when the manifest lists
files, else per job over all its files), a null or missing key or ``updated_at``, an incompatible
type change, a file the reader may not read, or a file the job names without a ``files[]`` entry
when it lists ``files[]`` (no count to check it against). Jobs are ordered by (end_time, id); only
a job with files of the data type in the window is a candidate, so a later job without such a
file never supersedes a failing one. A partition is blocked when its last candidate fails (some
failing job has no passing candidate after it), else it loads the files of all passing jobs, and
of every key the newest ``updated_at`` wins, ties going to the later job. Everything here works
on plans, not on bytes read back from S3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa

from cxone_sync.catalog import UPDATED_AT, DataType, category
from cxone_sync.simulator import generator as gen
from cxone_sync.simulator.config import iso

DENIED_READ = "denied_read"
MISSING_KEY = "missing_key"
INCOMPATIBLE_TYPE = "incompatible_type"
NULL_KEY = "null_key"
RECORD_COUNT_MISMATCH = "record_count_mismatch"
UNLISTED_FILE = "unlisted_file"
JOB_FAILED = "job_failed"
JOB_TIMED_OUT = "job_timed_out"


@dataclass(frozen=True, eq=False)
class TruthFile:
    key: str
    data_type: str
    hour: datetime
    manifest_count: int | None
    """The manifest's per-file count; ``None`` when the job lists no files, or lists files but
    not this one (then the file blocks: see :func:`job_problem`)."""
    plan: gen.FilePlan
    """What the object at ``key`` holds now."""
    denied: bool


@dataclass(frozen=True, eq=False)
class TruthJob:
    id: str
    end_time: datetime
    record_count: int
    files_listed: bool
    files: tuple[TruthFile, ...]

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.end_time, self.id)

    def total_off(self, tolerance: float) -> bool:
        return deviates(sum(f.plan.num_rows for f in self.files), self.record_count, tolerance)


@dataclass(frozen=True)
class Partition:
    data_type: DataType
    start: datetime
    end: datetime
    jobs: tuple[tuple[TruthJob, str | None], ...]
    """Candidate jobs in completion order with their failure reason (``None`` = passes)."""

    @property
    def blocked(self) -> bool:
        return bool(self.jobs) and self.jobs[-1][1] is not None

    def loaded(self) -> list[tuple[TruthJob, TruthFile]]:
        if self.blocked:
            return []
        return [
            (job, f)
            for job, reason in self.jobs
            if reason is None
            for f in files_in(job, self.data_type, self.start, self.end)
        ]


def files_in(job: TruthJob, dt: DataType, start: datetime, end: datetime) -> list[TruthFile]:
    """The job's files of ``dt`` whose hour folder lies in ``[start, end)``."""
    return [f for f in job.files if f.data_type == dt.name and start <= f.hour < end]


def deviates(actual: int, manifest: int, tolerance: float) -> bool:
    """True when the rows deviate from the manifest's count by more than ``tolerance`` of the
    manifest's count (CONTRACT: "deviate from the manifest's count by more than the tolerance").
    A manifest of 0 tolerates no row."""
    if manifest == 0:
        return actual != 0
    return abs(actual - manifest) / manifest > tolerance


def file_problem(f: TruthFile, tolerance: float) -> str | None:
    """Why one file of a job cannot load, judged on its own."""
    if f.denied:
        return DENIED_READ
    for drift in f.plan.breaking_drift():
        return INCOMPATIBLE_TYPE if drift.kind == "incompatible_type" else MISSING_KEY
    if f.plan.null_keys:
        return NULL_KEY
    if f.manifest_count is not None and deviates(f.plan.num_rows, f.manifest_count, tolerance):
        return RECORD_COUNT_MISMATCH
    return None


def job_problem(job: TruthJob, files: list[TruthFile], tolerance: float) -> str | None:
    """Why a job's files of one partition cannot load (``None`` when they can)."""
    for f in files:
        if job.files_listed and f.manifest_count is None:
            return UNLISTED_FILE
        problem = file_problem(f, tolerance)
        if problem is not None:
            return problem
    if not job.files_listed and job.total_off(tolerance):
        return RECORD_COUNT_MISMATCH
    return None


def windows(dt: DataType, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The category intervals of ``dt`` lying inside ``[start, end)``."""
    step = category(dt.category).interval
    first = start + (datetime.min.replace(tzinfo=start.tzinfo) - start) % step
    count = max(0, (end - first) // step)
    return [(first + k * step, first + (k + 1) * step) for k in range(count)]


def partitions(
    dt: DataType,
    jobs: Sequence[TruthJob],
    start: datetime,
    end: datetime,
    tolerance: float,
) -> list[Partition]:
    """Every partition of ``dt`` inside ``[start, end)`` with its judged candidate jobs."""
    ordered = sorted(jobs, key=lambda j: j.order)
    result = []
    for lo, hi in windows(dt, start, end):
        judged = tuple(
            (job, job_problem(job, files, tolerance))
            for job in ordered
            if (files := files_in(job, dt, lo, hi))
        )
        result.append(Partition(dt, lo, hi, judged))
    return result


def ground_truth(dt: DataType, parts: Iterable[Partition]) -> pa.Table:
    """Newest version of every key over the loadable partitions, sorted by key."""
    loaded = sorted((pair for part in parts for pair in part.loaded()), key=lambda p: p[0].order)
    if not loaded:
        return gen.base_schema(dt).empty_table()
    ranks: dict[str, int] = {}
    tables = []
    for job, f in loaded:
        rank = np.full(f.plan.num_rows, ranks.setdefault(job.id, len(ranks)), dtype=np.int64)
        tables.append(gen.materialize(f.plan).append_column(_RANK, pa.array(rank)))
    return newest(dt, pa.concat_tables(tables, promote_options="permissive"))


_RANK = "__job_rank"


def newest(dt: DataType, table: pa.Table) -> pa.Table:
    """One row per key: largest ``updated_at``, then the later job (``__job_rank``)."""
    key = list(dt.key)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = (
        frame.sort([*key, UPDATED_AT, _RANK], descending=[False] * len(key) + [True, True])
        .unique(subset=key, keep="first", maintain_order=True)
        .drop(_RANK)
    )
    result = frame.to_arrow()
    result = result.select(column_order(dt, result.column_names))
    return result.cast(pa.schema([_small_strings(f) for f in result.schema]))


def _small_strings(field: pa.Field) -> pa.Field:
    """Polars hands back ``large_string``; Parquet readers see ``string``."""
    return field.with_type(pa.string()) if pa.types.is_large_string(field.type) else field


def column_order(dt: DataType, names: list[str]) -> list[str]:
    """The generator's column order first, then columns that appeared later, sorted by name."""
    base = [n for n in gen.base_schema(dt).names if n in names]
    return base + sorted(n for n in names if n not in base)


def exclusions(parts: Iterable[Partition]) -> list[dict[str, object]]:
    """Blocked partitions, with the reason and job of the last failing job."""
    out = []
    for part in parts:
        if part.blocked:
            job, reason = part.jobs[-1]
            out.append(_exclusion(part.data_type, part.start, part.end, reason, job.id))
    return out


def _exclusion(
    dt: DataType, start: datetime, end: datetime, reason: str | None, job_id: str
) -> dict[str, object]:
    return {
        "category": dt.category,
        "data_type": dt.name,
        "partition_start": iso(start),
        "partition_end": iso(end),
        "reason": reason,
        "job_id": job_id,
    }


def unfilled(
    dt: DataType, parts: Iterable[Partition], ended: Iterable[tuple[datetime, str, str]]
) -> list[dict[str, object]]:
    """Partitions with no COMPLETED job but a FAILED or TIMED_OUT one: (interval, status, id)."""
    empty_windows = {part.start: part for part in parts if not part.jobs}
    out = []
    for interval_start, status, job_id in ended:
        part = empty_windows.pop(interval_start, None)
        if part is not None:
            reason = JOB_FAILED if status == "FAILED" else JOB_TIMED_OUT
            out.append(_exclusion(dt, part.start, part.end, reason, job_id))
    return out


def differences(truth: pa.Table, table: pa.Table, key: list[str], limit: int = 5) -> list[str]:
    """Empty when ``table`` holds exactly the truth's rows (on the truth's columns)."""
    missing_cols = [c for c in truth.column_names if c not in table.column_names]
    if missing_cols:
        return [f"columns missing from the table: {missing_cols}"]
    order = [(k, "ascending") for k in key]
    left = truth.sort_by(order)
    right = table.select(truth.column_names).cast(truth.schema).sort_by(order)
    if left.num_rows != right.num_rows:
        return [f"{right.num_rows} rows in the table, {left.num_rows} in the truth"]
    out = []
    for name in truth.column_names:
        a, b = left.column(name), right.column(name)
        if not a.equals(b):
            for i in range(left.num_rows):
                if a[i] != b[i]:
                    out.append(f"{name} row {i}: truth {a[i]} table {b[i]}")
                    break
        if len(out) >= limit:
            break
    return out
