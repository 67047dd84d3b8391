"""``make demo``: one simulated day of every category, end to end, on the embedded default.

Starts the local stack (simulator + local S3 store) in this process, lets the simulator export one
day (and the exports due just after it), runs ``cxone-sync sync`` for that day through Dagster,
and compares every BI table with the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

from cxone_sync.catalog import CATEGORIES
from cxone_sync.extras import EMULATOR_MODULES, SIMULATOR_MODULES, MissingExtraError, require_local
from cxone_sync.settings import LOCAL_API_PORT, LOCAL_HOST, LOCAL_S3_PORT, get_settings


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((LOCAL_HOST, port)) != 0


@contextmanager
def _snowflake(stack: Any) -> Iterator[str]:
    """The Snowflake emulator in this process, its stage over the stack's bucket; env set."""
    from cxone_sync.warehouse.snowflake_emulator import serve_beside

    with serve_beside(stack.s3_url, stack.config.bucket) as env:
        os.environ.update(env)
        url = f"{env['SNOWFLAKE_PROTOCOL']}://{env['SNOWFLAKE_HOST']}:{env['SNOWFLAKE_PORT']}"
        print(f"Snowflake emulator at {url} (database {env['SNOWFLAKE_DATABASE']})")
        yield f"Snowflake emulator {url}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxone_sync.demo", description=__doc__)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--warehouse",
        choices=["duckdb", "snowflake"],
        default="duckdb",
        help="snowflake: the local emulator (the 'local' extra), wired to the stack's S3",
    )
    args = parser.parse_args(argv)
    needs = {**SIMULATOR_MODULES, **(EMULATOR_MODULES if args.warehouse == "snowflake" else {})}
    try:
        require_local("the demo (python -m cxone_sync.demo)", needs)
    except MissingExtraError as exc:
        print(exc, file=sys.stderr)
        return 2

    from cxone_sync.defs.resources import build_resources
    from cxone_sync.simulator.config import SimConfig
    from cxone_sync.simulator.stack import LocalStack
    from cxone_sync.simulator.truth import differences
    from cxone_sync.sync_command import ensure_dagster_home, sync

    ensure_dagster_home()
    start = datetime.combine(get_settings().cxone_partitions_start, time(0), tzinfo=UTC)
    end = start + timedelta(days=args.days)
    api_port = LOCAL_API_PORT if _free(LOCAL_API_PORT) else 0
    s3_port = LOCAL_S3_PORT if _free(LOCAL_S3_PORT) else 0
    with (
        ExitStack() as started,
        LocalStack(
            SimConfig(start=start, scale=args.scale), api_port=api_port, s3_port=s3_port
        ) as stack,
    ):
        os.environ.update(stack.environment())
        print(f"local stack: API {stack.api_url}, S3 {stack.s3_url}")
        emulator = (
            started.enter_context(_snowflake(stack)) if args.warehouse == "snowflake" else None
        )
        stack.world.advance_to(end + timedelta(hours=3))
        print(f"simulated clock at {stack.world.now.isoformat()}; syncing {start:%Y-%m-%d}")
        code = sync(start, end, [])
        warehouse = build_resources(get_settings())["warehouse"].reader()
        where = emulator or get_settings().duckdb_path
        print(f"\nwarehouse {where} against the simulator's ground truth:")
        mismatched = 0
        for cat in CATEGORIES:
            for dt in cat.data_types:
                truth = stack.world.ground_truth(cat.name, dt.name, start, end)
                table = warehouse.read_table(dt)
                same = not differences(truth, table, list(dt.key))
                mismatched += 0 if same else 1
                print(
                    f"  cxone.{dt.table:32} {table.num_rows:>7} rows  truth {truth.num_rows:>7}  "
                    f"{'equal' if same else 'DIFFERENT'}"
                )
    print("\nOpen the UI on the same instance: `make local-stack` in one terminal, `make dev`.")
    return code or (1 if mismatched else 0)


if __name__ == "__main__":
    sys.exit(main())
