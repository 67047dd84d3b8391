"""Raw API payloads as CXone sends them (CONTRACT §1), for parsing and client tests."""

from __future__ import annotations

from typing import Any

BUCKET = "org-cxone-data-lake"
PREFIX = "exports/telephony/"
BACKFILL_PREFIX = "exports/telephony/backfill/"


def file_uri(data_type: str = "cdr", hour: int = 14, part: int = 0, prefix: str = PREFIX) -> str:
    return (
        f"s3://{BUCKET}/{prefix}{data_type}/year=2024/month=03/day=15/hour={hour:02d}"
        f"/part-{part:05d}.parquet"
    )


def job(job_id: str = "job-8f3a", **overrides: Any) -> dict[str, Any]:
    uris = [file_uri("cdr"), file_uri("cdr", part=1), file_uri("acd")]
    payload: dict[str, Any] = {
        "id": job_id,
        "download_id": "dl-telephony-prod",
        "category": "telephony",
        "status": "COMPLETED",
        "trigger": "SCHEDULED",
        "interval_start": "2024-03-15T14:00:00Z",
        "interval_end": "2024-03-15T15:00:00Z",
        "start_time": "2024-03-15T15:20:00Z",
        "end_time": "2024-03-15T15:42:18Z",
        "updated_at": "2024-03-15T15:42:18Z",
        "output_files": uris,
        "files": [
            {"uri": uris[0], "data_type": "cdr", "record_count": 7000, "size_bytes": 600_000},
            {"uri": uris[1], "data_type": "cdr", "record_count": 7000, "size_bytes": 634_567},
            {"uri": uris[2], "data_type": "acd", "record_count": 287, "size_bytes": 20_000},
        ],
        "record_count": 14287,
        "error_details": None,
    }
    return payload | overrides


def download_config(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "download_id": "dl-telephony-prod",
        "category": "telephony",
        "data_types": ["cdr", "acd", "skill_group"],
        "format": "parquet",
        "compression": "zstd",
        "partitioning": {"enabled": True, "structure": "year={yyyy}/month={MM}/day={dd}/hour={HH}"},
        "schedule": {"frequency": "HOURLY", "offset_minutes": 20},
        "destination": {"type": "aws_s3", "bucket": BUCKET, "prefix": PREFIX},
    }
    return payload | overrides
