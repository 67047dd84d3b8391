"""The simulator's HTTP API: CXone Data Download (CONTRACT §1) over real loopback HTTP.

:class:`SimApi` is the protocol-free application (a request in, a response out);
:class:`ApiServer` serves it with a threaded stdlib HTTP server. Besides the contract's surface
(``/oauth/token`` and ``/api/v2/data-downloads/...``) it answers control endpoints under
``/sim/`` (no auth, no faults) that move the simulated clock and expose the fault log and the
ground truth to tests.

API faults (CONTRACT §1: 429, 5xx, slow, truncated, non-JSON answers, expired and revoked tokens)
come from the world's :class:`~cxone_sync.simulator.config.FaultConfig`, are drawn from an RNG
seeded by the world's seed, apply to ``/api/v2`` calls only and are appended to
``world.fault_log`` with kind ``api_*``. Tokens, secrets and request bodies are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from cxone_sync.catalog import CATEGORY_BY_NAME
from cxone_sync.settings import LOCAL_HOST
from cxone_sync.simulator._loopback import LoopbackServer
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.world import BadRequest, Conflict, NotFound, World
from cxone_sync.timefmt import utc_iso as iso_z

logger = logging.getLogger(__name__)

JOB_STATUSES = frozenset({"QUEUED", "RUNNING", "COMPLETED", "FAILED", "TIMED_OUT"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
RETRY_AFTER_SECONDS = 1
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
_NON_JSON_BODY = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server returned an invalid response.</p>"
    b"</body></html>"
)
_DOWNLOAD_PATH = re.compile(
    r"^/api/v2/data-downloads/(?P<download>[^/]+)(?:/(?P<rest>jobs|manual-export)"
    r"(?:/(?P<job>[^/]+))?)?/?$"
)


class SimWorld(Protocol):
    """What the server needs of :class:`cxone_sync.simulator.world.World`."""

    @property
    def config(self) -> SimConfig: ...

    @property
    def now(self) -> datetime: ...

    @property
    def fault_log(self) -> list[dict[str, Any]]: ...

    def advance_to(self, t: datetime) -> list[dict[str, Any]]: ...

    def advance(self, delta: timedelta) -> list[dict[str, Any]]: ...

    def download_config(self, download_id: str) -> dict[str, Any] | None: ...

    def list_jobs(
        self,
        download_id: str,
        *,
        category: str | None = None,
        statuses: Sequence[str] = (),
        updated_since: datetime | None = None,
    ) -> list[dict[str, Any]]: ...

    def get_job(self, download_id: str, job_id: str) -> dict[str, Any] | None: ...

    def manual_export(self, download_id: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def ground_truth(
        self,
        category: str,
        data_type: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table: ...


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (slow-answer fault)."""
    truncate: bool = False
    """Announce the full Content-Length, send half the body, then close (truncation fault)."""


class HttpError(Exception):
    """An error answer: status plus a JSON ``{"error", "message"}`` body."""

    def __init__(self, status: int, error: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


def to_utc(value: str | datetime) -> datetime:
    """Parse ISO-8601 (``Z`` allowed) or take a datetime; aware UTC. Naive times are refused."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:
        raise ValueError(f"{parsed.isoformat()} has no time zone")
    return parsed.astimezone(UTC)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return iso_z(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(status: int, payload: object, **headers: str) -> Response:
    body = json.dumps(payload, default=_json_default).encode()
    return Response(status, body, headers=dict(headers))


def error_response(exc: HttpError) -> Response:
    return json_response(exc.status, {"error": exc.error, "message": exc.message}, **exc.headers)


def _timestamp(value: str | datetime, name: str) -> datetime:
    try:
        return to_utc(value)
    except (TypeError, ValueError):
        raise HttpError(400, "invalid_request", f"{name} must be an ISO-8601 UTC time") from None


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HttpError(400, "invalid_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_request", "the body must be a JSON object")
    return body


# --- tokens -------------------------------------------------------------------------------


class TokenStore:
    """Issued bearer tokens with their expiry; revocation keeps a tombstone for the fault log.

    A token expires ``ttl_seconds`` after it was issued or, with ``max_calls``, once it has
    answered that many API calls (:meth:`answered` counts them).
    """

    def __init__(self, clock: Callable[[], float], max_calls: int = 0) -> None:
        self._clock = clock
        self._max_calls = max_calls
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._answered: dict[str, int] = {}
        self._revoked: set[str] = set()

    def issue(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[token] = self._clock() + ttl_seconds
            self._answered[token] = 0
        return token

    def check(self, token: str) -> str | None:
        """None when the token is valid, else why not: ``unknown``, ``expired``, ``revoked``."""
        with self._lock:
            if token in self._revoked:
                return "revoked"
            expiry = self._expiry.get(token)
            used_up = 0 < self._max_calls <= self._answered.get(token, 0)
        if expiry is None:
            return "unknown"
        return "expired" if used_up or self._clock() >= expiry else None

    def answered(self, token: str) -> None:
        """Count one API call answered with ``token``."""
        with self._lock:
            if token in self._answered:
                self._answered[token] += 1

    def has_answered(self, token: str) -> bool:
        with self._lock:
            return self._answered.get(token, 0) > 0

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self._expiry)
            self._revoked.update(self._expiry)
            self._expiry.clear()
        return count


# --- faults -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiFault:
    kind: str
    status: int | None = None
    delay: float = 0.0


class FaultInjector:
    """Decides, per API call and deterministically from the seed, which fault (if any) to inject.

    Every call consumes the same number of random draws, so a given sequence of calls always
    meets the same faults.
    """

    def __init__(self, world: SimWorld, tokens: TokenStore) -> None:
        self._faults = world.config.faults
        self._rng = random.Random(f"api-faults:{world.config.seed}")
        self._tokens = tokens
        self._lock = threading.Lock()
        self._revocation_due = False
        self.calls = 0

    def next_call(self) -> tuple[int, ApiFault | None, ApiFault | None]:
        """Count one API call: (its number, the answer fault, the slow-answer fault)."""
        f = self._faults
        with self._lock:
            self.calls += 1
            draws = [self._rng.random() for _ in range(6)]
            if f.revoke_tokens_every and self.calls % f.revoke_tokens_every == 0:
                self._revocation_due = True
            call = self.calls
        answer: ApiFault | None = None
        if draws[0] < f.api_429_rate:
            answer = ApiFault("api_429", 429)
        elif draws[1] < f.api_5xx_rate:
            answer = ApiFault("api_5xx", 503 if draws[2] < 0.5 else 500)
        elif draws[3] < f.api_non_json_rate:
            answer = ApiFault("api_non_json", 200)
        elif draws[4] < f.api_truncated_rate:
            answer = ApiFault("api_truncated")
        slow = (
            ApiFault("api_slow", delay=f.api_slow_seconds) if draws[5] < f.api_slow_rate else None
        )
        return call, answer, slow

    def revoke_if_due(self, token: str | None) -> None:
        """Every ``revoke_tokens_every`` calls, revoke all tokens: at the first call from then on
        whose token has answered before (a token fetched after a refusal is never refused too,
        so a client that re-authenticates once per refused call is not failed twice)."""
        with self._lock:
            if self._revocation_due and token is not None and self._tokens.has_answered(token):
                self._tokens.revoke_all()
                self._revocation_due = False


# --- pagination ---------------------------------------------------------------------------


def _query_digest(download_id: str, **filters: object) -> str:
    text = json.dumps([download_id, filters], sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sort_key(job: Mapping[str, Any]) -> tuple[datetime, str]:
    return to_utc(job["updated_at"]), str(job["id"])


def encode_page_token(last: Mapping[str, Any], digest: str) -> str:
    updated_at, job_id = _sort_key(last)
    raw = json.dumps({"u": iso_z(updated_at), "i": job_id, "q": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, digest: str) -> tuple[datetime, str]:
    """The (updated_at, id) a page starts after; 400 when forged or from another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after = to_utc(data["u"]), str(data["i"])
        same_query = data["q"] == digest
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise HttpError(400, "invalid_request", "page_token is not valid") from None
    if not same_query:
        raise HttpError(400, "invalid_request", "page_token belongs to a different query")
    return after


def _limit(request: Request) -> int:
    text = request.param("limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise HttpError(400, "invalid_request", "limit must be an integer") from None
    if limit < 1:
        raise HttpError(400, "invalid_request", "limit must be at least 1")
    return min(limit, MAX_LIMIT)


# --- the application ----------------------------------------------------------------------


class SimApi:
    """The simulator's HTTP application, independent of the HTTP server that carries it."""

    def __init__(self, world: SimWorld, clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.tokens = TokenStore(clock, world.config.faults.token_ttl_calls)
        self.faults = FaultInjector(world, self.tokens)
        self._log_lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        try:
            if request.path == "/oauth/token":
                return self._token(request)
            if request.path.startswith("/api/v2/"):
                return self._api(request)
            if request.path.startswith("/sim/"):
                return self._control(request)
            raise HttpError(404, "not_found", f"no such endpoint: {request.path}")
        except HttpError as exc:
            return error_response(exc)

    # OAuth2 token endpoint

    def _token(self, request: Request) -> Response:
        _require_method(request, "POST")
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("latin-1")).items()}
        client_id, client_secret = _client_credentials(request, form)
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "password"):
            raise HttpError(
                400, "unsupported_grant_type", "grant_type must be client_credentials or password"
            )
        config = self.world.config
        if not (_same(client_id, config.client_id) and _same(client_secret, config.client_secret)):
            raise HttpError(
                401, "invalid_client", "client authentication failed", **_www_authenticate()
            )
        if grant == "password":
            username, password = form.get("username"), form.get("password")
            if username is None or password is None:
                raise HttpError(
                    400, "invalid_request", "the password grant needs username/password"
                )
            if not (
                _same(username, config.access_key_id) and _same(password, config.access_key_secret)
            ):
                raise HttpError(401, "invalid_grant", "the access key id or secret is wrong")
        ttl = config.faults.token_ttl_seconds
        token = self.tokens.issue(ttl)
        payload = {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
        return json_response(200, payload, **{"Cache-Control": "no-store"})

    # Data Download API

    def _api(self, request: Request) -> Response:
        call, fault, slow = self.faults.next_call()
        token = _bearer_token(request)
        self.faults.revoke_if_due(token)
        refusal = "missing" if token is None else self.tokens.check(token)
        if token is None or refusal is not None:
            if refusal in ("expired", "revoked"):
                self._log_fault(f"api_token_{refusal}", request, call)
            raise HttpError(
                401, "invalid_token", f"the access token is {refusal}", **_www_authenticate()
            )
        if fault is not None:
            self._log_fault(fault.kind, request, call, status=fault.status)
        else:
            self.tokens.answered(token)
        if fault is None or fault.kind == "api_truncated":
            response = self._route(request)
            response.truncate = fault is not None
        else:
            response = _fault_response(fault)
        if slow is not None:
            self._log_fault(slow.kind, request, call)
            response.delay = slow.delay
        return response

    def _log_fault(self, kind: str, request: Request, call: int, **extra: object) -> None:
        entry: dict[str, Any] = {
            "kind": kind,
            "at": iso_z(self.world.now),
            "call": call,
            "method": request.method,
            "path": request.path,
            **{k: v for k, v in extra.items() if v is not None},
        }
        with self._log_lock:
            self.world.fault_log.append(entry)

    def _route(self, request: Request) -> Response:
        match = _DOWNLOAD_PATH.match(request.path)
        if match is None:
            raise HttpError(404, "not_found", f"no such endpoint: {request.path}")
        download_id = unquote(match["download"])
        rest, job_id = match["rest"], match["job"]
        config = self.world.download_config(download_id)
        if config is None:
            raise HttpError(404, "not_found", f"unknown download id {download_id!r}")
        if rest is None:
            _require_method(request, "GET")
            return json_response(200, config)
        if rest == "jobs" and job_id is None:
            _require_method(request, "GET")
            return self._list_jobs(request, download_id)
        if rest == "jobs":
            _require_method(request, "GET")
            return self._get_job(download_id, unquote(job_id))
        if job_id is None:
            _require_method(request, "POST")
            return self._manual_export(request, download_id)
        raise HttpError(404, "not_found", f"no such endpoint: {request.path}")

    def _list_jobs(self, request: Request, download_id: str) -> Response:
        category = request.param("category")
        if category is not None and category not in CATEGORY_BY_NAME:
            raise HttpError(400, "invalid_request", f"unknown category {category!r}")
        statuses = tuple(sorted(set(request.query.get("status", []))))
        unknown = [s for s in statuses if s not in JOB_STATUSES]
        if unknown:
            raise HttpError(400, "invalid_request", f"unknown status {unknown[0]!r}")
        since_text = request.param("updated_since")
        since = _timestamp(since_text, "updated_since") if since_text is not None else None
        limit = _limit(request)
        digest = _query_digest(download_id, category=category, statuses=statuses, since=since)
        token = request.param("page_token")
        after = decode_page_token(token, digest) if token else None
        if isinstance(self.world, World):  # the real world builds only the page's job dicts
            jobs = self.world.list_jobs(
                download_id,
                category=category,
                statuses=statuses,
                updated_since=since,
                after=after,
                limit=limit + 1,
            )
        else:
            jobs = self.world.list_jobs(
                download_id, category=category, statuses=statuses, updated_since=since
            )
            if after is not None:
                jobs = [job for job in jobs if _sort_key(job) > after]
        page = jobs[:limit]
        next_token = encode_page_token(page[-1], digest) if len(jobs) > limit else None
        return json_response(200, {"jobs": page, "next_page_token": next_token})

    def _get_job(self, download_id: str, job_id: str) -> Response:
        job = self.world.get_job(download_id, job_id)
        if job is None:
            raise HttpError(404, "not_found", f"unknown job {job_id!r}")
        return json_response(200, job)

    def _manual_export(self, request: Request, download_id: str) -> Response:
        body = _json_body(request)
        try:
            job = self.world.manual_export(download_id, body)
        except BadRequest as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
        except Conflict as exc:
            raise HttpError(409, "conflict", str(exc)) from None
        except NotFound as exc:
            raise HttpError(404, "not_found", str(exc)) from None
        # the simulator's own record of what it accepted (a lost answer still created the job)
        logger.info(
            "manual export %s accepted for %s: %s .. %s (overwrite %s) into %s",
            job.get("id"),
            job.get("category"),
            job.get("interval_start"),
            job.get("interval_end"),
            body.get("overwrite"),
            body.get("destination_prefix"),
        )
        return json_response(202, job)

    # control endpoints (tests and the CLI; no auth, no faults)

    def _control(self, request: Request) -> Response:
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("POST", "/sim/advance"): self._advance,
            ("GET", "/sim/clock"): self._clock,
            ("GET", "/sim/faults"): self._fault_log,
            ("POST", "/sim/revoke-tokens"): self._revoke,
            ("GET", "/sim/truth"): self._truth,
        }
        handler = routes.get((request.method, request.path.rstrip("/")))
        if handler is None:
            known = {path for _, path in routes}
            if request.path.rstrip("/") in known:
                raise HttpError(405, "method_not_allowed", f"{request.method} is not allowed here")
            raise HttpError(404, "not_found", f"no such endpoint: {request.path}")
        return handler(request)

    def _advance(self, request: Request) -> Response:
        body = _json_body(request)
        try:
            if "to" in body:
                changed = self.world.advance_to(_timestamp(body["to"], "to"))
            elif "hours" in body:
                changed = self.world.advance(timedelta(hours=float(body["hours"])))
            else:
                raise HttpError(400, "invalid_request", 'give {"to": ISO} or {"hours": n}')
            now = self.world.now
        except (TypeError, ValueError) as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
        return json_response(200, {"now": now, "changed": changed})

    def _clock(self, request: Request) -> Response:
        return json_response(200, {"now": self.world.now})

    def _fault_log(self, request: Request) -> Response:
        with self._log_lock:
            faults = list(self.world.fault_log)
        return json_response(200, {"faults": faults})

    def _revoke(self, request: Request) -> Response:
        return json_response(200, {"revoked": self.tokens.revoke_all()})

    def _truth(self, request: Request) -> Response:
        category, data_type = request.param("category"), request.param("data_type")
        if not category or not data_type:
            raise HttpError(400, "invalid_request", "category and data_type are required")
        start, end = request.param("start"), request.param("end")
        try:
            table = self.world.ground_truth(
                category,
                data_type,
                _timestamp(start, "start") if start else None,
                _timestamp(end, "end") if end else None,
            )
        except (KeyError, ValueError) as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return Response(200, sink.getvalue(), content_type=PARQUET_MEDIA_TYPE)


def _fault_response(fault: ApiFault) -> Response:
    """The answer an injected 429, 5xx or non-JSON fault gives instead of the real one."""
    if fault.kind == "api_non_json":
        return Response(200, _NON_JSON_BODY, content_type="text/html; charset=utf-8")
    status = fault.status or 500
    if status == 429:
        error = HttpError(
            429, "rate_limited", "too many requests", **{"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    else:
        error = HttpError(status, "server_error", HTTPStatus(status).phrase)
    return error_response(error)


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _require_method(request: Request, method: str) -> None:
    if request.method != method:
        raise HttpError(
            405, "method_not_allowed", f"{request.method} is not allowed here", Allow=method
        )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _www_authenticate() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="cxone-sim"'}


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Client id and secret from HTTP Basic auth, else from the form."""
    scheme, _, encoded = (request.header("authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(400, "invalid_request", "malformed Basic authorization") from None
        client_id, _, client_secret = decoded.partition(":")
        return unquote(client_id), unquote(client_secret)
    return form.get("client_id"), form.get("client_secret")


# --- the HTTP server ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cxone-sim"
    sys_version = ""
    timeout = 30  # idle keep-alive connections end on their own
    wbufsize = 64 * 1024  # headers and body leave in one write (no delayed-ACK stalls)
    disable_nagle_algorithm = True
    server: _HttpServer

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header carries the simulated clock (as CXone's carries its own), so a
        client that takes "now" from its server sees the simulator's time."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        return formatdate(self.server.api.world.now.timestamp(), usegmt=True)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        try:
            response = self.server.api.handle(request)
        except Exception:
            logger.exception("simulator error on %s %s", request.method, request.path)
            response = json_response(500, {"error": "server_error", "message": "internal error"})
        self._write(response)

    def _write(self, response: Response) -> None:
        if response.delay:
            time.sleep(response.delay)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        body = response.body[: len(response.body) // 2] if response.truncate else response.body
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries no secret (tokens travel in headers, credentials in bodies).
        logger.debug(format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: SimApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class ApiServer(LoopbackServer):
    """The simulator API on ``127.0.0.1``; ``port=0`` picks a free port. A context manager."""

    def __init__(
        self, world: SimWorld, port: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = SimApi(world, clock)
        self._serve(_HttpServer((LOCAL_HOST, port), self.api), "sim-api")
