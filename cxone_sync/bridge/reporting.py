"""The Reporting API's incremental endpoints (e.g. ``GET /contacts/completed``) for the bridge.

Documented (the ``tap-nice-incontact`` Singer tap, NICE's developer portal): ``GET
{api host}/inContactAPI/services/v{version}/contacts/completed?updatedSince=...`` answers
``{"completedContacts": [...]}``, at most 10,000 records per response, paged with ``skip``
(and ``top``); 204 No Content when nothing (more) is there; UTC times need a literal ``Z``.

A partition ``[start, end)`` of a reporting category holds the records *updated* in it: the
bridge asks ``updatedSince=start`` (ordered by the update column), pages until 204 or an empty
page (never trusting that a short page is the last), and keeps the rows updated before ``end``
(later ones belong to a later partition; the MERGE's newest-wins makes the table right).
JSON becomes Arrow through pyarrow's JSON reader with an explicit schema: declared columns get
their type, every other one is text (JSON numbers and objects are kept as their JSON text).
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from cxone_sync.bridge.convert import TYPE_NAMES, CsvFormatError, arrow_type
from cxone_sync.bridge.extraction import DataExtractionClient, ExtractionError, iso_z
from cxone_sync.catalog import UPDATED_AT

TOP = 10_000
MAX_PAGES = 10_000
DEFAULT_DATA_KEYS = {"contacts/completed": "completedContacts"}


def reporting_path(entity: str, version: str) -> str:
    return f"/inContactAPI/services/v{version.removeprefix('v')}/{entity.strip('/')}"


def fetch_updated(
    client: DataExtractionClient,
    entity: str,
    version: str,
    data_key: str,
    order_by: str,
    start: datetime,
) -> list[dict[str, Any]]:
    """Every record updated since ``start`` (all pages)."""
    path = reporting_path(entity, version)
    records: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        params = {
            "updatedSince": iso_z(start),
            "orderBy": f"{order_by} asc",
            "skip": str(len(records)),
            "top": str(TOP),
        }
        response = client._api("GET", path, None, params=params, paced=False)
        if response.status_code == 204 or not response.content.strip():
            return records
        try:
            body = response.json()
        except ValueError:
            raise ExtractionError(
                f"GET {path} answered {response.status_code} without JSON"
            ) from None
        page = body.get(data_key) if isinstance(body, dict) else None
        if not isinstance(page, list):
            raise ExtractionError(
                f"GET {path} answered without a {data_key!r} list "
                f"(keys: {sorted(body)[:10] if isinstance(body, dict) else type(body).__name__})"
            )
        if not page:
            return records
        records += [r for r in page if isinstance(r, dict)]
    raise ExtractionError(f"GET {path}: more than {MAX_PAGES} pages; stopped")


def records_to_table(
    records: list[dict[str, Any]],
    types: dict[str, str],
    *,
    what: str,
    updated_at: str | None,
    start: datetime,
    end: datetime,
) -> pa.Table:
    """Typed rows updated in ``[start, end)``; ``updated_at``: the record's update column."""
    names = list(dict.fromkeys(k for r in records for k in r))
    declared = {n: arrow_type(types[n]) for n in names if n in types}
    schema = pa.schema([(n, declared.get(n, pa.string())) for n in names])
    lines = [
        json.dumps(
            {
                k: v if k in declared or v is None or isinstance(v, str) else json.dumps(v)
                for k, v in r.items()
            }
        )
        for r in records
    ]
    if not records:
        table = pa.schema([(n, arrow_type(t)) for n, t in types.items()]).empty_table()
    else:
        try:
            table = pajson.read_json(
                io.BytesIO("\n".join(lines).encode()),
                parse_options=pajson.ParseOptions(explicit_schema=schema),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise CsvFormatError(
                f"{what}: a value does not fit its declared type ({str(exc)[:300]}); "
                "fix the entity's types in CXONE_EXTRACTION_ENTITIES"
            ) from None
    source = updated_at or UPDATED_AT
    if source not in table.column_names:
        raise CsvFormatError(f"{what}: no {source!r} column to place records by update time")
    stamps = table.column(source)
    if not pa.types.is_timestamp(stamps.type):
        stamps = pc.cast(stamps, TYPE_NAMES["timestamp"])
    if UPDATED_AT not in table.column_names:
        table = table.append_column(UPDATED_AT, stamps)
    lo = pa.scalar(start, TYPE_NAMES["timestamp"])
    hi = pa.scalar(end, TYPE_NAMES["timestamp"])
    # a record without an update time cannot be placed: kept, so the null gate blocks the
    # partition visibly instead of the record vanishing
    keep = pc.fill_null(pc.and_(pc.greater_equal(stamps, lo), pc.less(stamps, hi)), True)
    return table.filter(keep)
