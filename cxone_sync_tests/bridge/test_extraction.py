"""The Data Extraction client against the local fake: documented request shapes, pacing,
403/429, link expiry, ended jobs, token refresh, secrets."""

from __future__ import annotations

import base64
import itertools
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cxone_sync.bridge.convert import csv_to_table
from cxone_sync.bridge.extraction import (
    ExtractionError,
    ExtractionJobFailed,
    windows,
)
from cxone_sync.bridge.pacing import FakeClock
from cxone_sync.simulator.extraction import (
    FAKE_ACCESS_KEY_ID,
    FAKE_ACCESS_KEY_SECRET,
    FAKE_CLIENT_ID,
    FAKE_CLIENT_SECRET,
    FAKE_TENANT,
    JOBS,
)
from cxone_sync_tests.bridge.conftest import ENTITY, VERSION, MakeFake, client_for

T0 = datetime(2024, 3, 15, tzinfo=UTC)
T1 = T0 + timedelta(days=1)


def test_requests_are_exactly_the_documented_ones(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path
) -> None:
    fake = make_fake(job_seconds=70)
    with client_for(fake, clock, tmp_path) as client:
        got = client.extract(ENTITY, VERSION, T0, T1)
    rows = csv_to_table(got.body, {"score": "int32"}, what="t")
    assert rows.column("comment").to_pylist() == ['a "quoted", comma', "two\nlines"]

    seen = [(r.method, r.path) for r in fake.requests]
    job_path = f"{JOBS}/{got.job_id}"
    assert seen[:4] == [
        ("GET", "/.well-known/openid-configuration"),
        ("POST", "/auth/token"),
        ("GET", "/.well-known/cxone-configuration"),
        ("POST", JOBS),
    ]
    assert seen[4:-1] == [("GET", job_path)] * got.polls
    assert got.polls == 3  # 30 s, 60 s after creation: RUNNING; 90 s: SUCCEEDED with the link
    assert seen[-1][0] == "GET" and seen[-1][1].startswith("/results/")

    token = fake.requests[1]
    assert token.auth == "basic" and token.content_type == "application/x-www-form-urlencoded"
    assert token.body == {
        "grant_type": "password",
        "username": FAKE_ACCESS_KEY_ID,
        "password": FAKE_ACCESS_KEY_SECRET,
    }
    assert fake.requests[2].query == {"tenantId": [FAKE_TENANT]}
    create = fake.requests[3]
    assert create.auth == "bearer" and create.content_type == "application/json"
    assert create.body == {
        "entityName": ENTITY,
        "version": VERSION,
        "startDate": "2024-03-15T00:00:00Z",
        "endDate": "2024-03-16T00:00:00Z",
    }
    assert fake.requests[-1].auth == "", "the bearer token never travels to the result link"
    api_calls = [r.at for r in fake.requests if r.path.startswith(JOBS)]
    gaps = [b - a for a, b in itertools.pairwise(api_calls)]
    assert gaps and min(gaps) >= 30.0
    assert fake.refusals == []


def test_busy_answers_and_an_expired_link_are_waited_out(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path
) -> None:
    fake = make_fake(busy_calls=2, expired_links=1, job_seconds=1)
    with client_for(fake, clock, tmp_path) as client:
        got = client.extract(ENTITY, VERSION, T0, T1)
    assert fake.refusals == [429, 429]
    assert got.link_renewals == 1
    downloads = [r for r in fake.requests if r.path.startswith("/results/")]
    assert len(downloads) == 2
    assert csv_to_table(got.body, {}, what="t").num_rows == 2


def test_a_call_too_soon_answers_403_and_is_repeated_later(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path
) -> None:
    """A client spacing its calls by less than the server wants meets 403 (and 429)."""
    fake = make_fake(min_interval=45.0, job_seconds=1)
    with client_for(fake, clock, tmp_path, min_interval=30.0) as client:
        got = client.extract(ENTITY, VERSION, T0, T1)
    assert 403 in fake.refusals
    assert csv_to_table(got.body, {}, what="t").num_rows == 2


@pytest.mark.parametrize("ending", ["FAILED", "CANCELLED", "EXPIRED"])
def test_a_job_that_ends_badly_is_an_error_with_its_status(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path, ending: str
) -> None:
    fake = make_fake(outcomes={ENTITY: [ending]}, job_seconds=1)
    with client_for(fake, clock, tmp_path) as client, pytest.raises(ExtractionJobFailed) as err:
        client.extract(ENTITY, VERSION, T0, T1)
    assert err.value.status == ending
    assert ending in str(err.value)


def test_a_job_running_too_long_is_given_up(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path
) -> None:
    fake = make_fake(job_seconds=10_000)
    with (
        client_for(fake, clock, tmp_path, max_poll_seconds=300) as client,
        pytest.raises(ExtractionJobFailed, match="still RUNNING") as err,
    ):
        client.extract(ENTITY, VERSION, T0, T1)
    assert err.value.status == "TIMED_OUT"


def test_token_is_refreshed_when_it_expires(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path
) -> None:
    fake = make_fake(token_seconds=100, job_seconds=200)
    with client_for(fake, clock, tmp_path) as client:
        client.extract(ENTITY, VERSION, T0, T1)
    assert [r.path for r in fake.requests].count("/auth/token") >= 3


def test_two_clients_of_one_tenant_share_the_spacing(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path
) -> None:
    """The lock file carries the last call's time: a second client (another process, another
    Dagster run) waits its 30 s too, so the server refuses nothing."""
    fake = make_fake(job_seconds=1)
    with client_for(fake, clock, tmp_path) as a, client_for(fake, clock, tmp_path) as b:
        a.extract(ENTITY, VERSION, T0, T1)
        b.extract(ENTITY, VERSION, T1, T1 + timedelta(days=1))
        assert a.pacer.path == b.pacer.path
    assert fake.refusals == []
    api_calls = [r.at for r in fake.requests if r.path.startswith(JOBS)]
    assert min(b - a for a, b in itertools.pairwise(api_calls)) >= 30.0


def test_bad_credentials_and_secrets_never_shown(
    make_fake: MakeFake, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = make_fake(busy_calls=1, expired_links=1, job_seconds=1)
    with client_for(fake, clock, tmp_path) as client:
        client.extract(ENTITY, VERSION, T0, T1)
        token = client._token.get_secret_value() if client._token else ""
        text = caplog.text + repr(client)
    for secret in (FAKE_CLIENT_SECRET, FAKE_ACCESS_KEY_SECRET, token, "fake-signature"):
        assert secret and secret not in text

    from cxone_sync.bridge.extraction import DataExtractionClient

    wrong = DataExtractionClient(
        auth_url=fake.url,
        client_id=FAKE_CLIENT_ID,
        client_secret="not-the-secret",
        access_key_id=FAKE_ACCESS_KEY_ID,
        access_key_secret="also-wrong",
        lock_dir=tmp_path,
        clock=clock,
        sleep=clock.sleep,
    )
    with wrong, pytest.raises(ExtractionError, match="token endpoint answered 401") as err:
        wrong.extract(ENTITY, VERSION, T0, T1)
    assert "not-the-secret" not in str(err.value) and "also-wrong" not in str(err.value)
    assert base64.b64encode(b"not-the-secret").decode() not in str(err.value)


def test_history_is_cut_into_windows_the_api_accepts() -> None:
    cut = windows(T0, T0 + timedelta(days=30))
    assert [e - s for s, e in cut] == [timedelta(days=14), timedelta(days=14), timedelta(days=2)]
    assert cut[0][0] == T0 and cut[-1][1] == T0 + timedelta(days=30)
