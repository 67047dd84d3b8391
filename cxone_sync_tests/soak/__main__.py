"""``python -m cxone_sync_tests.soak [--short] [--days N] [--categories a,b] [--seed N] ...``.

Runs the soak (see :mod:`.harness`), prints progress and the summary, writes ``report.json``
and the daemon logs into the work folder (a temporary one unless ``--workdir``); exit 1 when
the soak found a problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from cxone_sync_tests.soak.harness import SoakPlan, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxone_sync_tests.soak")
    parser.add_argument("--short", action="store_true", help="the CI variant (1 day, 2 kills)")
    parser.add_argument("--days", type=float)
    parser.add_argument("--categories", help="comma-separated (default: every category)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--daemon-kills", type=int)
    parser.add_argument("--worker-kills", type=int)
    parser.add_argument("--step-seconds", type=float, help="minimum wall seconds per step")
    parser.add_argument(
        "--step-hours",
        type=float,
        help="simulated hours per step (default 1: a sensor sees "
        "one hour at a time; more: each tick sees a backlog and requests ranged runs)",
    )
    parser.add_argument("--workdir", type=Path, help="keep logs and data here")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.days is not None:
        overrides["days"] = args.days
    if args.categories:
        overrides["categories"] = tuple(c.strip() for c in args.categories.split(","))
    if args.step_hours is not None:
        overrides["step"] = timedelta(hours=args.step_hours)
    for name in ("seed", "daemon_kills", "worker_kills", "step_seconds"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    plan = SoakPlan.short(**overrides) if args.short else SoakPlan.full(**overrides)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cxone-soak-"))
    print(f"soak: work folder {work} (daemon logs under logs/)", flush=True)
    report = run_soak(plan, work, log=lambda line: print(line, flush=True))
    print(report.summary(), flush=True)
    (work / "report.json").write_text(json.dumps(report.to_json(), indent=2, default=str))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
