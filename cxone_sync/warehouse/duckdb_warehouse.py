"""DuckDB warehouse: one file, BI tables in schema ``cxone``, control tables in ``cxone_sync``.

Every operation opens its own connection and closes it before returning: DuckDB allows one
writing process per file, and Dagster runs come and go. A partition merges in one transaction,
reading the staged Parquet files directly (never through Python), so memory stays bounded by
``memory_limit`` and DuckDB spills to ``temp_directory`` beyond it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cxone_sync.catalog import UPDATED_AT, DataType
from cxone_sync.timefmt import utc_now_iso
from cxone_sync.warehouse.base import (
    DataError,
    JobEvent,
    MergeResult,
    PartitionLoad,
    SchemaError,
    SchemaVersion,
    StagedFile,
    StepClock,
    Watermark,
    quote,
)
from cxone_sync.warehouse.locks import open_with_wait
from cxone_sync.warehouse.schema import (
    READER_COLUMNS,
    SchemaDiff,
    columns_hash,
    columns_json,
    diff_columns,
    lossless,
    normalize_type,
)

BI_SCHEMA = "cxone"
CONTROL_SCHEMA = "cxone_sync"
CONTROL_TABLES = frozenset(
    {"file_audit", "watermarks", "partition_loads", "job_events", "schema_versions"}
)
CONTROL_MARKER_TABLE = "file_audit"
"""Its table comment records which version of ``sql/control_tables.sql`` the file has, and when
it was applied (a comment, so the control schema holds exactly the contract's tables)."""
CONTROL_VERSION = 1
"""Raise when ``control_tables.sql`` changes: files with an older marker get the DDL again."""
MARKER_TEXT = "cxone_sync control tables version {version}, applied {applied_at}"
_MARKER = re.compile(r"cxone_sync control tables version (\d+), applied (\S+)")
DEFAULT_LOCK_WAIT_SECONDS = 60.0


@cache
def _sql_text(name: str) -> str:
    return package_files("cxone_sync.warehouse").joinpath("sql", f"{name}.sql").read_text()


def render(name: str, **fragments: str) -> str:
    """SQL from ``sql/{name}.sql``; fragments are identifiers already passed through quote()."""
    return _sql_text(name).format(**fragments) if fragments else _sql_text(name)


def _target(data_type: DataType) -> str:
    return f"{quote(BI_SCHEMA)}.{quote(data_type.table)}"


def _key_match(data_type: DataType) -> str:
    return " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in data_type.key)


@dataclass
class _Plan:
    """What a merge will do, decided before the BI table is touched."""

    new_files: list[StagedFile]
    skipped: int
    table_exists: bool
    columns: dict[str, str] = field(default_factory=dict)
    """Incoming columns -> type, unified over the new files."""
    added: dict[str, str] = field(default_factory=dict)
    """Columns new to the table -> type (every column when the table does not exist)."""
    widened: dict[str, str] = field(default_factory=dict)
    """Existing columns -> their new, wider type."""
    untyped: list[str] = field(default_factory=list)


class DuckDBWarehouse:
    """The DuckDB file behind the :class:`~cxone_sync.warehouse.base.Warehouse` interface.

    ``read_only=True`` opens the file in DuckDB's read-only mode: readers share the file with each
    other (never with a writer process) and never create anything; before the file exists every
    read answers "nothing loaded yet". Opening waits up to ``lock_wait_seconds`` while another
    process holds a conflicting lock (backoff with jitter), then raises
    :class:`~cxone_sync.warehouse.locks.WarehouseLockedError`.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        memory_limit: str | None = None,
        temp_directory: Path | None = None,
        threads: int | None = None,
        read_only: bool = False,
        lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.lock_wait_seconds = lock_wait_seconds
        self._memory_limit = memory_limit
        self._temp_directory = temp_directory
        self._threads = threads
        self._config: dict[str, Any] = {"preserve_insertion_order": False}
        self._local = threading.local()
        if memory_limit:
            self._config["memory_limit"] = memory_limit
        if temp_directory:
            self._config["temp_directory"] = str(temp_directory)
        if threads:
            self._config["threads"] = threads

    def reader(self) -> DuckDBWarehouse:
        """The same file opened read-only (for everything that only reads)."""
        return DuckDBWarehouse(
            self.path,
            memory_limit=self._memory_limit,
            temp_directory=self._temp_directory,
            threads=self._threads,
            read_only=True,
            lock_wait_seconds=self.lock_wait_seconds,
        )

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one connection for every call made inside (this thread): opening the file costs
        more than most reads. The file stays locked for the session: keep it to one partition,
        so other processes (sensors, doctor) get in between partitions."""
        if getattr(self._local, "con", None) is not None:
            yield  # already inside a session
            return
        with self._connect() as con:
            self._local.con = con
            try:
                yield
            finally:
                self._local.con = None

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        held = getattr(self._local, "con", None)
        if held is not None:
            yield held
            return
        con = self._open()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if not self.read_only:
                _ensure_control_tables(con)
            elif not _has_control_tables(con):
                # a file the platform never initialised: nothing is loaded in it
                con.close()
                con = _empty_control_tables()
            yield con
        finally:
            con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.read_only and not self.path.exists():
            return _empty_control_tables()  # nothing loaded yet; never create the file here
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return open_with_wait(
            lambda: duckdb.connect(str(self.path), read_only=self.read_only, config=self._config),
            self.path,
            self.lock_wait_seconds,
        )

    def _require_writable(self, what: str) -> None:
        if self.read_only:
            raise PermissionError(
                f"{what}: this warehouse handle opens {self.path} read-only; use a read-write "
                "handle (WarehouseResource.get()) for writes"
            )

    def ensure_control_tables(self) -> None:
        self._require_writable("ensure_control_tables")
        with self._connect():
            pass

    # -- merge ---------------------------------------------------------------------------

    def merge_partition(
        self,
        data_type: DataType,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        files: Sequence[StagedFile],
    ) -> MergeResult:
        """Merge one partition's files newest-wins, all or nothing, in one transaction."""
        clock = StepClock()
        loaded_at = datetime.now(UTC)
        load = _Load(data_type, partition_key, window_start, window_end, loaded_at)
        self._require_writable("merge_partition")
        with self._connect() as con:
            con.begin()
            try:
                plan = _plan(con, data_type, files)
                result = _merge(con, clock, load, plan)
                _record_load(con, load, plan, result)
                con.commit()
            except duckdb.Error as exc:
                con.rollback()
                raise _unmergeable(load, files, exc) from exc
            except BaseException:
                con.rollback()
                raise
        clock.lap("commit")
        result.seconds = clock.seconds
        return result

    # -- ledger and metadata -----------------------------------------------------------------

    def loaded_files(self, uris: Sequence[str]) -> dict[str, list[tuple[str | None, str]]]:
        with self._connect() as con:
            return _loaded_files(con, uris)

    def record_job_events(self, events: Sequence[JobEvent]) -> int:
        if not events:
            return 0
        self._require_writable("record_job_events")
        with self._connect() as con:
            con.begin()
            con.execute(render("job_events_stage"))
            con.executemany(
                render("job_event_stage_insert"),
                [
                    [
                        e.job_id,
                        e.category,
                        e.download_id,
                        e.status,
                        e.trigger,
                        e.interval_start,
                        e.interval_end,
                        e.updated_at,
                        e.error_details,
                    ]
                    for e in events
                ],
            )
            added = _one(con, render("job_events_insert"), {"seen_at": datetime.now(UTC)})
            con.commit()
            return added

    def partition_loads(self, data_type: DataType) -> list[PartitionLoad]:
        with self._connect() as con:
            rows = con.execute(render("partition_loads_select"), _ids(data_type)).fetchall()
        return [PartitionLoad(*row) for row in rows]

    def watermark(self, data_type: DataType) -> Watermark | None:
        with self._connect() as con:
            row = con.execute(render("watermark_select"), _ids(data_type)).fetchone()
        return Watermark(*row) if row else None

    def table_columns(self, data_type: DataType) -> dict[str, str] | None:
        with self._connect() as con:
            return _table_columns(con, data_type)

    def read_table(self, data_type: DataType) -> pa.Table:
        order_key = ", ".join(quote(k) for k in data_type.key)
        with self._connect() as con:
            query = render("read_table", target=_target(data_type), order_key=order_key)
            return con.sql(query).to_arrow_table()

    def record_schema_version(
        self, data_type: DataType, schema_hash: str, columns: dict[str, str], partition_key: str
    ) -> bool:
        self._require_writable("record_schema_version")
        with self._connect() as con:
            return _record_schema_version(
                con, data_type, schema_hash, columns, partition_key, datetime.now(UTC)
            )

    def schema_versions(self, data_type: DataType) -> list[SchemaVersion]:
        with self._connect() as con:
            rows = con.execute(render("schema_versions_select"), _ids(data_type)).fetchall()
        return [SchemaVersion(h, json.loads(cols), first, seen) for h, cols, first, seen in rows]


@dataclass(frozen=True)
class _Load:
    data_type: DataType
    partition_key: str
    window_start: datetime
    window_end: datetime
    loaded_at: datetime


def _unmergeable(load: _Load, files: Sequence[StagedFile], exc: duckdb.Error) -> DataError:
    """A DuckDB error while reading or merging staged files: the transaction was rolled back."""
    uris = ", ".join(f.uri for f in files[:5]) + (
        f" (+{len(files) - 5} more)" if len(files) > 5 else ""
    )
    return DataError(
        f"cxone.{load.data_type.table} partition {load.partition_key}: DuckDB could not merge "
        f"the staged file(s) {uris}: {type(exc).__name__}: {exc}. Nothing was loaded (the "
        "transaction was rolled back); a file the gates passed but DuckDB cannot read is "
        "corrupt: request a re-export of the interval."
    )


def _control_catalog(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """control table -> its comment, from the catalog (no table is read)."""
    rows = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = ?",
        [CONTROL_SCHEMA],
    ).fetchall()
    return {name: comment for name, comment in rows}


def _has_control_tables(con: duckdb.DuckDBPyConnection) -> bool:
    return set(_control_catalog(con)) >= CONTROL_TABLES


def control_version(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None]:
    """(version, applied at) of the control-table DDL applied to the file; (0, None) before any.

    The marker is the comment on ``cxone_sync.file_audit``, read from the catalog in one query.
    """
    catalog = _control_catalog(con)
    if not set(catalog) >= CONTROL_TABLES:
        return 0, None
    match = _MARKER.fullmatch(catalog.get(CONTROL_MARKER_TABLE) or "")
    return (int(match.group(1)), match.group(2)) if match else (0, None)


def _ensure_control_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Run the control-table DDL once per file: only when its marker is older than this code.

    The check is one catalog query, so a deleted and recreated file gets its tables again, and
    the DDL (a write transaction) is not repeated on every connection.
    """
    if control_version(con)[0] >= CONTROL_VERSION:
        return
    con.begin()
    try:
        con.execute(render("control_tables"))
        marker = MARKER_TEXT.format(version=CONTROL_VERSION, applied_at=utc_now_iso())
        con.execute(
            f"COMMENT ON TABLE {CONTROL_SCHEMA}.{CONTROL_MARKER_TABLE} IS "
            + "'"
            + marker.replace("'", "''")
            + "'"
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _empty_control_tables() -> duckdb.DuckDBPyConnection:
    """An in-memory database with empty control tables: what a reader sees before any load."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(render("control_tables"))
    return con


def _ids(data_type: DataType) -> dict[str, str]:
    return {"category": data_type.category, "data_type": data_type.name}


def _one(
    con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, Any] | None = None
) -> int:
    row = con.execute(query, params).fetchone() if params else con.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _loaded_files(
    con: duckdb.DuckDBPyConnection, uris: Sequence[str]
) -> dict[str, list[tuple[str | None, str]]]:
    found: dict[str, list[tuple[str | None, str]]] = {}
    for uri, version_id, sha256 in con.execute(
        render("loaded_files"), {"uris": list(uris)}
    ).fetchall():
        found.setdefault(uri, []).append((version_id, sha256))
    return found


def _table_columns(con: duckdb.DuckDBPyConnection, data_type: DataType) -> dict[str, str] | None:
    rows = con.execute(render("table_columns"), {"table": data_type.table}).fetchall()
    return {name: sql_type for name, sql_type in rows} or None


def _parquet_columns(con: duckdb.DuckDBPyConnection, staged: StagedFile) -> dict[str, str]:
    """The file's columns as DuckDB reads them (metadata only)."""
    try:
        relation = con.read_parquet(str(staged.path))
    except duckdb.Error as exc:
        raise DataError(f"{staged.uri}: cannot read Parquet file {staged.path}: {exc}") from exc
    return {
        name: str(sql_type) for name, sql_type in zip(relation.columns, relation.types, strict=True)
    }


def _raise_breaking(data_type: DataType, uri: str, diff: SchemaDiff) -> None:
    """The first breaking change of a file's schema, as a SchemaError naming the file."""
    table = data_type.table
    if diff.missing_keys:
        reason = "is a key column missing from the file"
        raise SchemaError(table, diff.missing_keys[0], None, None, uri, reason)
    if diff.reserved:
        reason = "uses the platform's reserved _cxone_ prefix"
        raise SchemaError(table, diff.reserved[0], None, None, uri, reason)
    if diff.bad_keys:
        column, new = next(iter(diff.bad_keys.items()))
        reason = "has a type a natural key or updated_at cannot have"
        raise SchemaError(table, column, None, new, uri, reason)
    if diff.incompatible:
        column, (old, new) = next(iter(diff.incompatible.items()))
        raise SchemaError(table, column, old, new, uri, "changed type incompatibly")


def _plan(
    con: duckdb.DuckDBPyConnection, data_type: DataType, files: Sequence[StagedFile]
) -> _Plan:
    """Skip files already loaded, then check every new file's schema against the table."""
    new_files = _new_files(con, files)
    existing = _table_columns(con, data_type)
    plan = _Plan(new_files, len(files) - len(new_files), existing is not None)
    running = dict(existing or {})
    untyped: list[str] = []
    for staged in new_files:
        incoming = _parquet_columns(con, staged)
        _refuse_virtual_names(data_type, staged.uri, incoming)
        diff = diff_columns(running, incoming, data_type)
        _raise_breaking(data_type, staged.uri, diff)
        running = diff.apply(running)
        untyped += diff.untyped
        plan.columns = _unify(plan.columns, incoming)
    # A file's rank orders its rows among equal updated_at: later job end, then job id, then
    # uri. The files are read in rank order, so DuckDB's file_index is the rank.
    plan.new_files.sort(key=lambda f: (f.job_end_time, f.job_id, f.uri, str(f.path)))
    original = existing or {}
    plan.added = {n: t for n, t in running.items() if n not in original}
    plan.widened = {n: t for n, t in running.items() if n in original and t != original[n]}
    plan.untyped = sorted({c for c in untyped if c not in running})
    return plan


_VIRTUAL_COLUMNS = READER_COLUMNS
"""read_parquet's virtual columns, which the merge uses to find rows; a file column of the same
name would shadow them."""


def _refuse_virtual_names(data_type: DataType, uri: str, columns: Mapping[str, str]) -> None:
    for name in columns:
        if name.lower() in _VIRTUAL_COLUMNS:
            reason = "collides with DuckDB's read_parquet virtual column of that name"
            raise SchemaError(data_type.table, name, None, columns[name], uri, reason)


def _unify(columns: dict[str, str], incoming: Mapping[str, str]) -> dict[str, str]:
    """The partition's schema: every column seen, at the widest type seen."""
    unified = dict(columns)
    for name, sql_type in incoming.items():
        if name not in unified or lossless(unified[name], sql_type):
            unified[name] = normalize_type(sql_type)
    return unified


def _new_files(con: duckdb.DuckDBPyConnection, files: Sequence[StagedFile]) -> list[StagedFile]:
    """Files whose (uri, version id, sha256) is not in the audit ledger, each once."""
    seen = {
        (uri, version_id, sha256)
        for uri, versions in _loaded_files(con, [f.uri for f in files]).items()
        for version_id, sha256 in versions
    }
    new: list[StagedFile] = []
    for staged in files:
        identity = (staged.uri, staged.version_id, staged.sha256)
        if identity not in seen:
            seen.add(identity)
            new.append(staged)
    return new


def _merge(
    con: duckdb.DuckDBPyConnection, clock: StepClock, load: _Load, plan: _Plan
) -> MergeResult:
    data_type = load.data_type
    result = MergeResult(
        files_loaded=len(plan.new_files),
        files_skipped=plan.skipped,
        columns_added=list(plan.added) if plan.table_exists else [],
        columns_widened=list(plan.widened),
        schema_hash=columns_hash(plan.columns, data_type) if plan.columns else "",
    )
    clock.lap("stage")
    if not plan.new_files:
        return result
    result.rows_read = _one(con, render("rows_in_files"), {"paths": _paths(plan)})
    counts = _stage(con, load, plan)
    result.duplicates_dropped = result.rows_read - counts.staged
    result.rows_inserted = counts.inserts
    result.rows_updated = counts.updates
    result.rows_stale = counts.stale
    result.cross_partition_keys = counts.cross_partition
    clock.lap("dedup")
    _evolve(con, data_type, plan)
    target, key_match = _target(data_type), _key_match(data_type)
    if counts.updates:
        con.execute(render("delete_superseded", target=target, key_match=key_match))
    if counts.inserts or counts.updates:
        con.execute(
            render("insert_absent", target=target, file_columns=_file_columns(plan)),
            {
                "paths": _paths(plan),
                "partition_key": load.partition_key,
                "loaded_at": load.loaded_at,
            },
        )
    clock.lap("merge")
    return result


def _paths(plan: _Plan) -> list[str]:
    """The new files in rank order: DuckDB's file_index in read_parquet is their rank."""
    return [str(f.path) for f in plan.new_files]


def _file_columns(plan: _Plan) -> str:
    """The files' columns as loaded: all of them but those with no type yet (all null)."""
    if not plan.untyped:
        return "r.*"
    return f"r.* EXCLUDE ({', '.join(quote(c) for c in plan.untyped)})"


@dataclass(frozen=True)
class _StageCounts:
    staged: int
    inserts: int
    updates: int
    stale: int
    cross_partition: int


def _stage(con: duckdb.DuckDBPyConnection, load: _Load, plan: _Plan) -> _StageCounts:
    """Stage the new files deduplicated by key and classified against the table, in one pass.

    The staged rows are materialized once; the one join with the table that classifies them
    (insert, update, stale, and whether the key lives under another partition) is the only
    place the table's keys are probed before the delete, so the insert needs no anti-join.
    """
    data_type = load.data_type
    con.execute(render("stage_files"))
    con.executemany(
        render("stage_file_insert"),
        [[i, str(f.path), f.uri, f.job_id, f.job_end_time] for i, f in enumerate(plan.new_files)],
    )
    key_columns = ", ".join(f"r.{quote(k)}" for k in data_type.key)
    dedup = render("stage_dedup", key_columns=key_columns)
    if plan.table_exists:
        key_match = " AND ".join(f"t.{quote(k)} = d.{quote(k)}" for k in data_type.key)
        query = render(
            "stage_classify",
            dedup=dedup,
            target=_target(data_type),
            key_match=key_match,
            probe=quote(data_type.key[0]),
        )
        con.execute(query, {"paths": _paths(plan), "partition_key": load.partition_key})
    else:
        con.execute(render("stage_first", dedup=dedup), {"paths": _paths(plan)})
    null_key = " OR ".join(f"s.{quote(c)} IS NULL" for c in (*data_type.key, UPDATED_AT))
    row = con.execute(render("stage_counts", null_key=null_key)).fetchone()
    assert row is not None
    staged, null_keys, inserts, updates, stale, cross = (int(v) for v in row)
    if null_keys:
        raise DataError(
            f"cxone.{data_type.table}: {null_keys} row(s) have a null key "
            f"({', '.join(data_type.key)}) or {UPDATED_AT}; nothing was loaded"
        )
    return _StageCounts(staged, inserts, updates, stale, cross)


def _evolve(con: duckdb.DuckDBPyConnection, data_type: DataType, plan: _Plan) -> None:
    """Create the table from the staged schema, or add new columns and widen changed ones."""
    target = _target(data_type)
    if not plan.table_exists:
        con.execute(
            render("create_table", target=target, file_columns=_file_columns(plan)),
            {"paths": _paths(plan)},
        )
        return
    for name, sql_type in plan.added.items():
        con.execute(render("add_column", target=target, column=quote(name), sql_type=sql_type))
    for name, sql_type in plan.widened.items():
        con.execute(render("widen_column", target=target, column=quote(name), sql_type=sql_type))


def _record_load(
    con: duckdb.DuckDBPyConnection, load: _Load, plan: _Plan, result: MergeResult
) -> None:
    """Audit rows, the partition load, the watermark and a new schema version, same transaction."""
    ids = _ids(load.data_type)
    stamp = {"partition_key": load.partition_key, "loaded_at": load.loaded_at}
    if plan.new_files:
        con.executemany(
            render("file_audit_insert"),
            [
                {
                    **ids,
                    **stamp,
                    "uri": f.uri,
                    "version_id": f.version_id,
                    "sha256": f.sha256,
                    "rows": f.rows,
                    "size_bytes": f.size_bytes,
                    "job_id": f.job_id,
                    "job_completed_at": f.job_end_time,
                }
                for f in plan.new_files
            ],
        )
    con.execute(
        render("partition_load_insert"),
        {
            **ids,
            **stamp,
            "window_start": load.window_start,
            "window_end": load.window_end,
            "files": result.files_loaded,
            "files_skipped": result.files_skipped,
            "rows_read": result.rows_read,
            "rows_inserted": result.rows_inserted,
            "rows_updated": result.rows_updated,
            "rows_stale": result.rows_stale,
            "schema_hash": result.schema_hash or None,
        },
    )
    con.execute(render("watermark_upsert"), {**ids, **stamp, "window_end": load.window_end})
    if plan.columns:
        _record_schema_version(
            con,
            load.data_type,
            result.schema_hash,
            plan.columns,
            load.partition_key,
            load.loaded_at,
        )


def _record_schema_version(
    con: duckdb.DuckDBPyConnection,
    data_type: DataType,
    schema_hash: str,
    columns: Mapping[str, str],
    partition_key: str,
    seen_at: datetime,
) -> bool:
    params = {
        **_ids(data_type),
        "schema_hash": schema_hash,
        "columns": columns_json(columns),
        "partition_key": partition_key,
        "seen_at": seen_at,
    }
    return _one(con, render("schema_version_insert"), params) > 0
