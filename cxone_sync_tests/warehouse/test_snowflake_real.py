"""Against a real Snowflake account: what the emulator cannot show.

Runs only when ``SNOWFLAKE_ACCOUNT`` names a real account (not the emulator's ``fakesnow`` and no
loopback ``SNOWFLAKE_HOST``) and ``SNOWFLAKE_TEST_DATABASE`` names a scratch database the role may
create schemas in; the stage ``SNOWFLAKE_STAGE`` must point at ``s3://$CXONE_BUCKET/`` through a
storage integration, and the AWS credential chain must be able to write
``s3://$CXONE_BUCKET/cxone-sync-selftest/``. Otherwise every test is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync.settings import Settings
from cxone_sync.warehouse.base import StagedFile
from cxone_sync_tests.warehouse.factories import CDR, T0, cdr_rows, merge, rows_of


def _why_not_real() -> str | None:
    account = os.environ.get("SNOWFLAKE_ACCOUNT", "")
    host = os.environ.get("SNOWFLAKE_HOST", "")
    if not account:
        return "SNOWFLAKE_ACCOUNT is not set: no real Snowflake account to test against"
    if account == "fakesnow" or host.startswith(("127.", "localhost")):
        return f"SNOWFLAKE_ACCOUNT={account} is the local emulator, not a real account"
    if not os.environ.get("SNOWFLAKE_TEST_DATABASE"):
        return "SNOWFLAKE_TEST_DATABASE (a scratch database for this test) is not set"
    return None


pytestmark = pytest.mark.skipif(_why_not_real() is not None, reason=_why_not_real() or "")


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Any, Settings]]:
    import boto3

    from cxone_sync.defs.snowflake import snowflake_resource
    from cxone_sync.warehouse.snowflake_warehouse import SnowflakeWarehouse

    monkeypatch.setenv("SNOWFLAKE_DATABASE", os.environ["SNOWFLAKE_TEST_DATABASE"])
    settings = Settings()
    resource = snowflake_resource(settings)
    assert resource is not None, settings.snowflake_missing()
    s3 = boto3.client("s3", region_name=settings.region, endpoint_url=settings.s3_endpoint_url)
    warehouse = SnowflakeWarehouse(
        resource.get_connection,
        stage=settings.snowflake_stage,
        stage_url=f"s3://{settings.cxone_bucket}/",
        s3_client=s3,
    )
    yield warehouse, (s3, resource, tmp_path), settings
    with resource.get_connection() as con:
        con.cursor().execute('DROP SCHEMA IF EXISTS "cxone" CASCADE')
        con.cursor().execute('DROP SCHEMA IF EXISTS "cxone_sync" CASCADE')


def _upload(s3: Any, bucket: str, tmp: Path, rows: list[dict], job: str) -> StagedFile:
    path = tmp / f"{job}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    data = path.read_bytes()
    key = f"cxone-sync-selftest/{uuid.uuid4().hex}/{job}.parquet"
    put = s3.put_object(Bucket=bucket, Key=key, Body=data)
    return StagedFile(
        path=path,
        uri=f"s3://{bucket}/{key}",
        version_id=put.get("VersionId"),
        sha256=hashlib.sha256(data).hexdigest(),
        rows=len(rows),
        size_bytes=len(data),
        job_id=job,
        job_end_time=datetime.now(UTC),
    )


def test_copy_from_the_integration_stage_merge_and_load_history(real) -> None:  # type: ignore[no-untyped-def]
    warehouse, (s3, resource, tmp), settings = real
    first = _upload(
        s3, settings.cxone_bucket, tmp, cdr_rows(("a", 1, "ann"), ("b", 1, "bob")), "j1"
    )
    assert merge(warehouse, [first]).rows_inserted == 2
    later = _upload(
        s3, settings.cxone_bucket, tmp, cdr_rows(("a", 5, "ANN"), ("b", 0, "old")), "j2"
    )
    result = merge(warehouse, [later], hour=1)
    assert (result.rows_updated, result.rows_stale) == (1, 1)
    assert rows_of(warehouse, "call_uuid", "agent") == [("a", "ANN"), ("b", "bob")]
    with resource.get_connection() as con:
        cur = con.cursor()
        cur.execute(
            "SELECT FILE_NAME, ROW_COUNT FROM TABLE(INFORMATION_SCHEMA.COPY_HISTORY("
            "TABLE_NAME => 'cxone_sync._stage__telephony__cdr__2024_03_15_15_00', "
            "START_TIME => DATEADD(HOUR, -1, CURRENT_TIMESTAMP())))"
        )
        history = cur.fetchall()
    assert any(later.uri.endswith(str(name)) and int(n) == 2 for name, n in history), history
    assert T0 + timedelta(hours=2) == warehouse.watermark(CDR).high_watermark


def test_merge_with_two_source_rows_per_target_row_raises_on_snowflake(real) -> None:  # type: ignore[no-untyped-def]
    """Why the loader deduplicates before its MERGE: Snowflake refuses a nondeterministic one."""
    _warehouse, (_s3, resource, _tmp), _settings = real
    import snowflake.connector

    with resource.get_connection() as con:
        cur = con.cursor()
        cur.execute('CREATE SCHEMA IF NOT EXISTS "cxone_sync"')
        cur.execute('CREATE OR REPLACE TRANSIENT TABLE "cxone_sync"."_t" (k INT, v INT)')
        cur.execute('INSERT INTO "cxone_sync"."_t" VALUES (1, 0)')
        cur.execute("ALTER SESSION SET ERROR_ON_NONDETERMINISTIC_MERGE = TRUE")
        with pytest.raises(
            snowflake.connector.errors.ProgrammingError, match=r"[Nn]ondeterministic|Duplicate"
        ):
            cur.execute(
                'MERGE INTO "cxone_sync"."_t" t USING (SELECT 1 k, 1 v UNION ALL SELECT 1, 2) s '
                "ON t.k = s.k WHEN MATCHED THEN UPDATE SET v = s.v"
            )
