"""Stage one partition of one data type: select jobs, verify and fetch files, evaluate the gates.

Pure library code (no Dagster): the staged asset, the benchmark and the tests all call
:func:`stage_partition`. What it decides is what the MERGE will load:

* only COMPLETED jobs whose interval overlaps the partition, asked of the API (the bucket is
  never listed to decide what to load);
* a job with a file outside the export bucket or the download's prefix is refused whole;
* every file of the data type inside the window is streamed to local disk with its SHA-256 and
  S3 version id; files already in the audit ledger with the same version and hash are skipped;
* the gates (record count, checksum, schema drift, readability) are evaluated per job. A failing
  job blocks the partition unless a later-completed clean job supersedes it; only a job that
  delivers files of this data type in this partition is a re-export of it (a later job without
  such a file supersedes nothing);
* a file named in ``output_files`` without a ``files[]`` entry (when the job gives ``files[]``)
  has no count to check: it blocks its data type's partition.

Job ids and other API text never reach a local path: a staged file is named by a hash of
(job id, URI, data type) (see :mod:`cxone_sync.cxone.untrusted`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from cxone_sync.catalog import UPDATED_AT, DataType
from cxone_sync.clients import arrow_filesystem_for
from cxone_sync.cxone.errors import ForeignFileError
from cxone_sync.cxone.models import Job, JobStatus
from cxone_sync.cxone.source import ExportSource
from cxone_sync.cxone.untrusted import clean_text, file_stem, shown
from cxone_sync.cxone.uris import FileRef, validate_job_files
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.checks import CheckOutcome, Finding
from cxone_sync.storage.staging import (
    FetchedFile,
    ShortReadError,
    StagingError,
    TransientStagingError,
    UnreadableFileError,
    fetch_s3_file,
    head_s3_file,
)
from cxone_sync.warehouse.base import METADATA_PREFIX, StagedFile, Warehouse
from cxone_sync.warehouse.schema import (
    MAX_DECIMAL_PRECISION,
    READER_COLUMNS,
    SchemaDiff,
    diff_schema,
)


class NoCompletedExportError(Exception):
    """The partition has no COMPLETED export job: nothing can be loaded yet."""


@dataclass(frozen=True)
class Window:
    data_type: DataType
    partition_key: str
    start: datetime
    end: datetime


@dataclass
class StagedPartition:
    """What staging decided for one partition: the files the MERGE may load, or why not."""

    table: str
    partition_key: str
    window_start: datetime
    window_end: datetime
    blocked: bool
    files: list[StagedFile]
    jobs: list[str]
    superseded_jobs: list[str]
    skipped_files: list[str]
    outcomes: list[CheckOutcome]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def blocked_reasons(self) -> list[str]:
        """Why the partition is blocked: the description of every failing ERROR gate."""
        return [o.description for o in self.outcomes if not o.passed and o.severity == "ERROR"]


@dataclass
class _JobState:
    job: Job
    files: list[StagedFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    delivers: bool = False
    """The job names files of the window's data type inside the window (staged or skipped)."""

    @property
    def failed(self) -> bool:
        return any(f.blocking for f in self.findings)


def select_jobs(source: ExportSource, category: str, start: datetime, end: datetime) -> list[Job]:
    """COMPLETED jobs whose interval overlaps [start, end), oldest completion first: one listing
    for a whole range of partitions (a job cannot change state before its interval starts)."""
    jobs = source.iter_jobs(category, statuses=(JobStatus.COMPLETED,), updated_since=start)
    return overlapping([j for j in jobs if j.status == "COMPLETED"], start, end)


def overlapping(jobs: Sequence[Job], start: datetime, end: datetime) -> list[Job]:
    """The jobs whose interval overlaps [start, end), oldest completion first."""
    chosen = [j for j in jobs if j.interval_start < end and j.interval_end > start]
    return sorted(chosen, key=_completion_order)


def _completion_order(job: Job) -> tuple[datetime, str]:
    return (job.end_time or job.updated_at, job.id)


def deviation(expected: int, actual: int) -> float:
    if expected == 0:
        return 0.0 if actual == 0 else 1.0
    return abs(actual - expected) / expected


class PartitionStager:
    """Verifies and fetches the files of one partition (one instance per partition)."""

    def __init__(
        self,
        *,
        source: ExportSource,
        s3_client: Any,
        warehouse: Warehouse,
        bucket: str,
        prefixes: Sequence[str],
        staging_dir: Path,
        tolerance: float = 0.05,
        s3_filesystem: Any | None = None,
    ) -> None:
        """``s3_filesystem``: pyarrow's S3 filesystem for footer-only reads (None: built beside
        ``s3_client`` when first needed, see :func:`cxone_sync.clients.arrow_filesystem_for`)."""
        self.source = source
        self.s3 = s3_client
        self._s3_fs = s3_filesystem
        self.warehouse = warehouse
        self.bucket = bucket
        self.prefixes = tuple(prefixes)
        self.staging_dir = staging_dir
        self.tolerance = tolerance

    # -- public -------------------------------------------------------------------------------
    def stage(self, window: Window, jobs: Sequence[Job] | None = None) -> StagedPartition:
        """``jobs``: COMPLETED jobs listed once for a range (None: list this window's)."""
        started = time.perf_counter()
        if self.staging_dir.exists():
            shutil.rmtree(self.staging_dir)
        self.staging_dir.mkdir(parents=True)
        if jobs is None:
            jobs = select_jobs(self.source, window.data_type.category, window.start, window.end)
        else:
            jobs = overlapping(jobs, window.start, window.end)
        if not jobs:
            raise NoCompletedExportError(self._why_nothing(window))
        existing = self.warehouse.table_columns(window.data_type)
        states = [self._stage_job(job, window, existing) for job in jobs]
        superseded = _superseded(states)
        _explain_not_superseded(states, superseded, window)
        blocked = any(s.failed and s.job.id not in superseded for s in states)
        findings = [f for s in states for f in s.findings]
        for finding in findings:  # API text inside: escaped and bounded before anyone reads it
            finding.message = clean_text(finding.message)
        loadable = [s for s in states if not s.failed]
        files = [] if blocked else [f for s in loadable for f in s.files]
        stats = {
            "jobs": len(jobs),
            "files": sum(len(s.files) + len(s.skipped) for s in states),
            "files_staged": len(files),
            "files_skipped": sum(len(s.skipped) for s in states),
            "bytes": sum(f.size_bytes for s in states for f in s.files),
            "rows_in_files": sum(f.rows for s in states for f in s.files),
            "stage_seconds": round(time.perf_counter() - started, 3),
        }
        outcomes = self._outcomes(window, states, findings, superseded, stats)
        if blocked:
            for s in states:
                for f in s.files:
                    f.path.unlink(missing_ok=True)
        staged = StagedPartition(
            table=window.data_type.table,
            partition_key=window.partition_key,
            window_start=window.start,
            window_end=window.end,
            blocked=blocked,
            files=files,
            jobs=[s.job.id for s in states],
            superseded_jobs=sorted(superseded),
            skipped_files=[u for s in states for u in s.skipped],
            outcomes=outcomes,
            stats=stats,
        )
        return staged

    def _why_nothing(self, window: Window) -> str:
        others = [
            j
            for j in self.source.iter_jobs(window.data_type.category, updated_since=window.start)
            if j.interval_start < window.end and j.interval_end > window.start
        ]
        where = f"{window.data_type.table} partition {window.partition_key}"
        if not others:
            return (
                f"{where}: CXone has no export job for this interval yet; it is not due, or the "
                "scheduled export never ran. Gap detection requests a manual export; to do it "
                "now, POST a manual export for the interval."
            )
        states = ", ".join(
            f"{shown(j.id)} {j.status}"
            + (f" ({shown(j.error_details, 300)})" if j.error_details else "")
            for j in others
        )
        return (
            f"{where}: no COMPLETED export job for this interval ({states}). CXone never retries "
            "a failed export: request a manual export of the interval (overwrite false, "
            "destination_prefix {prefix}backfill/); the failed-job sensor does this automatically."
        )

    # -- per job ------------------------------------------------------------------------------
    def _stage_job(self, job: Job, window: Window, existing: dict[str, str] | None) -> _JobState:
        state = _JobState(job)
        try:
            refs = validate_job_files(job, self.bucket, self.prefixes)
        except ForeignFileError as exc:
            state.findings.append(Finding(ck.FILE_LOCATION, job.id, str(exc), blocking=True))
            return state
        mine = [
            r
            for r in refs
            if r.data_type == window.data_type.name
            and window.start <= r.partition_hour < window.end
        ]
        state.delivers = bool(mine)
        expected = {f.uri: f.record_count for f in job.files} if job.files is not None else None
        ledger = self.warehouse.loaded_files([r.uri for r in mine]) if mine else {}
        for ref in mine:
            self._stage_file(state, ref, window, existing, expected, ledger.get(ref.uri, []))
        if expected is None:
            self._check_job_total(state, refs)
        return state

    def _stage_file(
        self,
        state: _JobState,
        ref: FileRef,
        window: Window,
        existing: dict[str, str] | None,
        expected: dict[str, int] | None,
        known: list[tuple[str | None, str]],
    ) -> None:
        job = state.job
        uri = ref.uri
        fetched = self._fetch(state, ref, known)
        if fetched is None:
            return
        if fetched.path is None:  # same version and bytes already loaded: skip
            state.skipped.append(uri)
            return
        try:
            parquet = pq.ParquetFile(fetched.path)
            rows = parquet.metadata.num_rows
            schema = parquet.schema_arrow
            lie = _footer_lie(parquet.metadata)
        except (pa.ArrowException, OSError) as exc:
            state.findings.append(_unreadable(job, uri, f"{type(exc).__name__}: {exc}"))
            return
        if lie:
            state.findings.append(_unreadable(job, uri, lie))
            return
        if expected is not None:
            self._check_count(state, uri, expected.get(uri), rows)
        if not self._check_schema(state, uri, parquet, schema, window, existing):
            return
        end_time = job.end_time or job.updated_at
        state.files.append(
            StagedFile(
                path=fetched.path,
                uri=uri,
                version_id=fetched.version_id,
                sha256=fetched.sha256,
                rows=rows,
                size_bytes=fetched.size_bytes,
                job_id=job.id,
                job_end_time=end_time,
            )
        )

    def _fetch(
        self, state: _JobState, ref: FileRef, known: list[tuple[str | None, str]]
    ) -> FetchedFile | None:
        """Fetch to staging; only hash a file the ledger holds (skipped when unchanged)."""
        job = state.job
        uri = ref.uri
        # Named by what the platform controls, never the raw id (which may hold '/', '..', NUL or
        # be an absolute path): one name per (job, file, data type), inside the staging folder.
        dest = self.staging_dir / f"{file_stem(job.id, uri, ref.data_type)}.parquet"
        try:
            if known:
                decision = self._unchanged(state, ref, dict(known))
                if isinstance(decision, FetchedFile):
                    return decision  # unchanged: skipped
                if decision == "blocked":
                    return None
            fetched = fetch_s3_file(self.s3, ref.location.bucket, ref.location.key, dest)
        except UnreadableFileError as exc:
            state.findings.append(Finding(ck.READABLE, job.id, str(exc), blocking=True, uri=uri))
            return None
        except ShortReadError as exc:
            state.findings.append(Finding(ck.CHECKSUM, job.id, str(exc), blocking=True, uri=uri))
            return None
        except TransientStagingError:
            raise  # S3 5xx / connection: the step is retried, the partition is not blocked
        except StagingError as exc:
            state.findings.append(Finding(ck.READABLE, job.id, str(exc), blocking=True, uri=uri))
            return None
        if fetched.checksum_matches is False:
            state.findings.append(
                Finding(
                    ck.CHECKSUM,
                    job.id,
                    f"{uri}: SHA-256 of the bytes read ({fetched.sha256[:12]}...) differs from "
                    f"the checksum S3 stores ({(fetched.s3_checksum_sha256 or '')[:12]}...). "
                    "Request a re-export of the interval (manual export, overwrite false).",
                    blocking=True,
                    uri=uri,
                )
            )
            return None
        if known and fetched.version_id not in {v for v, _ in known}:
            state.findings.append(
                Finding(
                    ck.CHECKSUM,
                    job.id,
                    f"{uri} has a new S3 version {fetched.version_id} since it was loaded; "
                    "loading the new version (newest version of each key still wins).",
                    blocking=False,
                    uri=uri,
                )
            )
        return fetched

    def _unchanged(
        self, state: _JobState, ref: FileRef, previous: dict[str | None, str]
    ) -> FetchedFile | Literal["download", "blocked"]:
        """A file the ledger holds: skipped without reading it when S3's current version is the
        loaded one (an S3 object version's bytes never change). Returns the skip marker (a
        FetchedFile without a path), "blocked" (a finding was recorded) or "download" (a new
        version, or an unversioned bucket where only the bytes can tell)."""
        head = head_s3_file(self.s3, ref.location.bucket, ref.location.key)
        if head.version_id is None:
            hashed = fetch_s3_file(self.s3, ref.location.bucket, ref.location.key, None)
            if previous.get(None) == hashed.sha256:
                return hashed
            return "download"
        loaded = previous.get(head.version_id)
        if loaded is None:
            return "download"
        if head.s3_checksum_sha256 in (None, loaded):
            return FetchedFile(
                uri=ref.uri,
                path=None,
                version_id=head.version_id,
                sha256=loaded,
                size_bytes=head.size_bytes,
                s3_checksum_sha256=head.s3_checksum_sha256,
            )
        state.findings.append(
            Finding(
                ck.CHECKSUM,
                state.job.id,
                f"{ref.uri} version {head.version_id}: S3's stored SHA-256 "
                f"({head.s3_checksum_sha256[:12]}...) differs from the SHA-256 it was loaded with "
                f"({loaded[:12]}...): the bytes under one S3 version changed. Request a re-export "
                "of the interval (manual export, overwrite false, backfill prefix).",
                blocking=True,
                uri=ref.uri,
            )
        )
        return "blocked"

    # -- gates --------------------------------------------------------------------------------
    def _check_count(self, state: _JobState, uri: str, expected: int | None, actual: int) -> None:
        job = state.job
        if expected is None:
            # files[] is given but silent on this file: its rows could not be checked, and a
            # manifest that forgets a file is not one to trust for it. Block, say why.
            state.findings.append(
                Finding(
                    ck.RECORD_COUNT,
                    job.id,
                    f"{uri} is in job {shown(job.id)}'s output_files but has no files[] entry, "
                    "so its rows cannot be checked against a record count; the partition is not "
                    "loaded. Request a re-export of the interval (manual export, overwrite "
                    "false, destination {prefix}backfill/); a clean re-export supersedes this job.",
                    blocking=True,
                    uri=uri,
                )
            )
            return
        dev = deviation(expected, actual)
        if dev == 0:
            return
        blocking = dev > self.tolerance
        verdict = "exceeds" if blocking else "is within"
        state.findings.append(
            Finding(
                ck.RECORD_COUNT,
                job.id,
                f"{uri}: {actual} rows in the file, manifest of job {shown(job.id)} says "
                f"{expected} (deviation {dev:.2%} {verdict} the {self.tolerance:.0%} tolerance)"
                + (". Request a re-export of the interval." if blocking else ""),
                blocking=blocking,
                uri=uri,
                numbers={"expected": expected, "actual": actual, "deviation": round(dev, 6)},
            )
        )

    def _s3_filesystem(self) -> Any:
        if self._s3_fs is None:
            self._s3_fs = arrow_filesystem_for(self.s3)
        return self._s3_fs

    def _check_job_total(self, state: _JobState, refs: list[FileRef]) -> None:
        """Without per-file counts: all the job's files against its total record_count.

        Only the footers are read (pyarrow's ranged reads of the current version of each file);
        the files of other data types and partitions are never downloaded."""
        job = state.job
        actual = 0
        for ref in refs:
            try:
                path = f"{ref.location.bucket}/{ref.location.key}"
                with self._s3_filesystem().open_input_file(path) as handle:
                    actual += pq.read_metadata(handle).num_rows
            except Exception as exc:  # any unreadable footer is a readability failure
                state.findings.append(
                    Finding(
                        ck.READABLE,
                        job.id,
                        f"cannot read the Parquet footer of {ref.uri} ({type(exc).__name__}) to "
                        f"count job {job.id}'s rows",
                        blocking=True,
                        uri=ref.uri,
                    )
                )
                return
        dev = deviation(job.record_count, actual)
        if dev == 0:
            return
        blocking = dev > self.tolerance
        state.findings.append(
            Finding(
                ck.RECORD_COUNT,
                job.id,
                f"job {job.id} (no per-file counts): {actual} rows across its {len(refs)} files, "
                f"manifest says {job.record_count} (deviation {dev:.2%}, tolerance "
                f"{self.tolerance:.0%})" + (". Request a re-export." if blocking else ""),
                blocking=blocking,
                numbers={
                    "expected": job.record_count,
                    "actual": actual,
                    "deviation": round(dev, 6),
                },
            )
        )

    def _check_schema(
        self,
        state: _JobState,
        uri: str,
        parquet: pq.ParquetFile,
        schema: pa.Schema,
        window: Window,
        existing: dict[str, str] | None,
    ) -> bool:
        """Schema drift and null keys (findings); False when the file cannot be read through."""
        job = state.job
        dt = window.data_type
        diff = diff_schema(existing, schema, dt)
        for message in _breaking(diff):
            state.findings.append(
                Finding(
                    ck.SCHEMA_DRIFT,
                    job.id,
                    f"{uri}: {message}. The partition is not loaded; ask CXone support about the "
                    "export schema, or re-export the interval.",
                    blocking=True,
                    uri=uri,
                    numbers={"diff": _diff_doc(diff)},
                )
            )
        evolving = _additive(diff) if existing is not None else ""
        if evolving:
            state.findings.append(
                Finding(
                    ck.SCHEMA_DRIFT,
                    job.id,
                    f"{uri}: schema evolves the table: {evolving}",
                    blocking=False,
                    uri=uri,
                    numbers={"diff": _diff_doc(diff)},
                )
            )
        if diff.bad_names:
            return True  # the names are refused above; a reader would rename some of them
        wanted = {c.casefold() for c in (*dt.key, UPDATED_AT)}
        required = [c for c in schema.names if c.casefold() in wanted]
        if not required:
            return True
        try:
            decoded, nulls = _scan(parquet, required)
        except (pa.ArrowException, OSError) as exc:
            claims = parquet.metadata.num_rows
            groups = parquet.metadata.num_row_groups
            detail = f"its footer claims {claims} rows in {groups} row group(s), but decoding "
            state.findings.append(
                _unreadable(job, uri, detail + f"failed: {type(exc).__name__}: {exc}")
            )
            return False
        if decoded != parquet.metadata.num_rows:
            detail = (
                f"its footer claims {parquet.metadata.num_rows} rows but its pages hold {decoded}"
            )
            state.findings.append(_unreadable(job, uri, detail))
            return False
        bad = {c: n for c, n in nulls.items() if n}
        if bad:
            listed = ", ".join(f"{c} ({n} rows)" for c, n in bad.items())
            state.findings.append(
                Finding(
                    ck.SCHEMA_DRIFT,
                    job.id,
                    f"{uri}: null values in {listed}: a key or updated_at must never be null. "
                    "The partition is not loaded; request a re-export of the interval.",
                    blocking=True,
                    uri=uri,
                    numbers={"null_counts": bad},
                )
            )
        return True

    def _outcomes(
        self,
        window: Window,
        states: list[_JobState],
        findings: list[Finding],
        superseded: set[str],
        stats: dict[str, Any],
    ) -> list[CheckOutcome]:
        base = {
            "partition": window.partition_key,
            "jobs": [s.job.id for s in states],
        }
        outcomes = [ck.summarize(name, findings, superseded, base) for name in ck.GATE_CHECKS]
        counts = _count_totals(states, findings)
        for outcome in outcomes:
            if outcome.name == ck.RECORD_COUNT:
                outcome.metadata.update(counts)
            if outcome.name == ck.CHECKSUM:
                outcome.metadata["sha256"] = {f.uri: f.sha256 for s in states for f in s.files}
        return outcomes


def _count_totals(states: list[_JobState], findings: list[Finding]) -> dict[str, Any]:
    expected = 0
    actual = 0
    for s in states:
        per_file = {f.uri: f.record_count for f in s.job.files or []}
        for f in s.files:
            actual += f.rows
            expected += per_file.get(f.uri, f.rows)
    worst = max(
        (float(f.numbers.get("deviation", 0.0)) for f in findings if f.check == ck.RECORD_COUNT),
        default=deviation(expected, actual),
    )
    return {"expected": expected, "actual": actual, "deviation": round(worst, 6)}


def _breaking(diff: SchemaDiff) -> list[str]:
    out = list(diff.bad_names)  # first: a reader renames such columns, the rest follows
    out += [f"key column {c!r} is missing" for c in diff.missing_keys]
    out += [
        f"column {c!r} changed type incompatibly from {old} to {new}"
        for c, (old, new) in diff.incompatible.items()
    ]
    out += [
        f"column {c!r} uses the platform's reserved prefix {METADATA_PREFIX}"
        if c.casefold().startswith(METADATA_PREFIX)
        else f"column {c!r} is reserved: the Parquet reader names its own columns "
        f"{', '.join(READER_COLUMNS)}"
        for c in diff.reserved
    ]
    out += [
        f"column 'updated_at' has type {t}: it must be a timestamp (newest-wins orders by it)"
        if c.casefold() == UPDATED_AT
        else f"key column {c!r} has type {t}: a natural key must be a single value with exact "
        "equality (text, integer, decimal, date, timestamp)"
        for c, t in diff.bad_keys.items()
    ]
    out += [
        f"column {c!r} is {t}: wider than the {MAX_DECIMAL_PRECISION} digits a warehouse "
        "decimal holds (it would load as an approximate DOUBLE)"
        for c, t in diff.unsupported.items()
    ]
    return out


def _unreadable(job: Job, uri: str, detail: str) -> Finding:
    return Finding(
        ck.READABLE,
        job.id,
        f"{uri} of job {job.id} is not a readable Parquet file ({detail}); it may be a partial "
        "write or a corrupt export. Request a re-export of the interval.",
        blocking=True,
        uri=uri,
    )


def _footer_lie(meta: pq.FileMetaData) -> str | None:
    """Where a footer contradicts itself: row groups against the file's row count, and every
    non-repeated column chunk's value count against its row group's rows (a reader refuses the
    file, or silently reads fewer rows than the footer claims)."""
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    total = sum(g.num_rows for g in groups)
    if total != meta.num_rows:
        return f"its footer claims {meta.num_rows} rows but its row groups add up to {total}"
    flat = [i for i in range(meta.num_columns) if meta.schema.column(i).max_repetition_level == 0]
    for n, group in enumerate(groups):
        for i in flat:
            chunk = group.column(i)
            if chunk.num_values != group.num_rows:
                return (
                    f"its footer claims {meta.num_rows} rows; row group {n} claims "
                    f"{group.num_rows} but column {chunk.path_in_schema!r} holds "
                    f"{chunk.num_values} values"
                )
    return None


def _scan(parquet: pq.ParquetFile, columns: list[str]) -> tuple[int, dict[str, int]]:
    """Decode ``columns`` of every row group: the rows read and the nulls per column."""
    rows = 0
    nulls = {c: 0 for c in columns}
    for batch in parquet.iter_batches(columns=columns, batch_size=262_144):
        rows += batch.num_rows
        for i, name in enumerate(columns):
            nulls[name] += batch.column(i).null_count
    return rows, nulls


def _additive(diff: SchemaDiff) -> str:
    parts = [f"ADD COLUMN {c} {t}" for c, t in diff.added.items()]
    parts += [f"ALTER COLUMN {c} TYPE {new} (was {old})" for c, (old, new) in diff.widened.items()]
    parts += [f"column {c} vanished (loads as NULL)" for c in diff.vanished]
    return "; ".join(parts)


def _diff_doc(diff: SchemaDiff) -> dict[str, Any]:
    return {
        "added": diff.added,
        "widened": {c: list(v) for c, v in diff.widened.items()},
        "vanished": diff.vanished,
        "incompatible": {c: list(v) for c, v in diff.incompatible.items()},
        "missing_keys": diff.missing_keys,
        "reserved": diff.reserved,
        "bad_names": diff.bad_names,
        "bad_keys": diff.bad_keys,
        "unsupported": diff.unsupported,
    }


def _superseded(states: list[_JobState]) -> set[str]:
    """Failing jobs followed (in completion order) by a clean re-export of this partition: a
    clean job that delivers files of this data type in this window. A later job without such a
    file re-exports nothing here (its other data types or partitions do not count)."""
    out: set[str] = set()
    for i, state in enumerate(states):
        if state.failed and any(later.delivers and not later.failed for later in states[i + 1 :]):
            out.add(state.job.id)
    return out


def _explain_not_superseded(states: list[_JobState], superseded: set[str], window: Window) -> None:
    """A failing job that later clean jobs did not supersede because they deliver no file of
    this data type here: say so in its blocking findings (else the block looks unexplained)."""
    for i, state in enumerate(states):
        if not state.failed or state.job.id in superseded:
            continue
        empty = [s.job.id for s in states[i + 1 :] if not s.failed and not s.delivers]
        if not empty:
            continue
        note = (
            f" Later COMPLETED job(s) {', '.join(shown(j) for j in empty[:5])} deliver no "
            f"{window.data_type.name} file for partition {window.partition_key}, so they do not "
            "supersede this job: the partition stays blocked until a re-export delivers its "
            "files."
        )
        for finding in state.findings:
            if finding.blocking:
                finding.message += note
