from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxone_sync.cxone.errors import ManifestError
from cxone_sync.cxone.models import DownloadConfig, Job, JobStatus, JobTrigger
from cxone_sync.timefmt import utc_iso as as_utc_iso
from cxone_sync_tests.cxone import payloads


def test_job_parses_every_contract_field() -> None:
    job = Job.parse(payloads.job())

    assert job.id == "job-8f3a"
    assert job.status is JobStatus.COMPLETED
    assert job.trigger is JobTrigger.SCHEDULED
    assert job.interval_start == datetime(2024, 3, 15, 14, tzinfo=UTC)
    assert job.end_time == datetime(2024, 3, 15, 15, 42, 18, tzinfo=UTC)
    assert job.record_count == 14287
    assert job.files is not None
    assert [f.record_count for f in job.files] == [7000, 7000, 287]
    assert job.error_details is None


def test_timestamps_with_an_offset_become_utc() -> None:
    job = Job.parse(payloads.job(updated_at="2024-03-15T17:42:18+02:00"))

    assert job.updated_at == datetime(2024, 3, 15, 15, 42, 18, tzinfo=UTC)
    assert job.updated_at.utcoffset() == timedelta(0)


def test_unknown_fields_are_ignored_and_optional_ones_may_be_absent() -> None:
    raw = payloads.job(new_cxone_field={"x": 1}, end_time=None, status="RUNNING")
    del raw["files"], raw["error_details"]

    job = Job.parse(raw)

    assert job.files is None
    assert job.end_time is None
    assert job.status is JobStatus.RUNNING


def test_file_uris_cover_output_files_and_files_once() -> None:
    extra = payloads.file_uri("skill_group")
    raw = payloads.job()
    raw["files"].append(
        {"uri": extra, "data_type": "skill_group", "record_count": 0, "size_bytes": 1}
    )

    assert Job.parse(raw).file_uris == [*raw["output_files"], extra]


def test_ill_typed_nested_field_names_job_field_and_problem() -> None:
    raw = payloads.job()
    raw["files"][2]["record_count"] = "abc"

    with pytest.raises(ManifestError) as caught:
        Job.parse(raw)

    assert str(caught.value) == (
        "job job-8f3a: field 'files[2].record_count': expected an integer, got 'abc'"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"updated_at": None}, "field 'updated_at': expected an ISO 8601 timestamp string"),
        ({"interval_start": "2024-03-15T14:00:00"}, "expected a timestamp with a time zone"),
        ({"interval_end": "yesterday"}, "field 'interval_end': expected an ISO 8601 timestamp"),
        ({"status": "DONE"}, "field 'status': input should be 'QUEUED', 'RUNNING'"),
        ({"record_count": "14287"}, "field 'record_count': expected an integer, got '14287'"),
        ({"record_count": True}, "field 'record_count': expected an integer, got True"),
        ({"record_count": -1}, "field 'record_count': expected a number >= 0, got -1"),
        ({"output_files": "s3://x/y"}, "field 'output_files': expected a list"),
        ({"files": [1]}, "field 'files[0]': expected an object, got 1"),
        ({"id": ""}, "field 'id': expected a non-empty string"),
    ],
)
def test_ill_typed_fields_are_refused(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ManifestError, match=r"^job ") as caught:
        Job.parse(payloads.job(**change))

    assert expected in str(caught.value)


def test_missing_required_field_is_named() -> None:
    raw = payloads.job()
    del raw["updated_at"]

    with pytest.raises(ManifestError, match=r"^job job-8f3a: field 'updated_at': missing$"):
        Job.parse(raw)


def test_unreadable_id_and_non_object_are_reported() -> None:
    with pytest.raises(ManifestError, match=r"^job \(unreadable id\): field 'id'"):
        Job.parse(payloads.job(id=42))
    with pytest.raises(ManifestError, match="expected a JSON object, got list"):
        Job.parse([payloads.job()])


def test_download_config_parses_nested_sections() -> None:
    config = DownloadConfig.parse(payloads.download_config(extra="ignored"))

    assert config.destination.bucket == "org-cxone-data-lake"
    assert config.destination.prefix == "exports/telephony/"
    assert config.schedule.offset_minutes == 20
    assert config.partitioning.enabled is True
    assert config.data_types == ["cdr", "acd", "skill_group"]


def test_download_config_error_names_download_and_nested_field() -> None:
    raw = payloads.download_config(destination={"type": "aws_s3", "prefix": "p/"})

    with pytest.raises(ManifestError) as caught:
        DownloadConfig.parse(raw)

    assert str(caught.value) == "download dl-telephony-prod: field 'destination.bucket': missing"


def test_as_utc_iso_renders_z_and_refuses_naive() -> None:
    offset = datetime(2024, 3, 15, 17, 0, tzinfo=UTC).astimezone(
        datetime.now(UTC).astimezone().tzinfo
    )
    assert as_utc_iso(offset) == "2024-03-15T17:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        as_utc_iso(datetime(2024, 3, 15))
