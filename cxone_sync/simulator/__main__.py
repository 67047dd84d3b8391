"""``python -m cxone_sync.simulator``: run the local stack, or move a running simulator's clock.

* ``local-stack [...]``: see :func:`cxone_sync.simulator.stack.main`.
* ``advance (--to ISO | --hours N) [--api-url URL]``: advance the simulated clock over HTTP.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx

from cxone_sync.settings import get_settings
from cxone_sync.simulator import stack
from cxone_sync.simulator.server import to_utc


def _advance_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxone_sync.simulator advance",
        description="Advance a running simulator's clock (POST /sim/advance).",
    )
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--to", type=to_utc, metavar="ISO", help="move the clock to this UTC time")
    when.add_argument("--hours", type=float, metavar="N", help="move the clock N hours on")
    parser.add_argument("--api-url", help="simulator base URL (default: CXONE_API_URL)")
    return parser


def advance_main(argv: Sequence[str] | None = None) -> int:
    """Advance the simulator's clock; prints the new time and how many jobs changed."""
    args = _advance_parser().parse_args(argv)
    api_url = (args.api_url or get_settings().cxone_api_url).rstrip("/")
    body = {"to": args.to.isoformat()} if args.to is not None else {"hours": args.hours}
    try:
        response = httpx.post(f"{api_url}/sim/advance", json=body, timeout=600)
    except httpx.HTTPError as exc:
        print(f"advance: cannot reach the simulator at {api_url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"advance: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    result = response.json()
    print(f"clock {result['now']}; {len(result['changed'])} job(s) changed")
    return 0


COMMANDS = {"local-stack": stack.main, "advance": advance_main}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(
            f"usage: python -m cxone_sync.simulator {{{','.join(COMMANDS)}}} ...", file=sys.stderr
        )
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
