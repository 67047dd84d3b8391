"""The client against the real simulator (its API and S3 on loopback), API faults switched on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cxone_sync.cxone.client import CXoneClient, RetryPolicy
from cxone_sync.cxone.errors import NotFoundError
from cxone_sync.cxone.models import JobStatus
from cxone_sync.cxone.uris import validate_job_files
from cxone_sync_tests.fixtures import MakeStack

RETRY = RetryPolicy(attempts=8, initial_wait=0.001, max_wait=0.01, jitter=0.001)


def test_lists_jobs_and_download_config_through_faults(make_stack: MakeStack) -> None:
    stack = make_stack(
        categories=("telephony",),
        scale=0.02,
        api_429_rate=0.05,
        api_5xx_rate=0.05,
        api_truncated_rate=0.05,
        api_non_json_rate=0.05,
        revoke_tokens_every=3,
    )
    stack.world.advance(timedelta(hours=4))
    sim = stack.config
    with CXoneClient(
        base_url=stack.api_url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        access_key_id=sim.access_key_id,
        access_key_secret=sim.access_key_secret,
        download_ids={"telephony": "dl-telephony-prod"},
        retry=RETRY,
        token_refresh_margin=0,
    ) as client:
        config = client.download_config("telephony")
        every = list(client.iter_jobs("telephony", page_size=1))
        completed = list(client.iter_jobs("telephony", statuses=[JobStatus.COMPLETED]))
        refs = [
            validate_job_files(job, config.destination.bucket, [config.destination.prefix])
            for job in completed
        ]
        again = client.get_job("telephony", completed[0].id)

    assert config.destination.bucket == sim.bucket
    assert set(config.data_types) == {"cdr", "acd", "skill_group"}
    assert len(every) >= 3
    assert len({j.id for j in every}) == len(every)
    assert {j.id for j in completed} <= {j.id for j in every}
    assert completed and all(j.status is JobStatus.COMPLETED for j in completed)
    assert all(job_refs for job_refs in refs)
    assert again == completed[0]
    faults = [f["kind"] for f in stack.world.fault_log if f["kind"].startswith("api_")]
    revoked = faults.count("api_token_revoked")
    assert revoked >= 1
    assert client.stats.reauthentications == revoked
    assert client.stats.retries == len(faults) - revoked


def test_hostile_job_ids_are_one_url_segment_each(make_stack: MakeStack) -> None:
    """Every id addresses its own job (``/``, ``?``, ``#``, ``%``, NUL, unicode, 1,000+
    characters); ``.`` and ``..`` address no other endpoint (the job list, the download)."""
    stack = make_stack(categories=("telephony",), scale=0.02, hostile_job_ids=1.0)
    stack.world.advance(timedelta(hours=10))
    sim = stack.config
    with CXoneClient(
        base_url=stack.api_url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        download_ids={"telephony": "dl-telephony-prod"},
        retry=RETRY,
    ) as client:
        listed = list(client.iter_jobs("telephony"))
        fetched = [client.get_job("telephony", job.id) for job in listed]
        for dots in (".", ".."):
            with pytest.raises(NotFoundError):
                client.get_job("telephony", dots)
        with pytest.raises(NotFoundError):
            client.get_job("telephony", listed[0].id + "/../..")
    forms = {e["detail"]["form"] for e in stack.world.fault_log if e["kind"] == "hostile_job_id"}
    assert len(forms) == 8 and len(listed) >= 8
    assert fetched == listed
    assert {j.id for j in listed} == {j["id"] for j in stack.world.list_jobs("dl-telephony-prod")}


def test_the_client_takes_the_servers_clock_from_the_date_header(make_stack: MakeStack) -> None:
    # the simulator's clock (2024) is far from the wall clock; the client reports the server's
    stack = make_stack(categories=("ivr",), scale=0.02)
    stack.world.advance(timedelta(hours=5, minutes=17))
    sim = stack.config
    with CXoneClient(
        base_url=stack.api_url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        download_ids={"ivr": "dl-ivr-prod"},
    ) as client:
        assert client.server_now() is None  # nothing answered yet
        client.download_config("ivr")
        first = client.server_now()
        stack.world.advance(timedelta(hours=2))
        list(client.iter_jobs("ivr"))
        later = client.server_now()
    now = stack.world.now
    assert first is not None and later is not None
    assert now - timedelta(hours=2) <= first < now - timedelta(hours=1)
    assert now <= later < now + timedelta(minutes=5)
