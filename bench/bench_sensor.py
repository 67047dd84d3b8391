"""Cost of one ``{category}_jobs_sensor`` tick against a long job history.

The simulator exports ``--days`` (default 90) of one category (``--category``, default ivr) at a
tiny scale, over real sockets. Then one tick is measured (API calls from ``CXoneClient.stats``,
seconds, job state changes handled):

* with an empty cursor (the whole history is new: the first tick ever);
* with the cursor the first tick left (the end of the history), after the simulator's clock
  moved on by 0, 1, 6, 24 and 72 hours (every row starts from that same cursor).

The second series grows with the jobs changed since the cursor, not with the history.
Run: ``python bench/bench_sensor.py --days 90``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cxone_sync.catalog import category
from cxone_sync.cxone.client import CXoneClient
from cxone_sync.defs.automation.ticks import jobs_tick
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.settings import AutomationSettings
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse

START = datetime(2024, 3, 15, tzinfo=UTC)


def measure(
    stack: LocalStack, name: str, cursor: str | None, warehouse: DuckDBWarehouse
) -> tuple[str | None, dict[str, float]]:
    cat = category(name)
    client = CXoneClient(
        base_url=stack.api_url,
        token_url=f"{stack.api_url}/oauth/token",
        client_id=stack.config.client_id,
        client_secret=stack.config.client_secret,
        download_ids=stack.world.download_ids(),
    )
    settings = AutomationSettings(CXONE_SENSOR_MAX_JOBS_PER_TICK=10**9)
    with client:
        started = time.perf_counter()
        tick = jobs_tick(
            category=cat,
            pdef=partitions_for(cat, START.date()),
            source=client,
            warehouse=warehouse,
            cursor_text=cursor,
            settings=settings,
            history_start=START,
            sensor=f"{name}_jobs_sensor",
        )
        seconds = time.perf_counter() - started
        stats = client.stats
    return tick.cursor, {
        "api_calls": stats.api_calls,
        "token_fetches": stats.token_fetches,
        "seconds": seconds,
        "jobs": tick.jobs_seen,
        "runs": len(tick.run_requests),
        "events": tick.events_written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--category", default="ivr")
    parser.add_argument("--scale", type=float, default=0.005)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    config = SimConfig(start=START, scale=args.scale, categories=(args.category,))
    with LocalStack(config) as stack, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        stack.world.advance(timedelta(days=args.days))
        total = len(stack.world.list_jobs(stack.world.download_ids()[args.category]))
        print(
            f"history: {args.days} days of {args.category}, {total} jobs "
            f"(simulated in {time.perf_counter() - started:.1f}s)\n"
        )
        print(f"{'cursor':34} {'new jobs':>8} {'API calls':>9} {'seconds':>8} {'runs':>6}")
        warehouse = DuckDBWarehouse(Path(tmp) / "warehouse.duckdb")
        end_cursor, row = measure(stack, args.category, None, warehouse)
        print(
            f"{'empty (whole history new)':34} {row['jobs']:>8.0f} {row['api_calls']:>9.0f} "
            f"{row['seconds']:>8.3f} {row['runs']:>6.0f}"
        )
        moved = 0
        for hours in (0, 1, 6, 24, 72):
            stack.world.advance(timedelta(hours=hours - moved))
            moved = hours
            _, row = measure(stack, args.category, end_cursor, warehouse)
            print(
                f"{f'at end of history, clock +{hours} h':34} {row['jobs']:>8.0f} "
                f"{row['api_calls']:>9.0f} {row['seconds']:>8.3f} {row['runs']:>6.0f}"
            )


if __name__ == "__main__":
    main()
