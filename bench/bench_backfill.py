"""Cost of a backfill: ranged runs (the backfill policy) against one run per partition.

The simulator exports ``--days`` (default 3) of one hourly category (``--category``, default
ivr) at ``--scale`` over real sockets. The same partitions are then loaded three ways, each into
a fresh data folder (fresh DuckDB file, fresh Dagster instance on disk):

* ``floor``: the platform's stage + merge (``cxone_sync.ingest.load.load_partition``) called in
  a loop, no Dagster, with the COMPLETED jobs listed once per 24 partitions as the asset step
  does: what loading the partitions costs by itself;
* ``per_partition``: ``cxone-sync sync`` with ``CXONE_BACKFILL_PARTITIONS_PER_RUN=1``: one Dagster
  run per partition (what a backfill without a policy launches);
* ``ranged``: ``cxone-sync sync`` with the default 24 partitions per run (what a UI backfill and
  the command line now launch);
* ``rerun``: the same ranged sync again on the loaded tables: every partition is already loaded
  from the jobs CXone lists, so the command skips it (one job listing, one event-log query);
* ``rerun_force``: the same with ``--force``: every partition runs again, every file is found in
  the audit ledger under the same S3 version (a HEAD, no download) and nothing changes.

The code location's definitions are imported before the clock starts (reported as ``import``),
as the floor's modules are: the ratios compare loading, not Python start-up.

Reported per mode: Dagster runs, seconds, seconds per partition and the ratio to the floor (and
the re-run's ratio to the first ranged load); every mode's tables are compared with the
simulator's truth. Run: ``python bench/bench_backfill.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cxone_sync.catalog import category
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse

START = datetime(2024, 3, 15, tzinfo=UTC)


def run_sync(
    name: str, end: datetime, per_run: int | None, *, force: bool = False
) -> tuple[float, int]:
    from cxone_sync.sync_command import sync

    if per_run is None:
        os.environ.pop("CXONE_BACKFILL_PARTITIONS_PER_RUN", None)
    else:
        os.environ["CXONE_BACKFILL_PARTITIONS_PER_RUN"] = str(per_run)
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = sync(START, end, [name], force=force)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"sync failed:\n{out.getvalue()}")
    line = next(li for li in out.getvalue().splitlines() if "Dagster runs" in li)
    return seconds, int(line.split()[0])


def run_floor(stack: LocalStack, name: str, end: datetime, data: Path) -> float:
    from cxone_sync.cxone.client import CXoneClient
    from cxone_sync.ingest.load import load_partition
    from cxone_sync.ingest.stage import select_jobs

    cat = category(name)
    warehouse = DuckDBWarehouse(data / "warehouse.duckdb")
    s3 = stack.s3_client()
    started = time.perf_counter()
    client = CXoneClient(
        base_url=stack.api_url,
        client_id=stack.config.client_id,
        client_secret=stack.config.client_secret,
        download_ids=stack.world.download_ids(),
    )
    with client:
        prefix = client.download_config(name).destination.prefix
        starts = cat.interval_starts(START, end)
        for i, t in enumerate(starts):
            if i % 24 == 0:  # one listing per range of 24 partitions, as the asset step does
                chunk = starts[i : i + 24]
                jobs = select_jobs(client, name, chunk[0], chunk[-1] + cat.interval)
            for dt in cat.data_types:
                load_partition(
                    data_type=dt,
                    start=t,
                    end=t + cat.interval,
                    source=client,
                    s3_client=s3,
                    warehouse=warehouse,
                    bucket=stack.config.bucket,
                    prefix=prefix,
                    staging_dir=data / "staging" / dt.table / t.strftime("%Y%m%d%H"),
                    jobs=jobs,
                )
    return time.perf_counter() - started


def check_truth(stack: LocalStack, name: str, end: datetime, data: Path) -> None:
    warehouse = DuckDBWarehouse(data / "warehouse.duckdb")
    for dt in category(name).data_types:
        truth = stack.world.ground_truth(name, dt.name, START, end)
        diff = differences(truth, warehouse.read_table(dt), list(dt.key))
        if diff:
            raise SystemExit(f"{dt.table} differs from the truth: {diff[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--category", default="ivr")
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--out", default="bench/results/backfill.json")
    parser.add_argument(
        "--instance-yaml",
        type=Path,
        help="a dagster.yaml for each mode's Dagster home, '{mode}' replaced by the mode's name "
        "(e.g. Postgres storage with db_name dagster_{mode}; create those databases first); "
        "default: Dagster's default instance (SQLite files in the home)",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    end = START + timedelta(days=args.days)
    partitions = len(category(args.category).interval_starts(START, end))
    config = SimConfig(start=START, scale=args.scale, categories=(args.category,))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    import cxone_sync.definitions  # noqa: F401  (the code location, built once)

    import_seconds = round(time.perf_counter() - started, 2)
    with LocalStack(config) as stack, tempfile.TemporaryDirectory() as tmp:
        stack.world.advance_to(end + timedelta(hours=4))
        os.environ.update(stack.environment())
        for mode, per_run in (
            ("floor", 0),
            ("per_partition", 1),
            ("ranged", None),
            ("rerun", None),
            ("rerun_force", None),
        ):
            data = Path(tmp) / ("ranged" if mode.startswith("rerun") else mode)
            (data / "home").mkdir(parents=True, exist_ok=True)
            if args.instance_yaml and not (data / "home" / "dagster.yaml").exists():
                text = args.instance_yaml.read_text().replace("{mode}", data.name)
                (data / "home" / "dagster.yaml").write_text(text)
            os.environ["CXONE_DATA_DIR"] = str(data)
            os.environ["DAGSTER_HOME"] = str(data / "home")
            if mode == "floor":
                seconds, runs = run_floor(stack, args.category, end, data), 0
            else:
                seconds, runs = run_sync(args.category, end, per_run, force=mode == "rerun_force")
            check_truth(stack, args.category, end, data)
            rows.append({"mode": mode, "runs": runs, "seconds": round(seconds, 2)})
    floor = rows[0]["seconds"]
    first = next(r["seconds"] for r in rows if r["mode"] == "ranged")
    print(f"{args.days} days of {args.category}: {partitions} partitions, scale {args.scale}")
    print(f"import of the code location (before timing): {import_seconds:.1f} s\n")
    print("| mode | Dagster runs | seconds | s/partition | ratio to floor | ratio to first load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        row["seconds_per_partition"] = round(row["seconds"] / partitions, 3)
        row["ratio"] = round(row["seconds"] / floor, 2)
        row["ratio_to_first_load"] = round(row["seconds"] / first, 3)
        print(
            f"| {row['mode']} | {row['runs']} | {row['seconds']:.1f} | "
            f"{row['seconds_per_partition']:.3f} | {row['ratio']:.2f} | "
            f"{row['ratio_to_first_load']:.3f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"args": vars(args), "import_seconds": import_seconds, "rows": rows},
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
