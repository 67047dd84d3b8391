"""Hostile Parquet files through the real staging + merge path, each with its own gate outcome.

Every case puts files in the simulator's S3 (moto on loopback), announces them with a COMPLETED
job served by the simulator's HTTP API, then stages and merges the partition as the assets do
(:func:`load_partition`). A step either LOADS (the table equals what the files say, newest
version per key, and the control tables record it) or is BLOCKED by a named gate whose reason
names the file and what to do, with the BI table and every control table exactly as before.
Nothing may escape as an exception: a DuckDB or pyarrow error leaking out is a crash.

The table of cases covers the shapes one by one; a seeded generator adds random mixtures of
hostile column names, types, encodings and row counts (a few in the default run, many in soak).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync.catalog import category, default_download_id, partition_key
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import PartitionLoadOutcome, load_partition
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.s3 import S3Endpoint, create_export_bucket
from cxone_sync.simulator.server import ApiServer
from cxone_sync.simulator.world import World, hour_folder
from cxone_sync.warehouse.base import METADATA_PREFIX, DataError, StagedFile
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.ingest import parquet_footer
from cxone_sync_tests.truth import client_for
from cxone_sync_tests.warehouse.factories import staged_file

T0 = datetime(2024, 3, 15, tzinfo=UTC)
CDR = category("telephony").data_type("cdr")
PREFIX = "exports/telephony/"
UTC_US = pa.timestamp("us", tz="UTC")
LOAD, BLOCK = "load", "block"


# -- the platform under test: the simulator's API serving scripted jobs, moto's S3 ---------------


class ScriptedWorld(World):
    """The simulator's world, serving the jobs a test announces instead of scheduled ones."""

    def __init__(self, config: SimConfig, s3_client: Any) -> None:
        super().__init__(config, s3_client)
        self.announced: list[dict[str, Any]] = []

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
        self._require(download_id)
        jobs = [
            j
            for j in self.announced
            if j["download_id"] == download_id
            and (not statuses or j["status"] in statuses)
            and (updated_since is None or datetime.fromisoformat(j["updated_at"]) >= updated_since)
        ]
        jobs.sort(key=lambda j: (j["updated_at"], j["id"]))
        if after is not None:
            jobs = [j for j in jobs if (datetime.fromisoformat(j["updated_at"]), j["id"]) > after]
        return jobs[:limit] if limit is not None else jobs

    def get_job(self, download_id: str, job_id: str) -> dict[str, Any] | None:
        return next((j for j in self.announced if j["id"] == job_id), None)


@dataclass
class Platform:
    world: ScriptedWorld
    writer: Any
    reader: Any
    api_url: str
    bucket: str
    parts: Iterator[int] = field(default_factory=lambda: iter(range(100_000)))

    def announce(
        self, job_id: str, hour: int, bodies: list[bytes], counts: list[int | None], done: int
    ) -> list[str]:
        """Upload ``bodies`` as the files of one COMPLETED job of the CDR interval ``hour``."""
        start = T0 + timedelta(hours=hour)
        folder = hour_folder(PREFIX, "cdr", start)
        uris, files = [], []
        for body, count in zip(bodies, counts, strict=True):
            key = f"{folder}part-{next(self.parts):05d}.parquet"
            self.writer.put_object(
                Bucket=self.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256"
            )
            uri = f"s3://{self.bucket}/{key}"
            uris.append(uri)
            files.append(
                {
                    "uri": uri,
                    "data_type": "cdr",
                    "record_count": _footer_rows(body) if count is None else count,
                    "size_bytes": len(body),
                }
            )
        ended = (start + timedelta(hours=1, minutes=20 + done)).isoformat()
        self.world.announced.append(
            {
                "id": job_id,
                "download_id": default_download_id("telephony"),
                "category": "telephony",
                "status": "COMPLETED",
                "trigger": "SCHEDULED",
                "interval_start": start.isoformat(),
                "interval_end": (start + timedelta(hours=1)).isoformat(),
                "start_time": ended,
                "end_time": ended,
                "updated_at": ended,
                "output_files": uris,
                "files": files,
                "record_count": sum(f["record_count"] for f in files),
                "error_details": None,
            }
        )
        return uris


def _footer_rows(body: bytes) -> int:
    try:
        return pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    except (pa.ArrowInvalid, OSError):
        return 10  # unreadable: the manifest says what the exporter meant to write


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    config = SimConfig(categories=("telephony",))
    with S3Endpoint() as s3:
        create_export_bucket(s3.url, config.bucket)
        world = ScriptedWorld(config, s3.writer_client())
        with ApiServer(world) as api:
            yield Platform(world, s3.writer_client(), s3.client(), api.url, config.bucket)


# -- files ----------------------------------------------------------------------------------------


def cdr(
    n: int = 4,
    hour: int = 1,
    *,
    prefix: str = "c",
    revisit: bool = True,
    named: Mapping[str, Callable[[int], pa.Array] | pa.Array] | None = None,
    **extra: Callable[[int], pa.Array] | pa.Array,
) -> pa.Table:
    """``n`` CDR records of the interval ``hour`` (the first one, with ``revisit``, a newer
    version of the baseline's key ``b1``), plus ``named`` and ``extra`` columns (arrays, or
    functions of n)."""
    keys = [f"{prefix}{i}" for i in range(n)]
    if revisit and n:
        keys[0] = "b1"
    stamps = [T0 + timedelta(hours=hour, minutes=5, seconds=i) for i in range(n)]
    columns: dict[str, pa.Array] = {
        "call_uuid": pa.array(keys, pa.string()),
        "updated_at": pa.array(stamps, UTC_US),
        "agent": pa.array([f"agent-{i % 3}" for i in range(n)], pa.string()),
        "duration_s": pa.array([10 * i for i in range(n)], pa.int32()),
    }
    for name, make in {**(named or {}), **extra}.items():
        columns[name] = make(n) if callable(make) else make
    return pa.table(columns)


def with_columns(table: pa.Table, **replace: pa.Array) -> pa.Table:
    for name, array in replace.items():
        table = table.set_column(table.schema.get_field_index(name), name, array)
    return table


def renamed(table: pa.Table, names: list[str]) -> pa.Table:
    return pa.Table.from_arrays(table.columns, names=names)


def parquet(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", **options)
    return sink.getvalue()


BASELINE = cdr(3, hour=0, prefix="b", revisit=False)


# -- a step of a case and what it must do --------------------------------------------------------


@dataclass(frozen=True)
class Step:
    files: Callable[[], list[pa.Table | bytes]]
    expect: str = LOAD
    check: str | None = None
    says: tuple[str, ...] = ()
    hour: int = 1
    counts: tuple[int | None, ...] | None = None
    """The manifest's record_count per file (None: what the footer says)."""


@dataclass(frozen=True)
class Case:
    steps: tuple[Step, ...]
    baseline: bool = True


def one(
    make: Callable[[], pa.Table | bytes],
    expect: str = LOAD,
    check: str | None = None,
    *says: str,
    hour: int = 1,
    counts: tuple[int | None, ...] | None = None,
) -> Step:
    return Step(lambda: [make()], expect, check, says, hour, counts)


def blocked(check: str, *says: str, hour: int = 1) -> Callable[[Callable[[], Any]], Step]:
    def wrap(make: Callable[[], Any]) -> Step:
        return one(make, BLOCK, check, *says, hour=hour)

    return wrap


def _struct_detail(n: int) -> pa.Array:
    inner = pa.struct([pa.field('x"y', pa.list_(pa.string()))])
    kind = pa.struct(
        [
            pa.field('a"b', pa.int32()),
            pa.field("with space", pa.string()),
            pa.field("{brace}", pa.float64()),
            pa.field('"; DROP TABLE x; --', pa.string()),
            pa.field("Mixed Case", inner),
        ]
    )
    rows = [
        {
            'a"b': i,
            "with space": f"s {i}",
            "{brace}": i / 4,
            '"; DROP TABLE x; --': "'; --",
            "Mixed Case": {'x"y': [f"v{i}", None]},
        }
        for i in range(n)
    ]
    return pa.array(rows, kind)


def _struct_spaced(n: int) -> pa.Array:
    """Field names DuckDB spells differently from the Arrow mapping (a keyword it quotes) or
    whose whitespace is part of the name."""
    names = ["select", "tab\tname", "two  spaces"]
    rows = [{"select": i, "tab\tname": f"t{i}", "two  spaces": i % 2 == 0} for i in range(n)]
    kind = pa.struct([(names[0], pa.int64()), (names[1], pa.string()), (names[2], pa.bool_())])
    return pa.array(rows, kind)


def _tags(n: int) -> pa.Array:
    return pa.array([[i, i + 1] for i in range(n)], pa.list_(pa.int64()))


def _scores(n: int) -> pa.Array:
    return pa.array([[(f"k{i}", i)] for i in range(n)], pa.map_(pa.string(), pa.int32()))


def _amount(precision: int, scale: int, n: int, wide: bool = False) -> pa.Array:
    kind = pa.decimal256(precision, scale) if wide else pa.decimal128(precision, scale)
    unit = Decimal(1).scaleb(-scale)
    return pa.array([(Decimal(1234) + i * unit) for i in range(n)], kind)


def _naive(t: pa.Table, column: str = "updated_at") -> pa.Table:
    values = [v.replace(tzinfo=None) for v in t.column(column).to_pylist()]
    return with_columns(t, **{column: pa.array(values, pa.timestamp("us"))})


def _stamps(n: int, tz: str | None, hour: int = 1) -> pa.Array:
    instants = [T0 + timedelta(hours=hour, minutes=i) for i in range(n)]
    if tz is None:
        return pa.array([t.replace(tzinfo=None) for t in instants], pa.timestamp("us"))
    return pa.array(instants, pa.timestamp("us", tz=tz))


def _thousand(n: int = 4) -> pa.Table:
    table = cdr(n)
    kinds = [pa.float64(), pa.int64(), pa.string(), pa.bool_()]
    for i in range(996):
        kind = kinds[i % 4]
        values: list[Any] = [
            float(i + r) if kind == pa.float64()
            else i + r if kind == pa.int64()
            else f"v{i}-{r}" if kind == pa.string()
            else (i + r) % 2 == 0
            for r in range(n)
        ]  # fmt: skip
        table = table.append_column(f"metric_{i:04d}", pa.array(values, kind))
    return table


def _lying(extra: int, row_groups: bool) -> bytes:
    return parquet_footer.inflate_row_counts(
        parquet(cdr(10), row_group_size=5), extra, row_groups=row_groups
    )


def _grafted() -> bytes:
    short = parquet(cdr(10), row_group_size=5)
    return parquet_footer.graft_footer(short, parquet(cdr(20), row_group_size=5))


REEXPORT = "re-export"
SCHEMA = ck.SCHEMA_DRIFT

CASES: dict[str, Case] = {
    # nested names and nested types
    "struct_hostile_field_names": Case(
        (
            one(lambda: cdr(detail=_struct_detail, tags=_tags, scores=_scores)),
            one(lambda: cdr(3, hour=2, prefix="d", detail=_struct_detail), hour=2),
        )
    ),
    "struct_field_names_keyword_and_whitespace": Case(
        (
            one(lambda: cdr(detail=_struct_spaced)),
            one(lambda: cdr(3, hour=2, prefix="d", detail=_struct_spaced), hour=2),
        )
    ),
    "struct_hostile_field_names_first_load": Case(
        (one(lambda: cdr(detail=_struct_detail, tags=_tags, scores=_scores)),), baseline=False
    ),
    # width and emptiness
    "thousand_columns": Case((one(_thousand),)),
    "thousand_columns_first_load": Case((one(_thousand),), baseline=False),
    "zero_rows": Case((one(lambda: cdr(0)),)),
    "zero_rows_first_load": Case((one(lambda: cdr(0)),), baseline=False),
    "zero_rows_new_column": Case((one(lambda: cdr(0, note=pa.array([], pa.string()))),)),
    # the key column of the wrong type
    "key_struct": Case(
        (
            blocked(SCHEMA, "call_uuid", REEXPORT)(
                lambda: with_columns(cdr(), call_uuid=pa.array([{"id": f"c{i}"} for i in range(4)]))
            ),
        )
    ),
    "key_struct_first_load": Case(
        (
            blocked(SCHEMA, "call_uuid", "key")(
                lambda: with_columns(cdr(), call_uuid=pa.array([{"id": f"c{i}"} for i in range(4)]))
            ),
        ),
        baseline=False,
    ),
    "key_float_vs_string_table": Case(
        (
            blocked(SCHEMA, "call_uuid", "VARCHAR", "DOUBLE")(
                lambda: with_columns(cdr(), call_uuid=pa.array([0.5, 1.5, 2.5, 3.5]))
            ),
        )
    ),
    "key_float_first_load": Case(
        (
            blocked(SCHEMA, "call_uuid", "key")(
                lambda: with_columns(cdr(), call_uuid=pa.array([0.5, 1.5, 2.5, 3.5]))
            ),
        ),
        baseline=False,
    ),
    "key_list_first_load": Case(
        (
            blocked(SCHEMA, "call_uuid", "key")(
                lambda: with_columns(cdr(), call_uuid=pa.array([["a"], ["b"], ["c"], ["d"]]))
            ),
        ),
        baseline=False,
    ),
    "key_integer_vs_string_table": Case(
        (
            blocked(SCHEMA, "call_uuid", "VARCHAR", "BIGINT")(
                lambda: with_columns(cdr(), call_uuid=pa.array([1, 2, 3, 4], pa.int64()))
            ),
        )
    ),
    "key_large_string_and_dictionary": Case(
        (
            one(
                lambda: with_columns(
                    cdr(), call_uuid=cdr().column("call_uuid").cast(pa.large_string())
                )
            ),
            one(
                lambda: with_columns(
                    cdr(3, hour=2, prefix="e"),
                    call_uuid=cdr(3, hour=2, prefix="e").column("call_uuid").dictionary_encode(),
                ),
                hour=2,
            ),
        )
    ),
    # time zones
    "naive_updated_at": Case((one(lambda: _naive(cdr())),)),
    "naive_updated_at_first_load_then_aware": Case(
        (one(lambda: _naive(cdr())), one(lambda: cdr(3, hour=2, prefix="f"), hour=2)),
        baseline=False,
    ),
    "mixed_naive_and_aware_updated_at_in_one_partition": Case(
        (
            Step(lambda: [_naive(cdr(3, prefix="g")), cdr(3, prefix="h")]),
            one(lambda: _naive(cdr(2, hour=2, prefix="i")), hour=2),
        )
    ),
    "naive_then_aware_other_column": Case(
        (
            one(lambda: cdr(started_at=lambda n: _stamps(n, None))),
            blocked(SCHEMA, "started_at", "TIMESTAMP", REEXPORT, hour=2)(
                lambda: cdr(3, hour=2, prefix="j", started_at=lambda n: _stamps(n, "UTC", 2))
            ),
        )
    ),
    "aware_then_naive_other_column": Case(
        (
            one(lambda: cdr(started_at=lambda n: _stamps(n, "UTC"))),
            blocked(SCHEMA, "started_at", "TIMESTAMP", REEXPORT, hour=2)(
                lambda: cdr(3, hour=2, prefix="j", started_at=lambda n: _stamps(n, None, 2))
            ),
        )
    ),
    "mixed_time_zones": Case(
        (
            one(lambda: cdr(started_at=lambda n: _stamps(n, "America/New_York"))),
            one(
                lambda: cdr(3, hour=2, prefix="k", started_at=lambda n: _stamps(n, "+05:30", 2)),
                hour=2,
            ),
        )
    ),
    "nanosecond_updated_at": Case(
        (
            one(
                lambda: with_columns(
                    cdr(), updated_at=cdr().column("updated_at").cast(pa.timestamp("ns", "UTC"))
                )
            ),
        )
    ),
    # decimals growing across partitions, then beyond what the table can hold
    "decimal_growing_precision": Case(
        (
            one(lambda: cdr(amount=lambda n: _amount(10, 2, n))),
            one(lambda: cdr(3, hour=2, prefix="m", amount=lambda n: _amount(20, 4, n)), hour=2),
            one(lambda: cdr(3, hour=3, prefix="o", amount=lambda n: _amount(38, 10, n)), hour=3),
            blocked(SCHEMA, "amount", "DECIMAL(38,10)", "DECIMAL(38,0)", hour=4)(
                lambda: cdr(3, hour=4, prefix="p", amount=lambda n: _amount(38, 0, n))
            ),
            blocked(SCHEMA, "amount", "DECIMAL(40,2)", "38", hour=5)(
                lambda: cdr(3, hour=5, prefix="q", amount=lambda n: _amount(40, 2, n, True))
            ),
        )
    ),
    "decimal_growing_within_one_partition": Case(
        (
            Step(
                lambda: [
                    cdr(2, prefix="r", amount=lambda n: _amount(10, 2, n)),
                    cdr(2, prefix="s", amount=lambda n: _amount(20, 4, n)),
                    cdr(2, prefix="t", amount=lambda n: _amount(38, 10, n)),
                ]
            ),
        )
    ),
    "decimal256_first_load": Case(
        (
            blocked(SCHEMA, "amount", "DECIMAL(40,2)", "38")(
                lambda: cdr(amount=lambda n: _amount(40, 2, n, True))
            ),
        ),
        baseline=False,
    ),
    # encodings
    "dictionary_and_large_types": Case(
        (
            one(
                lambda: with_columns(
                    cdr(
                        note=lambda n: pa.array([f"n{i}" for i in range(n)], pa.large_string()),
                        blob=lambda n: pa.array(
                            [b"\x00\xff" * i for i in range(n)], pa.large_binary()
                        ),
                    ),
                    agent=cdr().column("agent").dictionary_encode(),
                ),
                counts=None,
            ),
        )
    ),
    "dictionary_type_change_across_partitions": Case(
        (
            one(lambda: with_columns(cdr(), agent=cdr().column("agent").dictionary_encode())),
            one(
                lambda: with_columns(
                    cdr(3, hour=2, prefix="u"),
                    agent=cdr(3, hour=2, prefix="u").column("agent").cast(pa.large_string()),
                ),
                hour=2,
            ),
        )
    ),
    # broken files
    "truncated_footer": Case(
        (
            blocked(ck.READABLE, "not a readable Parquet file", REEXPORT)(
                lambda: parquet(cdr())[:-20]
            ),
        )
    ),
    "truncated_half": Case(
        (
            blocked(ck.READABLE, "not a readable Parquet file", REEXPORT)(
                lambda: parquet(cdr())[: len(parquet(cdr())) // 2]
            ),
        )
    ),
    "magic_only": Case((blocked(ck.READABLE, REEXPORT)(lambda: b"PAR1"),)),
    "footer_claims_more_rows_file_level": Case(
        (blocked(ck.READABLE, "17", "10", REEXPORT)(lambda: _lying(7, row_groups=False)),)
    ),
    "footer_claims_more_rows_row_group": Case(
        (blocked(ck.READABLE, "17", REEXPORT)(lambda: _lying(7, row_groups=True)),)
    ),
    "footer_names_missing_row_groups": Case((blocked(ck.READABLE, "20", REEXPORT)(_grafted),)),
    # column names that are SQL
    "sql_column_names": Case(
        (
            one(
                lambda: cdr(
                    named={
                        "it's": lambda n: pa.array(["'"] * n),
                        "semi;colon": lambda n: pa.array(list(range(n))),
                        '"; DROP TABLE x; --': lambda n: pa.array(["x"] * n),
                        "Mixed Case": lambda n: pa.array([1.5] * n),
                        "{brace}": lambda n: pa.array([True] * n),
                    }
                )
            ),
            one(
                lambda: cdr(
                    2,
                    hour=2,
                    prefix="v",
                    named={'"; DROP TABLE x; --': lambda n: pa.array(["y"] * n)},
                ),
                hour=2,
            ),
        )
    ),
    "column_name_case_differs_from_table": Case(
        (one(lambda: renamed(cdr(), ["call_uuid", "updated_at", "AGENT", "Duration_S"])),)
    ),
    "key_column_name_upper_case": Case(
        (one(lambda: renamed(cdr(), ["CALL_UUID", "Updated_At", "agent", "duration_s"])),)
    ),
    "null_key_under_an_upper_case_name": Case(
        (
            blocked(SCHEMA, "null", "CALL_UUID", REEXPORT)(
                lambda: renamed(
                    with_columns(cdr(), call_uuid=pa.array(["c0", None, "c2", "c3"])),
                    ["CALL_UUID", "updated_at", "agent", "duration_s"],
                )
            ),
        )
    ),
    "duplicate_names_by_case": Case(
        (
            blocked(SCHEMA, "agent", "AGENT", "case", REEXPORT)(
                lambda: cdr(AGENT=lambda n: pa.array(["x"] * n))
            ),
        )
    ),
    "duplicate_names_by_case_first_load": Case(
        (
            blocked(SCHEMA, "agent", "AGENT", "case")(
                lambda: cdr(AGENT=lambda n: pa.array(["x"] * n))
            ),
        ),
        baseline=False,
    ),
    "duplicate_names_exact": Case(
        (
            blocked(SCHEMA, "agent", "more than once")(
                lambda: renamed(cdr(), ["call_uuid", "updated_at", "agent", "agent"])
            ),
        )
    ),
    "empty_column_name": Case(
        (
            blocked(SCHEMA, "empty", REEXPORT)(
                lambda: cdr(named={"": lambda n: pa.array(["x"] * n)})
            ),
        )
    ),
    "reserved_prefix": Case(
        (
            blocked(SCHEMA, "_cxone_partition", "reserved")(
                lambda: cdr(_cxone_partition=lambda n: pa.array(["x"] * n))
            ),
        )
    ),
    "reserved_prefix_other_case": Case(
        (
            blocked(SCHEMA, "_CXONE_PARTITION", "reserved")(
                lambda: cdr(_CXONE_PARTITION=lambda n: pa.array(["x"] * n))
            ),
        )
    ),
    "reader_virtual_column_name": Case(
        (
            blocked(SCHEMA, "file_row_number", REEXPORT)(
                lambda: cdr(file_row_number=lambda n: pa.array(list(range(n))))
            ),
        )
    ),
}


# -- running a case --------------------------------------------------------------------------------


def _load(
    platform: Platform, wh: DuckDBWarehouse, hour: int, staging: Path
) -> PartitionLoadOutcome:
    start = T0 + timedelta(hours=hour)
    with client_for(platform.api_url) as client:
        return load_partition(
            data_type=CDR,
            start=start,
            end=start + timedelta(hours=1),
            source=client,
            s3_client=platform.reader,
            warehouse=wh,
            bucket=platform.bucket,
            prefix=PREFIX,
            staging_dir=staging,
        )


def snapshot(path: Path) -> dict[str, Any]:
    """Every table of the warehouse (BI and control), its columns and its rows, in order."""
    if not path.exists():
        return {}
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('cxone', 'cxone_sync') ORDER BY ALL"
        ).fetchall()
        out: dict[str, Any] = {}
        for schema, table in tables:
            name = f'"{schema}"."{table}"'
            columns = con.execute(f"DESCRIBE {name}").fetchall()
            rows = con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
            out[name] = (columns, rows)
        return out
    finally:
        con.close()


def _loaded(path: Path, key: str) -> tuple[pa.Table, int | None]:
    """The BI table, and the rows the newest load of partition ``key`` read (read-only)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        table = con.sql(f'SELECT * FROM "cxone"."{CDR.table}"').to_arrow_table()
        row = con.execute(
            "SELECT rows_read FROM cxone_sync.partition_loads WHERE data_type = ? "
            "AND partition_key = ? ORDER BY loaded_at DESC LIMIT 1",
            [CDR.name, key],
        ).fetchone()
        return table, None if row is None else int(row[0])
    finally:
        con.close()


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return value


class Model:
    """What the BI table must hold: per key, the newest version's columns."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.columns: dict[str, str] = {}  # casefolded -> the table's spelling

    def apply(self, tables: list[pa.Table]) -> None:
        for table in tables:  # in job order: a later job wins a tie
            for name in table.column_names:
                self.columns.setdefault(name.casefold(), name)
            for row in table.to_pylist():
                record = {k.casefold(): _norm(v) for k, v in row.items()}
                key = record["call_uuid"]
                old = self.rows.get(key)
                if old is None or record["updated_at"] >= old["updated_at"]:
                    self.rows[key] = record

    def assert_equals(self, table: pa.Table) -> None:
        names = [c for c in table.column_names if not c.startswith(METADATA_PREFIX)]
        assert sorted(n.casefold() for n in names) == sorted(self.columns), "table columns"
        got = {}
        for row in table.to_pylist():
            got[row[self._name(table, "call_uuid")]] = {n.casefold(): _norm(row[n]) for n in names}
        assert sorted(got) == sorted(self.rows), "keys"
        for key, want in self.rows.items():
            expected = {c: want.get(c) for c in self.columns}
            assert got[key] == expected, key

    @staticmethod
    def _name(table: pa.Table, column: str) -> str:
        return next(c for c in table.column_names if c.casefold() == column)


def run_case(platform: Platform, tmp: Path, name: str, case: Case) -> None:
    platform.world.announced.clear()
    wh = DuckDBWarehouse(tmp / "warehouse.duckdb", threads=2)
    wh.ensure_control_tables()
    model = Model()
    steps = ((one(lambda: BASELINE, hour=0),) if case.baseline else ()) + case.steps
    for n, step in enumerate(steps):
        payloads = step.files()
        bodies = [p if isinstance(p, bytes) else parquet(p) for p in payloads]
        counts = list(step.counts or [None] * len(bodies))
        uris = platform.announce(f"job-{name}-{n}", step.hour, bodies, counts, done=n)
        before = snapshot(wh.path) if step.expect == BLOCK else {}
        outcome = _load(platform, wh, step.hour, tmp / f"stage-{n}")
        failing = [o for o in outcome.staged.outcomes if not o.passed and o.severity == "ERROR"]
        where = f"{name} step {n}"
        if step.expect == LOAD:
            assert not outcome.staged.blocked, (where, [o.description for o in failing])
            assert outcome.merged is not None
            model.apply([p for p in payloads if isinstance(p, pa.Table)])
            table, rows_read = _loaded(wh.path, partition_key(T0 + timedelta(hours=step.hour)))
            model.assert_equals(table)
            assert rows_read == sum(p.num_rows for p in payloads if isinstance(p, pa.Table)), where
            continue
        assert outcome.staged.blocked and outcome.merged is None, where
        assert [o.name for o in failing] == [step.check], (where, [o.description for o in failing])
        reason = failing[0].description
        assert any(uri in reason for uri in uris), (where, reason)
        for text in step.says:
            assert text in reason, (where, text, reason)
        assert snapshot(wh.path) == before, f"{where}: a blocked load changed the warehouse"


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_parquet_case(name: str, platform: Platform, tmp_path: Path) -> None:
    run_case(platform, tmp_path, name, CASES[name])


# -- seeded random variations ----------------------------------------------------------------------

_HOSTILE_NAMES = [
    'q"uote',
    "it's",
    "with space",
    "{brace}",
    "semi;colon",
    '"; DROP TABLE x; --',
    "MiXeD",
    "ünïcödé",
    "dot.ted",
    "tab\tname",
    "a]b[c",
    "select",
]


def _random_array(kinds: random.Random, values: random.Random, n: int, depth: int = 0) -> pa.Array:
    """A random column: its type from ``kinds`` (the same seed, the same type, whatever ``n``),
    its values and nulls from ``values``."""
    kind = kinds.choice(
        ["int8", "int64", "uint32", "float32", "decimal", "string", "large_string", "dict",
         "binary", "large_binary", "date", "ts_naive", "ts_utc", "bool"]
        + (["struct", "list", "map"] if depth < 2 else [])
    )  # fmt: skip
    if kind == "struct":
        names = kinds.sample(_HOSTILE_NAMES, kinds.randint(1, 3))
        children = [_random_array(kinds, values, n, depth + 1) for _ in names]
        return pa.StructArray.from_arrays(children, names=names)
    if kind == "list":
        child = _random_array(kinds, values, n * 2, depth + 1)
        offsets = pa.array([2 * i for i in range(n + 1)], pa.int32())
        return pa.ListArray.from_arrays(offsets, child)
    if kind == "map":
        keys = pa.array([f"k{i}" for i in range(n)], pa.string())
        offsets = pa.array(list(range(n + 1)), pa.int32())
        return pa.MapArray.from_arrays(offsets, keys, _random_array(kinds, values, n, depth + 1))
    rng = values
    make: dict[str, Callable[[], Any]] = {
        "int8": lambda: rng.randint(-128, 127),
        "int64": lambda: rng.randint(-(2**62), 2**62),
        "uint32": lambda: rng.randint(0, 2**32 - 1),
        "float32": lambda: float(rng.randint(-1000, 1000)) / 4,
        "decimal": lambda: Decimal(rng.randint(-(10**8), 10**8)).scaleb(-3),
        "string": lambda: rng.choice(_HOSTILE_NAMES),
        "large_string": lambda: rng.choice(_HOSTILE_NAMES) * 3,
        "dict": lambda: rng.choice(["a", "b", "c"]),
        "binary": lambda: bytes(rng.randrange(256) for _ in range(4)),
        "large_binary": lambda: bytes(rng.randrange(256) for _ in range(9)),
        "date": lambda: (T0 + timedelta(days=rng.randint(-400, 400))).date(),
        "ts_naive": lambda: datetime(2024, 3, 15, rng.randint(0, 23)),
        "ts_utc": lambda: T0 + timedelta(seconds=rng.randint(0, 10**6)),
        "bool": lambda: rng.random() < 0.5,
    }
    types: dict[str, pa.DataType] = {
        "int8": pa.int8(),
        "int64": pa.int64(),
        "uint32": pa.uint32(),
        "float32": pa.float32(),
        "decimal": pa.decimal128(12, 3),
        "string": pa.string(),
        "large_string": pa.large_string(),
        "dict": pa.string(),
        "binary": pa.binary(),
        "large_binary": pa.large_binary(),
        "date": pa.date32(),
        "ts_naive": pa.timestamp("us"),
        "ts_utc": UTC_US,
        "bool": pa.bool_(),
    }
    cells = [None if rng.random() < 0.15 else make[kind]() for _ in range(n)]
    array = pa.array(cells, types[kind])
    return array.dictionary_encode() if kind == "dict" else array


_POISON = {
    "case_duplicate": ("AGENT", "case"),
    "empty_name": ("", "empty"),
    "reserved": ("_cxone_job_id", "reserved"),
}


def _const(table: pa.Table) -> Callable[[], pa.Table]:
    return lambda: table


def random_case(seed: int) -> Case:
    """Two partitions of random extra columns (hostile names, every type family, nesting,
    encodings, nulls, row counts from 0; the second keeps some columns of the first, same type,
    and adds others), the key as string, large string or dictionary; sometimes a poisoned name."""
    rng = random.Random(seed)
    steps = []
    names = rng.sample(_HOSTILE_NAMES, rng.randint(1, 4))
    for hour in (1, 2):
        n = rng.choice([0, 1, 3, 7, 20])
        columns = {name: _random_array(random.Random(f"{seed}:{name}"), rng, n) for name in names}
        table = cdr(n, hour=hour, prefix=f"r{hour}-", named=columns)
        key_kind = rng.choice(["string", "large_string", "dict"])
        if key_kind != "string":
            keys = table.column("call_uuid").combine_chunks()
            key = keys.dictionary_encode() if key_kind == "dict" else keys.cast(pa.large_string())
            table = with_columns(table, call_uuid=key)
        poison = rng.choice([None, None, None, *_POISON])
        if poison is not None:
            bad, says = _POISON[poison]
            table = table.append_column(bad, pa.array(["x"] * n, pa.string()))
            steps.append(blocked(SCHEMA, says, hour=hour)(_const(table)))
        else:
            steps.append(one(_const(table), hour=hour))
        kept = rng.sample(names, rng.randint(0, len(names)))
        fresh = [c for c in _HOSTILE_NAMES if c not in names]
        names = kept + rng.sample(fresh, rng.randint(0, 2))
    return Case(tuple(steps))


@pytest.mark.parametrize("seed", range(4))
def test_hostile_parquet_random(seed: int, platform: Platform, tmp_path: Path) -> None:
    run_case(platform, tmp_path, f"random-{seed}", random_case(seed))


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(4, 204))
def test_hostile_parquet_random_soak(seed: int, platform: Platform, tmp_path: Path) -> None:
    run_case(platform, tmp_path, f"random-{seed}", random_case(seed))


# -- the merge's own guard, behind the gates ------------------------------------------------


def test_merge_turns_an_unreadable_staged_file_into_a_clear_failure(tmp_path: Path) -> None:
    """A file the gates would have refused, handed to the merge directly: DuckDB's error leaves
    as a DataError naming the file and what to do, and the transaction leaves nothing behind."""
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb", threads=2)
    good = tmp_path / "good.parquet"
    good.write_bytes(parquet(BASELINE))
    merge(wh, [staged_file(good, job_id="job-good", job_end=T0)], hour=0)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(_lying(7, row_groups=True))
    staged = staged_file(bad, job_id="job-bad", job_end=T0 + timedelta(hours=2))
    before = snapshot(wh.path)

    with pytest.raises(DataError) as failure:
        merge(wh, [staged], hour=1)

    message = str(failure.value)
    assert staged.uri in message and "re-export" in message and "rolled back" in message
    assert snapshot(wh.path) == before


def merge(wh: DuckDBWarehouse, files: list[StagedFile], hour: int) -> None:
    start = T0 + timedelta(hours=hour)
    wh.merge_partition(CDR, partition_key(start), start, start + timedelta(hours=1), files)
