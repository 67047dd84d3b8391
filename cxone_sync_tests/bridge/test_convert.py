"""CSV from the Data Extraction API to typed Arrow: BOM, quoting, line breaks, empty answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from cxone_sync.bridge.convert import CsvFormatError, csv_to_table
from cxone_sync.simulator.extraction import csv_bytes

TYPES = {"id": "string", "score": "int32", "at": "timestamp", "updated_at": "timestamp"}


def test_bom_quotes_line_breaks_nulls_and_new_columns() -> None:
    body = (
        b"\xef\xbb\xbfid,score,comment,at,updated_at,code\r\n"
        b'a1,5,"says ""hi"", then\nleaves",2024-03-15T14:00:00Z,2024-03-15T14:05:00Z,007\r\n'
        b'a2,,"",2024-03-15T14:10:00.5+01:00,2024-03-15T14:06:00Z,\r\n'
    )
    table = csv_to_table(body, TYPES, what="job j1")
    assert table.column_names == ["id", "score", "comment", "at", "updated_at", "code"]
    assert table.schema.field("score").type == pa.int32()
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("code").type == pa.string()  # new column: text, never guessed
    assert table.column("comment").to_pylist() == ['says "hi", then\nleaves', ""]
    assert table.column("score").to_pylist() == [5, None]
    assert table.column("code").to_pylist() == ["007", None]
    assert table.column("at").to_pylist()[1] == datetime(2024, 3, 15, 13, 10, 0, 500000, UTC)


@pytest.mark.parametrize("body", [b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"])
def test_empty_answer_is_an_empty_typed_table(body: bytes) -> None:
    table = csv_to_table(body, TYPES, what="job j2")
    assert table.num_rows == 0
    assert table.schema.field("score").type == pa.int32()


def test_header_only_keeps_its_columns() -> None:
    table = csv_to_table(b"\xef\xbb\xbfid,extra\n", TYPES, what="job j3")
    assert table.num_rows == 0
    assert table.column_names == ["id", "extra"]


def test_a_value_that_does_not_fit_names_the_job_and_column() -> None:
    body = b"id,score\n" + b"".join(b"a%d,%d\n" % (i, i) for i in range(3)) + b"a9,many\n"
    with pytest.raises(CsvFormatError, match=r"job j4.*score|job j4.*column #1"):
        csv_to_table(body, TYPES, what="job j4")


def test_updated_at_from_a_named_column_or_the_extraction_time() -> None:
    body = b"id,lastUpdateTime\nx,2024-03-15T14:00:00Z\n"
    named = csv_to_table(
        body, {"lastUpdateTime": "timestamp"}, what="j", updated_at="lastUpdateTime"
    )
    assert named.column("updated_at").to_pylist() == [datetime(2024, 3, 15, 14, tzinfo=UTC)]
    at = datetime(2024, 3, 16, tzinfo=UTC)
    stamped = csv_to_table(b"id\nx\ny\n", {}, what="j", extracted_at=at)
    assert stamped.column("updated_at").to_pylist() == [at, at]


def test_the_fakes_csv_round_trips_exactly() -> None:
    table = pa.table(
        {
            "id": ["a,b", 'q"', "multi\nline", None, ""],
            "n": pa.array([1, None, 3, 4, 5], pa.int64()),
            "f": pa.array([0.1, 2.5, None, -1.25, 3.0], pa.float32()),
            "ok": [True, False, None, True, False],
            "updated_at": pa.array([1, 2, 3, 4, 5], pa.timestamp("us", tz="UTC")),
        }
    )
    types = {"id": "string", "n": "int64", "f": "float32", "ok": "bool", "updated_at": "timestamp"}
    body = csv_bytes(table)
    assert body.startswith(b"\xef\xbb\xbf")
    assert csv_to_table(body, types, what="j").equals(table)
    assert csv_bytes(table.slice(0, 0)) == b""
