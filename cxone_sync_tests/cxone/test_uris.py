from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cxone_sync.cxone.errors import ForeignFileError
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.uris import S3Location, parse_s3_uri, validate_job_files
from cxone_sync_tests.cxone import payloads
from cxone_sync_tests.cxone.payloads import BACKFILL_PREFIX, BUCKET, PREFIX

GOOD = payloads.file_uri("cdr", hour=14, part=3)


def _job(*uris: str, files: list[dict[str, object]] | None = None) -> Job:
    return Job.parse(payloads.job(output_files=list(uris), files=files))


def test_parse_s3_uri() -> None:
    location = parse_s3_uri("s3://bucket/a/b.parquet")

    assert location == S3Location("bucket", "a/b.parquet")
    assert str(location) == "s3://bucket/a/b.parquet"


@pytest.mark.parametrize("uri", ["https://bucket/key", "s3:/bucket/key", "s3:///key", "s3://b"])
def test_parse_s3_uri_refuses_malformed(uri: str) -> None:
    with pytest.raises(ValueError, match=r"s3://|bucket|key"):
        parse_s3_uri(uri)


def test_valid_job_files_become_refs_with_manifest_counts() -> None:
    refs = validate_job_files(Job.parse(payloads.job()), BUCKET, [PREFIX])

    assert [(r.data_type, r.part, r.record_count) for r in refs] == [
        ("cdr", 0, 7000),
        ("cdr", 1, 7000),
        ("acd", 0, 287),
    ]
    assert refs[0].partition_hour == datetime(2024, 3, 15, 14, tzinfo=UTC)
    assert refs[0].location.bucket == BUCKET
    assert refs[0].prefix == PREFIX
    assert refs[2].uri == payloads.file_uri("acd")


@pytest.mark.parametrize(
    "prefixes", [["exports/telephony"], [PREFIX, BACKFILL_PREFIX], ["exports/telephony/backfill"]]
)
def test_manual_export_under_a_nested_prefix_is_accepted(prefixes: list[str]) -> None:
    uri = payloads.file_uri("acd", prefix=BACKFILL_PREFIX)

    (ref,) = validate_job_files(_job(uri), BUCKET, prefixes)

    assert (ref.prefix, ref.data_type, ref.record_count) == (BACKFILL_PREFIX, "acd", None)


def test_manual_export_prefix_outside_the_download_prefix_must_be_allowed() -> None:
    uri = payloads.file_uri("cdr", prefix="backfills/telephony/")
    job = _job(GOOD, uri)

    with pytest.raises(ForeignFileError, match="outside every allowed prefix"):
        validate_job_files(job, BUCKET, [PREFIX])
    assert [
        r.prefix for r in validate_job_files(job, BUCKET, [PREFIX, "backfills/telephony/"])
    ] == [
        PREFIX,
        "backfills/telephony/",
    ]


def _key(rest: str) -> str:
    return f"s3://{BUCKET}/{PREFIX}{rest}"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://org-cxone-data-lake.s3.amazonaws.com/exports/telephony/x", "not an s3://"),
        (GOOD.replace("s3://", "s3a://"), "not an s3://"),
        (GOOD.replace(BUCKET, "someone-elses-bucket"), "in bucket 'someone-elses-bucket'"),
        (GOOD.replace(PREFIX, "exports/ivr/"), "outside every allowed prefix"),
        (_key("../ivr/cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet"), "'..'"),
        (_key("./cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet"), "'.'"),
        (_key("%2e%2e/cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet"), "percent"),
        (_key("cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet%00"), "percent"),
        (_key("..\\cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet"), "backslash"),
        (_key("cdr//year=2024/month=03/day=15/hour=14/part-00000.parquet"), "empty path"),
        (_key("cdr/year=2024/month=03/day=15/hour=14/"), "empty path"),
        (_key("cdr/year=2024/month=03/day=15/part-00000.parquet"), "layout"),
        (_key("cdr/year=2024/month=03/day=15/hour=14/part-0.parquet"), "layout"),
        (_key("cdr/year=2024/month=03/day=15/hour=14/part-00000.csv"), "layout"),
        (_key("cdr/year=2024/month=3/day=15/hour=14/part-00000.parquet"), "layout"),
        (_key("cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet/x"), "layout"),
        (_key("sub dir/cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet"), "layout"),
        (_key("CDR/year=2024/month=03/day=15/hour=14/part-00000.parquet"), "layout"),
        (_key("cdr/year=2024/month=13/day=15/hour=14/part-00000.parquet"), "valid UTC hour"),
        (_key("cdr/year=2024/month=02/day=30/hour=14/part-00000.parquet"), "valid UTC hour"),
        (_key("cdr/year=2024/month=03/day=15/hour=24/part-00000.parquet"), "valid UTC hour"),
    ],
)
def test_a_single_bad_file_refuses_the_whole_job(uri: str, reason: str) -> None:
    job = _job(GOOD, uri)

    with pytest.raises(ForeignFileError) as caught:
        validate_job_files(job, BUCKET, [PREFIX, BACKFILL_PREFIX])

    message = str(caught.value)
    assert reason in message
    assert message.startswith("job job-8f3a refused whole")
    assert repr(uri) in message
    assert repr(BUCKET) in message
    assert repr(PREFIX) in message and repr(BACKFILL_PREFIX) in message
    assert "destination_prefix" in message


def test_files_entries_are_checked_too() -> None:
    foreign = GOOD.replace(BUCKET, "other-bucket")
    files = [{"uri": foreign, "data_type": "cdr", "record_count": 1, "size_bytes": 1}]

    with pytest.raises(ForeignFileError, match="other-bucket"):
        validate_job_files(_job(GOOD, files=files), BUCKET, [PREFIX])


def test_files_data_type_must_match_the_path() -> None:
    files = [{"uri": GOOD, "data_type": "acd", "record_count": 1, "size_bytes": 1}]

    with pytest.raises(ForeignFileError, match="data type 'acd' but its path holds 'cdr'"):
        validate_job_files(_job(GOOD, files=files), BUCKET, [PREFIX])


def test_a_job_without_files_has_no_refs() -> None:
    assert validate_job_files(_job(), BUCKET, [PREFIX]) == []


def test_at_least_one_prefix_is_required() -> None:
    with pytest.raises(ValueError, match="at least one allowed prefix"):
        validate_job_files(_job(GOOD), BUCKET, [])
