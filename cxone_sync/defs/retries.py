"""Op retries for the warehouse steps: a step that fails for a transient reason runs again later.

Only transient failures are retried: DuckDB's file lock outlasting the open's own wait, the CXone
API still failing after the client's retries (5xx, 429, timeouts, transport errors), and S3 5xx /
throttling / connection errors. Everything else (a blocked partition, breaking schema drift, a
bug) fails the step at once, as before: retrying it would only delay the same answer.

Why op retries and not run retries (``run_retries`` in ``dagster.yaml``): an op retry re-runs only
the failed step, inside the same run (same run id, so the staged files under the run's root id are
the ones the MERGE reads), with exponential backoff and jitter; it works the same under the daemon,
``dagster dev`` and ``cxone-sync sync`` (``execute_in_process``). Run retries need the daemon, have
no backoff (a lock still held is hit again at once) and start a new run that re-executes from
failure. Re-running a step is safe: staging clears the partition's staging folder before it
stages again, and a MERGE is one transaction that the lock can only stop before it begins (the
file audit ledger skips files a committed MERGE already loaded).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import httpx
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from cxone_sync.cxone.errors import TransientAPIError
from cxone_sync.settings import get_settings
from cxone_sync.storage.staging import S3_TRANSIENT_CODES, TransientStagingError
from cxone_sync.warehouse.locks import is_lock_error


def _transient_one(exc: BaseException) -> bool:
    if is_lock_error(exc):
        return True
    if isinstance(exc, (TransientAPIError, TransientStagingError)):
        return True
    if isinstance(exc, (httpx.TransportError, ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return int(status) >= 500 or code in S3_TRANSIENT_CODES
    return False


def is_transient(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, is worth retrying later."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_one(current):
            return True
        current = current.__cause__
    return False


def step_retry_policy() -> dg.RetryPolicy:
    """The warehouse steps' retry policy, from the settings (read when a step fails)."""
    settings = get_settings()
    return dg.RetryPolicy(
        max_retries=settings.step_max_retries,
        delay=settings.step_retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def retry_transient(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Wrap a generator asset body: a transient failure asks Dagster to retry the step.

    Raises ``dg.RetryRequested`` with :func:`step_retry_policy`'s count and delay for attempt
    ``context.retry_number + 1``; any other failure propagates unchanged (no retry).
    """

    @functools.wraps(fn)
    def wrapper(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from fn(context, *args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            policy = step_retry_policy()
            attempt = context.retry_number + 1
            if attempt > policy.max_retries:
                raise
            wait = policy.calculate_delay(attempt)
            context.log.warning(
                f"transient failure ({type(exc).__name__}: {exc}); retry {attempt} of "
                f"{policy.max_retries} in {wait:.1f} s"
            )
            raise dg.RetryRequested(max_retries=policy.max_retries, seconds_to_wait=wait) from exc

    return wrapper
