"""One caller per tenant, at least ``min_interval`` seconds between calls, across processes.

NICE's help centre: "At any given time, only one user per tenant can call an API. You can only
call the API once in a 30 second period." Both rules hold per tenant, not per process, so they
live in a file: an exclusive ``flock`` on ``{lock_dir}/cxone-extraction-{tenant}.lock`` is held
for a whole extraction (create, poll, download), and the file holds the time of the last call,
so a second process (another Dagster run, ``cxone-sync doctor``) waits its turn and its 30 s.

Why a file lock and not (only) a Dagster pool: a pool limits Dagster steps of one instance, but
not a CLI check or a test, and it says nothing about the *time* between calls of two steps that
follow each other; the file carries both. Its limit: processes must share the lock folder (one
host or a shared volume); with several hosts, also put the bridge's runs in a Dagster pool of 1.

``clock`` (wall seconds, comparable across processes) and ``sleep`` are injected: tests use a
fake clock whose ``sleep`` only moves time on, so nothing sleeps for real.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class FakeClock:
    """A clock for tests: ``sleep`` moves time on at once; thread-safe."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept = 0.0

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(seconds, 0.0)
            self.slept += max(seconds, 0.0)


class TenantPacer:
    """The per-tenant lock file and call spacing."""

    def __init__(
        self,
        lock_dir: Path,
        tenant: str,
        *,
        min_interval: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(lock_dir) / f"cxone-extraction-{_UNSAFE.sub('_', tenant)[:100]}.lock"
        self.min_interval = min_interval
        self.clock = clock
        self.sleep = sleep
        self._fd: int | None = None
        self._thread_lock = threading.RLock()
        self.calls = 0
        self.waited = 0.0

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the tenant: no other process (or thread) calls until the block ends."""
        with self._thread_lock:
            if self._fd is not None:  # re-entrant within one holder
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
                yield
            finally:
                self._fd = None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def before_call(self) -> None:
        """Wait until ``min_interval`` has passed since the tenant's last call, then record
        this one. Must be called inside :meth:`turn`."""
        if self._fd is None:
            raise RuntimeError("TenantPacer.before_call outside turn()")
        last = self._last()
        if last is not None:
            wait = last + self.min_interval - self.clock()
            if wait > 0:
                self.waited += wait
                self.sleep(wait)
        self._record(self.clock())
        self.calls += 1

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a 403/429 answer, a job still running)."""
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)

    def _last(self) -> float | None:
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        raw = os.read(self._fd, 64).decode("ascii", "replace").strip()
        try:
            return float(raw)
        except ValueError:
            return None

    def _record(self, when: float) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, f"{when:.3f}\n".encode())
