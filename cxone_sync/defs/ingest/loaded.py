"""What each partition was last loaded from, read back from Dagster's event log.

The BI table's materialization of a partition carries the ids of the COMPLETED export jobs its
load considered (metadata ``job_ids`` / ``job_ids_exact``, written per partition by single and
ranged runs alike). The jobs sensor, the reconciliation and ``cxone-sync sync`` compare them with
the jobs CXone lists now: a partition whose jobs are all among them needs no new load.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from cxone_sync.catalog import Category
from cxone_sync.defs.ingest.names import JOB_IDS_JSON, latest_materializations, table_key

QUERY_PARTITIONS = 400
"""Partitions per event-log query (Dagster returns at most 10,000 records per query)."""


def loaded_jobs(
    instance: dg.DagsterInstance, category: Category, keys: Sequence[str]
) -> dict[str, set[str] | None]:
    """partition -> ids of the jobs its latest load considered, over every data type of the
    category (None: some table of the category never loaded the partition)."""
    out: dict[str, set[str] | None] = {key: set() for key in keys}
    for dt in category.data_types:
        merged: dict[str, dg.EventLogRecord] = {}
        for i in range(0, len(keys), QUERY_PARTITIONS):
            chunk = list(keys[i : i + QUERY_PARTITIONS])
            merged.update(latest_materializations(instance, table_key(dt), chunk))
        for key in keys:
            ids = job_ids(merged.get(key))
            current = out[key]
            if ids is None:
                out[key] = None
            elif current is not None:
                current.update(ids)
    return out


def job_ids(record: dg.EventLogRecord | None) -> set[str] | None:
    """The job ids of one materialization record (None: no record, or one without them)."""
    mat = record.asset_materialization if record is not None else None
    if mat is None or "job_ids" not in mat.metadata:
        return None
    exact = getattr(mat.metadata.get(JOB_IDS_JSON), "value", None)
    if isinstance(exact, list):  # the raw ids, whatever they hold (',' included)
        return {str(v) for v in exact}
    value = getattr(mat.metadata["job_ids"], "value", "") or ""
    return {v.strip() for v in str(value).split(",") if v.strip()}
