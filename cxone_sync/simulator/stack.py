"""The local stack: the S3 endpoint with the export bucket, the simulated world, and its API.

``cxone-sync local-stack`` (and ``python -m cxone_sync.simulator local-stack``) runs :func:`main`:
it starts everything on loopback, prints the environment that points the platform at it as
``export K=V`` lines, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import timedelta
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
            "AWS_REGION": SIM_AWS_REGION,
            "AWS_ACCESS_KEY_ID": SIM_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": SIM_AWS_KEY,
        }

    def s3_client(self) -> Any:
        """A boto3 S3 client as the platform's reader sees the bucket."""
        return make_client(self.s3_url)

    def stop(self) -> None:
        """Stop the API server, then the S3 endpoint (dropping its state). Idempotent."""
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
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--advance-to", type=to_utc, metavar="ISO", help="run the clock to ISO")
    when.add_argument("--advance-hours", type=float, metavar="N", help="run the clock N hours")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    faults = FaultConfig.chaos() if args.chaos else FaultConfig()
    return SimConfig(seed=args.seed, scale=args.scale, faults=faults)


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


def main(argv: Sequence[str] | None = None) -> int:
    """``cxone-sync local-stack``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        stack = LocalStack(config_from_args(args), api_port=args.api_port, s3_port=args.s3_port)
    except (OSError, ValueError) as exc:
        print(f"local-stack: cannot start: {exc}", file=sys.stderr)
        return 1
    with stack, ExitStack() as started:
        world = stack.world
        try:
            if args.advance_to is not None:
                world.advance_to(args.advance_to)
            elif args.advance_hours is not None:
                world.advance(timedelta(hours=args.advance_hours))
        except ValueError as exc:
            print(f"local-stack: cannot advance the clock: {exc}", file=sys.stderr)
            return 1
        environment = stack.environment()
        if args.warehouse == "snowflake":
            from cxone_sync.warehouse.snowflake_emulator import serve_beside

            environment.update(
                started.enter_context(serve_beside(stack.s3_url, stack.config.bucket))
            )
        print("\n".join(export_lines(environment)), flush=True)
        print(
            f"# CXone simulator at {stack.api_url}, S3 at {stack.s3_url}, "
            f"clock {iso_z(world.now)}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_signal()
    return 0
