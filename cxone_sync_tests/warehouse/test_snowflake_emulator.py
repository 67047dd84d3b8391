"""`cxone-sync local-snowflake`: a separate process, the real connector over HTTP, restartable.

The emulator's wiring relies on fakesnow names that are not public API (all of them in
``cxone_sync.warehouse.snowflake_emulator``); this restart test is where an upgrade that renames
one fails loudly.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from cxone_sync.defs.snowflake import SnowflakeWarehouseResource, snowflake_resource
from cxone_sync.preflight.warehouse import check_warehouse
from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION, Settings
from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync.warehouse.base import StagedFile
from cxone_sync_tests.warehouse.backends import BUCKET, Backend
from cxone_sync_tests.warehouse.factories import CDR, cdr_rows, merge, rows_of


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_snowflake(s3: S3Endpoint, data_dir: Path, port: int) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "CXONE_API_URL": "http://127.0.0.1:1",  # not the embedded default: S3 comes from env
        "CXONE_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3.url,
        "AWS_REGION": SIM_AWS_REGION,
        "AWS_ACCESS_KEY_ID": SIM_AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": SIM_AWS_KEY,
    }
    child = subprocess.Popen(
        [
            *(sys.executable, "-m", "cxone_sync.cli", "local-snowflake"),
            *("--port", str(port), "--data-dir", str(data_dir)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    exports: dict[str, str] = {}
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 120
        while "SNOWFLAKE_PROTOCOL" not in exports and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = value
        assert "SNOWFLAKE_PROTOCOL" in exports, f"the emulator did not start ({child.poll()=})"
        # keep reading its output so the child never blocks on a full pipe
        threading.Thread(target=child.stdout.read, daemon=True).start()
        yield {**{k: v for k, v in env.items() if k.startswith(("AWS_", "CXONE_"))}, **exports}
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0


def test_local_snowflake_loads_through_the_connector_and_survives_a_restart(
    s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    staged: list[StagedFile] = []
    backend = Backend("snowflake", None, s3_endpoint.client(), tmp_path)  # type: ignore[arg-type]
    with local_snowflake(s3_endpoint, tmp_path / "sf", port) as env:
        expected = {
            "CXONE_WAREHOUSE",
            "SNOWFLAKE_ACCOUNT",
            "SNOWFLAKE_USER",
            "SNOWFLAKE_PASSWORD",
            "SNOWFLAKE_ROLE",
            "SNOWFLAKE_WAREHOUSE",
            "SNOWFLAKE_DATABASE",
            "SNOWFLAKE_STAGE",
            "SNOWFLAKE_HOST",
            "SNOWFLAKE_PORT",
            "SNOWFLAKE_PROTOCOL",
        }
        assert expected <= set(env)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        assert settings.snowflake_missing() == [] and settings.warehouse_pool_limit == 8
        staged.append(backend.stage(cdr_rows(("a", 1, "ann"), ("b", 2, "bob"))))
        doctor = check_warehouse(settings)
        assert doctor.ok, doctor
        # the emulator lists one level of the bucket only: the count is not asserted here
        assert "stage PUBLIC.CXONE_EXPORTS lists" in doctor.detail
        assert not re.search(rf"\b{env['SNOWFLAKE_PASSWORD']}\b", doctor.detail)
        warehouse = _warehouse(settings, s3_endpoint)
        first = merge(warehouse, staged)
        assert (first.rows_read, first.rows_inserted) == (2, 2)
        assert rows_of(warehouse, "call_uuid", "agent") == [("a", "ann"), ("b", "bob")]
    with local_snowflake(s3_endpoint, tmp_path / "sf", port) as env:
        monkeypatch.setenv("SNOWFLAKE_PORT", env["SNOWFLAKE_PORT"])
        warehouse = _warehouse(Settings(), s3_endpoint)
        assert rows_of(warehouse, "call_uuid", "agent") == [("a", "ann"), ("b", "bob")]
        assert warehouse.loaded_files([staged[0].uri]) != {}
        newer = backend.stage(cdr_rows(("a", 5, "ANN")), job_id="j2")
        assert merge(warehouse, [newer], hour=1).rows_updated == 1
        assert rows_of(warehouse, "call_uuid", "agent") == [("a", "ANN"), ("b", "bob")]
        assert [p.files for p in warehouse.partition_loads(CDR)] == [1, 1]


def _warehouse(settings: Settings, s3: S3Endpoint):  # type: ignore[no-untyped-def]
    from cxone_sync.defs.resources import CachedS3Resource

    resource = SnowflakeWarehouseResource(
        kind="snowflake",
        snowflake=snowflake_resource(settings),
        snowflake_stage=settings.snowflake_stage,
        bucket=BUCKET,
        s3=CachedS3Resource(
            endpoint_url=s3.url,
            region_name=SIM_AWS_REGION,
            aws_access_key_id=SIM_AWS_KEY,
            aws_secret_access_key=SIM_AWS_KEY,
        ),
    )
    return resource.get()
