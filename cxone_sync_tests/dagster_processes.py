"""The real ``dagster-webserver`` and ``dagster-daemon`` on an on-disk instance, for tests and
``make ui-check``: a temporary DAGSTER_HOME with the project's instance template, dynamic ports,
bounded waits, and every process (with the code servers and run workers they start) stopped on
exit, also when the test fails.

The daemon is Dagster's own ``dagster-daemon run``; the only difference is its loop interval
(Dagster hard-codes 30 s between backfill iterations), shortened by :mod:`fast_daemon` so a
backfill completes in seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import httpx

from cxone_sync.settings import INSTANCE_TEMPLATE, PROJECT_ROOT
from cxone_sync.simulator.stack import LocalStack

T = TypeVar("T")

BIN = Path(sys.executable).parent
FOREIGN_ENV = (
    "CXONE_TOKEN_URL",
    "CXONE_ACCESS_KEY_ID",
    "CXONE_ACCESS_KEY_SECRET",
    "CXONE_DOWNLOAD_IDS",
    "CXONE_WAREHOUSE",
    "CXONE_DUCKDB_PATH",
    "CXONE_PARTITIONS_START",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "DAGSTER_HOME",
)
TEST_INSTANCE = """
# test only: dequeue queued runs every second (the project's template: Dagster's 5 s default)
run_queue:
  dequeue_interval_seconds: 1
"""
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, OSError) as exc:
            last_error, value = exc, None
        if value is not None:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last error: {last_error})")


class GraphQLError(AssertionError):
    pass


@dataclass
class DagsterProcesses:
    """A running webserver and daemon; :meth:`graphql` talks to the webserver."""

    url: str
    home: Path
    data_dir: Path
    env: dict[str, str]
    logs: Path

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(f"GraphQL errors: {body['errors']}")
        return dict(body["data"])

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def process_env(stack: LocalStack, home: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(stack.environment())
    env.update(DAGSTER_HOME=str(home), CXONE_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    return env


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def stop_all(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM every process group (a server, its code servers, its run workers) at once, wait up
    to ``grace`` seconds for the leaders, then SIGKILL whatever of the groups is left."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:  # stragglers of each group (run workers), and any leader left
        _signal_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


@contextlib.contextmanager
def dagster_processes(
    stack: LocalStack,
    root: Path,
    extra_env: Mapping[str, str] | None = None,
    startup_timeout: float = 120.0,
) -> Iterator[DagsterProcesses]:
    """Start ``dagster-webserver`` and the daemon on ``root/home`` against ``stack``."""
    home, data_dir, logs = root / "home", root / "data", root / "logs"
    for folder in (home, data_dir, logs):
        folder.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_TEMPLATE.read_text() + TEST_INSTANCE)
    # Create the SQLite storages once: the webserver and the daemon starting together would race
    # to create the same tables.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    env = {**process_env(stack, home, data_dir), **(extra_env or {})}
    port, code_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    # One code server shared by the webserver and the daemon, as `dagster dev` does.
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {code_port}\n      location_name: cxone_sync\n"
    )
    commands = {
        "code_server": [
            str(BIN / "dagster"),
            *("code-server", "start", "-m", "cxone_sync.definitions", "-a", "defs"),
            *("--location-name", "cxone_sync", "-h", "127.0.0.1", "-p", str(code_port)),
            *("-d", str(PROJECT_ROOT)),
        ],
        "webserver": [
            str(BIN / "dagster-webserver"),
            *("-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)),
        ],
        "daemon": [
            sys.executable,
            "-m",
            "cxone_sync_tests.fast_daemon",
            *("run", "-w", str(workspace)),
        ],
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            if name == "webserver":  # the code server has loaded the definitions
                wait_for(
                    "the code server",
                    lambda: (
                        b"Started Dagster code server" in (logs / "code_server.log").read_bytes()
                        or None
                    ),
                    startup_timeout,
                )
            with (logs / f"{name}.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        command,
                        cwd=PROJECT_ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: stopped as one
                    )
                )
        processes = DagsterProcesses(url, home, data_dir, env, logs)

        def ready() -> bool | None:
            for process in started:
                if process.poll() is not None:
                    raise RuntimeError(f"a Dagster process exited:\n{processes.log_tail()}")
            data = processes.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )
            entries = data["workspaceOrError"]["locationEntries"]
            loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
            for entry in loaded:
                if entry["locationOrLoadError"]["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed: {entry['locationOrLoadError']}")
            return True if loaded else None

        wait_for("the webserver and its code location", ready, startup_timeout)

        def daemon_alive() -> bool | None:
            data = processes.graphql(
                '{ instance { daemonHealth { daemonStatus(daemonType: "BACKFILL") { healthy } } } }'
            )
            return True if data["instance"]["daemonHealth"]["daemonStatus"]["healthy"] else None

        wait_for("the daemon's backfill loop", daemon_alive, startup_timeout)
        yield processes
    finally:
        stop_all(started)
