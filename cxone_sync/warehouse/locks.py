"""DuckDB's file lock: recognise it, wait for it with a bound, and say who holds it.

DuckDB allows one read-write process per database file; read-only processes share the file with
each other but not with a writer. Opening the file while another process holds a conflicting lock
fails at once with ``IOException: Could not set lock on file ...``. :func:`open_with_wait` retries
that one error with exponential backoff and jitter until a bound, then raises
:class:`WarehouseLockedError` naming the holder. No Dagster imports.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_MESSAGE = "Could not set lock on file"
"""The text of DuckDB's IOException when another process holds a conflicting lock."""
_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")

FIRST_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 2.0


class WarehouseLockedError(Exception):
    """The warehouse file stayed locked by another process for longer than the wait bound."""

    def __init__(self, path: Path, waited: float, attempts: int, cause: BaseException) -> None:
        self.path = path
        self.waited = waited
        self.attempts = attempts
        self.holder = lock_holder(cause)
        who = f"{self.holder[0]} (PID {self.holder[1]})" if self.holder else "another process"
        super().__init__(
            f"the warehouse {path} is locked by {who}: still locked after waiting "
            f"{waited:.1f} s ({attempts} attempts). DuckDB allows one writing process per file. "
            "Let that process finish (a run of another partition, a sensor tick, a DuckDB shell "
            "or notebook holding the file), or raise CXONE_WAREHOUSE_LOCK_WAIT_SECONDS."
        )


def is_lock_error(exc: BaseException) -> bool:
    """True for DuckDB's "another process holds the file" error (or our wait giving up on it)."""
    if isinstance(exc, WarehouseLockedError):
        return True
    return isinstance(exc, duckdb.IOException) and LOCK_MESSAGE in str(exc)


def lock_holder(exc: BaseException) -> tuple[str, str] | None:
    """(program, PID) of the process DuckDB says holds the lock, when it says."""
    match = _HOLDER.search(" ".join(str(exc).split()))
    return (match.group(1), match.group(2)) if match else None


def backoff_delays(
    first: float = FIRST_DELAY_SECONDS,
    cap: float = MAX_DELAY_SECONDS,
    rng: random.Random | None = None,
) -> Callable[[int], float]:
    """attempt (1, 2, ...) -> seconds to sleep: doubling from ``first`` up to ``cap``, with
    "full jitter" on the upper half so waiting processes do not retry in step."""
    rand = rng or random.Random()

    def delay(attempt: int) -> float:
        ceiling = min(cap, first * 2 ** (attempt - 1))
        return ceiling / 2 + rand.uniform(0, ceiling / 2)

    return delay


def open_with_wait(
    open_: Callable[[], T],
    path: Path,
    wait_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``open_()``, retried while it fails with DuckDB's lock error, for at most ``wait_seconds``.

    Any other error is raised at once. ``wait_seconds <= 0`` tries once and raises
    :class:`WarehouseLockedError` on a lock.
    """
    started = clock()
    delay = backoff_delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return open_()
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise
            waited = clock() - started
            remaining = wait_seconds - waited
            if remaining <= 0:
                raise WarehouseLockedError(path, waited, attempt, exc) from exc
            pause = min(delay(attempt), remaining)
            if attempt == 1:
                holder = lock_holder(exc)
                log.info(
                    "%s is locked by %s; waiting up to %.0f s for it",
                    path,
                    f"PID {holder[1]}" if holder else "another process",
                    wait_seconds,
                )
            sleep(pause)
