"""Compare a BI table with the simulator's ground truth, row by row."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cxone_sync.catalog import CATEGORIES, default_download_id
from cxone_sync.cxone.client import CXoneClient, RetryPolicy
from cxone_sync.ingest.load import PartitionLoadOutcome, load_partition
from cxone_sync.ingest.stage import NoCompletedExportError
from cxone_sync.settings import SIM_CLIENT_ID, SIM_CLIENT_SECRET
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.base import Warehouse


def client_for(api_url: str) -> CXoneClient:
    """A client for the simulator (its demo credentials), with fast retries for tests."""
    return CXoneClient(
        base_url=api_url,
        client_id=SIM_CLIENT_ID,
        client_secret=SIM_CLIENT_SECRET,
        download_ids={c.name: default_download_id(c.name) for c in CATEGORIES},
        retry=RetryPolicy(attempts=8, initial_wait=0.01, max_wait=0.05),
    )


def load_range(
    stack: LocalStack,
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    staging: Path,
    *,
    order: list[int] | None = None,
    progress: Path | None = None,
) -> dict[tuple[str, str], PartitionLoadOutcome | str]:
    """Load every partition of [start, end) through the platform's own code path."""
    return load_range_at(
        stack.api_url,
        stack.s3_client(),
        stack.config.bucket,
        warehouse,
        start,
        end,
        staging,
        order=order,
        progress=progress,
    )


def load_range_at(
    api_url: str,
    s3: Any,
    bucket: str,
    warehouse: Warehouse,
    start: datetime,
    end: datetime,
    staging: Path,
    *,
    order: list[int] | None = None,
    progress: Path | None = None,
) -> dict[tuple[str, str], PartitionLoadOutcome | str]:
    work = [
        (cat, dt, t)
        for cat in CATEGORIES
        for dt in cat.data_types
        for t in cat.interval_starts(start, end)
    ]
    if order is not None:
        work = [work[i % len(work)] for i in order] + work
    outcomes: dict[tuple[str, str], PartitionLoadOutcome | str] = {}
    with client_for(api_url) as client:
        for n, (cat, dt, t) in enumerate(work):
            try:
                outcome: PartitionLoadOutcome | str = load_partition(
                    data_type=dt,
                    start=t,
                    end=t + cat.interval,
                    source=client,
                    s3_client=s3,
                    warehouse=warehouse,
                    bucket=bucket,
                    prefix=f"exports/{cat.name}/",
                    staging_dir=staging / dt.table / t.strftime("%Y%m%d%H"),
                )
            except NoCompletedExportError as exc:
                outcome = str(exc)
            outcomes[(dt.table, t.isoformat())] = outcome
            if progress is not None:
                progress.write_text(str(n + 1))
    return outcomes


def assert_tables_equal_truth(
    stack: LocalStack, warehouse: Warehouse, start: datetime, end: datetime
) -> dict[str, int]:
    counts: dict[str, int] = {}
    problems: dict[str, list[str]] = {}
    for cat in CATEGORIES:
        for dt in cat.data_types:
            truth = stack.world.ground_truth(cat.name, dt.name, start, end)
            table = warehouse.read_table(dt)
            diff = differences(truth, table, list(dt.key))
            if diff:
                problems[dt.table] = diff
            counts[dt.table] = table.num_rows
    assert not problems, problems
    return counts
