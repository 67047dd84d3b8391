"""Snowflake warehouse: Snowflake loads the verified files itself; no row passes the worker.

Same tables (``"cxone"."{category}__{data_type}"``) and control tables (``"cxone_sync"``) as
DuckDB. One partition is a short sequence of idempotent statements, not one transaction
(Snowflake DDL commits implicitly, and the emulator cannot MERGE inside BEGIN...COMMIT):

1. ``CREATE OR REPLACE TRANSIENT TABLE`` a staging table for the partition (scratch, per attempt);
2. per new file, ``COPY INTO`` the staging table from the named stage over the export bucket with
   an explicit ``FILES=('<key>')`` list, then tag its rows (job, completion time, uri, rank);
   COPY's per-file ``rows_loaded`` must equal the verified row count;
3. the S3 version id of every file must be unchanged after the COPY (a replaced file fails the
   partition before the BI table is touched);
4. one query deduplicates (newest ``updated_at``, tie: later-completed job) and classifies the
   rows against the table (the merge counts); a null key or ``updated_at`` fails the partition;
5. ``CREATE TABLE IF NOT EXISTS`` / ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` / precision-only
   ``SET DATA TYPE`` for additive drift;
6. one ``MERGE`` (a stale version never wins: a row updates only when strictly newer);
7. audit rows, the partition load, the watermark and a schema version in ``"cxone_sync"``;
8. ``DROP TABLE`` the staging table.

Every step is safe to repeat: a run that dies after any statement and is run again ends with the
same table (the MERGE re-applied to its own output changes nothing; the ledger written last makes
the re-run reload the files, which the MERGE then finds not newer).

Identifier case policy: every identifier is quoted and exact (``"cxone"."telephony__cdr"``,
``"Agent Name"``): names equal the Parquet column names and DuckDB's, byte for byte, and never fold
to upper case. Values are bound (pyformat, client-side escaped by the connector); the one place a
value is rendered into SQL is the ``FILES=(...)`` list (the emulator cannot bind it), escaped as a
Snowflake string literal. A statement that names file columns carries no bound values, so a ``%``
in a column name never meets the connector's parameter formatting.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cxone_sync.catalog import UPDATED_AT, DataType
from cxone_sync.timefmt import as_utc
from cxone_sync.warehouse.base import (
    JOB_COMPLETED_COLUMN,
    JOB_ID_COLUMN,
    LOADED_AT_COLUMN,
    METADATA_PREFIX,
    PARTITION_COLUMN,
    SOURCE_URI_COLUMN,
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
from cxone_sync.warehouse.schema import (
    NULL_TYPE,
    arrow_columns,
    columns_hash,
    columns_json,
    diff_columns,
    lossless,
    normalize_type,
)
from cxone_sync.warehouse.types import (
    UnsupportedTypeError,
    from_snowflake,
    snowflake_widening,
    to_snowflake,
)

BI_SCHEMA = "cxone"
CONTROL_SCHEMA = "cxone_sync"
RANK_COLUMN = "_cxone_rank"
MAX_FILES_PER_COPY = 1000
"""Snowflake's limit on one COPY's FILES=(...) list."""
_STAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")

Connect = Callable[[], AbstractContextManager[Any]]
"""Opens a Snowflake DB-API connection (dagster-snowflake's ``get_connection``, or the emulator)."""
StatementHook = Callable[[str], None]
"""Called after every statement with its step name (tests count statements and inject crashes)."""


class CopyProofError(DataError):
    """Snowflake did not load exactly the bytes that were verified: nothing was merged."""


def string_literal(value: str) -> str:
    """A Snowflake single-quoted string literal (backslash is an escape character there)."""
    if any(ord(ch) < 32 for ch in value):
        raise DataError(f"refusing a control character in a stage file name: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _target(data_type: DataType) -> str:
    return f"{quote(BI_SCHEMA)}.{quote(data_type.table)}"


def _staging(data_type: DataType, partition_key: str) -> str:
    """One staging table per partition (plain characters only: the emulator's COPY does not
    quote its target), so merges of different partitions never share one."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", partition_key)
    return f"{quote(CONTROL_SCHEMA)}.{quote(f'_stage__{data_type.table}__{safe}')}"


_METADATA_TYPES = {
    JOB_ID_COLUMN: "VARCHAR",
    JOB_COMPLETED_COLUMN: "TIMESTAMP_TZ(9)",
    SOURCE_URI_COLUMN: "VARCHAR",
    PARTITION_COLUMN: "VARCHAR",
    LOADED_AT_COLUMN: "TIMESTAMP_TZ(9)",
}

_CONTROL_TABLES = (
    f"CREATE SCHEMA IF NOT EXISTS {quote(BI_SCHEMA)}",
    f"CREATE SCHEMA IF NOT EXISTS {quote(CONTROL_SCHEMA)}",
    f"""CREATE TABLE IF NOT EXISTS {quote(CONTROL_SCHEMA)}."file_audit" (
        "uri" VARCHAR NOT NULL, "version_id" VARCHAR, "sha256" VARCHAR NOT NULL,
        "rows" NUMBER(38,0) NOT NULL, "size_bytes" NUMBER(38,0) NOT NULL,
        "job_id" VARCHAR NOT NULL, "job_completed_at" TIMESTAMP_TZ(9) NOT NULL,
        "category" VARCHAR NOT NULL, "data_type" VARCHAR NOT NULL,
        "partition_key" VARCHAR NOT NULL, "loaded_at" TIMESTAMP_TZ(9) NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {quote(CONTROL_SCHEMA)}."watermarks" (
        "category" VARCHAR NOT NULL, "data_type" VARCHAR NOT NULL,
        "high_watermark" TIMESTAMP_TZ(9) NOT NULL, "last_partition_key" VARCHAR NOT NULL,
        "updated_at" TIMESTAMP_TZ(9) NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {quote(CONTROL_SCHEMA)}."partition_loads" (
        "category" VARCHAR NOT NULL, "data_type" VARCHAR NOT NULL,
        "partition_key" VARCHAR NOT NULL, "window_start" TIMESTAMP_TZ(9) NOT NULL,
        "window_end" TIMESTAMP_TZ(9) NOT NULL, "loaded_at" TIMESTAMP_TZ(9) NOT NULL,
        "files" NUMBER(38,0) NOT NULL, "files_skipped" NUMBER(38,0) NOT NULL,
        "rows_read" NUMBER(38,0) NOT NULL, "rows_inserted" NUMBER(38,0) NOT NULL,
        "rows_updated" NUMBER(38,0) NOT NULL, "rows_stale" NUMBER(38,0) NOT NULL,
        "schema_hash" VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {quote(CONTROL_SCHEMA)}."job_events" (
        "job_id" VARCHAR NOT NULL, "category" VARCHAR NOT NULL, "download_id" VARCHAR NOT NULL,
        "status" VARCHAR NOT NULL, "trigger" VARCHAR, "interval_start" TIMESTAMP_TZ(9),
        "interval_end" TIMESTAMP_TZ(9), "updated_at" TIMESTAMP_TZ(9) NOT NULL,
        "error_details" VARCHAR, "seen_at" TIMESTAMP_TZ(9) NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {quote(CONTROL_SCHEMA)}."schema_versions" (
        "category" VARCHAR NOT NULL, "data_type" VARCHAR NOT NULL,
        "schema_hash" VARCHAR NOT NULL, "columns" VARCHAR NOT NULL,
        "first_partition" VARCHAR NOT NULL, "first_seen_at" TIMESTAMP_TZ(9) NOT NULL)""",
)
_C = quote(CONTROL_SCHEMA)
_CONTROL_READY: set[str] = set()
"""Warehouses (``instance_key``: account/database) whose control tables this process created."""


@dataclass
class _Plan:
    new_files: list[StagedFile]
    skipped: int
    existing: dict[str, str] | None
    columns: dict[str, str] = field(default_factory=dict)
    """Incoming columns -> neutral type, unified over the new files (the schema registry's)."""
    running: dict[str, str] = field(default_factory=dict)
    """The table's data columns after this merge -> neutral type."""
    added: dict[str, str] = field(default_factory=dict)
    widened: dict[str, str] = field(default_factory=dict)
    """Existing columns -> the Snowflake type an in-place ALTER gives them."""


class SnowflakeWarehouse:
    """The warehouse interface over a Snowflake connection; files load from a named stage.

    ``stage`` is the stage name as written after ``@`` (unquoted, optionally qualified); it points
    at ``stage_url`` (the export bucket, e.g. ``s3://org-cxone-data-lake/``). ``s3_client`` is
    used only for the version-id proof (HEAD requests, never a GET).
    """

    def __init__(
        self,
        connect: Connect,
        *,
        stage: str,
        stage_url: str,
        s3_client: Any,
        on_statement: StatementHook | None = None,
        instance_key: str | None = None,
    ) -> None:
        if not _STAGE_NAME.match(stage):
            raise ValueError(
                f"SNOWFLAKE_STAGE={stage!r} is not a plain stage name: use letters, digits, _ and "
                "$, optionally qualified (DATABASE.SCHEMA.STAGE)"
            )
        self._connect = connect
        self.stage = stage
        self.stage_url = stage_url if stage_url.endswith("/") else stage_url + "/"
        self.s3 = s3_client
        self.on_statement = on_statement
        self._instance_key = instance_key
        self._ready = instance_key is not None and instance_key in _CONTROL_READY

    # -- plumbing --------------------------------------------------------------------------------

    def session(self) -> AbstractContextManager[None]:
        """A no-op: the connection factory (the resource) decides how connections are reused."""
        return nullcontext()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._connect() as con:
            cur = con.cursor()
            try:
                if not self._ready:
                    for ddl in _CONTROL_TABLES:
                        cur.execute(ddl)
                    self._ready = True
                    if self._instance_key is not None:
                        _CONTROL_READY.add(self._instance_key)
                yield cur
            finally:
                cur.close()

    def _exec(
        self, cur: Any, step: str, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                cur.execute(sql, dict(params)) if params else cur.execute(sql)
                break
            except Exception as exc:
                # Concurrent merges of one table may conflict (the emulator's optimistic
                # concurrency; a lock timeout on Snowflake). A failed statement changed nothing
                # and every statement here is idempotent, so it is run again.
                if attempt == _CONFLICT_RETRIES or not _is_conflict(exc):
                    raise
                time.sleep(0.05 * 2**attempt)
        rows = cur.fetchall()
        if self.on_statement is not None:
            self.on_statement(step)
        return [tuple(r) for r in rows]

    def ensure_control_tables(self) -> None:
        self._ready = False
        with self._cursor():
            pass

    # -- merge -----------------------------------------------------------------------------------

    def merge_partition(
        self,
        data_type: DataType,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        files: Sequence[StagedFile],
    ) -> MergeResult:
        clock = StepClock()
        loaded_at = datetime.now(UTC)
        with self._cursor() as cur:
            plan = self._plan(cur, data_type, files)
            result = MergeResult(
                files_loaded=len(plan.new_files),
                files_skipped=plan.skipped,
                columns_added=list(plan.added) if plan.existing is not None else [],
                columns_widened=list(plan.widened),
                schema_hash=columns_hash(plan.columns, data_type) if plan.columns else "",
            )
            clock.lap("stage")
            if plan.new_files:
                staging = _staging(data_type, partition_key)
                self._copy(cur, data_type, partition_key, loaded_at, plan, staging)
                self._prove_versions(data_type, plan.new_files)
                result.rows_read = sum(f.rows for f in plan.new_files)
                self._count(cur, data_type, plan, staging, result)
                clock.lap("dedup")
                self._evolve(cur, data_type, plan)
                self._exec(cur, "merge", _merge_sql(data_type, plan, staging))
                clock.lap("merge")
            self._record(
                cur, data_type, partition_key, window_start, window_end, loaded_at, plan, result
            )
            if plan.new_files:
                self._exec(cur, "drop_stage", f"DROP TABLE IF EXISTS {staging}")
        clock.lap("commit")
        result.seconds = clock.seconds
        return result

    def _plan(self, cur: Any, data_type: DataType, files: Sequence[StagedFile]) -> _Plan:
        known = {
            (uri, version_id, sha256)
            for uri, versions in self._loaded_files(cur, [f.uri for f in files]).items()
            for version_id, sha256 in versions
        }
        new: list[StagedFile] = []
        for staged in files:
            identity = (staged.uri, staged.version_id, staged.sha256)
            if identity not in known:
                known.add(identity)
                new.append(staged)
        existing = self._table_columns(cur, data_type)
        plan = _Plan(new, len(files) - len(new), existing)
        running = dict(existing or {})
        for staged in new:
            self._stage_path(staged)
            incoming = _file_columns(staged)
            diff = diff_columns(running, incoming, data_type)
            _raise_breaking(data_type, staged.uri, diff)
            running = diff.apply(running)
            plan.columns = _unify(plan.columns, incoming)
        # A file's rank orders its rows among equal updated_at: later job end, then job id, uri.
        new.sort(key=lambda f: (f.job_end_time, f.job_id, f.uri))
        original = existing or {}
        plan.running = {n: t for n, t in running.items() if not n.startswith(METADATA_PREFIX)}
        plan.added = {n: t for n, t in plan.running.items() if n not in original}
        for name, neutral in plan.running.items():
            try:
                to_snowflake(neutral)
                if name in original and normalize_type(neutral) != normalize_type(original[name]):
                    altered = snowflake_widening(original[name], neutral)
                    if altered is not None:
                        plan.widened[name] = altered
            except UnsupportedTypeError as exc:
                uri = new[0].uri if new else None
                raise SchemaError(
                    data_type.table, name, original.get(name), neutral, uri, str(exc)
                ) from None
        return plan

    def _stage_path(self, staged: StagedFile) -> str:
        if not staged.uri.startswith(self.stage_url):
            raise DataError(
                f"{staged.uri} is not under the stage's location {self.stage_url}: the stage "
                f"{self.stage} must point at the export bucket (see README, Production on "
                "Snowflake)"
            )
        return staged.uri[len(self.stage_url) :]

    def _copy(
        self,
        cur: Any,
        data_type: DataType,
        partition_key: str,
        loaded_at: datetime,
        plan: _Plan,
        staging: str,
    ) -> None:
        """Stage every new file by COPY, each checked against its verified row count."""
        columns = [
            f"{quote(n)} {to_snowflake(t)}" for n, t in plan.running.items() if t != NULL_TYPE
        ]
        columns += [f"{quote(n)} {t}" for n, t in _METADATA_TYPES.items()]
        columns.append(f"{quote(RANK_COLUMN)} NUMBER(38,0)")
        self._exec(
            cur,
            "create_stage",
            f"CREATE OR REPLACE TRANSIENT TABLE {staging} ({', '.join(columns)})",
        )
        for rank, staged in enumerate(plan.new_files):
            # One file per COPY so its rows can be tagged with their file (the emulator has no
            # METADATA$FILENAME); the FILES list is bounded by MAX_FILES_PER_COPY either way.
            rows = self._exec(
                cur,
                "copy",
                f"COPY INTO {staging} FROM @{self.stage} "
                f"FILES=({string_literal(self._stage_path(staged))}) "
                "FILE_FORMAT=(TYPE=PARQUET USE_LOGICAL_TYPE=TRUE BINARY_AS_TEXT=FALSE) "
                "MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE FORCE=TRUE",
            )
            _prove_copy(data_type, staged, rows)
            self._exec(
                cur,
                "tag",
                f"UPDATE {staging} SET "
                f'"{JOB_ID_COLUMN}" = %(job_id)s, "{JOB_COMPLETED_COLUMN}" = %(completed)s, '
                f'"{SOURCE_URI_COLUMN}" = %(uri)s, "{PARTITION_COLUMN}" = %(partition)s, '
                f'"{LOADED_AT_COLUMN}" = %(loaded_at)s, "{RANK_COLUMN}" = %(rank)s '
                f'WHERE "{RANK_COLUMN}" IS NULL',
                {
                    "job_id": staged.job_id,
                    "completed": staged.job_end_time,
                    "uri": staged.uri,
                    "partition": partition_key,
                    "loaded_at": loaded_at,
                    "rank": rank,
                },
            )

    def _prove_versions(self, data_type: DataType, files: Sequence[StagedFile]) -> None:
        """Every file still has the S3 version (and size) that was verified."""
        for staged in files:
            bucket, _, key = staged.uri.removeprefix("s3://").partition("/")
            head = self.s3.head_object(Bucket=bucket, Key=key)
            version, size = head.get("VersionId"), int(head.get("ContentLength", -1))
            if version != staged.version_id or size != staged.size_bytes:
                raise CopyProofError(
                    f"cxone.{data_type.table}: {staged.uri} changed after it was verified "
                    f"(version {staged.version_id} -> {version}, {staged.size_bytes} -> {size} "
                    "bytes); Snowflake may have loaded other bytes, so nothing was merged. Run "
                    "the partition again: the new version is verified and loaded."
                )

    def _count(
        self, cur: Any, data_type: DataType, plan: _Plan, staging: str, result: MergeResult
    ) -> None:
        keys = ", ".join(quote(k) for k in data_type.key)
        null_key = " OR ".join(f"{quote(c)} IS NULL" for c in (*data_type.key, UPDATED_AT))
        dedup = (
            f"SELECT * FROM {staging} QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY "
            f'"{UPDATED_AT}" DESC NULLS FIRST, "{RANK_COLUMN}" DESC) = 1'
        )
        if plan.existing is None:
            sql = (
                f'SELECT (SELECT COUNT(*) FROM {staging}) AS "total", '
                f'(SELECT COUNT(*) FROM {staging} WHERE {null_key}) AS "null_keys", '
                'COUNT(*) AS "staged", COUNT(*) AS "inserts", 0 AS "updates", 0 AS "stale", '
                f'0 AS "cross" FROM ({dedup}) AS d'
            )
        else:
            probe = quote(data_type.key[0])
            key_match = " AND ".join(f"t.{quote(k)} = d.{quote(k)}" for k in data_type.key)
            newer = _newer("d", "t")
            sql = (
                f'SELECT (SELECT COUNT(*) FROM {staging}) AS "total", '
                f'(SELECT COUNT(*) FROM {staging} WHERE {null_key}) AS "null_keys", '
                f'COUNT(*) AS "staged", COUNT_IF(t.{probe} IS NULL) AS "inserts", '
                f'COUNT_IF(t.{probe} IS NOT NULL AND ({newer})) AS "updates", '
                f'COUNT_IF(t.{probe} IS NOT NULL AND NOT ({newer})) AS "stale", '
                f'COUNT_IF(t.{probe} IS NOT NULL AND t."{PARTITION_COLUMN}" IS DISTINCT FROM '
                f'd."{PARTITION_COLUMN}") AS "cross" '
                f"FROM ({dedup}) AS d LEFT JOIN {_target(data_type)} AS t ON {key_match}"
            )
        ((total, null_keys, staged, inserts, updates, stale, cross),) = self._exec(
            cur, "count", sql
        )
        if int(total) != result.rows_read:
            raise CopyProofError(
                f"cxone.{data_type.table}: the staging table holds {total} rows, the verified "
                f"files {result.rows_read}; nothing was merged"
            )
        if null_keys:
            raise DataError(
                f"cxone.{data_type.table}: {null_keys} row(s) have a null key "
                f"({', '.join(data_type.key)}) or {UPDATED_AT}; nothing was loaded"
            )
        result.duplicates_dropped = int(total) - int(staged)
        result.rows_inserted = int(inserts)
        result.rows_updated = int(updates)
        result.rows_stale = int(stale)
        result.cross_partition_keys = int(cross)

    def _evolve(self, cur: Any, data_type: DataType, plan: _Plan) -> None:
        target = _target(data_type)
        if plan.existing is None:
            columns = [
                f"{quote(n)} {to_snowflake(t)}" for n, t in plan.running.items() if t != NULL_TYPE
            ]
            columns += [f"{quote(n)} {t}" for n, t in _METADATA_TYPES.items()]
            self._exec(
                cur, "create_table", f"CREATE TABLE IF NOT EXISTS {target} ({', '.join(columns)})"
            )
            return
        for name, neutral in plan.added.items():
            if neutral == NULL_TYPE:
                continue
            self._exec(
                cur,
                "alter",
                f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {quote(name)} "
                f"{to_snowflake(neutral)}",
            )
        for name, sf_type in plan.widened.items():
            self._exec(
                cur,
                "alter",
                f"ALTER TABLE {target} ALTER COLUMN {quote(name)} SET DATA TYPE {sf_type}",
            )

    def _record(
        self,
        cur: Any,
        data_type: DataType,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        loaded_at: datetime,
        plan: _Plan,
        result: MergeResult,
    ) -> None:
        ids = _ids(data_type)
        stamp = {"partition_key": partition_key, "loaded_at": loaded_at}
        if plan.new_files:
            values, params = [], dict(ids, **stamp)
            for i, f in enumerate(plan.new_files):
                names = ("uri", "version_id", "sha256", "rows", "size_bytes", "job_id", "done")
                row = (f.uri, f.version_id, f.sha256, f.rows, f.size_bytes, f.job_id)
                for name, value in zip(names, (*row, f.job_end_time), strict=True):
                    params[f"{name}_{i}"] = value
                values.append("(" + ", ".join(f"%({n}_{i})s" for n in names) + ")")
            self._exec(
                cur,
                "ledger",
                f'INSERT INTO {_C}."file_audit" ("uri", "version_id", "sha256", "rows", '
                '"size_bytes", "job_id", "job_completed_at", "category", "data_type", '
                '"partition_key", "loaded_at") '
                "SELECT column1, column2, column3, column4, column5, column6, column7, "
                "%(category)s, %(data_type)s, %(partition_key)s, %(loaded_at)s "
                f"FROM VALUES {', '.join(values)}",
                params,
            )
        self._exec(
            cur,
            "partition_load",
            f'INSERT INTO {_C}."partition_loads" ("category", "data_type", "partition_key", '
            '"window_start", "window_end", "loaded_at", "files", "files_skipped", "rows_read", '
            '"rows_inserted", "rows_updated", "rows_stale", "schema_hash") VALUES (%(category)s, '
            "%(data_type)s, %(partition_key)s, %(window_start)s, %(window_end)s, %(loaded_at)s, "
            "%(files)s, %(files_skipped)s, %(rows_read)s, %(rows_inserted)s, %(rows_updated)s, "
            "%(rows_stale)s, %(schema_hash)s)",
            {
                **ids,
                **stamp,
                "window_start": window_start,
                "window_end": window_end,
                "files": result.files_loaded,
                "files_skipped": result.files_skipped,
                "rows_read": result.rows_read,
                "rows_inserted": result.rows_inserted,
                "rows_updated": result.rows_updated,
                "rows_stale": result.rows_stale,
                "schema_hash": result.schema_hash or None,
            },
        )
        self._exec(
            cur,
            "watermark",
            f'MERGE INTO {_C}."watermarks" AS w USING (SELECT %(category)s AS "category", '
            '%(data_type)s AS "data_type", %(window_end)s::TIMESTAMP_TZ AS "window_end", '
            '%(partition_key)s AS "partition_key", '
            '%(loaded_at)s::TIMESTAMP_TZ AS "loaded_at") AS s '
            'ON w."category" = s."category" AND w."data_type" = s."data_type" '
            'WHEN MATCHED THEN UPDATE SET "last_partition_key" = CASE WHEN s."window_end" > '
            'w."high_watermark" THEN s."partition_key" ELSE w."last_partition_key" END, '
            '"high_watermark" = GREATEST(w."high_watermark", s."window_end"), '
            '"updated_at" = s."loaded_at" '
            'WHEN NOT MATCHED THEN INSERT ("category", "data_type", "high_watermark", '
            '"last_partition_key", "updated_at") VALUES (s."category", s."data_type", '
            's."window_end", s."partition_key", s."loaded_at")',
            {**ids, **stamp, "window_end": window_end},
        )
        if plan.columns:
            self._record_schema_version(
                cur,
                data_type,
                columns_hash(plan.columns, data_type),
                plan.columns,
                partition_key,
                loaded_at,
            )

    # -- ledger and metadata ---------------------------------------------------------------------

    def loaded_files(self, uris: Sequence[str]) -> dict[str, list[tuple[str | None, str]]]:
        with self._cursor() as cur:
            return self._loaded_files(cur, uris)

    def _loaded_files(
        self, cur: Any, uris: Sequence[str]
    ) -> dict[str, list[tuple[str | None, str]]]:
        found: dict[str, list[tuple[str | None, str]]] = {}
        wanted = list(dict.fromkeys(uris))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            params = {f"u{i}": u for i, u in enumerate(chunk)}
            placeholders = ", ".join(f"%(u{i})s" for i in range(len(chunk)))
            rows = self._exec(
                cur,
                "ledger_select",
                f'SELECT "uri", "version_id", "sha256" FROM {_C}."file_audit" '
                f'WHERE "uri" IN ({placeholders}) ORDER BY "loaded_at", "uri"',
                params,
            )
            for uri, version_id, sha256 in rows:
                found.setdefault(uri, []).append((version_id, sha256))
        return found

    def record_job_events(self, events: Sequence[JobEvent]) -> int:
        if not events:
            return 0
        names = (
            "job_id",
            "category",
            "download_id",
            "status",
            "trigger",
            "interval_start",
            "interval_end",
            "updated_at",
            "error_details",
        )
        params: dict[str, Any] = {"seen_at": datetime.now(UTC)}
        values = []
        for i, e in enumerate(events):
            for name in names:
                params[f"{name}_{i}"] = getattr(e, name)
            values.append("(" + ", ".join(f"%({n}_{i})s" for n in names) + ")")
        columns = ", ".join(f"column{i + 1} AS {quote(n)}" for i, n in enumerate(names))
        with self._cursor() as cur:
            before = self._count_rows(cur, "job_events")
            self._exec(
                cur,
                "job_events",
                f'INSERT INTO {_C}."job_events" ("job_id", "category", "download_id", "status", '
                '"trigger", "interval_start", "interval_end", "updated_at", "error_details", '
                '"seen_at") '
                'SELECT e."job_id", e."category", e."download_id", e."status", e."trigger", '
                'e."interval_start"::TIMESTAMP_TZ, e."interval_end"::TIMESTAMP_TZ, '
                'e."updated_at"::TIMESTAMP_TZ, e."error_details", %(seen_at)s '
                f"FROM (SELECT {columns} FROM VALUES {', '.join(values)}) AS e "
                f'WHERE NOT EXISTS (SELECT 1 FROM {_C}."job_events" AS j WHERE '
                'j."job_id" = e."job_id" AND j."status" = e."status" AND '
                'j."updated_at" = e."updated_at"::TIMESTAMP_TZ) '
                'QUALIFY ROW_NUMBER() OVER (PARTITION BY e."job_id", e."status", e."updated_at" '
                'ORDER BY e."job_id") = 1',
                params,
            )
            return self._count_rows(cur, "job_events") - before

    def _count_rows(self, cur: Any, table: str) -> int:
        ((n,),) = self._exec(cur, "count_rows", f"SELECT COUNT(*) FROM {_C}.{quote(table)}")
        return int(n)

    def partition_loads(self, data_type: DataType) -> list[PartitionLoad]:
        with self._cursor() as cur:
            rows = self._exec(
                cur,
                "select",
                'SELECT "partition_key", "window_start", "window_end", "loaded_at", "files", '
                '"files_skipped", "rows_read", "rows_inserted", "rows_updated", "rows_stale" '
                f'FROM {_C}."partition_loads" WHERE "category" = %(category)s AND '
                '"data_type" = %(data_type)s ORDER BY "loaded_at", "partition_key"',
                _ids(data_type),
            )
        return [
            PartitionLoad(p, as_utc(ws), as_utc(we), as_utc(la), *(int(v) for v in rest))
            for p, ws, we, la, *rest in rows
        ]

    def watermark(self, data_type: DataType) -> Watermark | None:
        with self._cursor() as cur:
            rows = self._exec(
                cur,
                "select",
                'SELECT "high_watermark", "last_partition_key", "updated_at" FROM '
                f'{_C}."watermarks" WHERE "category" = %(category)s AND '
                '"data_type" = %(data_type)s',
                _ids(data_type),
            )
        if not rows:
            return None
        high, key, updated = rows[0]
        return Watermark(as_utc(high), key, as_utc(updated))

    def table_columns(self, data_type: DataType) -> dict[str, str] | None:
        with self._cursor() as cur:
            return self._table_columns(cur, data_type)

    def _table_columns(self, cur: Any, data_type: DataType) -> dict[str, str] | None:
        rows = self._exec(
            cur,
            "columns",
            'SELECT "COLUMN_NAME", "DATA_TYPE", "NUMERIC_PRECISION", "NUMERIC_SCALE" '
            'FROM INFORMATION_SCHEMA."COLUMNS" WHERE "TABLE_SCHEMA" = %(schema)s AND '
            '"TABLE_NAME" = %(table)s ORDER BY "ORDINAL_POSITION"',
            {"schema": BI_SCHEMA, "table": data_type.table},
        )
        return {name: from_snowflake(t, p, s) for name, t, p, s in rows} or None

    def read_table(self, data_type: DataType) -> pa.Table:
        order_key = ", ".join(quote(k) for k in data_type.key)
        with self._cursor() as cur:
            cur.execute(f"SELECT * FROM {_target(data_type)} ORDER BY {order_key}")
            return _fetch_arrow(cur)

    def record_schema_version(
        self, data_type: DataType, schema_hash: str, columns: dict[str, str], partition_key: str
    ) -> bool:
        with self._cursor() as cur:
            return self._record_schema_version(
                cur, data_type, schema_hash, columns, partition_key, datetime.now(UTC)
            )

    def _record_schema_version(
        self,
        cur: Any,
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
        where = (
            f'FROM {_C}."schema_versions" WHERE "category" = %(category)s AND '
            '"data_type" = %(data_type)s AND "schema_hash" = %(schema_hash)s'
        )
        ((known,),) = self._exec(cur, "schema_select", f"SELECT COUNT(*) {where}", params)
        if known:
            return False
        self._exec(
            cur,
            "schema_version",
            f'INSERT INTO {_C}."schema_versions" ("category", "data_type", "schema_hash", '
            '"columns", "first_partition", "first_seen_at") SELECT %(category)s, %(data_type)s, '
            "%(schema_hash)s, %(columns)s, %(partition_key)s, %(seen_at)s "
            f"WHERE NOT EXISTS (SELECT 1 {where})",
            params,
        )
        return True

    def schema_versions(self, data_type: DataType) -> list[SchemaVersion]:
        with self._cursor() as cur:
            rows = self._exec(
                cur,
                "select",
                'SELECT "schema_hash", "columns", "first_partition", "first_seen_at" FROM '
                f'{_C}."schema_versions" WHERE "category" = %(category)s AND '
                '"data_type" = %(data_type)s ORDER BY "first_seen_at", "schema_hash"',
                _ids(data_type),
            )
        return [SchemaVersion(h, json.loads(c), first, as_utc(seen)) for h, c, first, seen in rows]


# -- helpers ---------------------------------------------------------------------------------------


_CONFLICT_RETRIES = 6


def _is_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "conflict" in text or ("lock" in text and "timeout" in text)


def _fetch_arrow(cur: Any) -> pa.Table:
    """The result as Arrow: the connector's fetch_arrow_all, or its result batches (emulator)."""
    if hasattr(cur, "fetch_arrow_all"):
        table: pa.Table = cur.fetch_arrow_all(force_return_table=True)
        return table
    batches = [b.to_arrow() for b in cur.get_result_batches() or []]
    return pa.concat_tables(batches)


def _ids(data_type: DataType) -> dict[str, str]:
    return {"category": data_type.category, "data_type": data_type.name}


def _file_columns(staged: StagedFile) -> dict[str, str]:
    """A file's columns from its Parquet footer (already verified locally; no rows are read)."""
    try:
        return arrow_columns(pq.read_schema(staged.path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"{staged.uri}: cannot read the Parquet footer of {staged.path}: {exc}"
        ) from exc


def _unify(columns: dict[str, str], incoming: Mapping[str, str]) -> dict[str, str]:
    unified = dict(columns)
    for name, sql_type in incoming.items():
        if name not in unified or lossless(unified[name], sql_type):
            unified[name] = normalize_type(sql_type)
    return unified


def _raise_breaking(data_type: DataType, uri: str, diff: Any) -> None:
    table = data_type.table
    if diff.missing_keys:
        reason = "is a key column missing from the file"
        raise SchemaError(table, diff.missing_keys[0], None, None, uri, reason)
    if diff.reserved:
        reason = "uses the platform's reserved _cxone_ prefix"
        raise SchemaError(table, diff.reserved[0], None, None, uri, reason)
    if diff.incompatible:
        column, (old, new) = next(iter(diff.incompatible.items()))
        raise SchemaError(table, column, old, new, uri, "changed type incompatibly")


def _prove_copy(data_type: DataType, staged: StagedFile, rows: list[tuple[Any, ...]]) -> None:
    """COPY's result: one row for the file, LOADED, with exactly the verified row count."""
    if len(rows) != 1:
        raise CopyProofError(
            f"cxone.{data_type.table}: COPY of {staged.uri} reported {len(rows)} files, expected "
            "1; nothing was merged"
        )
    _file, status, _parsed, loaded, *_ = rows[0]
    if str(status).upper() != "LOADED" or int(loaded or 0) != staged.rows:
        raise CopyProofError(
            f"cxone.{data_type.table}: COPY of {staged.uri} answered {status} with {loaded} rows, "
            f"but {staged.rows} rows were verified; the file was replaced or read differently. "
            "Nothing was merged: run the partition again."
        )


def _newer(s: str, t: str) -> str:
    """``s`` strictly newer than ``t``: (updated_at, job completion, job id) lexicographically."""
    u, c, j = quote(UPDATED_AT), quote(JOB_COMPLETED_COLUMN), quote(JOB_ID_COLUMN)
    return (
        f"{s}.{u} > {t}.{u} OR ({s}.{u} = {t}.{u} AND ({s}.{c} > {t}.{c} OR "
        f"({s}.{c} = {t}.{c} AND {s}.{j} > {t}.{j})))"
    )


def _merge_sql(data_type: DataType, plan: _Plan, staging: str) -> str:
    """One MERGE: insert absent keys, update keys whose staged version is strictly newer."""
    keys = ", ".join(quote(k) for k in data_type.key)
    data = [n for n, t in plan.running.items() if t != NULL_TYPE]
    columns = [*data, *_METADATA_TYPES]
    source = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {staging} "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY "
        f'"{UPDATED_AT}" DESC NULLS FIRST, "{RANK_COLUMN}" DESC) = 1'
    )
    key_match = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in data_type.key)
    updates = [c for c in columns if c not in data_type.key]
    # a column the files lack is NULL in the staging table: it loads as NULL, as DuckDB's
    # delete-and-insert leaves it
    set_list = [f"{quote(c)} = s.{quote(c)}" for c in updates]
    return (
        f"MERGE INTO {_target(data_type)} AS t USING ({source}) AS s ON {key_match} "
        f"WHEN MATCHED AND ({_newer('s', 't')}) THEN UPDATE SET {', '.join(set_list)} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join('s.' + quote(c) for c in columns)})"
    )
