"""The local stack: the S3 endpoint with the export bucket, the simulated world, and its API.

``cxone-sync local-stack`` (and ``python -m cxone_sync.simulator local-stack``) runs :func:`main`:
it starts everything on loopback, prints the environment that points the platform at it as
``export K=V`` lines, and serves until SIGINT or SIGTERM.

By default the command's world is *live*: it starts at midnight UTC ``--history-days`` (3) days ago,
catches up to the wall clock (exporting that history), then follows the wall clock, so exports of
new intervals complete as real time passes; ``sim advance`` still moves it further ahead. With
``--fixed-clock`` it starts at 2024-03-15 and moves only when told (tests, ``make demo``).
:class:`LocalStack` itself always has a fixed clock unless :meth:`LocalStack.follow_wall_clock`
is called.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from cxone_sync.settings import LOCAL_API_PORT, LOCAL_S3_PORT, SIM_AWS_KEY, SIM_AWS_REGION
from cxone_sync.simulator.config import FaultConfig, SimConfig
from cxone_sync.simulator.s3 import S3Endpoint, create_export_bucket, make_client
from cxone_sync.simulator.server import ApiServer, iso_z, to_utc
from cxone_sync.simulator.world import World


class LocalStack:
    """S3 endpoint + secure export bucket + :class:`World` + API server. A context manager.

    Everything starts in the constructor; ``api_port``/``s3_port`` 0 pick free ports.
    """

    def __init__(
        self, config: SimConfig | None = None, *, api_port: int = 0, s3_port: int = 0
    ) -> None:
        self.config = config or SimConfig()
        with ExitStack() as started:
            self.s3 = started.enter_context(S3Endpoint(s3_port))
            self.kms_key_arn = create_export_bucket(self.s3.url, self.config.bucket, SIM_AWS_REGION)
            self.world = World(self.config, self.s3.writer_client())
            self.s3.set_deny(self._unreadable)
            self.api = started.enter_context(ApiServer(self.world, api_port))
            self._stop = started.pop_all()
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = threading.Event()

    def follow_wall_clock(
        self,
        tick_seconds: float = 15.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        """From now on, every ``tick_seconds`` move the world's clock on by the wall time elapsed.

        The clock keeps any lead it was given (``sim advance``), so it never has to go back.
        """
        if self._clock_thread is not None:
            return
        last = wall()

        def tick() -> None:
            nonlocal last
            while not self._clock_stop.wait(tick_seconds):
                now = wall()
                elapsed, last = now - last, now
                try:
                    self.world.advance(timedelta(seconds=elapsed))
                except Exception as exc:  # keep serving; the next tick tries again
                    print(f"local-stack: clock tick failed: {exc}", file=sys.stderr, flush=True)

        self._clock_thread = threading.Thread(target=tick, name="sim-wall-clock", daemon=True)
        self._clock_thread.start()

    def _unreadable(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.world.unreadable_keys()

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def s3_url(self) -> str:
        return self.s3.url

    def environment(self) -> dict[str, str]:
        """CONTRACT §4 variables that point the platform at this stack."""
        return {
            "CXONE_API_URL": self.api_url,
            "CXONE_CLIENT_ID": self.config.client_id,
            "CXONE_CLIENT_SECRET": self.config.client_secret,
            "CXONE_BUCKET": self.config.bucket,
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_ENDPOINT_URL_KMS": self.s3_url,  # the local store serves KMS too
            "AWS_REGION": SIM_AWS_REGION,
            "AWS_ACCESS_KEY_ID": SIM_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": SIM_AWS_KEY,
        }

    def s3_client(self) -> Any:
        """A boto3 S3 client as the platform's reader sees the bucket."""
        return make_client(self.s3_url)

    def stop(self) -> None:
        """Stop the clock, the API server, then the S3 endpoint (dropping its state). Idempotent."""
        self._clock_stop.set()
        if self._clock_thread is not None:
            self._clock_thread.join(timeout=60)
        self._stop.close()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxone-sync local-stack",
        description="Start the CXone simulator and a local S3 store on loopback; print the "
        "environment that points the platform at them; serve until interrupted.",
    )
    parser.add_argument("--api-port", type=int, default=LOCAL_API_PORT, help="0 = a free port")
    parser.add_argument("--s3-port", type=int, default=LOCAL_S3_PORT, help="0 = a free port")
    parser.add_argument("--seed", type=int, default=SimConfig.seed)
    parser.add_argument("--scale", type=float, default=SimConfig.scale)
    parser.add_argument("--chaos", action="store_true", help="inject every fault at low rates")
    parser.add_argument(
        "--warehouse",
        choices=["duckdb", "snowflake"],
        default="duckdb",
        help="snowflake: also serve the Snowflake emulator (the 'local' extra) over this S3",
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=DEFAULT_HISTORY_DAYS,
        metavar="N",
        help="live clock: start at midnight UTC N days ago (default %(default)s)",
    )
    parser.add_argument(
        "--fixed-clock",
        action="store_true",
        help="start at 2024-03-15 and move the clock only when told (sim advance, --advance-*)",
    )
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=15.0,
        metavar="S",
        help="live clock: catch up with the wall clock every S seconds (default %(default)s)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help="also write the export lines to PATH (removed on exit); `make dev` reads it",
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--advance-to", type=to_utc, metavar="ISO", help="run the clock to ISO")
    when.add_argument("--advance-hours", type=float, metavar="N", help="run the clock N hours")
    return parser


DEFAULT_HISTORY_DAYS = 3


def history_start(now: datetime, days: int) -> datetime:
    """Midnight UTC ``days`` days before ``now``'s date (every category interval aligns to it)."""
    if days < 0:
        raise ValueError("--history-days must not be negative")
    midnight = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    return midnight - timedelta(days=days)


def config_from_args(args: argparse.Namespace, now: datetime | None = None) -> SimConfig:
    faults = FaultConfig.chaos() if args.chaos else FaultConfig()
    config = SimConfig(seed=args.seed, scale=args.scale, faults=faults)
    if getattr(args, "fixed_clock", True):
        return config
    start = history_start(now or datetime.now(UTC), args.history_days)
    return SimConfig(seed=args.seed, scale=args.scale, faults=faults, start=start)


def catch_up(world: World, within: timedelta = timedelta(seconds=1)) -> None:
    """Run the clock to the wall clock; again while the exports took more than ``within``."""
    while (now := datetime.now(UTC)) - world.now > within:
        world.advance_to(now)


def partitions_start(config: SimConfig) -> date:
    """The first partition the platform should show for this world: its first exported day."""
    return config.start.date()


def export_lines(environment: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM; the previous handlers are restored afterwards."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _write_env_file(path: Path, lines: list[str]) -> None:
    """The export lines, readable by the owner only (they hold the simulator's demo secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# written by `cxone-sync local-stack`; removed when it stops\n")
        handle.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``cxone-sync local-stack``; returns the exit code."""
    args = _parser().parse_args(argv)
    live = not args.fixed_clock
    # the simulator's log lines (e.g. each manual export it accepts) on stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("# sim %(asctime)s %(message)s"))
    sim_log = logging.getLogger("cxone_sync.simulator")
    sim_log.addHandler(handler)
    sim_log.setLevel(logging.INFO)
    try:
        config = config_from_args(args)
        stack = LocalStack(config, api_port=args.api_port, s3_port=args.s3_port)
    except (OSError, ValueError) as exc:
        print(f"local-stack: cannot start: {exc}", file=sys.stderr)
        return 1
    with stack, ExitStack() as started:
        world = stack.world
        try:
            if live:
                print(
                    f"# exporting the history since {iso_z(config.start)} up to now ...",
                    file=sys.stderr,
                    flush=True,
                )
                catch_up(world)
            if args.advance_to is not None:
                world.advance_to(args.advance_to)
            elif args.advance_hours is not None:
                world.advance(timedelta(hours=args.advance_hours))
        except ValueError as exc:
            print(f"local-stack: cannot advance the clock: {exc}", file=sys.stderr)
            return 1
        if live:
            stack.follow_wall_clock(args.tick_seconds)
        environment = {
            **stack.environment(),
            "CXONE_PARTITIONS_START": partitions_start(config).isoformat(),
        }
        if args.warehouse == "snowflake":
            from cxone_sync.warehouse.snowflake_emulator import serve_beside

            environment.update(
                started.enter_context(serve_beside(stack.s3_url, stack.config.bucket))
            )
        lines = export_lines(environment)
        if args.env_file is not None:  # before printing: a reader of the lines finds the file
            _write_env_file(args.env_file, lines)
        print("\n".join(lines), flush=True)
        mode = "follows the wall clock" if live else "fixed (moves with `sim advance`)"
        print(
            f"# CXone simulator at {stack.api_url}, S3 at {stack.s3_url}, "
            f"clock {iso_z(world.now)} ({mode}), exports since {iso_z(config.start)}; "
            "Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        try:
            _wait_for_signal()
        finally:
            if args.env_file is not None:
                args.env_file.unlink(missing_ok=True)
    return 0
