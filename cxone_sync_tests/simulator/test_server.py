"""The simulator API over real loopback HTTP: OAuth, Data Download, the control endpoints."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.server import ApiServer
from cxone_sync.simulator.stack import LocalStack
from cxone_sync_tests.fixtures import MakeStack

TELEPHONY = "dl-telephony-prod"
JOBS = f"/api/v2/data-downloads/{TELEPHONY}/jobs"


def token_for(stack: LocalStack | ApiServer, config: SimConfig) -> str:
    url = stack.api_url if isinstance(stack, LocalStack) else stack.url
    response = httpx.post(
        f"{url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret,
        },
    )
    assert response.status_code == 200
    return str(response.json()["access_token"])


def client(stack: LocalStack) -> httpx.Client:
    token = token_for(stack, stack.config)
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"})


def all_pages(api: httpx.Client, limit: int, **params: Any) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = {**params, "limit": limit, **({"page_token": token} if token else {})}
        page = api.get(JOBS, params=query).json()
        assert len(page["jobs"]) <= limit
        jobs.extend(page["jobs"])
        token = page["next_page_token"]
        if token is None:
            return jobs


# --- OAuth -------------------------------------------------------------------------------


def test_client_credentials_grant(stack: LocalStack) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": stack.config.client_id,
        "client_secret": stack.config.client_secret,
    }
    answer = httpx.post(f"{stack.api_url}/oauth/token", data=form)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == stack.config.faults.token_ttl_seconds
    assert body["access_token"]


def test_client_credentials_with_http_basic(stack: LocalStack) -> None:
    basic = base64.b64encode(
        f"{stack.config.client_id}:{stack.config.client_secret}".encode()
    ).decode()
    answer = httpx.post(
        f"{stack.api_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 200
    assert answer.json()["access_token"]


def test_password_grant(stack: LocalStack) -> None:
    form = {
        "grant_type": "password",
        "client_id": stack.config.client_id,
        "client_secret": stack.config.client_secret,
        "username": stack.config.access_key_id,
        "password": stack.config.access_key_secret,
    }
    answer = httpx.post(f"{stack.api_url}/oauth/token", data=form)
    assert answer.status_code == 200
    token = answer.json()["access_token"]
    config = httpx.get(
        f"{stack.api_url}/api/v2/data-downloads/{TELEPHONY}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert config.status_code == 200

    wrong = httpx.post(f"{stack.api_url}/oauth/token", data={**form, "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_grant"
    no_user = {k: v for k, v in form.items() if k != "username"}
    assert httpx.post(f"{stack.api_url}/oauth/token", data=no_user).status_code == 400


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "someone"}, 401, "invalid_client"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({}, 400, "unsupported_grant_type"),
    ],
)
def test_token_errors(stack: LocalStack, form: dict[str, str], status: int, error: str) -> None:
    base = {"client_id": stack.config.client_id, "client_secret": stack.config.client_secret}
    answer = httpx.post(f"{stack.api_url}/oauth/token", data={**base, **form})
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert stack.config.client_secret not in answer.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
)
def test_api_needs_a_valid_bearer_token(stack: LocalStack, headers: dict[str, str]) -> None:
    answer = httpx.get(f"{stack.api_url}/api/v2/data-downloads/{TELEPHONY}", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_refused_and_logged(stack: LocalStack) -> None:
    now = [1000.0]
    with ApiServer(stack.world, clock=lambda: now[0]) as server:
        token = token_for(server, stack.config)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{server.url}/api/v2/data-downloads/{TELEPHONY}"
        assert httpx.get(url, headers=headers).status_code == 200
        now[0] += stack.config.faults.token_ttl_seconds
        assert httpx.get(url, headers=headers).status_code == 401
        assert (
            httpx.get(
                url, headers={"Authorization": f"Bearer {token_for(server, stack.config)}"}
            ).status_code
            == 200
        )
    assert [f["kind"] for f in stack.world.fault_log] == ["api_token_expired"]


def test_tokens_revoked_every_n_calls(make_stack: MakeStack) -> None:
    stack = make_stack(revoke_tokens_every=3)
    url = f"/api/v2/data-downloads/{TELEPHONY}"
    with client(stack) as api:
        assert [api.get(url).status_code for _ in range(3)] == [200, 200, 401]
    with client(stack) as api:
        assert api.get(url).status_code == 200
    revoked = [f for f in stack.world.fault_log if f["kind"] == "api_token_revoked"]
    assert len(revoked) == 1
    assert revoked[0]["call"] == 3


def test_revoke_tokens_control_endpoint(stack: LocalStack) -> None:
    with client(stack) as api:
        assert api.get(f"/api/v2/data-downloads/{TELEPHONY}").status_code == 200
        assert httpx.post(f"{stack.api_url}/sim/revoke-tokens").json() == {"revoked": 1}
        assert api.get(f"/api/v2/data-downloads/{TELEPHONY}").status_code == 401
    faults = httpx.get(f"{stack.api_url}/sim/faults").json()["faults"]
    assert [f["kind"] for f in faults] == ["api_token_revoked"]


def test_secrets_and_tokens_are_never_logged(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        token = token_for(stack, stack.config)
        httpx.get(f"{stack.api_url}{JOBS}", headers={"Authorization": f"Bearer {token}"})
        httpx.post(f"{stack.api_url}/oauth/token", data={"grant_type": "password"})
    assert caplog.records, "the server logs requests at debug level"
    assert stack.config.client_secret not in caplog.text
    assert token not in caplog.text


# --- the Data Download surface -------------------------------------------------------------


def test_download_configuration_and_unknown_ids(stack: LocalStack) -> None:
    with client(stack) as api:
        config = api.get(f"/api/v2/data-downloads/{TELEPHONY}")
        assert config.status_code == 200
        assert config.json() == stack.world.download_config(TELEPHONY)
        assert config.json()["destination"]["bucket"] == stack.config.bucket
        assert api.get("/api/v2/data-downloads/dl-nope").status_code == 404
        assert api.get("/api/v2/data-downloads/dl-nope/jobs").status_code == 404
        assert api.get(f"{JOBS}/job-nope").status_code == 404
        assert api.get("/api/v2/elsewhere").status_code == 404
        assert api.post(f"/api/v2/data-downloads/{TELEPHONY}").status_code == 405


def test_jobs_pages_cover_the_full_list(stack: LocalStack) -> None:
    stack.world.advance(timedelta(hours=12))
    with client(stack) as api:
        everything = api.get(JOBS, params={"limit": 1000}).json()
        assert everything["next_page_token"] is None
        assert all_pages(api, limit=5) == everything["jobs"]
        assert everything["jobs"] == stack.world.list_jobs(TELEPHONY)
        assert len(everything["jobs"]) >= 10
        default = api.get(JOBS).json()
        assert default["jobs"] == everything["jobs"][:100]


def test_job_by_id(stack: LocalStack) -> None:
    stack.world.advance(timedelta(hours=3))
    with client(stack) as api:
        listed = api.get(JOBS).json()["jobs"][0]
        assert api.get(f"{JOBS}/{listed['id']}").json() == listed
        other = "/api/v2/data-downloads/dl-ivr-prod/jobs/" + listed["id"]
        assert api.get(other).status_code == 404


def test_every_status_filter(make_stack: MakeStack) -> None:
    stack = make_stack(failed_rate=0.3, timed_out_rate=0.3)
    stack.world.advance(timedelta(hours=24, minutes=25))
    jobs = stack.world.list_jobs(TELEPHONY)
    statuses = {job["status"] for job in jobs}
    assert {"COMPLETED", "FAILED", "TIMED_OUT"} <= statuses
    with client(stack) as api:
        for status in ("QUEUED", "RUNNING", "COMPLETED", "FAILED", "TIMED_OUT"):
            got = all_pages(api, limit=4, status=status)
            assert got == [job for job in jobs if job["status"] == status]
        failed = all_pages(api, limit=4, status=["FAILED", "TIMED_OUT"])
        assert failed == [job for job in jobs if job["status"] in ("FAILED", "TIMED_OUT")]
        assert api.get(JOBS, params={"status": "DONE"}).status_code == 400


def test_category_and_updated_since_filters(stack: LocalStack) -> None:
    stack.world.advance(timedelta(hours=8))
    jobs = stack.world.list_jobs(TELEPHONY)
    since = jobs[len(jobs) // 2]["updated_at"]
    with client(stack) as api:
        newer = all_pages(api, limit=2, updated_since=since)
        assert newer == [job for job in jobs if job["updated_at"] >= since]
        assert newer[0]["updated_at"] == since  # inclusive
        assert api.get(JOBS, params={"category": "telephony"}).json()["jobs"] == jobs[:100]
        assert api.get(JOBS, params={"category": "ivr"}).json()["jobs"] == []
        for bad in (
            {"category": "fax"},
            {"updated_since": "yesterday"},
            {"updated_since": "2024-03-15T00:00:00"},  # no time zone
            {"limit": "0"},
            {"limit": "many"},
            {"page_token": "!!!"},
        ):
            assert api.get(JOBS, params=bad).status_code == 400, bad


def test_page_token_is_bound_to_its_query(stack: LocalStack) -> None:
    stack.world.advance(timedelta(hours=6))
    with client(stack) as api:
        token = api.get(JOBS, params={"limit": 1}).json()["next_page_token"]
        assert token is not None
        mixed = api.get(JOBS, params={"limit": 1, "page_token": token, "status": "FAILED"})
        assert mixed.status_code == 400


def test_manual_export_accepted_conflict_and_bad_request(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cxone_sync.simulator")
    stack.world.advance(timedelta(hours=6))
    body = {
        "category": "telephony",
        "start_time": "2024-03-15T01:00:00Z",
        "end_time": "2024-03-15T03:00:00Z",
        "overwrite": False,
        "destination_prefix": "exports/telephony/backfill/",
    }
    url = f"/api/v2/data-downloads/{TELEPHONY}/manual-export"
    with client(stack) as api:
        accepted = api.post(url, json=body)
        assert accepted.status_code == 202
        job = accepted.json()
        assert (job["status"], job["trigger"]) == ("QUEUED", "MANUAL")
        assert api.get(f"{JOBS}/{job['id']}").json()["id"] == job["id"]
        # the simulator logs what it accepted (a client whose answer was lost cannot)
        accepted_lines = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
        assert accepted_lines == [
            f"manual export {job['id']} accepted for telephony: 2024-03-15T01:00:00Z .. "
            "2024-03-15T03:00:00Z (overwrite False) into exports/telephony/backfill/"
        ]

        assert api.post(url, json=body).status_code == 409
        backwards = {**body, "start_time": body["end_time"], "end_time": body["start_time"]}
        assert api.post(url, json=backwards).status_code == 400
        assert api.post(url, content=b"{not json").status_code == 400
        assert api.post(url, json=["a", "list"]).status_code == 400
        assert (
            api.post("/api/v2/data-downloads/dl-nope/manual-export", json=body).status_code == 404
        )
        assert api.get(url).status_code == 405


# --- a controlled world: ties across a page boundary ----------------------------------------


class TiedWorld:
    """Just enough world for the API: seven jobs, five of them sharing one ``updated_at``."""

    def __init__(self) -> None:
        self.config = SimConfig()
        self.now = datetime(2024, 3, 16, tzinfo=UTC)
        self.fault_log: list[dict[str, Any]] = []
        stamps = ["2024-03-15T01:00:00Z"] + ["2024-03-15T02:00:00Z"] * 5 + ["2024-03-15T03:00:00Z"]
        self.jobs = [
            {"id": f"job-{i:02d}", "updated_at": stamp, "status": "COMPLETED"}
            for i, stamp in enumerate(stamps)
        ]

    def download_config(self, download_id: str) -> dict[str, Any] | None:
        return {"download_id": download_id} if download_id == TELEPHONY else None

    def list_jobs(
        self,
        download_id: str,
        *,
        category: str | None = None,
        statuses: Sequence[str] = (),
        updated_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        return list(self.jobs)


def test_pagination_with_equal_updated_at_across_page_boundaries() -> None:
    world = TiedWorld()
    with ApiServer(world) as server:  # type: ignore[arg-type]
        token = token_for(server, world.config)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as api:
            for limit in (1, 2, 3, 4, 6, 7):
                assert all_pages(api, limit=limit) == world.jobs, limit


# --- control endpoints --------------------------------------------------------------------


def test_clock_and_advance(stack: LocalStack) -> None:
    start = stack.config.start
    clock = httpx.get(f"{stack.api_url}/sim/clock").json()
    assert datetime.fromisoformat(clock["now"]) == start

    moved = httpx.post(f"{stack.api_url}/sim/advance", json={"hours": 2}).json()
    assert datetime.fromisoformat(moved["now"]) == start + timedelta(hours=2)
    assert moved["changed"], "scheduled jobs ran"
    assert {job["download_id"] for job in moved["changed"]} <= set(
        stack.world.download_ids().values()
    )

    to = (start + timedelta(hours=5)).isoformat()
    moved = httpx.post(f"{stack.api_url}/sim/advance", json={"to": to}).json()
    assert stack.world.now == start + timedelta(hours=5)
    assert datetime.fromisoformat(moved["now"]) == stack.world.now

    for bad in ({"to": start.isoformat()}, {"to": "soon"}, {}, {"hours": "x"}):
        assert httpx.post(f"{stack.api_url}/sim/advance", json=bad).status_code == 400, bad
    assert httpx.get(f"{stack.api_url}/sim/advance").status_code == 405
    assert httpx.get(f"{stack.api_url}/sim/nothing").status_code == 404


def test_truth_as_parquet(stack: LocalStack) -> None:
    stack.world.advance(timedelta(hours=4))
    answer = httpx.get(
        f"{stack.api_url}/sim/truth",
        params={"category": "telephony", "data_type": "cdr", "end": "2024-03-15T02:00:00Z"},
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(answer.content))
    expected = stack.world.ground_truth(
        "telephony", "cdr", end=datetime(2024, 3, 15, 2, tzinfo=UTC)
    )
    assert table.equals(expected)
    assert table.num_rows > 0
    assert (
        httpx.get(f"{stack.api_url}/sim/truth", params={"category": "telephony"}).status_code == 400
    )
