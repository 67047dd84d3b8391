from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cxone_sync.clients import cxone_client
from cxone_sync.cxone.client import CXoneClient, RetryPolicy
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
from cxone_sync.cxone.models import JobStatus
from cxone_sync.cxone.source import ExportSource
from cxone_sync.settings import Settings
from cxone_sync_tests.cxone import payloads
from cxone_sync_tests.cxone.conftest import (
    ACCESS_KEY_SECRET,
    CLIENT_SECRET,
    FAST_RETRY,
    MakeClient,
)
from cxone_sync_tests.cxone.scripted import (
    TOKEN_MARK,
    TOKEN_PATH,
    Reply,
    ScriptedServer,
    serve,
)

DL = "/api/v2/data-downloads/dl-telephony-prod"
JOBS = f"{DL}/jobs"
EXPORT = f"{DL}/manual-export"
SECRETS = (CLIENT_SECRET, ACCESS_KEY_SECRET, TOKEN_MARK)


def _page(*jobs: dict[str, object], next_token: str | None = None) -> Reply:
    return Reply(body={"jobs": list(jobs), "next_page_token": next_token})


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# Configuration and auth


def test_client_is_an_export_source(client: CXoneClient) -> None:
    assert isinstance(client, ExportSource)


def test_download_config_is_fetched_with_a_bearer_token(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("GET", DL, Reply(body=payloads.download_config()))

    config = client.download_config("telephony")

    assert config.destination.prefix == "exports/telephony/"
    (request,) = server.seen("GET", DL)
    assert request.headers["authorization"] == f"Bearer {TOKEN_MARK}-1"


def test_download_config_of_another_category_is_refused(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("GET", DL, Reply(body=payloads.download_config(category="ivr")))

    with pytest.raises(ManifestError, match="CXONE_DOWNLOAD_IDS"):
        client.download_config("telephony")


def test_unknown_category_is_refused_before_any_call(
    server: ScriptedServer, client: CXoneClient
) -> None:
    with pytest.raises(ValueError, match="no download id configured for category 'speech'"):
        client.iter_jobs("speech")
    assert server.requests == []


def test_client_credentials_grant_form(server: ScriptedServer, client: CXoneClient) -> None:
    server.script("GET", DL, Reply(body=payloads.download_config()))

    client.download_config("telephony")

    (token_request,) = server.token_requests()
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_request.form == {
        "grant_type": "client_credentials",
        "client_id": "app-client",
        "client_secret": CLIENT_SECRET,
    }
    assert "authorization" not in token_request.headers


def test_password_grant_form(server: ScriptedServer, make_client: MakeClient) -> None:
    client = make_client(access_key_id="AKID-1", access_key_secret=ACCESS_KEY_SECRET)
    server.script("GET", DL, Reply(body=payloads.download_config()))

    client.download_config("telephony")

    assert client.grant_type == "password"
    assert server.token_requests()[0].form == {
        "grant_type": "password",
        "client_id": "app-client",
        "client_secret": CLIENT_SECRET,
        "username": "AKID-1",
        "password": ACCESS_KEY_SECRET,
    }


def test_custom_token_url(server: ScriptedServer, make_client: MakeClient) -> None:
    client = make_client(token_url=f"{server.url}/auth/token")
    server.script("POST", "/auth/token", Reply(body={"access_token": "t", "expires_in": 60}))
    server.script("GET", DL, Reply(body=payloads.download_config()))

    client.download_config("telephony")

    assert server.seen("GET", DL)[0].headers["authorization"] == "Bearer t"


def test_the_client_from_settings_uses_every_api_setting(server: ScriptedServer) -> None:
    settings = Settings(
        CXONE_API_URL=server.url,
        CXONE_CLIENT_ID="app-client",
        CXONE_CLIENT_SECRET=CLIENT_SECRET,
        CXONE_ACCESS_KEY_ID="AKID-1",
        CXONE_ACCESS_KEY_SECRET=ACCESS_KEY_SECRET,
        CXONE_DOWNLOAD_IDS='{"telephony": "dl-custom"}',
    )
    server.script("GET", "/api/v2/data-downloads/dl-custom", Reply(404))

    with (
        cxone_client(settings, retry=FAST_RETRY) as client,
        pytest.raises(NotFoundError),
    ):
        client.download_config("telephony")

    assert server.token_requests()[0].form["password"] == ACCESS_KEY_SECRET
    _assert_no_secret(repr(client))


def test_access_key_needs_both_halves(make_client: MakeClient) -> None:
    with pytest.raises(ValueError, match="together"):
        make_client(access_key_id="AKID-1")


def test_token_is_reused_within_its_lifetime_and_refreshed_near_expiry(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    now = [1000.0]
    client = make_client(clock=lambda: now[0], token_refresh_margin=60.0)
    server.script("GET", DL, *[Reply(body=payloads.download_config())] * 4)

    client.download_config("telephony")
    now[0] += 3600 - 61
    client.download_config("telephony")
    now[0] += 2
    client.download_config("telephony")
    client.download_config("telephony")

    tokens = [r.headers["authorization"] for r in server.seen("GET", DL)]
    assert tokens == [f"Bearer {TOKEN_MARK}-{n}" for n in (1, 1, 2, 2)]
    assert client.stats.token_fetches == 2


def test_401_fetches_a_new_token_once_and_repeats(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script(
        "GET", DL, Reply(401, {"error": "expired"}), Reply(body=payloads.download_config())
    )

    client.download_config("telephony")

    tokens = [r.headers["authorization"] for r in server.seen("GET", DL)]
    assert tokens == [f"Bearer {TOKEN_MARK}-1", f"Bearer {TOKEN_MARK}-2"]
    stats = client.stats
    assert (stats.token_fetches, stats.reauthentications, stats.api_calls) == (2, 1, 2)


def test_a_401_after_a_retry_wait_re_authenticates_again(
    server: ScriptedServer, client: CXoneClient
) -> None:
    # expired, re-authenticated, 503 and a wait, then that token revoked meanwhile: the call
    # fetches another token instead of failing (one re-authentication per attempt)
    server.script(
        "GET",
        DL,
        Reply(401, {"error": "expired"}),
        Reply(503),
        Reply(401, {"error": "revoked"}),
        Reply(body=payloads.download_config()),
    )

    client.download_config("telephony")

    tokens = [r.headers["authorization"] for r in server.seen("GET", DL)]
    assert tokens == [f"Bearer {TOKEN_MARK}-{n}" for n in (1, 2, 2, 3)]
    assert (client.stats.reauthentications, client.stats.token_fetches) == (2, 3)


def test_second_401_raises_auth_error(server: ScriptedServer, client: CXoneClient) -> None:
    server.script("GET", DL, Reply(401, {"error": "revoked"}), Reply(401, {"error": "revoked"}))

    with pytest.raises(AuthError) as caught:
        client.download_config("telephony")

    assert f"GET {DL} answered 401: revoked" in str(caught.value)
    assert len(server.seen("GET", DL)) == 2
    assert len(server.token_requests()) == 2
    _assert_no_secret(str(caught.value))


def test_refused_credentials_raise_auth_error_without_the_secret(
    server: ScriptedServer, client: CXoneClient
) -> None:
    echo = {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}
    server.script("POST", TOKEN_PATH, Reply(401, echo))

    with pytest.raises(AuthError) as caught:
        client.download_config("telephony")

    message = str(caught.value)
    assert f"POST {TOKEN_PATH} answered 401: bad secret [redacted]" in message
    _assert_no_secret(message)
    assert server.api_requests() == []


def test_token_endpoint_outage_is_retried(server: ScriptedServer, client: CXoneClient) -> None:
    server.script("POST", TOKEN_PATH, Reply(503), Reply(200, b"<html>"))
    server.script("GET", DL, Reply(body=payloads.download_config()))

    client.download_config("telephony")

    assert len(server.token_requests()) == 3
    assert client.stats.retries == 2


def test_token_answer_without_expiry_is_transient(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("POST", TOKEN_PATH, *[Reply(body={"access_token": "t"})] * 4)

    with pytest.raises(TransientAPIError, match="without a usable access_token"):
        client.download_config("telephony")


# Transient failures


def test_429_honours_retry_after(server: ScriptedServer, client: CXoneClient) -> None:
    server.script(
        "GET",
        DL,
        Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}),
        Reply(body=payloads.download_config()),
    )

    client.download_config("telephony")

    first, second = server.seen("GET", DL)
    assert second.at - first.at >= 1.0
    assert client.stats.retries == 1


def test_retry_after_is_capped(server: ScriptedServer, make_client: MakeClient) -> None:
    client = make_client(retry=RetryPolicy(attempts=2, initial_wait=0.001, max_retry_after=0.01))
    server.script(
        "GET",
        DL,
        Reply(429, headers={"Retry-After": "3600"}),
        Reply(body=payloads.download_config()),
    )

    client.download_config("telephony")

    assert len(server.seen("GET", DL)) == 2


@pytest.mark.parametrize(
    "failure",
    [
        Reply(503, {"message": "maintenance"}),
        Reply(500),
        Reply(502, b"Bad Gateway"),
        Reply(504),
        Reply(200, payloads.download_config(), truncate_to=40),
        Reply(200, b"<html>gateway error</html>"),
        Reply(200, ["not", "an", "object"]),
        Reply(200, payloads.download_config(), delay=0.5),
    ],
    ids=["503", "500", "502", "504", "truncated", "not-json", "wrong-shape", "timeout"],
)
def test_transient_failure_then_success(
    server: ScriptedServer, make_client: MakeClient, failure: Reply
) -> None:
    client = make_client(timeout=0.2)
    server.script("GET", DL, failure, Reply(body=payloads.download_config()))

    config = client.download_config("telephony")

    assert config.download_id == "dl-telephony-prod"
    assert len(server.seen("GET", DL)) == 2
    stats = client.stats
    assert (stats.api_calls, stats.retries) == (2, 1)


def test_jobs_page_of_the_wrong_shape_is_retried(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("GET", JOBS, Reply(body={"items": []}), _page(payloads.job()))

    jobs = list(client.iter_jobs("telephony"))

    assert [j.id for j in jobs] == ["job-8f3a"]
    assert client.stats.retries == 1


def test_exhausted_attempts_raise_transient_error(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("GET", DL, *[Reply(503, {"message": "down"})] * FAST_RETRY.attempts)

    with pytest.raises(TransientAPIError) as caught:
        client.download_config("telephony")

    assert str(caught.value) == (
        f"GET {DL} answered 503: down (gave up after {FAST_RETRY.attempts} attempts)"
    )
    assert caught.value.status_code == 503
    assert len(server.seen("GET", DL)) == FAST_RETRY.attempts
    assert client.stats.retries == FAST_RETRY.attempts - 1


def test_connection_refused_is_transient(make_client: MakeClient) -> None:
    with serve() as gone:
        url = gone.url
    client = make_client(base_url=url)

    with pytest.raises(TransientAPIError, match="ConnectError") as caught:
        client.download_config("telephony")

    assert "gave up after 4 attempts" in str(caught.value)
    assert client.stats.retries == FAST_RETRY.attempts - 1


# Permanent errors


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (403, ForbiddenError), (404, NotFoundError), (410, APIStatusError)],
)
def test_permanent_statuses_raise_at_once(
    server: ScriptedServer, client: CXoneClient, status: int, error: type[APIStatusError]
) -> None:
    path = f"{JOBS}/job-1"
    server.script("GET", path, Reply(status, {"error": "nope", "message": "unknown job job-1"}))

    with pytest.raises(error) as caught:
        client.get_job("telephony", "job-1")

    assert type(caught.value) is error
    assert str(caught.value).startswith(f"GET {path} answered {status}: unknown job job-1")
    assert caught.value.status_code == status
    assert len(server.seen("GET", path)) == 1
    _assert_no_secret(str(caught.value))


def test_job_id_is_escaped_in_the_path(server: ScriptedServer, client: CXoneClient) -> None:
    server.script("GET", f"{JOBS}/a%2Fb", Reply(body=payloads.job("a/b")))

    assert client.get_job("telephony", "a/b").id == "a/b"


def test_manifest_error_is_not_retried(server: ScriptedServer, client: CXoneClient) -> None:
    raw = payloads.job()
    raw["files"][2]["record_count"] = "abc"
    server.script("GET", f"{JOBS}/job-8f3a", Reply(body=raw))

    with pytest.raises(ManifestError) as caught:
        client.get_job("telephony", "job-8f3a")

    assert str(caught.value) == (
        "job job-8f3a: field 'files[2].record_count': expected an integer, got 'abc'"
    )
    assert client.stats.api_calls == 1


# Listing jobs


def test_iter_jobs_follows_every_page_with_the_same_filters(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script(
        "GET",
        JOBS,
        _page(payloads.job("job-1"), payloads.job("job-2"), next_token="p2"),
        _page(payloads.job("job-3"), next_token="p3"),
        _page(),
    )
    since = datetime(2024, 3, 15, 17, 42, 18, tzinfo=timezone(timedelta(hours=2)))

    jobs = client.iter_jobs(
        "telephony",
        statuses=[JobStatus.COMPLETED, JobStatus.FAILED],
        updated_since=since,
        page_size=2,
    )

    assert [j.id for j in jobs] == ["job-1", "job-2", "job-3"]
    queries = [r.query for r in server.seen("GET", JOBS)]
    for query in queries:
        assert query["category"] == ["telephony"]
        assert query["status"] == ["COMPLETED", "FAILED"]
        assert query["updated_since"] == ["2024-03-15T15:42:18Z"]
        assert query["limit"] == ["2"]
    assert [q.get("page_token") for q in queries] == [None, ["p2"], ["p3"]]


def test_iter_jobs_without_filters_sends_only_category_and_limit(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("GET", JOBS, _page())

    assert list(client.iter_jobs("telephony")) == []
    assert server.seen("GET", JOBS)[0].query == {"category": ["telephony"], "limit": ["100"]}


def test_iter_jobs_refuses_naive_updated_since(client: CXoneClient) -> None:
    with pytest.raises(ValueError, match="naive"):
        client.iter_jobs("telephony", updated_since=datetime(2024, 3, 15))


def test_repeated_page_token_stops_paging(server: ScriptedServer, client: CXoneClient) -> None:
    server.script("GET", JOBS, _page(next_token="same"), _page(next_token="same"))

    with pytest.raises(CXoneError, match="repeated page token 'same'"):
        list(client.iter_jobs("telephony"))


# Manual export

START = datetime(2024, 3, 15, 14, tzinfo=UTC)
END = datetime(2024, 3, 15, 16, tzinfo=UTC)
BACKFILL = "exports/telephony/backfill/"


def test_manual_export_posts_the_contract_body(server: ScriptedServer, client: CXoneClient) -> None:
    queued = payloads.job("job-m1", status="QUEUED", trigger="MANUAL", start_time=None)
    server.script("POST", EXPORT, Reply(202, queued))

    job = client.manual_export("telephony", START, END, BACKFILL)

    assert (job.id, job.status) == ("job-m1", JobStatus.QUEUED)
    assert server.seen("POST", EXPORT)[0].json == {
        "category": "telephony",
        "start_time": "2024-03-15T14:00:00Z",
        "end_time": "2024-03-15T16:00:00Z",
        "overwrite": False,
        "destination_prefix": BACKFILL,
    }


def test_overlapping_manual_export_raises_conflict(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("POST", EXPORT, Reply(409, {"error": "export job-m0 overlaps"}))

    with pytest.raises(ConflictError, match=f"POST {EXPORT} answered 409: export job-m0 overlaps"):
        client.manual_export("telephony", START, END, BACKFILL, overwrite=True)


def test_manual_export_is_repeated_only_when_the_server_did_not_act(
    server: ScriptedServer, client: CXoneClient
) -> None:
    server.script("POST", EXPORT, Reply(503), Reply(429), Reply(202, payloads.job("job-m1")))

    assert client.manual_export("telephony", START, END, BACKFILL).id == "job-m1"
    assert len(server.seen("POST", EXPORT)) == 3


@pytest.mark.parametrize(
    "failure",
    [Reply(500), Reply(202, b'{"id": "job-'), Reply(202, payloads.job(), delay=0.5)],
    ids=["500", "broken-body", "timeout"],
)
def test_manual_export_with_an_ambiguous_outcome_is_not_repeated(
    server: ScriptedServer, make_client: MakeClient, failure: Reply
) -> None:
    client = make_client(timeout=0.2)
    server.script("POST", EXPORT, failure, Reply(202, payloads.job("job-m2")))

    with pytest.raises(TransientAPIError, match="list the jobs before asking again"):
        client.manual_export("telephony", START, END, BACKFILL)

    assert len(server.seen("POST", EXPORT)) == 1


@pytest.mark.parametrize(
    ("start", "end", "prefix", "problem"),
    [
        (END, START, BACKFILL, "start < end"),
        (START, END, "exports/telephony/backfill", "ending in '/'"),
        (START, END, "/exports/backfill/", "relative"),
        (START, END, "exports/../backfill/", "'..'"),
        (START.replace(tzinfo=None), END, BACKFILL, "naive"),
    ],
)
def test_manual_export_arguments_are_checked(
    server: ScriptedServer,
    client: CXoneClient,
    start: datetime,
    end: datetime,
    prefix: str,
    problem: str,
) -> None:
    with pytest.raises(ValueError, match=problem):
        client.manual_export("telephony", start, end, prefix)
    assert server.requests == []


# URLs and secrets


@pytest.mark.parametrize(
    ("base_url", "token_url"),
    [
        ("http://example.com", None),
        ("http://10.0.0.1:8765", None),
        ("http://127.0.0.1.example.com", None),
        ("ftp://127.0.0.1", None),
        ("https://api.example.com", "http://auth.example.com/token"),
        ("/relative", None),
    ],
)
def test_plain_http_is_refused_off_loopback(base_url: str, token_url: str | None) -> None:
    with pytest.raises(ValueError, match="https"):
        CXoneClient(
            base_url=base_url,
            token_url=token_url,
            client_id="c",
            client_secret=CLIENT_SECRET,
            download_ids={},
        )


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8765",
        "http://127.9.9.9",
        "http://[::1]:8765",
        "http://localhost:8765",
        "https://api.example.com/prefix/",
    ],
)
def test_https_and_loopback_http_are_accepted(base_url: str) -> None:
    with CXoneClient(
        base_url=base_url, client_id="c", client_secret=CLIENT_SECRET, download_ids={}
    ) as client:
        assert client.grant_type == "client_credentials"


def test_repr_hides_secrets_and_tokens(server: ScriptedServer, make_client: MakeClient) -> None:
    client = make_client(access_key_id="AKID-1", access_key_secret=ACCESS_KEY_SECRET)
    server.script("GET", DL, Reply(body=payloads.download_config()))
    client.download_config("telephony")

    shown = repr(client) + str(client) + repr(client.stats)

    assert "password" in shown and server.url in shown
    _assert_no_secret(shown)


def test_logs_never_carry_secrets(
    server: ScriptedServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(access_key_id="AKID-1", access_key_secret=ACCESS_KEY_SECRET)
    caplog.set_level(logging.DEBUG)
    server.script(
        "GET",
        DL,
        Reply(503, {"message": f"echo {ACCESS_KEY_SECRET}"}),
        Reply(401),
        Reply(body=payloads.download_config()),
    )

    client.download_config("telephony")

    assert "attempt 2 of 4" in caplog.text
    assert "[redacted]" in caplog.text
    _assert_no_secret(caplog.text)
