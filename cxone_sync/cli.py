"""``cxone-sync``: a thin command line over Dagster for headless use (CONTRACT §6).

Every run it starts is an ordinary Dagster run of a job in the code location, recorded in the
configured instance (``DAGSTER_HOME``), so the UI shows it like any other.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

from cxone_sync.catalog import CATEGORIES
from cxone_sync.extras import LOCAL_COMMANDS, MissingExtraError, require_local
from cxone_sync.sync_command import sync
from cxone_sync.timefmt import parse_utc


def _parse_time(value: str) -> datetime:
    try:
        return parse_utc(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date or time (e.g. 2024-03-15 or 2024-03-15T14:00Z)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxone-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync", help="materialize every partition in [start, end)")
    p_sync.add_argument("--start", required=True, type=_parse_time)
    p_sync.add_argument("--end", required=True, type=_parse_time)
    p_sync.add_argument(
        "--category",
        action="append",
        default=[],
        choices=[c.name for c in CATEGORIES],
        help="repeatable; default: every category",
    )
    p_sync.add_argument(
        "--force",
        action="store_true",
        help="load partitions already loaded from the same export jobs again (re-verifies files)",
    )
    sub.add_parser("local-stack", help="start the simulator and a local S3 store", add_help=False)
    sub.add_parser(
        "local-snowflake", help="start the Snowflake emulator on loopback", add_help=False
    )
    sub.add_parser("sim", help="control a running simulator (advance its clock)", add_help=False)
    sub.add_parser("doctor", help="preflight the API, the bucket and the warehouse")
    sub.add_parser("policy", help="print the IAM and bucket policies to apply", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in LOCAL_COMMANDS:
        # the local stack's commands need the `local` extra; say so before importing it
        try:
            require_local(f"cxone-sync {args_list[0]}", LOCAL_COMMANDS[args_list[0]])
        except MissingExtraError as exc:
            print(exc, file=sys.stderr)
            return 2
    if args_list and args_list[0] == "local-stack":
        from cxone_sync.simulator.stack import main as stack_main

        return stack_main(args_list[1:])
    if args_list and args_list[0] == "local-snowflake":
        from cxone_sync.warehouse.snowflake_emulator import main as snowflake_main

        return snowflake_main(args_list[1:])
    if args_list and args_list[0] == "sim":
        from cxone_sync.simulator.__main__ import main as sim_main

        return sim_main(args_list[1:])
    if args_list and args_list[0] == "policy":
        from cxone_sync.policy import policy_main

        return policy_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "sync":
        if args.end <= args.start:
            print("cxone-sync sync: --end must be after --start", file=sys.stderr)
            return 2
        return sync(args.start, args.end, args.category, force=args.force)
    if args.command == "doctor":
        from cxone_sync.preflight.doctor import doctor

        return doctor()
    return 2


if __name__ == "__main__":
    sys.exit(main())
