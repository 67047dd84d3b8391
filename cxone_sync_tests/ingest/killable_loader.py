"""A loader process for the kill test: loads every partition of a range, reporting progress."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from cxone_sync.simulator.s3 import make_client
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.truth import load_range_at


def main(argv: list[str]) -> int:
    db, api_url, s3_url, bucket, start, end, staging, progress = argv
    load_range_at(
        api_url,
        make_client(s3_url),
        bucket,
        DuckDBWarehouse(Path(db)),
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        Path(staging),
        progress=Path(progress),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
