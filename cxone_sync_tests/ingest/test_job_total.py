"""A job without ``files[]``: its rows are counted from the Parquet footers of all its files,
read in place through pyarrow's S3 filesystem (ranged reads, nothing downloaded), against the
job's total ``record_count``. Real simulator, real S3 endpoint (moto on loopback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cxone_sync.catalog import category
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import PartitionLoadOutcome, load_partition
from cxone_sync.settings import SIM_AWS_KEY
from cxone_sync.simulator.config import CountSkew
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.truth import client_for

START = datetime(2024, 3, 15, tzinfo=UTC)
TELEPHONY = category("telephony")
CDR = TELEPHONY.data_type("cdr")


def _load(stack: LocalStack, warehouse: DuckDBWarehouse, tmp: Path) -> PartitionLoadOutcome:
    with client_for(stack.api_url) as client:
        return load_partition(
            data_type=CDR,
            start=START,
            end=START + timedelta(hours=1),
            source=client,
            s3_client=stack.s3_client(),
            warehouse=warehouse,
            bucket=stack.config.bucket,
            prefix="exports/telephony/",
            staging_dir=tmp / "staging",
        )


def _job_rows(stack: LocalStack) -> int:
    """Every row the hour's job delivered, all data types (each file read whole)."""
    s3 = stack.s3_client()
    listed = s3.list_objects_v2(Bucket=stack.config.bucket, Prefix="exports/telephony/")
    total = 0
    for item in listed.get("Contents", []):
        if "/hour=00/" in item["Key"]:
            body = s3.get_object(Bucket=stack.config.bucket, Key=item["Key"])["Body"].read()
            total += pq.read_table(pa.BufferReader(body)).num_rows
    return total


def test_a_job_without_files_is_counted_from_the_footers_and_loads(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_stack(scale=0.05, categories=("telephony",), omit_files_rate=1.0)
    stack.world.advance_to(START + timedelta(hours=2))
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")

    outcome = _load(stack, warehouse, tmp_path)

    assert not outcome.staged.blocked, outcome.staged.blocked_reasons
    count = next(o for o in outcome.staged.outcomes if o.name == ck.RECORD_COUNT)
    assert count.passed, count.description
    truth = stack.world.ground_truth("telephony", "cdr", START, START + timedelta(hours=1))
    assert truth.num_rows > 0
    assert differences(truth, warehouse.read_table(CDR), list(CDR.key)) == []


def test_a_job_total_off_by_ten_percent_blocks_with_the_counted_rows(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_stack(
        scale=0.05,
        categories=("telephony",),
        omit_files_rate=1.0,
        record_count_skew=(CountSkew("telephony", START, -10.0),),
    )
    stack.world.advance_to(START + timedelta(hours=2))
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")

    outcome = _load(stack, warehouse, tmp_path)

    assert outcome.staged.blocked and outcome.merged is None
    count = next(o for o in outcome.staged.outcomes if o.name == ck.RECORD_COUNT)
    assert not count.passed and count.severity == "ERROR"
    # every file's footer was counted, all three data types of the job
    assert f"(no per-file counts): {_job_rows(stack)} rows across its 3 files" in (
        count.description
    ), count.description
    assert warehouse.partition_loads(CDR) == []


def test_a_footer_the_reader_cannot_decrypt_is_a_readability_failure_naming_the_file(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_stack(
        scale=0.05, categories=("telephony",), omit_files_rate=1.0, denied_read=(START,)
    )
    stack.world.advance_to(START + timedelta(hours=2))
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")

    outcome = _load(stack, warehouse, tmp_path)

    assert outcome.staged.blocked and outcome.merged is None
    readable = next(o for o in outcome.staged.outcomes if o.name == ck.READABLE)
    assert not readable.passed, readable.description
    messages = [str(f["message"]) for f in readable.metadata["findings"]]
    footer = [m for m in messages if "Parquet footer" in m]
    # the footer of another data type's file, read in place, names that file
    assert len(footer) == 1 and footer[0].startswith(
        f"cannot read the Parquet footer of s3://{stack.config.bucket}/exports/telephony/"
    ), messages
    assert SIM_AWS_KEY not in " ".join(o.description for o in outcome.staged.outcomes)
