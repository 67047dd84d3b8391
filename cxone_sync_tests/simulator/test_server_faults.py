"""API faults over real HTTP: each kind answers as configured and lands in the fault log."""

from __future__ import annotations

import httpx
import pytest

from cxone_sync.simulator.stack import LocalStack
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.simulator.test_server import JOBS, TELEPHONY, client

CONFIG_PATH = f"/api/v2/data-downloads/{TELEPHONY}"


def api_kinds(stack: LocalStack) -> list[str]:
    faults = httpx.get(f"{stack.api_url}/sim/faults").json()["faults"]
    return [f["kind"] for f in faults if f["kind"].startswith("api_")]


def test_429_with_retry_after(make_stack: MakeStack) -> None:
    stack = make_stack(api_429_rate=1.0)
    with client(stack) as api:  # the token endpoint is never faulted
        answer = api.get(CONFIG_PATH)
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert api_kinds(stack) == ["api_429"]
    entry = stack.world.fault_log[0]
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", CONFIG_PATH, 429)


def test_5xx(make_stack: MakeStack) -> None:
    stack = make_stack(api_5xx_rate=1.0)
    with client(stack) as api:
        codes = {api.get(JOBS).status_code for _ in range(12)}
    assert codes == {500, 503}
    assert api_kinds(stack) == ["api_5xx"] * 12
    assert {f["status"] for f in stack.world.fault_log} == {500, 503}


def test_non_json_answer(make_stack: MakeStack) -> None:
    stack = make_stack(api_non_json_rate=1.0)
    with client(stack) as api:
        answer = api.get(JOBS)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        answer.json()
    assert api_kinds(stack) == ["api_non_json"]


def test_truncated_answer(make_stack: MakeStack) -> None:
    stack = make_stack(api_truncated_rate=1.0)
    with client(stack) as api, pytest.raises(httpx.RemoteProtocolError):
        api.get(CONFIG_PATH)
    assert api_kinds(stack) == ["api_truncated"]


def test_slow_answer_is_still_correct(make_stack: MakeStack) -> None:
    stack = make_stack(api_slow_rate=1.0, api_slow_seconds=0.05)
    with client(stack) as api:
        answer = api.get(CONFIG_PATH)
    assert answer.status_code == 200
    assert answer.json()["download_id"] == TELEPHONY
    assert api_kinds(stack) == ["api_slow"]


def test_control_endpoints_and_tokens_are_never_faulted(make_stack: MakeStack) -> None:
    stack = make_stack(
        api_429_rate=1.0, api_5xx_rate=1.0, api_non_json_rate=1.0, api_truncated_rate=1.0
    )
    for _ in range(3):
        with client(stack):
            pass
    assert httpx.get(f"{stack.api_url}/sim/clock").status_code == 200
    assert httpx.post(f"{stack.api_url}/sim/advance", json={"hours": 1}).status_code == 200
    assert api_kinds(stack) == []


def test_faults_are_deterministic_by_seed(make_stack: MakeStack) -> None:
    rates = {"api_429_rate": 0.3, "api_5xx_rate": 0.3, "api_non_json_rate": 0.3}

    def run(stack: LocalStack) -> list[int]:
        with client(stack) as api:
            return [api.get(CONFIG_PATH).status_code for _ in range(30)]

    first = run(make_stack(seed=7, **rates))
    again = run(make_stack(seed=7, bucket="cxone-second-lake", **rates))
    other = run(make_stack(seed=8, bucket="cxone-third-lake", **rates))
    assert first == again
    assert first != other
    assert {200, 429} <= set(first)


def test_token_expires_after_answering_its_calls(make_stack: MakeStack) -> None:
    stack = make_stack(token_ttl_calls=2)
    with client(stack) as api:
        codes = [api.get(JOBS).status_code for _ in range(3)]
    assert codes == [200, 200, 401]
    assert api_kinds(stack) == ["api_token_expired"]
    with client(stack) as fresh:  # a new token answers again
        assert fresh.get(JOBS).status_code == 200


def test_revocation_waits_for_a_token_that_has_answered(make_stack: MakeStack) -> None:
    # revocation falls due at call 2, which carries a token that never answered: it passes (a
    # client that just re-authenticated is not refused twice in a row); the next call whose
    # token has answered before triggers the revocation
    stack = make_stack(revoke_tokens_every=2)
    with client(stack) as old, client(stack) as new:
        assert old.get(JOBS).status_code == 200  # call 1
        assert new.get(JOBS).status_code == 200  # call 2: due, but a first-use token
        assert old.get(JOBS).status_code == 401  # call 3: revoked now
        assert new.get(JOBS).status_code == 401  # every token was revoked
    assert api_kinds(stack) == ["api_token_revoked", "api_token_revoked"]
