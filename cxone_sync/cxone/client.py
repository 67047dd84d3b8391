"""HTTP client for the CXone Data Download API (CONTRACT §1), an :class:`ExportSource`.

Auth is OAuth2: the password grant (registered app plus an API user's access key, as CXone's own
back-end apps do) when an access key is configured, else client credentials. The token is cached
and refreshed ahead of expiry; a 401 drops it, fetches a new one and repeats the call once.

429, 408, 500, 502, 503, 504, timeouts, transport errors and broken bodies (truncated, not
JSON, wrong envelope) are transient: retried by tenacity with jittered exponential backoff
(``Retry-After`` honoured, capped), then :class:`TransientAPIError`. A manual export (a POST)
is only repeated when the server cannot have acted on it, so a timeout never creates a second
export.

Secrets and tokens never appear in logs, exception messages or ``repr``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from cxone_sync.cxone.errors import (
    APIStatusError,
    AuthError,
    BadRequestError,
    ConflictError,
    CXoneError,
    ForbiddenError,
    ManifestError,
    NotFoundError,
    TransientAPIError,
)
from cxone_sync.cxone.models import DownloadConfig, Job, JobStatus
from cxone_sync.cxone.untrusted import clean_text, shown, url_segment
from cxone_sync.timefmt import utc_iso

log = logging.getLogger(__name__)

API_PREFIX = "/api/v2/data-downloads"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
NOT_APPLIED_STATUSES = frozenset({429, 503})
"""Statuses after which the server has not acted on the request, so even a POST may repeat."""
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
}
_SERVER_TEXT_LIMIT = 300
_PATH_SHOWN = 200
_REDACTED = "[redacted]"
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` in all, waits in seconds."""

    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    """Cap on the exponential part of a wait; up to ``jitter`` more is added at random."""
    jitter: float = 1.0
    max_retry_after: float = 120.0
    """Cap on a server's ``Retry-After``."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")


@dataclass
class ClientStats:
    """Counters for benchmarks: API requests sent, retries slept, tokens fetched."""

    api_calls: int = 0
    retries: int = 0
    token_fetches: int = 0
    reauthentications: int = 0


MAX_REAUTHENTICATIONS_PER_CALL = 3
"""Across the retries of one call; within one attempt, at most one."""


@dataclass
class _Call:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: dict[str, Any] | None = None
    reauthentications: int = 0

    @property
    def idempotent(self) -> bool:
        return self.method == "GET"

    def __str__(self) -> str:
        # the path carries percent-encoded ids of any length: bounded in messages
        return f"{self.method} {shown(self.path, _PATH_SHOWN)}"


@dataclass
class _Token:
    value: SecretStr
    refresh_at: float


class CXoneClient:
    """The Data Download API over one ``httpx.Client``; thread-safe; use as a context manager."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        download_ids: Mapping[str, str],
        token_url: str | None = None,
        access_key_id: str | None = None,
        access_key_secret: str | SecretStr | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        token_refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (access_key_id is None) != (access_key_secret is None):
            raise ValueError("access_key_id and access_key_secret must be given together")
        self._base_url = _checked_url(base_url.rstrip("/"), "base_url")
        self._token_url = _checked_url(token_url or f"{self._base_url}/oauth/token", "token_url")
        self._client_id = client_id
        self._client_secret = SecretStr(_plain(client_secret))
        self._access_key_id = access_key_id
        self._access_key_secret = (
            None if access_key_secret is None else SecretStr(_plain(access_key_secret))
        )
        self._download_ids = dict(download_ids)
        self._retry = retry or RetryPolicy()
        self._backoff = wait_exponential(
            multiplier=self._retry.initial_wait, max=self._retry.max_wait
        ) + wait_random(0, self._retry.jitter)
        self._refresh_margin = token_refresh_margin
        self._clock = clock
        self._token: _Token | None = None
        self._token_lock = threading.Lock()
        self._stats = ClientStats()
        self._stats_lock = threading.Lock()
        self._server_time: tuple[datetime, float] | None = None
        self._http = httpx.Client(
            base_url=self._base_url,
            timeout=timeout,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "cxone-sync"},
        )

    @property
    def grant_type(self) -> str:
        return "client_credentials" if self._access_key_id is None else "password"

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return replace(self._stats)

    def server_now(self) -> datetime | None:
        """The API server's clock now: its newest HTTP ``Date`` answer plus the seconds since
        (local monotonic), or None before any answer carried one.

        The automation sensors take "now" from here (CXone's clock, which is the simulator's
        simulated clock against the simulator), falling back to the local wall clock.
        """
        with self._stats_lock:
            seen = self._server_time
        if seen is None:
            return None
        date, at = seen
        return date + timedelta(seconds=max(time.monotonic() - at, 0.0))

    def _note_server_date(self, response: httpx.Response) -> None:
        value = response.headers.get("Date")
        if not value:
            return
        try:
            date = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return  # an unparsable Date is ignored, never an error
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        with self._stats_lock:
            self._server_time = (date.astimezone(UTC), time.monotonic())

    def __repr__(self) -> str:
        return (
            f"CXoneClient(base_url={self._base_url!r}, token_url={self._token_url!r}, "
            f"client_id={self._client_id!r}, grant_type={self.grant_type!r}, "
            f"download_ids={self._download_ids!r})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ExportSource

    def download_config(self, category: str) -> DownloadConfig:
        download_id = self._download_id(category)
        raw = self._request(_Call("GET", _path(download_id)), _object)
        config = DownloadConfig.parse(raw)
        if (config.download_id, config.category) != (download_id, category):
            raise ManifestError(
                f"download {download_id} configured for category {category!r} answered as "
                f"download {config.download_id} of category {config.category!r}; "
                "fix CXONE_DOWNLOAD_IDS"
            )
        return config

    def iter_jobs(
        self,
        category: str,
        *,
        statuses: Iterable[JobStatus] = (),
        updated_since: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        params = [("category", category)]
        params += [("status", JobStatus(s).value) for s in statuses]
        if updated_since is not None:
            params.append(("updated_since", utc_iso(updated_since)))
        params.append(("limit", str(page_size)))
        return self._pages(_path(self._download_id(category), "jobs"), params)

    def get_job(self, category: str, job_id: str) -> Job:
        path = _path(self._download_id(category), "jobs", job_id)
        job = Job.parse(self._request(_Call("GET", path), _object))
        if job.id != job_id:
            raise ManifestError(
                f"job {shown(job_id)}: GET {shown(path, _PATH_SHOWN)} answered job {shown(job.id)}"
            )
        return job

    def manual_export(
        self,
        category: str,
        start: datetime,
        end: datetime,
        destination_prefix: str,
        overwrite: bool = False,
    ) -> Job:
        start_iso, end_iso = utc_iso(start), utc_iso(end)
        if start >= end:
            raise ValueError(f"manual export needs start < end, got {start_iso} .. {end_iso}")
        _check_destination_prefix(destination_prefix)
        body = {
            "category": category,
            "start_time": start_iso,
            "end_time": end_iso,
            "overwrite": overwrite,
            "destination_prefix": destination_prefix,
        }
        path = _path(self._download_id(category), "manual-export")
        return Job.parse(self._request(_Call("POST", path, body=body), _object))

    # Requests and retries

    def _download_id(self, category: str) -> str:
        try:
            return self._download_ids[category]
        except KeyError:
            known = ", ".join(sorted(self._download_ids)) or "none"
            raise ValueError(
                f"no download id configured for category {category!r} (configured: {known}); "
                "set CXONE_DOWNLOAD_IDS"
            ) from None

    def _pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[Job]:
        seen: set[str] = set()
        page_token: str | None = None
        while True:
            page = params + ([("page_token", page_token)] if page_token else [])
            jobs, page_token = self._request(_Call("GET", path, page), _jobs_page)
            for raw in jobs:
                yield Job.parse(raw)
            if page_token is None:
                return
            if page_token in seen:
                raise CXoneError(f"GET {path} repeated page token {page_token!r}; stopped paging")
            seen.add(page_token)

    def _request(self, call: _Call, envelope: Callable[[_Call, Any], _T]) -> _T:
        retrying = Retrying(
            stop=stop_after_attempt(self._retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: _repeatable(call, exc)),
            before_sleep=lambda state: self._before_sleep(call, state),
            reraise=False,
        )
        try:
            return retrying(self._attempt, call, envelope)
        except RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            assert isinstance(last, TransientAPIError)
            raise TransientAPIError(
                f"{last} (gave up after {self._retry.attempts} attempts)",
                status_code=last.status_code,
                maybe_applied=last.maybe_applied,
            ) from last
        except TransientAPIError as ambiguous:
            raise TransientAPIError(
                f"{ambiguous}; the server may have acted on it, so it was not repeated: "
                "list the jobs before asking again",
                status_code=ambiguous.status_code,
            ) from ambiguous

    def _attempt(self, call: _Call, envelope: Callable[[_Call, Any], _T]) -> _T:
        token = self._bearer()
        response = self._send(call, token)
        # A refused token is replaced once per attempt: a fresh token refused at once means the
        # credentials are bad (AuthError). A later attempt of the same call (after a 429/5xx
        # wait) may meet an expiry or revocation again, so it may re-authenticate again, within
        # a bound.
        if (
            response.status_code == HTTPStatus.UNAUTHORIZED
            and call.reauthentications < MAX_REAUTHENTICATIONS_PER_CALL
        ):
            call.reauthentications += 1
            self._count("reauthentications")
            log.info("%s answered 401; fetching a new token and repeating once", call)
            self._drop_token(token)
            response = self._send(call, self._bearer())
        return envelope(call, self._decode(str(call), response))

    def _send(self, call: _Call, token: SecretStr) -> httpx.Response:
        self._count("api_calls")
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        try:
            response = self._http.request(
                call.method,
                call.path,
                params=tuple(call.params),
                json=call.body,
                headers=headers,
            )
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _transport_failure(str(call), exc) from exc
        self._note_server_date(response)
        return response

    def _decode(self, what: str, response: httpx.Response) -> Any:
        if not response.is_success:
            raise self._status_error(what, response)
        try:
            return json.loads(response.content)
        except ValueError:
            raise TransientAPIError(
                f"{what} answered {response.status_code} with a body that is not JSON "
                f"({len(response.content)} bytes)",
                status_code=response.status_code,
            ) from None

    def _status_error(self, what: str, response: httpx.Response) -> CXoneError:
        status = response.status_code
        text = self._server_text(response)
        if status in TRANSIENT_STATUSES:
            return TransientAPIError(
                f"{what} answered {status}" + (f": {text}" if text else ""),
                status_code=status,
                retry_after=_retry_after(response.headers.get("Retry-After")),
                maybe_applied=status not in NOT_APPLIED_STATUSES,
            )
        return _STATUS_ERRORS.get(status, APIStatusError)(what, status, text)

    def _server_text(self, response: httpx.Response) -> str:
        try:
            body = json.loads(response.content)
        except ValueError:
            body = response.content.decode("utf-8", "replace")
        text = _error_text(body)
        for secret in self._secrets():
            text = text.replace(secret, _REDACTED)
        return clean_text(" ".join(text.split()), _SERVER_TEXT_LIMIT)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientAPIError) and exc.retry_after is not None:
            return min(exc.retry_after, self._retry.max_retry_after)
        return float(self._backoff(state))

    def _before_sleep(self, call: _Call, state: RetryCallState) -> None:
        self._count("retries")
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (%s); attempt %d of %d in %.2fs",
            call,
            exc,
            state.attempt_number + 1,
            self._retry.attempts,
            wait,
        )

    def _count(self, counter: str) -> None:
        with self._stats_lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + 1)

    # Tokens

    def _bearer(self) -> SecretStr:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token.refresh_at:
                self._token = self._fetch_token()
            return self._token.value

    def _drop_token(self, token: SecretStr) -> None:
        with self._token_lock:
            if self._token is not None and self._token.value == token:
                self._token = None

    def _fetch_token(self) -> _Token:
        """A new token; its failures leave the API call unsent, so even a POST may repeat."""
        try:
            return self._new_token()
        except TransientAPIError as exc:
            exc.maybe_applied = False
            raise

    def _new_token(self) -> _Token:
        what = f"POST {httpx.URL(self._token_url).path}"
        self._count("token_fetches")
        try:
            response = self._http.post(self._token_url, data=self._grant_form())
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _transport_failure(what, exc) from exc
        status = response.status_code
        if not response.is_success and status not in TRANSIENT_STATUSES:
            raise AuthError(what, status, self._server_text(response))
        token, lifetime = _token_fields(self._decode(what, response))
        if token is None or lifetime is None:
            raise TransientAPIError(
                f"{what} answered {status} without a usable access_token and expires_in",
                status_code=status,
            )
        margin = min(self._refresh_margin, lifetime / 2)
        return _Token(SecretStr(token), self._clock() + lifetime - margin)

    def _grant_form(self) -> dict[str, str]:
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        if self._access_key_id is None or self._access_key_secret is None:
            return {"grant_type": "client_credentials", **form}
        return {
            "grant_type": "password",
            **form,
            "username": self._access_key_id,
            "password": self._access_key_secret.get_secret_value(),
        }

    def _secrets(self) -> list[str]:
        """Every secret, also as it reads inside a JSON string, to redact from server text."""
        secrets = [self._client_secret, self._access_key_secret]
        if self._token is not None:
            secrets.append(self._token.value)
        plain = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        return [*plain, *(json.dumps(p)[1:-1] for p in plain)]


def _repeatable(call: _Call, exc: BaseException) -> bool:
    if not isinstance(exc, TransientAPIError):
        return False
    return call.idempotent or not exc.maybe_applied


def _transport_failure(what: str, exc: Exception) -> TransientAPIError:
    detail = " ".join(str(exc).split())[:_SERVER_TEXT_LIMIT]
    return TransientAPIError(
        f"{what} failed: {type(exc).__name__}" + (f" ({detail})" if detail else ""),
        maybe_applied=not isinstance(exc, _NOT_SENT_ERRORS),
    )


def _object(call: _Call, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TransientAPIError(f"{call} answered JSON {type(value).__name__}, expected an object")
    return value


def _jobs_page(call: _Call, value: Any) -> tuple[list[Any], str | None]:
    page = _object(call, value)
    jobs, token = page.get("jobs"), page.get("next_page_token")
    if not isinstance(jobs, list) or not (token is None or isinstance(token, str)):
        raise TransientAPIError(
            f"{call} answered an object without a 'jobs' list and a 'next_page_token' "
            f"(keys: {sorted(page)[:10]})"
        )
    return jobs, token or None


def _token_fields(raw: Any) -> tuple[str | None, float | None]:
    """``access_token`` and ``expires_in`` (seconds) of a token answer, None where unusable."""
    if not isinstance(raw, dict):
        return None, None
    token, lifetime = raw.get("access_token"), raw.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    seconds = (
        float(lifetime)
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
        else 0.0
    )
    return (
        token if isinstance(token, str) and token else None,
        seconds if math.isfinite(seconds) and seconds > 0 else None,
    )


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error_description", "message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                return _error_text(value)
        return json.dumps(body)
    return body if isinstance(body, str) else json.dumps(body)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _path(download_id: str, *parts: str) -> str:
    """An API path; every id is one percent-encoded segment (``/``, ``?``, ``#``, ``%``, NUL,
    ``.`` and ``..`` included), so no id can address another endpoint."""
    return "/".join([API_PREFIX, *(url_segment(p) for p in (download_id, *parts))])


def _check_destination_prefix(prefix: str) -> None:
    segments = prefix.split("/")
    if not prefix.endswith("/") or prefix.startswith("/") or {"", ".", ".."} & set(segments[:-1]):
        raise ValueError(
            f"destination_prefix must be a relative key prefix ending in '/', without empty, "
            f"'.' or '..' segments (e.g. 'exports/telephony/backfill/'), got {prefix!r}"
        )


def _plain(secret: str | SecretStr) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def _checked_url(url: str, name: str) -> str:
    """``url`` if it is https, or http to a loopback host; else ``ValueError``."""
    parsed = httpx.URL(url)
    host = parsed.host
    if not host:
        raise ValueError(f"{name} must be an absolute https URL, got one without a host")
    if parsed.scheme == "https" or (parsed.scheme == "http" and _is_loopback(host)):
        return url
    raise ValueError(
        f"{name} must use https; plain http is accepted only for loopback hosts "
        f"(127.0.0.0/8, ::1, localhost), got scheme {parsed.scheme!r} for host {host!r}"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
