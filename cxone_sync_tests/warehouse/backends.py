"""Both warehouses behind one fixture: DuckDB on a file, Snowflake on the in-process emulator.

Files are written to Parquet on disk (what the staging step leaves) and uploaded to a versioned
bucket on moto's S3 server on loopback; the Snowflake emulator's COPY reads them from there
through its stage, the way production reads the export bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION
from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync.warehouse.base import StagedFile, Warehouse
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.warehouse.factories import T0

BUCKET = "exports-test"


@dataclass
class Backend:
    name: str
    warehouse: Warehouse
    s3: Any
    tmp: Path
    statements: list[str] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=lambda: iter(range(100_000)))

    def stage(
        self,
        rows: Sequence[Mapping[str, Any]] | pa.Table,
        *,
        job_id: str = "job-1",
        job_end_minutes: int = 100,
        name: str | None = None,
        schema: pa.Schema | None = None,
    ) -> StagedFile:
        """Write, upload and describe one verified file (its real S3 version id)."""
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema)
        file_name = name or f"part-{next(self.counter):05d}.parquet"
        path = self.tmp / "files" / job_id / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        data = path.read_bytes()
        key = f"exports/telephony/cdr/{job_id}/{file_name}"
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return StagedFile(
            path=path,
            uri=f"s3://{BUCKET}/{key}",
            version_id=put.get("VersionId"),
            sha256=hashlib.sha256(data).hexdigest(),
            rows=table.num_rows,
            size_bytes=len(data),
            job_id=job_id,
            job_end_time=T0 + timedelta(minutes=job_end_minutes),
        )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with S3Endpoint() as endpoint:
        client = endpoint.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield endpoint


@pytest.fixture(scope="session")
def emulator(s3_endpoint: S3Endpoint) -> Iterator[Any]:
    """One in-process emulator for the session; every test gets its own database in it."""
    pytest.importorskip("fakesnow", reason="the Snowflake emulator needs the 'local' extra")
    from cxone_sync.warehouse.snowflake_emulator import Emulator, S3Wiring

    instance = Emulator(S3Wiring(s3_endpoint.url, SIM_AWS_KEY, SIM_AWS_KEY, SIM_AWS_REGION))
    yield instance
    instance.close()


_DATABASES = iter(range(1_000_000))


@contextmanager
def snowflake_backend(emulator: Any, s3_endpoint: S3Endpoint, tmp: Path) -> Iterator[Backend]:
    from cxone_sync.warehouse.snowflake_emulator import DEFAULT_STAGE
    from cxone_sync.warehouse.snowflake_warehouse import SnowflakeWarehouse

    database = f"TEST_{next(_DATABASES)}"
    emulator.create_stage(DEFAULT_STAGE, f"s3://{BUCKET}/", database=database)
    statements: list[str] = []
    warehouse = SnowflakeWarehouse(
        partial(emulator.connection, database),
        stage=DEFAULT_STAGE,
        stage_url=f"s3://{BUCKET}/",
        s3_client=s3_endpoint.client(),
        on_statement=statements.append,
    )
    yield Backend("snowflake", warehouse, s3_endpoint.client(), tmp, statements)


BackendFactory = Callable[[], Backend]


@pytest.fixture(params=["duckdb", "snowflake"])
def backend(
    request: pytest.FixtureRequest, s3_endpoint: S3Endpoint, tmp_path: Path
) -> Iterator[Backend]:
    if request.param == "duckdb":
        warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb", threads=2)
        yield Backend("duckdb", warehouse, s3_endpoint.client(), tmp_path)
    else:
        emulator = request.getfixturevalue("emulator")
        with snowflake_backend(emulator, s3_endpoint, tmp_path) as b:
            yield b
