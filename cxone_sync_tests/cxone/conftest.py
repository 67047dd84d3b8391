from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cxone_sync.cxone.client import CXoneClient, RetryPolicy
from cxone_sync_tests.cxone.scripted import ScriptedServer, serve

CLIENT_SECRET = "client-s3cr3t-value"
ACCESS_KEY_SECRET = "access-key-s3cr3t-value"
FAST_RETRY = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.001)
DOWNLOAD_IDS = {"telephony": "dl-telephony-prod", "ivr": "dl-ivr-prod"}

MakeClient = Callable[..., CXoneClient]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with serve() as scripted:
        yield scripted


@pytest.fixture
def make_client(server: ScriptedServer) -> Iterator[MakeClient]:
    clients: list[CXoneClient] = []

    def make(**overrides: Any) -> CXoneClient:
        options: dict[str, Any] = {
            "base_url": server.url,
            "client_id": "app-client",
            "client_secret": CLIENT_SECRET,
            "download_ids": DOWNLOAD_IDS,
            "retry": FAST_RETRY,
            "timeout": 5.0,
        }
        client = CXoneClient(**(options | overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> CXoneClient:
    return make_client()
