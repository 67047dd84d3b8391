"""A local fake of NICE CXone's discovery, token and Data Extraction API, over real HTTP.

What it answers (the shapes :mod:`cxone_sync.bridge.extraction` documents):

* ``GET /.well-known/openid-configuration``: ``issuer`` (this server) and ``token_endpoint``
  (``/auth/token``);
* ``POST /auth/token``: the password grant, the client by HTTP Basic; an unsigned JWT-shaped
  token whose payload carries ``tenantId``; ``expires_in`` configurable (token refresh);
* ``GET /.well-known/cxone-configuration?tenantId=``: ``api_endpoint`` (this server), area, domain;
* ``POST /data-extraction/v1/jobs``: checks ``entityName``, ``version``, ``startDate`` and
  ``endDate`` (literal ``Z``, at most 14 days), answers 202 ``{"jobId"}``;
* ``GET /data-extraction/v1/jobs/{jobId}``: ``{"jobId", "jobStatus": {"status", "result":
  {"url"}}}``; a job stays RUNNING for ``job_seconds`` of the fake clock, then ends as planned
  (``outcomes``: the first jobs of an entity may end FAILED, CANCELLED or EXPIRED);
* ``GET /data-extraction/v1/jobs``: every job;
* ``GET /results/{token}``: the CSV (UTF-8 with a BOM, quoted as needed; an empty window is an
  empty body), valid ``link_seconds`` after the job answer that issued it; the first
  ``expired_links`` links are born expired (a slow client), answered 403 like S3.

* ``GET /inContactAPI/services/v{version}/{entity}?updatedSince=&skip=&top=`` (the Reporting
  API's incremental shape): the records updated since, oldest first, ``page_size`` at most per
  answer, 204 when none (more); ``reporting_busy_calls`` answer 429 with ``Retry-After``.

Rules: a Data Extraction call less than ``min_interval`` fake seconds after the previous one
answers 403 (or 429 every other time); ``busy_calls`` more calls answer 429 anyway. Every
request is recorded (method, path, query, JSON body, auth scheme) for the shape test. The fake
clock is injected: the client and this server share it, so nothing sleeps for real.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv

from cxone_sync.bridge.convert import type_name
from cxone_sync.catalog import category
from cxone_sync.settings import LOCAL_HOST
from cxone_sync.simulator._loopback import LoopbackServer
from cxone_sync.timefmt import as_utc, utc_iso

BOM = b"\xef\xbb\xbf"
JOBS = "/data-extraction/v1/jobs"
_EXPIRED = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
_Answer = tuple[int, bytes, str, dict[str, str]]
FAKE_CLIENT_ID = "cxone-fake-app"
FAKE_CLIENT_SECRET = "cxone-fake-app-secret"  # noqa: S105 - the fake's public demo credential
FAKE_ACCESS_KEY_ID = "fake-access-key"
FAKE_ACCESS_KEY_SECRET = "fake-access-key-secret"  # noqa: S105 - the fake's demo credential
FAKE_TENANT = "11eb0000-fake-tenant"

DataFn = Callable[[str, str, datetime, datetime], pa.Table]
"""(entity, version, start, end) -> the rows the extraction returns."""


@dataclass
class FakeConfig:
    min_interval: float = 30.0
    job_seconds: float = 45.0
    link_seconds: float = 30.0
    token_seconds: int = 3600
    expired_links: int = 0
    busy_calls: int = 0
    """The first calls after the first job creation that answer 429 whatever the spacing."""
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    """Per entity, how its first jobs end (then SUCCEEDED): ``{"e": ["FAILED", "EXPIRED"]}``."""
    page_size: int = 10_000
    """Reporting API: records per answer at most (NICE: 10,000), whatever ``top`` asks."""
    reporting_busy_calls: int = 0
    """The first Reporting API calls that answer 429 (with ``Retry-After: 1``)."""
    credentials: tuple[str, str, str, str] = (
        FAKE_CLIENT_ID,
        FAKE_CLIENT_SECRET,
        FAKE_ACCESS_KEY_ID,
        FAKE_ACCESS_KEY_SECRET,
    )
    """(client id, client secret, access key id, access key secret) the token endpoint accepts:
    a real tenant has one set for every NICE API (set the simulator's to serve both)."""


@dataclass
class _FakeJob:
    id: str
    entity: str
    version: str
    start: datetime
    end: datetime
    created: float
    outcome: str


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    auth: str
    content_type: str
    at: float


class ExtractionFake(LoopbackServer):
    """The fake on ``127.0.0.1`` (``port=0``: a free port). A context manager."""

    def __init__(
        self,
        data: DataFn,
        entities: dict[str, str],
        *,
        clock: Callable[[], float],
        config: FakeConfig | None = None,
        port: int = 0,
        reports: dict[str, Report] | None = None,
    ) -> None:
        """``entities``: entity name -> version it accepts; ``reports``: Reporting API paths
        (``/inContactAPI/services/v{version}/{entity}``) -> what they serve."""
        self.reports = dict(reports or {})
        self.data = data
        self.entities = dict(entities)
        self.clock = clock
        self.config = config or FakeConfig()
        self.requests: list[Recorded] = []
        self.jobs: dict[str, _FakeJob] = {}
        self.links: dict[str, tuple[str, float]] = {}
        self.tokens: dict[str, float] = {}
        self.refusals: list[int] = []
        self._lock = threading.Lock()
        self._last_call: float | None = None
        self._links_issued = 0
        self._busy_left = self.config.busy_calls
        self._started_jobs: dict[str, int] = {}
        server = _Server((LOCAL_HOST, port), self)
        self._serve(server, "cxone-extraction-fake")

    # -- routing --------------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        raw: bytes,
    ) -> _Answer:
        body: Any = None
        ctype = headers.get("content-type", "")
        if raw and "json" in ctype:
            try:
                body = json.loads(raw)
            except ValueError:
                return _json(400, {"error": "invalid_json"})
        elif raw:
            body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        auth = headers.get("authorization", "").split(" ", 1)[0].lower()
        with self._lock:
            self.requests.append(
                Recorded(method, path, query, body, auth, ctype.split(";")[0], self.clock())
            )
            if path == "/.well-known/openid-configuration" and method == "GET":
                return _json(
                    200,
                    {
                        "issuer": self.url,
                        "token_endpoint": f"{self.url}/auth/token",
                        "grant_types_supported": ["password", "client_credentials"],
                    },
                )
            if path == "/.well-known/cxone-configuration" and method == "GET":
                tenant = (query.get("tenantId") or [""])[-1]
                if tenant != FAKE_TENANT:
                    return _json(404, {"error": "unknown tenant"})
                return _json(200, {"api_endpoint": self.url, "area": "na1", "domain": "localhost"})
            if path == "/auth/token" and method == "POST":
                return self._token(headers, body)
            if path.startswith("/results/") and method == "GET":
                return self._result(path.removeprefix("/results/"))
            if path == JOBS or path.startswith(JOBS + "/"):
                return self._extraction(method, path, headers, body)
            if path in self.reports and method == "GET":
                return self._report(self.reports[path], query, headers)
            return _json(404, {"error": "not_found"})

    def _token(self, headers: dict[str, str], form: Any) -> _Answer:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        client = base64.b64decode(encoded).decode() if scheme.lower() == "basic" else ""
        client_id, client_secret, key_id, key_secret = self.config.credentials
        if client != f"{client_id}:{client_secret}":
            return _json(401, {"error": "invalid_client"})
        if not isinstance(form, dict) or form.get("grant_type") != "password":
            return _json(400, {"error": "unsupported_grant_type"})
        if (form.get("username"), form.get("password")) != (key_id, key_secret):
            return _json(400, {"error": "invalid_grant"})
        payload = base64.urlsafe_b64encode(
            json.dumps({"tenantId": FAKE_TENANT, "jti": uuid.uuid4().hex}).encode()
        ).rstrip(b"=")
        token = f"eyJhbGciOiJub25lIn0.{payload.decode()}.fake"
        self.tokens[token] = self.clock() + self.config.token_seconds
        return _json(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.config.token_seconds,
                "id_token": token,
            },
        )

    def _extraction(self, method: str, path: str, headers: dict[str, str], body: Any) -> _Answer:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self.tokens.get(token, 0.0) < self.clock():
            return _json(401, {"error": "invalid_token"})
        now = self.clock()
        too_soon = self._last_call is not None and now - self._last_call < self.config.min_interval
        self._last_call = now
        if too_soon:
            status = 403 if len(self.refusals) % 2 == 0 else 429
            self.refusals.append(status)
            return _json(status, {"message": "Only one call per 30 seconds is allowed"})
        if self._busy_left > 0 and self.jobs:
            self._busy_left -= 1
            self.refusals.append(429)
            return _json(429, {"message": "Too many requests"})
        if path == JOBS and method == "POST":
            return self._create(body)
        if path == JOBS and method == "GET":
            return _json(200, {"jobs": [self._job_view(j) for j in self.jobs.values()]})
        job = self.jobs.get(path.removeprefix(JOBS + "/"))
        if job is None or method != "GET":
            return _json(404, {"error": "unknown job"})
        return _json(200, self._job_view(job, issue_link=True))

    def _report(
        self, report: Report, query: dict[str, list[str]], headers: dict[str, str]
    ) -> _Answer:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self.tokens.get(token, 0.0) < self.clock():
            return _json(401, {"error": "invalid_token"})
        if self.config.reporting_busy_calls > 0:
            self.config.reporting_busy_calls -= 1
            self.refusals.append(429)
            return (
                429,
                b'{"message": "Too many requests"}',
                "application/json",
                {"Retry-After": "1"},
            )
        try:
            since = _z_time((query.get("updatedSince") or [""])[-1])
            skip = int((query.get("skip") or ["0"])[-1])
            top = int((query.get("top") or [str(self.config.page_size)])[-1])
        except ValueError as exc:
            return _json(400, {"message": f"bad parameter: {exc}"})
        table = report.rows()
        stamps = table.column(report.updated_at).to_pylist()
        chosen = sorted(
            (i for i, t in enumerate(stamps) if t is not None and t >= since),
            key=lambda i: (stamps[i], i),
        )
        page = chosen[skip : skip + max(0, min(top, self.config.page_size))]
        if not page:
            return 204, b"", "application/json", {}
        rows = table.take(page).to_pylist()
        return _json(
            200, {report.data_key: [_jsonable(r) for r in rows], "totalRecords": len(chosen)}
        )

    def _create(self, body: Any) -> _Answer:
        if not isinstance(body, dict) or set(body) != {
            "entityName",
            "version",
            "startDate",
            "endDate",
        }:
            return _json(400, {"message": "body must be {entityName, version, startDate, endDate}"})
        entity, version = body["entityName"], body["version"]
        if self.entities.get(entity) != version:
            return _json(400, {"message": f"unknown entity or version: {entity} {version}"})
        try:
            start, end = _z_time(body["startDate"]), _z_time(body["endDate"])
        except ValueError as exc:
            return _json(400, {"message": str(exc)})
        if not start < end or end - start > timedelta(days=14):
            return _json(400, {"message": "the window must be positive and at most 14 days"})
        n = self._started_jobs.get(entity, 0)
        self._started_jobs[entity] = n + 1
        planned = self.config.outcomes.get(entity, [])
        outcome = planned[n] if n < len(planned) else "SUCCEEDED"
        job = _FakeJob(uuid.uuid4().hex, entity, version, start, end, self.clock(), outcome)
        self.jobs[job.id] = job
        return _json(202, {"jobId": job.id})

    def _job_view(self, job: _FakeJob, issue_link: bool = False) -> dict[str, Any]:
        done = self.clock() >= job.created + self.config.job_seconds
        status = job.outcome if done else "RUNNING"
        view: dict[str, Any] = {
            "jobId": job.id,
            "entityName": job.entity,
            "version": job.version,
            "jobStatus": {"status": status},
        }
        if status == "FAILED":
            view["jobStatus"]["errorMessage"] = "internal error while preparing the data"
        if status == "SUCCEEDED" and issue_link:
            link = uuid.uuid4().hex
            self._links_issued += 1
            expired = self._links_issued <= self.config.expired_links
            valid_until = self.clock() + (-1.0 if expired else self.config.link_seconds)
            self.links[link] = (job.id, valid_until)
            view["jobStatus"]["result"] = {
                "url": f"{self.url}/results/{link}?X-Amz-Signature=fake-signature"
            }
        return view

    def _result(self, link: str) -> _Answer:
        found = self.links.get(link)
        if found is None or self.clock() > found[1]:
            return (
                403,
                b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                "application/xml",
                {},
            )
        job = self.jobs[found[0]]
        table = self.data(job.entity, job.version, job.start, job.end)
        return 200, csv_bytes(table), "text/csv", {}


@dataclass(frozen=True)
class Report:
    """A Reporting API endpoint of the fake: every record it knows, its update column and the
    key of the answer's list."""

    rows: Callable[[], pa.Table]
    updated_at: str
    data_key: str


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (utc_iso(as_utc(v)) if isinstance(v, datetime) else v) for k, v in row.items()}


def world_reports(
    world: Any, categories: list[str], version: str = "1.0"
) -> tuple[dict[str, Report], str]:
    """Reporting API endpoints for the simulated world's data types (every key's newest
    version, placed by ``updated_at``) and the ``CXONE_EXTRACTION_ENTITIES`` JSON for them."""
    from cxone_sync.simulator import generator as gen

    reports: dict[str, Report] = {}
    mapping: dict[str, Any] = {}
    cache: dict[tuple[str, str], tuple[datetime, pa.Table]] = {}
    for cat_name in categories:
        for dt in category(cat_name).data_types:
            entity = f"sim/{cat_name}/{dt.name}"

            def rows(cat_name: str = cat_name, dt_name: str = dt.name) -> pa.Table:
                now = world.now  # the truth is recomputed only when the world's clock moved
                cached = cache.get((cat_name, dt_name))
                if cached is None or cached[0] != now:
                    cached = cache[(cat_name, dt_name)] = (
                        now,
                        world.ground_truth(cat_name, dt_name),
                    )
                return cached[1]

            reports[f"/inContactAPI/services/v{version}/{entity}"] = Report(
                rows, "updated_at", "records"
            )
            mapping[f"{cat_name}/{dt.name}"] = {
                "entity": entity,
                "version": version,
                "data_key": "records",
                "updated_at": "updated_at",
                "types": {f.name: type_name(f.type) for f in gen.base_schema(dt)},
            }
    return reports, json.dumps(mapping)


def csv_bytes(table: pa.Table) -> bytes:
    """The CSV the fake serves: BOM, header, quoted where needed; empty body for no rows."""
    if table.num_rows == 0:
        return b""
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return BOM + sink.getvalue()


def world_entities(world: Any, categories: list[str]) -> tuple[dict[str, str], DataFn, str]:
    """Entities for the simulated world's data types (``sim-{category}-{data type}``, version
    1), the function that serves their rows (the world's ground truth of the window), and the
    ``CXONE_EXTRACTION_ENTITIES`` JSON that maps them back onto the platform's data types."""
    from cxone_sync.simulator import generator as gen

    names: dict[str, tuple[str, str]] = {}
    mapping: dict[str, Any] = {}
    for cat_name in categories:
        for dt in category(cat_name).data_types:
            entity = f"sim-{cat_name}-{dt.name}".replace("_", "-")
            names[entity] = (cat_name, dt.name)
            mapping[f"{cat_name}/{dt.name}"] = {
                "entity": entity,
                "version": "1",
                "types": {f.name: type_name(f.type) for f in gen.base_schema(dt)},
            }

    def data(entity: str, version: str, start: datetime, end: datetime) -> pa.Table:
        cat_name, dt_name = names[entity]
        table: pa.Table = world.ground_truth(cat_name, dt_name, start, end)
        return table

    return {e: "1" for e in names}, data, json.dumps(mapping)


def _z_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ValueError(f"dates must be ISO 8601 UTC with a literal Z, got {value!r}")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def _json(status: int, payload: Any) -> _Answer:
    return status, json.dumps(payload).encode(), "application/json", {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            status, body, ctype, extra = self.server.fake.handle(
                self.command, parts.path, query, headers, raw
            )
        except Exception:  # the fake answers 500 like a real server would
            status, body, ctype, extra = _json(500, {"error": "server_error"})
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: ExtractionFake) -> None:
        self.fake = fake
        super().__init__(address, _Handler)
