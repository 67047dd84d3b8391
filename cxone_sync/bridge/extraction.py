"""Client of NICE CXone's public Data Extraction API (and the discovery and token it needs).

Documented shapes (NICE help centre "Data Extraction APIs", developer portal "Getting Started";
see the README's bridge section for what was ambiguous and what was chosen):

* ``GET {auth}/.well-known/openid-configuration`` gives ``issuer`` and ``token_endpoint``.
* ``POST {token_endpoint}``, form ``grant_type=password&username={access key id}&password=
  {access key secret}``, the application's client id and secret by HTTP Basic; answers
  ``access_token`` and ``expires_in`` (and an ``id_token``). The tenant id is a claim
  (``tenantId``) of the token unless configured.
* ``GET {issuer}/.well-known/cxone-configuration?tenantId=...`` gives ``api_endpoint``.
* ``POST {api_endpoint}/data-extraction/v1/jobs`` with ``{entityName, version, startDate,
  endDate}`` answers 202 and the job id; ``GET .../jobs/{jobId}`` answers ``jobStatus.status``
  (RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED) and, once SUCCEEDED, ``result.url``: a CSV
  link valid for about 30 seconds.
* One caller per tenant, one call per 30 seconds (:mod:`cxone_sync.bridge.pacing`); a call too
  soon has been reported to answer 403 as well as 429: both mean wait and repeat.

The result link is fetched at once, without the bearer token (it is a pre-signed storage link;
the token must not travel to another host); an expired link (4xx) makes the client ask the job
again for a fresh one. Secrets, tokens and the link's signature never appear in logs or errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from cxone_sync.bridge.pacing import TenantPacer
from cxone_sync.cxone.client import _checked_url
from cxone_sync.cxone.untrusted import clean_text, shown, url_segment
from cxone_sync.timefmt import utc_iso

log = logging.getLogger(__name__)


class _RedactQueries(logging.Filter):
    """httpx logs every request URL at INFO; a pre-signed link's query is its credential.
    A message naming a signed URL loses every query string (only such messages change)."""

    _QUERY = re.compile(r"\?[^\s\"']*")
    _SIGNED = re.compile(r"signature=|sig=|x-amz-|token=|credential=", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._SIGNED.search(message):
            record.msg = self._QUERY.sub("?[redacted]", message)
            record.args = ()
        return True


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, _RedactQueries) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactQueries())

JOBS_PATH = "/data-extraction/v1/jobs"
DEFAULT_AUTH_URL = "https://cxone.niceincontact.com"
MAX_WINDOW = timedelta(days=14)
"""The longest window one extraction job accepts (history is cut into such windows)."""
_TEXT_LIMIT = 300
_REDACTED = "[redacted]"


class ExtractionStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


ENDED_BADLY = frozenset(
    {ExtractionStatus.FAILED, ExtractionStatus.CANCELLED, ExtractionStatus.EXPIRED}
)


class ExtractionError(Exception):
    """The extraction could not be done (after the bounded retries); the message says why."""


class ExtractionJobFailed(ExtractionError):
    """The API ended the job FAILED, CANCELLED or EXPIRED (or it never ended in time)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ExtractionJob:
    id: str
    status: ExtractionStatus
    url: str | None
    reason: str | None


@dataclass(frozen=True)
class Extracted:
    job_id: str
    body: bytes
    polls: int
    link_renewals: int


@dataclass(frozen=True)
class ExtractionPolicy:
    min_interval: float = 30.0
    """Seconds between two calls of the tenant (NICE: one call per 30 s)."""
    busy_attempts: int = 12
    """Answers 403/429/5xx/transport failures repeated per call before giving up."""
    max_poll_seconds: float = 6 * 3600.0
    """How long a job may stay RUNNING before the extraction is given up (FAILED)."""
    link_renewals: int = 3
    """Expired result links replaced by asking the job again."""
    max_retry_after: float = 600.0


def windows(
    start: datetime, end: datetime, limit: timedelta = MAX_WINDOW
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive windows of at most ``limit`` (history loads)."""
    out = []
    t = start
    while t < end:
        out.append((t, min(t + limit, end)))
        t = out[-1][1]
    return out


def iso_z(value: datetime) -> str:
    """UTC with a literal ``Z``, to the second (the APIs refuse other offsets and fractions)."""
    return utc_iso(value, timespec="seconds")


class DataExtractionClient:
    """Discovery, token and the Data Extraction job cycle for one tenant. Not thread-safe:
    one extraction at a time (the API allows no more)."""

    def __init__(
        self,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        access_key_id: str,
        access_key_secret: str | SecretStr,
        lock_dir: Path,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        tenant_id: str | None = None,
        api_url: str | None = None,
        policy: ExtractionPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        """``api_url`` skips the tenant lookup; ``clock``/``sleep`` drive all waiting."""
        self._auth_url = _checked_url(auth_url.rstrip("/"), "CXONE_AUTH_URL")
        self._client_id = client_id
        self._client_secret = _secret(client_secret)
        self._access_key_id = access_key_id
        self._access_key_secret = _secret(access_key_secret)
        self._tenant_id = tenant_id
        self._api_url = api_url.rstrip("/") if api_url else None
        self._lock_dir = Path(lock_dir)
        self._clock = clock
        self._sleep = sleep
        self._pacer: TenantPacer | None = None
        self.policy = policy or ExtractionPolicy()
        self._token: SecretStr | None = None
        self._token_expires = 0.0
        self._token_endpoint: str | None = None
        self._issuer: str | None = None
        self._http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "cxone-sync-bridge"},
        )
        self._files = httpx.Client(timeout=timeout, follow_redirects=True)

    def __repr__(self) -> str:
        return (
            f"DataExtractionClient(auth_url={self._auth_url!r}, client_id={self._client_id!r}, "
            f"tenant_id={self._tenant_id!r})"
        )

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def __enter__(self) -> DataExtractionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery and token -------------------------------------------------------------------

    @property
    def tenant_id(self) -> str:
        self._ensure_token()
        assert self._tenant_id is not None
        return self._tenant_id

    @property
    def api_url(self) -> str:
        if self._api_url is None:
            self._ensure_token()
            what = "GET /.well-known/cxone-configuration"
            assert self._issuer is not None
            raw = self._json(
                what,
                self._plain_get(
                    what,
                    f"{self._issuer.rstrip('/')}/.well-known/cxone-configuration",
                    params={"tenantId": self.tenant_id},
                ),
            )
            endpoint = raw.get("api_endpoint") if isinstance(raw, dict) else None
            if not isinstance(endpoint, str) or not endpoint:
                raise ExtractionError(f"{what} answered without an 'api_endpoint'")
            self._api_url = _checked_url(endpoint.rstrip("/"), "api_endpoint")
        return self._api_url

    @property
    def pacer(self) -> TenantPacer:
        if self._pacer is None:
            self._pacer = TenantPacer(
                self._lock_dir,
                self.tenant_id,
                min_interval=self.policy.min_interval,
                clock=self._clock,
                sleep=self._sleep,
            )
        return self._pacer

    def _discover(self) -> None:
        what = "GET /.well-known/openid-configuration"
        raw = self._json(
            what, self._plain_get(what, f"{self._auth_url}/.well-known/openid-configuration")
        )
        token_endpoint = raw.get("token_endpoint") if isinstance(raw, dict) else None
        issuer = raw.get("issuer") if isinstance(raw, dict) else None
        if not isinstance(token_endpoint, str) or not isinstance(issuer, str):
            raise ExtractionError(f"{what} answered without 'issuer' and 'token_endpoint'")
        self._token_endpoint = _checked_url(token_endpoint, "token_endpoint")
        self._issuer = _checked_url(issuer, "issuer")

    def _ensure_token(self) -> SecretStr:
        now = self._clock()
        if self._token is not None and now < self._token_expires:
            return self._token
        if self._token_endpoint is None:
            self._discover()
        assert self._token_endpoint is not None
        what = "POST token endpoint"
        try:
            response = self._http.post(
                self._token_endpoint,
                data={
                    "grant_type": "password",
                    "username": self._access_key_id,
                    "password": self._access_key_secret.get_secret_value(),
                },
                auth=(self._client_id, self._client_secret.get_secret_value()),
            )
        except httpx.TransportError as exc:
            raise ExtractionError(f"{what} failed: {type(exc).__name__}") from None
        if not response.is_success:
            raise ExtractionError(
                f"{what} answered {response.status_code}: {self._server_text(response)} "
                "(check CXONE_CLIENT_ID/CXONE_CLIENT_SECRET and "
                "CXONE_ACCESS_KEY_ID/CXONE_ACCESS_KEY_SECRET)"
            )
        raw = self._json(what, response)
        token = raw.get("access_token") if isinstance(raw, dict) else None
        lifetime = raw.get("expires_in") if isinstance(raw, dict) else None
        if not isinstance(token, str) or not token:
            raise ExtractionError(f"{what} answered without an access_token")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        seconds = seconds if math.isfinite(seconds) and seconds > 0 else 3600.0
        self._token = SecretStr(token)
        self._token_expires = now + seconds - min(60.0, seconds / 2)
        if self._tenant_id is None:
            self._tenant_id = _claim(token, "tenantId") or _claim(raw.get("id_token"), "tenantId")
            if not self._tenant_id:
                raise ExtractionError(
                    f"{what}: the token carries no tenantId claim; set CXONE_TENANT_ID"
                )
        return self._token

    # -- the job cycle --------------------------------------------------------------------------

    def extract(self, entity: str, version: str, start: datetime, end: datetime) -> Extracted:
        """Create a job for ``[start, end)``, wait for it, download its CSV; one tenant turn."""
        if start >= end:
            raise ValueError(f"extraction needs start < end, got {iso_z(start)} .. {iso_z(end)}")
        with self.pacer.turn():
            job_id = self.create_job(entity, version, start, end)
            waited = 0.0
            polls = 0
            while True:
                job = self.get_job(job_id)
                polls += 1
                if job.status == ExtractionStatus.SUCCEEDED:
                    break
                if job.status in ENDED_BADLY:
                    raise ExtractionJobFailed(
                        f"extraction job {shown(job_id)} of {entity} v{version} "
                        f"{iso_z(start)}..{iso_z(end)} ended {job.status.value}"
                        + (f": {job.reason}" if job.reason else ""),
                        job.status.value,
                    )
                if waited >= self.policy.max_poll_seconds:
                    raise ExtractionJobFailed(
                        f"extraction job {shown(job_id)} of {entity} v{version} still "
                        f"{job.status.value} after {waited:.0f} s; given up",
                        "TIMED_OUT",
                    )
                waited += self.policy.min_interval  # the pacer spaces the next poll
            renewals = 0
            while True:
                body = self._download(job)
                if body is not None:
                    return Extracted(job_id, body, polls, renewals)
                if renewals >= self.policy.link_renewals:
                    raise ExtractionError(
                        f"extraction job {shown(job_id)}: its result link expired "
                        f"{renewals + 1} times before it could be downloaded"
                    )
                renewals += 1
                log.info("result link of job %s expired; asking the job again", shown(job_id))
                job = self.get_job(job_id)
                if job.status != ExtractionStatus.SUCCEEDED:
                    raise ExtractionJobFailed(
                        f"extraction job {shown(job_id)} is {job.status.value} on renewal "
                        "(results are kept 24 hours)",
                        job.status.value,
                    )

    def create_job(self, entity: str, version: str, start: datetime, end: datetime) -> str:
        body = {
            "entityName": entity,
            "version": version,
            "startDate": iso_z(start),
            "endDate": iso_z(end),
        }
        raw = self._json(f"POST {JOBS_PATH}", self._api("POST", JOBS_PATH, body))
        job_id = _first(raw, "jobId", "id") if isinstance(raw, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise ExtractionError(f"POST {JOBS_PATH} answered without a jobId")
        return job_id

    def get_job(self, job_id: str) -> ExtractionJob:
        path = f"{JOBS_PATH}/{url_segment(job_id)}"
        raw = self._json(f"GET {JOBS_PATH}/{{jobId}}", self._api("GET", path, None))
        return _parse_job(job_id, raw)

    def list_jobs(self) -> list[Any]:
        """``GET /data-extraction/v1/jobs``: the tenant's jobs (the doctor's harmless call)."""
        with self.pacer.turn():
            raw = self._json(f"GET {JOBS_PATH}", self._api("GET", JOBS_PATH, None))
        jobs = raw.get("jobs", raw) if isinstance(raw, dict) else raw
        return jobs if isinstance(jobs, list) else []

    # -- HTTP -----------------------------------------------------------------------------------

    def _api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        params: dict[str, str] | None = None,
        paced: bool = True,
    ) -> httpx.Response:
        """One API call with the token; ``paced``: inside the tenant's turn, 30 s apart (the
        Data Extraction API); 401 refreshes the token once; 403/429/5xx wait and repeat."""
        what = f"{method} {path if '/jobs/' not in path else JOBS_PATH + '/{jobId}'}"
        url = f"{self.api_url}{path}"
        reauthenticated = False
        last: httpx.Response | None = None
        for attempt in range(1, self.policy.busy_attempts + 1):
            token = self._ensure_token()
            if paced:
                self.pacer.before_call()
            try:
                response = self._http.request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers={"Authorization": f"Bearer {token.get_secret_value()}"},
                )
            except httpx.TransportError as exc:
                if method == "POST" and not isinstance(exc, httpx.ConnectError):
                    raise ExtractionError(
                        f"{what} failed ({type(exc).__name__}) after it may have been sent; "
                        "not repeated (the tenant's job list shows whether it was created)"
                    ) from None
                log.warning("%s failed (%s); attempt %d", what, type(exc).__name__, attempt)
                continue
            status = response.status_code
            if status == 401 and not reauthenticated:
                reauthenticated = True
                self._token = None
                continue
            if status in (403, 429) or status >= 500:
                # Retry-After when given, else a growing pause: a server that counts refused
                # calls too (a limiter wider than 30 s) is waited out, not hammered.
                wait = _retry_after(response.headers.get("Retry-After"))
                if wait is None:
                    wait = self.policy.min_interval * attempt
                wait = min(wait, self.policy.max_retry_after)
                log.warning(
                    "%s answered %d (busy or too soon); waiting %.0f s more, attempt %d of %d",
                    what,
                    status,
                    wait,
                    attempt,
                    self.policy.busy_attempts,
                )
                self.pacer.pause(wait)  # plus the pacer's 30 s before the next call
                last = response
                continue
            if not response.is_success:
                raise ExtractionError(f"{what} answered {status}: {self._server_text(response)}")
            return response
        detail = ""
        if last is not None:
            detail = f" (last answer {last.status_code}: {self._server_text(last)})"
        raise ExtractionError(
            f"{what} still refused after {self.policy.busy_attempts} attempts{detail}; "
            "403 repeated may also mean the API user lacks the Data Extraction permission"
        )

    def _download(self, job: ExtractionJob) -> bytes | None:
        """The result's bytes, or None when the link has expired (ask the job again)."""
        if not job.url:
            raise ExtractionError(f"extraction job {shown(job.id)} SUCCEEDED without result.url")
        url = _checked_url(job.url, "result.url")
        where = _link_label(url)
        try:
            response = self._files.get(url)
        except httpx.TransportError as exc:
            log.warning("download of %s failed (%s)", where, type(exc).__name__)
            return None
        if response.status_code in (400, 401, 403, 404, 410):
            return None
        if not response.is_success:
            log.warning("download of %s answered %d", where, response.status_code)
            return None
        return response.content

    def _plain_get(
        self, what: str, url: str, params: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            response = self._http.get(url, params=params)
        except httpx.TransportError as exc:
            raise ExtractionError(f"{what} failed: {type(exc).__name__}") from None
        if not response.is_success:
            raise ExtractionError(
                f"{what} answered {response.status_code}: {self._server_text(response)}"
            )
        return response

    def _json(self, what: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ExtractionError(f"{what} answered {response.status_code} without JSON") from None

    def _server_text(self, response: httpx.Response) -> str:
        text = response.content[:2000].decode("utf-8", "replace")
        for secret in self._secrets():
            text = text.replace(secret, _REDACTED)
        return clean_text(" ".join(text.split()), _TEXT_LIMIT)

    def _secrets(self) -> list[str]:
        values = [self._client_secret, self._access_key_secret, self._token]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def _parse_job(job_id: str, raw: Any) -> ExtractionJob:
    if not isinstance(raw, dict):
        raise ExtractionError(f"GET {JOBS_PATH}/{{jobId}} answered a non-object")
    status_block = raw.get("jobStatus")
    status_raw = status_block.get("status") if isinstance(status_block, dict) else status_block
    if not isinstance(status_raw, str):
        status_raw = raw.get("status")
    try:
        status = ExtractionStatus(str(status_raw).upper())
    except ValueError:
        raise ExtractionError(
            f"extraction job {shown(job_id)}: unknown jobStatus.status {shown(str(status_raw))}"
        ) from None
    result = None
    if isinstance(status_block, dict) and isinstance(status_block.get("result"), dict):
        result = status_block["result"]
    elif isinstance(raw.get("result"), dict):
        result = raw["result"]
    url = result.get("url") if result else None
    reason = None
    for container in (status_block, raw):
        if isinstance(container, dict):
            for key in ("errorMessage", "failureReason", "message"):
                if isinstance(container.get(key), str):
                    reason = clean_text(container[key], _TEXT_LIMIT)
    return ExtractionJob(job_id, status, url if isinstance(url, str) else None, reason)


def _first(raw: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if raw.get(key) is not None:
            return raw[key]
    return None


def _claim(token: Any, name: str) -> str | None:
    """A claim of a JWT's payload, read without verifying it (only to route the calls)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    value = claims.get(name) if isinstance(claims, dict) else None
    return value if isinstance(value, str) and value else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _link_label(url: str) -> str:
    """A result link for people: host and path, never the query (it holds the signature)."""
    parsed = httpx.URL(url)
    return shown(f"{parsed.host}{re.sub(r'[^A-Za-z0-9/_.-]', '_', parsed.path)}", 160)


def _secret(value: str | SecretStr) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)
