"""Which failures the warehouse steps retry (transient) and which fail at once."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
from botocore.exceptions import ClientError

from cxone_sync.cxone.errors import NotFoundError, TransientAPIError
from cxone_sync.defs.retries import is_transient
from cxone_sync.ingest.stage import NoCompletedExportError
from cxone_sync.storage.staging import StagingError, TransientStagingError
from cxone_sync.warehouse.base import SchemaError
from cxone_sync.warehouse.locks import WarehouseLockedError


def test_only_transient_failures_are_retried() -> None:
    def s3_error(status: int, code: str) -> ClientError:
        response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(response, "GetObject")  # type: ignore[arg-type]

    lock = duckdb.IOException('Could not set lock on file "/x.duckdb": Conflicting lock is held')
    wrapped = RuntimeError("staging failed")
    wrapped.__cause__ = TransientAPIError("GET /jobs answered 503", status_code=503)
    transient = [
        lock,
        WarehouseLockedError(Path("/x.duckdb"), 1.0, 3, lock),
        TransientAPIError("GET /jobs timed out"),
        s3_error(503, "ServiceUnavailable"),
        s3_error(400, "SlowDown"),
        TransientStagingError("cannot read s3://b/k: S3 answered InternalError (HTTP 500)"),
        wrapped,
    ]
    permanent = [
        NoCompletedExportError("no COMPLETED export"),
        SchemaError("t", "c", "INTEGER", "VARCHAR", None, "changed type incompatibly"),
        NotFoundError("GET /jobs/x", 404, ""),
        StagingError("s3://b/k is listed by a COMPLETED job but is not in the bucket"),
        s3_error(403, "AccessDenied"),
        dg.Failure("blocked"),
        duckdb.IOException("Cannot open file: not a valid DuckDB database"),
    ]
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)
