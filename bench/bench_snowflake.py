"""Snowflake-emulator mode of the merge benchmark: statements and bytes per partition.

EMULATOR NUMBERS: correctness and statement count, not Snowflake speed. One CDR-like partition
(``--rows`` rows per file, ``--files`` files from different jobs) is uploaded to a moto S3 server
on loopback and merged by ``SnowflakeWarehouse`` into the in-process fakesnow emulator, COPY
reading the bucket through the stage. Reported per partition: the statements run (by step), the
bytes the worker sends (SQL text and bound values), the result rows it receives, and the file
bytes Snowflake read from S3 instead (on DuckDB the worker process reads those bytes itself, in
two passes). Three partitions: the first (table absent), a second (table present), and the second
again (every file in the ledger).

    python bench/bench_snowflake.py --rows 20000 --files 2
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cxone_sync.catalog import category, partition_key
from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION
from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync.warehouse.base import StagedFile
from cxone_sync.warehouse.snowflake_emulator import DEFAULT_STAGE, Emulator, S3Wiring
from cxone_sync.warehouse.snowflake_warehouse import SnowflakeWarehouse

BUCKET = "bench-exports"
CDR = category("telephony").data_type("cdr")
T0 = datetime(2024, 3, 15, tzinfo=UTC)


class _Meter:
    def __init__(self) -> None:
        self.sent = 0
        self.rows_back = 0


class _Cursor:
    def __init__(self, cur: Any, meter: _Meter) -> None:
        self._cur, self._meter = cur, meter

    def execute(self, sql: str, params: Any = None) -> Any:
        self._meter.sent += len(sql.encode()) + len(repr(params).encode() if params else b"")
        return self._cur.execute(sql, params) if params else self._cur.execute(sql)

    def fetchall(self) -> list[Any]:
        rows = self._cur.fetchall()
        self._meter.rows_back += len(rows)
        return list(rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class _Connection:
    def __init__(self, con: Any, meter: _Meter) -> None:
        self._con, self._meter = con, meter

    def cursor(self) -> _Cursor:
        return _Cursor(self._con.cursor(), self._meter)


def _file(s3: Any, tmp: Path, job: str, rows: int, minute: int) -> StagedFile:
    table = pa.table(
        {
            "call_uuid": [f"{job}-{i}" if i % 2 else f"k{i}" for i in range(rows)],
            "updated_at": [datetime(2024, 3, 15, 0, minute)] * rows,
            "agent": [f"agent-{i % 97}" for i in range(rows)],
            "duration_s": list(range(rows)),
        }
    )
    path = tmp / f"{job}.parquet"
    pq.write_table(table, path, compression="zstd")
    data = path.read_bytes()
    key = f"exports/telephony/cdr/{job}/{path.name}"
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return StagedFile(
        path, f"s3://{BUCKET}/{key}", put.get("VersionId"), hashlib.sha256(data).hexdigest(),
        rows, len(data), job, T0 + timedelta(minutes=minute),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    with S3Endpoint() as endpoint:
        s3 = endpoint.client()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        emulator = Emulator(S3Wiring(endpoint.url, SIM_AWS_KEY, SIM_AWS_KEY, SIM_AWS_REGION))
        emulator.create_stage(DEFAULT_STAGE, f"s3://{BUCKET}/")
        meter = _Meter()

        @contextmanager
        def connect() -> Iterator[_Connection]:
            with emulator.connection() as con:
                yield _Connection(con, meter)

        steps: list[str] = []
        warehouse = SnowflakeWarehouse(
            connect,
            stage=DEFAULT_STAGE,
            stage_url=f"s3://{BUCKET}/",
            s3_client=s3,
            on_statement=steps.append,
        )
        warehouse.ensure_control_tables()
        first = [_file(s3, tmp, "j0", args.rows, 1)]
        second = [_file(s3, tmp, f"j{i + 1}", args.rows, 2 + i) for i in range(args.files)]
        print("| partition | files | rows | statements | by step | sent B | rows back | "
              "file B read by Snowflake | s (emulator) |")  # fmt: skip
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for label, files, hour in (
            ("first (no table)", first, 0),
            ("second", second, 1),
            ("second again (ledger)", second, 1),
        ):
            steps.clear()
            meter.sent = meter.rows_back = 0
            start = T0 + timedelta(hours=hour)
            began = time.perf_counter()
            result = warehouse.merge_partition(
                CDR, partition_key(start), start, start + timedelta(hours=1), files
            )
            seconds = time.perf_counter() - began
            by_step = ", ".join(f"{k} {v}" for k, v in Counter(steps).items())
            read = sum(f.size_bytes for f in files) if result.files_loaded else 0
            print(
                f"| {label} | {len(files)} | {result.rows_read} | {len(steps)} | {by_step} | "
                f"{meter.sent} | {meter.rows_back} | {read} | {seconds:.2f} |"
            )
        emulator.close()


if __name__ == "__main__":
    main()
