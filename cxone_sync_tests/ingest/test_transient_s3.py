"""S3 answering 5xx is a transient failure: the staging step is retried, the partition is not
blocked. A real HTTP server on loopback plays an S3 endpoint in trouble."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from cxone_sync.catalog import category
from cxone_sync.ingest.load import load_partition
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.truth import client_for

START = datetime(2024, 3, 15, tzinfo=UTC)
IVR = category("ivr").data_type("ivr_session")

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class _Unavailable(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(_SLOW_DOWN)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(_SLOW_DOWN)

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def unavailable_s3() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_s3_5xx_is_retried_not_blocked_and_a_later_attempt_loads_the_truth(
    make_stack: MakeStack, unavailable_s3: str, tmp_path: Path
) -> None:
    stack = make_stack(scale=0.05, categories=("ivr",))
    stack.world.advance_to(START + timedelta(hours=2))
    broken = boto3.client(
        "s3",
        endpoint_url=unavailable_s3,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
    kwargs = {
        "data_type": IVR,
        "start": START,
        "end": START + timedelta(hours=1),
        "warehouse": warehouse,
        "bucket": stack.config.bucket,
        "prefix": "exports/ivr/",
        "staging_dir": tmp_path / "staging",
    }
    with client_for(stack.api_url) as client:
        with pytest.raises(Exception) as caught:
            load_partition(source=client, s3_client=broken, **kwargs)  # type: ignore[arg-type]
        from cxone_sync.defs.retries import is_transient  # new module: import after the raise

        assert is_transient(caught.value), repr(caught.value)
        assert "SlowDown" in str(caught.value) and "retried" in str(caught.value)
        assert warehouse.reader().partition_loads(IVR) == []
        assert not (tmp_path / "staging").exists()  # nothing of the failed attempt is left
        # S3 is back: the retried attempt stages afresh and loads the partition
        outcome = load_partition(source=client, s3_client=stack.s3_client(), **kwargs)  # type: ignore[arg-type]
    assert not outcome.staged.blocked and outcome.merged is not None
    assert outcome.staged.files and not (tmp_path / "staging").exists()  # merged, then removed
    truth = stack.world.ground_truth("ivr", "ivr_session", START, START + timedelta(hours=1))
    assert differences(truth, warehouse.read_table(IVR), list(IVR.key)) == []
