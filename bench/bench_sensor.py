"""Bounded sensor ticks on a year of history: every category, an empty cursor, tick after tick.

The simulator exports ``--days`` (default 365) of every category in its manifests-only mode
(``SimConfig.manifests_only``: jobs and their manifests over real HTTP, no Parquet written, so
a year is simulated in seconds: the bench measures the sensors, not file generation). Then, with
the platform's default limits (``CXONE_SENSOR_MAX_JOBS_PER_TICK``,
``CXONE_SENSOR_TICK_BUDGET_SECONDS``):

* each ``{category}_jobs_sensor`` ticks from an empty cursor until it reports no early stop:
  seconds and API calls per tick, the partitions its load requests cover (no partition may be
  requested twice), and whether the cursor reached the newest ``updated_at`` of the history;
* the gap sensor and the reconciliation sensor tick once from an empty cursor (they list only
  their lookback, from CXone's clock);
* every jobs sensor ticks once more after the clock moves on by an hour (steady state).

Run: ``python bench/bench_sensor.py`` (``--days 90``, ``--categories ivr telephony`` ...).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from cxone_sync.automation.state import JobsCursor
from cxone_sync.catalog import CATEGORIES, category
from cxone_sync.cxone.client import CXoneClient
from cxone_sync.defs.automation.gaps_tick import gap_tick
from cxone_sync.defs.automation.jobs_tick import jobs_tick
from cxone_sync.defs.automation.reconcile_tick import reconcile_tick
from cxone_sync.defs.automation.sensors import RECONCILIATION_SENSOR
from cxone_sync.defs.automation.tick_common import Tick
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.settings import AutomationSettings
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.timefmt import utc_iso

START = datetime(2024, 3, 15, tzinfo=UTC)


def client_for(stack: LocalStack) -> CXoneClient:
    return CXoneClient(
        base_url=stack.api_url,
        token_url=f"{stack.api_url}/oauth/token",
        client_id=stack.config.client_id,
        client_secret=stack.config.client_secret,
        download_ids=stack.world.download_ids(),
    )


def timed(stack: LocalStack, run: Any) -> tuple[Tick, float, int]:
    """One tick on a fresh client (as a sensor evaluation has): tick, seconds, API calls."""
    with client_for(stack) as client:
        started = time.perf_counter()
        tick = run(client)
        return tick, time.perf_counter() - started, client.stats.api_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--categories", nargs="*", default=[c.name for c in CATEGORIES])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    settings = AutomationSettings()
    config = SimConfig(
        start=START, scale=0.001, categories=tuple(args.categories), manifests_only=True
    )
    with LocalStack(config) as stack, dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        stack.world.advance(timedelta(days=args.days))
        ids = stack.world.download_ids()
        history = {c: stack.world.list_jobs(ids[c]) for c in args.categories}
        print(
            f"history: {args.days} days of {len(args.categories)} categories, "
            f"{sum(map(len, history.values()))} jobs, simulated in "
            f"{time.perf_counter() - started:.1f} s; limits: "
            f"{settings.max_jobs_per_tick} jobs / {settings.sensor_tick_budget_seconds:g} s "
            "per tick\n"
        )
        print(
            f"{'sensor':34} {'ticks':>5} {'max s':>6} {'sum s':>6} {'calls':>6} "
            f"{'jobs':>6} {'parts':>6} {'runs':>5} {'twice':>5} {'at end':>6}"
        )
        cursors: dict[str, str | None] = {}
        worst = 0.0
        for name in args.categories:
            cat = category(name)
            pdef = partitions_for(cat, START.date())
            cursor: str | None = None
            seconds: list[float] = []
            calls = jobs = runs = 0
            requested: Counter[str] = Counter()
            while True:

                def run(
                    client: CXoneClient,
                    cursor: str | None = cursor,
                    cat: Any = cat,
                    pdef: Any = pdef,
                    name: str = name,
                ) -> Tick:
                    return jobs_tick(
                        category=cat,
                        pdef=pdef,
                        source=client,
                        instance=instance,
                        cursor_text=cursor,
                        settings=settings,
                        history_start=START,
                        sensor=f"{name}_jobs_sensor",
                    )

                tick, took, n = timed(stack, run)
                seconds.append(took)
                calls += n
                jobs += tick.jobs_seen
                runs += len(tick.run_requests)
                requested.update(tick.partitions_requested)
                cursor = tick.cursor
                if not tick.stopped_early:
                    break
            cursors[name] = cursor
            newest = max(j["updated_at"] for j in history[name])
            mark = JobsCursor.loads(cursor).position.high_water
            at_end = mark is not None and utc_iso(mark) == newest
            twice = sum(1 for v in requested.values() if v > 1)
            worst = max(worst, *seconds)
            print(
                f"{name + '_jobs_sensor (empty cursor)':34} {len(seconds):>5} "
                f"{max(seconds):>6.2f} {sum(seconds):>6.2f} {calls:>6} {jobs:>6} "
                f"{len(requested):>6} {runs:>5} {twice:>5} {'yes' if at_end else 'NO':>6}"
            )
        for name in args.categories:
            cat = category(name)
            pdef = partitions_for(cat, START.date())

            def gap(client: CXoneClient, cat: Any = cat, pdef: Any = pdef) -> Tick:
                return gap_tick(
                    category=cat,
                    pdef=pdef,
                    source=client,
                    instance=instance,
                    cursor_text=None,
                    settings=settings,
                    history_start=START,
                    sensor=f"{cat.name}_gap_sensor",
                )

            tick, took, n = timed(stack, gap)
            worst = max(worst, took)
            print(
                f"{name + '_gap_sensor (empty cursor)':34} {1:>5} {took:>6.2f} {took:>6.2f} "
                f"{n:>6} {'':>6} {'':>6} {len(tick.run_requests):>5}"
            )
        cats = [category(c) for c in args.categories]
        pdefs = {c.name: partitions_for(c, START.date()) for c in cats}

        def reconcile(client: CXoneClient) -> Tick:
            import tempfile
            from pathlib import Path

            from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse

            with tempfile.TemporaryDirectory() as tmp:
                return reconcile_tick(
                    categories=cats,
                    pdefs=pdefs,
                    source=client,
                    instance=instance,
                    warehouse=DuckDBWarehouse(Path(tmp) / "w.duckdb"),
                    s3_client=stack.s3_client(),
                    cursor_text=None,
                    settings=settings,
                    history_start=START,
                    sensor=RECONCILIATION_SENSOR,
                )

        tick, took, n = timed(stack, reconcile)
        worst = max(worst, took)
        print(
            f"{'reconciliation (empty cursor)':34} {1:>5} {took:>6.2f} {took:>6.2f} {n:>6} "
            f"{'':>6} {'':>6} {len(tick.run_requests):>5}"
        )
        stack.world.advance(timedelta(hours=1))
        for name in args.categories:
            cat = category(name)
            pdef = partitions_for(cat, START.date())

            def steady(client: CXoneClient, cat: Any = cat, pdef: Any = pdef) -> Tick:
                return jobs_tick(
                    category=cat,
                    pdef=pdef,
                    source=client,
                    instance=instance,
                    cursor_text=cursors[cat.name],
                    settings=settings,
                    history_start=START,
                    sensor=f"{cat.name}_jobs_sensor",
                )

            tick, took, n = timed(stack, steady)
            print(
                f"{name + '_jobs_sensor (+1 h)':34} {1:>5} {took:>6.3f} {took:>6.3f} {n:>6} "
                f"{tick.jobs_seen:>6} {len(tick.partitions_requested):>6} "
                f"{len(tick.run_requests):>5}"
            )
        print(f"\nslowest tick: {worst:.2f} s (target < 30 s; Dagster's limit 60 s)")


if __name__ == "__main__":
    main()
