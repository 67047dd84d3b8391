"""Another process holding the DuckDB file, for the lock tests (no tests of its own).

:class:`LockHolder` is a real subprocess that opens the file (read-write or read-only) and holds
it until released. :func:`release_after_waits` releases it once the platform has met the lock a
given number of times (the warehouse logs each wait it starts), so a test knows the lock was
really met, with no sleeps and no timing assumptions.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

LOCKS_LOGGER = "cxone_sync.warehouse.locks"

_HOLD = (
    "import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
    "print('held', flush=True); sys.stdin.read(); c.close()"
)


class LockHolder:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> LockHolder:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(self.path), "ro" if self.read_only else "rw"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        assert line == "held", f"the lock holder did not start: {line!r}"
        return self

    def release(self) -> None:
        """Let the holder close the file and exit (the lock is gone when this returns)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _ReleaseOnWaits(logging.Handler):
    def __init__(self, holder: LockHolder, times: int) -> None:
        super().__init__(logging.INFO)
        self.holder = holder
        self.times = times
        self.waits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "is locked by" not in message:
            return
        self.waits.append(message)
        if len(self.waits) == self.times:
            self.holder.release()


@contextmanager
def release_after_waits(holder: LockHolder, times: int = 1) -> Iterator[list[str]]:
    """Release ``holder`` when the platform starts its ``times``-th wait for the lock; yields the
    wait messages seen (so the test can assert the lock was met)."""
    logger = logging.getLogger(LOCKS_LOGGER)
    handler = _ReleaseOnWaits(holder, times)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.waits
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
