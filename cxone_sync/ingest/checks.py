"""Names and plain results of the quality gates, independent of Dagster.

The staging step evaluates these per partition; ``defs`` turns them into blocking
``AssetCheckResult``s on the staged asset, so a failing gate stops the MERGE of that partition
only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RECORD_COUNT = "record_count"
CHECKSUM = "checksum"
SCHEMA_DRIFT = "schema_drift"
READABLE = "readable_through_kms"
FILE_LOCATION = "file_location"
RECOVERED = "recovered"
COMPLETED_EXPORT = "completed_export"

GATE_CHECKS: tuple[str, ...] = (RECORD_COUNT, CHECKSUM, SCHEMA_DRIFT, READABLE, FILE_LOCATION)
"""Evaluated on the staged files of a partition; a failure blocks the partition."""

BLOCKING_CHECKS: tuple[str, ...] = (COMPLETED_EXPORT, *GATE_CHECKS)
"""Every blocking check of the staged asset: a COMPLETED export exists, then the gates."""

TABLE_CHECKS: tuple[str, ...] = (RECOVERED,)
"""Checks of the BI table partition (not blocking)."""

RECOVERY_METADATA = "cxone/recovery"
"""Metadata key of the observation the jobs sensor records on a partition it gave up on."""

CHECK_DESCRIPTIONS: dict[str, str] = {
    RECORD_COUNT: "Rows in the job's files against the manifest's record_count, within the "
    "category's tolerance (CXONE_RECORD_COUNT_TOLERANCE, CXONE_RECORD_COUNT_TOLERANCES).",
    CHECKSUM: "SHA-256 of every file as read against S3's checksum, its size and the audit trail.",
    SCHEMA_DRIFT: "Parquet schema against the schema registry: additive drift evolves the table; "
    "a missing key or updated_at, null keys, an incompatible type change, a key or updated_at of "
    "an unusable type, a decimal wider than 38 digits or column names a table cannot hold block.",
    READABLE: "Every file of the partition can be read and decrypted through the KMS key, and is "
    "whole Parquet: its footer agrees with itself and its pages hold the rows it claims.",
    FILE_LOCATION: "Every file of the job lies in the export bucket under the download's prefix.",
    COMPLETED_EXPORT: "The interval has a COMPLETED CXone export job (asked of the API). Fails "
    "while none exists (not due yet, or the export FAILED / TIMED_OUT and no re-export completed) "
    "or when the API could not be asked; the partition loads once an export completes.",
    RECOVERED: "The interval has a COMPLETED export and is loaded. Fails when its export failed "
    "and the bounded manual re-exports ran out (the jobs sensor reports it, with the reason).",
}

DEFAULT_RECORD_COUNT_TOLERANCE = 0.05
"""The record-count tolerance when no setting gives one (CXONE_RECORD_COUNT_TOLERANCE's default)."""


def percent(fraction: float) -> str:
    """0.05 -> '5%', 0.125 -> '12.5%'."""
    return f"{fraction * 100:.4g}%"


def check_description(
    name: str, record_count_tolerance: float = DEFAULT_RECORD_COUNT_TOLERANCE
) -> str:
    """A check's description as the UI shows it; the record-count check names the tolerance in
    force for its category (built from the settings with the definitions)."""
    if name == RECORD_COUNT:
        return (
            "Rows in the job's files against the manifest's record_count (tolerance "
            f"{percent(record_count_tolerance)}: CXONE_RECORD_COUNT_TOLERANCES for this category, "
            "else CXONE_RECORD_COUNT_TOLERANCE)."
        )
    return CHECK_DESCRIPTIONS[name]


Severity = Literal["ERROR", "WARN"]


@dataclass
class Finding:
    """One problem (or notable fact) found while verifying a job's files."""

    check: str
    job_id: str
    message: str
    blocking: bool
    uri: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def summarize(
    name: str, findings: list[Finding], superseded: set[str], base: dict[str, Any]
) -> CheckOutcome:
    """Fold the findings of one check into one per-partition outcome.

    Blocking findings of a job that a later clean job superseded degrade to a warning: the
    partition loads from the clean re-export.
    """
    mine = [f for f in findings if f.check == name]
    live = [f for f in mine if f.blocking and f.job_id not in superseded]
    metadata = dict(base)
    if mine:
        metadata["findings"] = [
            {
                "job_id": f.job_id,
                "uri": f.uri,
                "message": f.message,
                **f.numbers,
                "superseded": f.job_id in superseded,
            }
            for f in mine[:50]
        ]
    if live:
        first = live[0]
        more = f" (+{len(live) - 1} more)" if len(live) > 1 else ""
        return CheckOutcome(name, False, "ERROR", first.message + more, metadata)
    if mine:
        first = mine[0]
        note = " (superseded by a later clean export)" if first.job_id in superseded else ""
        return CheckOutcome(name, True, "WARN", first.message + note, metadata)
    return CheckOutcome(name, True, "ERROR", "ok", metadata)
