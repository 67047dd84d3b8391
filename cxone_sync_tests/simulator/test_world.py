"""The simulated tenant against a real moto S3 server over HTTP: schedule, files, faults, API."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest

from cxone_sync.catalog import CATEGORIES, DEFAULT_OFFSET, category, default_download_id
from cxone_sync.simulator.config import CountSkew, DriftSpec, SimConfig, parse_time
from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync.simulator.world import BadRequest, Conflict, NotFound, World
from cxone_sync_tests.fixtures import build_config

T0 = datetime(2024, 3, 15, tzinfo=UTC)
TEL = default_download_id("telephony")
WFM = default_download_id("workforce_management")
SPEECH = default_download_id("speech")
IVR = default_download_id("ivr")


def new_world(endpoint: S3Endpoint, **overrides: Any) -> World:
    """A small-scale world on a fresh versioned bucket of ``endpoint``."""
    base = SimConfig(scale=0.05, start=T0, bucket=f"sim-{uuid.uuid4().hex[:12]}")
    config = build_config(base, **overrides)
    client = endpoint.client()
    client.create_bucket(Bucket=config.bucket)
    client.put_bucket_versioning(
        Bucket=config.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return World(config, client)


def key_of(world: World, uri: str) -> str:
    prefix = f"s3://{world.config.bucket}/"
    assert uri.startswith(prefix)
    return uri[len(prefix) :]


def read(world: World, uri: str) -> Any:
    body = world._s3.get_object(Bucket=world.config.bucket, Key=key_of(world, uri))["Body"]
    return pq.read_table(io.BytesIO(body.read()))


def jobs(world: World, download_id: str = TEL, **filters: Any) -> list[dict[str, Any]]:
    return world.list_jobs(download_id, **filters)


def kinds(world: World, kind: str) -> list[dict[str, Any]]:
    return [e for e in world.fault_log if e["kind"] == kind]


# --- schedule -----------------------------------------------------------------------------------


def test_hourly_job_is_queued_twenty_minutes_after_interval_end_then_completes(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(s3_endpoint, categories=("telephony",))
    assert world.advance_to(T0 + timedelta(hours=1, minutes=19)) == []
    changed = world.advance_to(T0 + timedelta(hours=1, minutes=20))
    assert [(j["status"], j["interval_start"], j["updated_at"]) for j in changed] == [
        ("QUEUED", "2024-03-15T00:00:00Z", "2024-03-15T01:20:00Z")
    ]
    assert changed[0]["start_time"] is None and changed[0]["output_files"] == []
    world.advance(timedelta(minutes=2))
    (running,) = jobs(world)
    assert running["status"] == "RUNNING" and running["end_time"] is None
    world.advance_to(T0 + timedelta(hours=2))
    (done,) = jobs(world)
    assert done["status"] == "COMPLETED" and done["error_details"] is None
    start, end = parse_time(done["start_time"]), parse_time(done["end_time"])
    assert T0 + timedelta(hours=1, minutes=20) < start < end <= T0 + timedelta(hours=1, minutes=45)
    assert done["updated_at"] == done["end_time"]


def test_speech_export_waits_for_its_transcription_lag(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("speech",))
    world.advance_to(T0 + timedelta(hours=12))
    speech = category("speech")
    created = {}
    for job in jobs(world, SPEECH):
        interval_end = parse_time(job["interval_end"])
        queued = world.scheduled_at(speech, parse_time(job["interval_start"]))
        created[job["interval_start"]] = queued - interval_end - DEFAULT_OFFSET
        assert parse_time(job["start_time"]) > queued
    assert len(created) >= 9
    assert all(speech.lag_min <= lag <= speech.lag_max for lag in created.values())
    assert len(set(created.values())) > 1


def test_six_hourly_categories_export_at_00_06_12_18_into_the_first_hour_folder(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(s3_endpoint, categories=("workforce_management",))
    world.advance_to(T0 + timedelta(hours=6, minutes=19))
    assert jobs(world, WFM) == []
    world.advance_to(T0 + timedelta(days=1, hours=1))
    done = jobs(world, WFM)
    assert [j["interval_start"][11:16] for j in done] == ["00:00", "06:00", "12:00", "18:00"]
    assert done[1]["interval_end"] == "2024-03-15T12:00:00Z"
    assert done[1]["output_files"] == [
        f"s3://{world.config.bucket}/exports/workforce_management/adherence/"
        "year=2024/month=03/day=15/hour=06/part-00000.parquet"
    ]


# --- files ---------------------------------------------------------------------------------------


def test_files_match_layout_and_manifest_when_read_back_from_s3(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("telephony",), compression="snappy")
    world.advance_to(T0 + timedelta(hours=2))
    (job,) = jobs(world)
    assert [f["uri"] for f in job["files"]] == job["output_files"]
    assert job["record_count"] == sum(f["record_count"] for f in job["files"])
    for f in job["files"]:
        assert f["uri"].endswith(
            f"/exports/telephony/{f['data_type']}/year=2024/month=03/day=15/hour=00/part-00000.parquet"
        )
        head = world._s3.head_object(
            Bucket=world.config.bucket, Key=key_of(world, f["uri"]), ChecksumMode="ENABLED"
        )
        assert head["ContentLength"] == f["size_bytes"]
        assert head.get("ChecksumSHA256")
        table = read(world, f["uri"])
        assert table.num_rows == f["record_count"]
        dt = category("telephony").data_type(f["data_type"])
        assert set(dt.key) | {"updated_at"} <= set(table.column_names)
        assert table.schema.field("updated_at").type.tz == "UTC"
        key = table.select(list(dt.key)).to_pylist()
        assert len({tuple(r.values()) for r in key}) == table.num_rows
        meta = pq.ParquetFile(
            io.BytesIO(
                world._s3.get_object(Bucket=world.config.bucket, Key=key_of(world, f["uri"]))[
                    "Body"
                ].read()
            )
        ).metadata
        assert meta.row_group(0).column(0).compression == "SNAPPY"
    cdr = read(world, next(f["uri"] for f in job["files"] if f["data_type"] == "cdr"))
    for column in (
        "call_uuid",
        "contact_id",
        "ani",
        "dnis",
        "skill_name",
        "agent_id",
        "disposition_name",
        "talk_seconds",
        "abandoned",
        "point_of_contact",
    ):
        assert column in cdr.column_names


def test_skewed_manifest_disagrees_with_the_rows_in_the_file(s3_endpoint: S3Endpoint) -> None:
    world = new_world(
        s3_endpoint,
        categories=("telephony",),
        record_count_skew=(CountSkew("telephony", T0, 20.0),),
    )
    world.advance_to(T0 + timedelta(hours=3))
    skewed, clean = jobs(world)
    for f in skewed["files"]:
        rows = read(world, f["uri"]).num_rows
        assert f["record_count"] == round(rows * 1.2) != rows
    assert all(read(world, f["uri"]).num_rows == f["record_count"] for f in clean["files"])
    (entry,) = kinds(world, "record_count_skew")
    assert entry["job_id"] == skewed["id"] and entry["detail"] == {"percent": 20.0}


def test_same_seed_same_world_other_seed_other_world(s3_endpoint: S3Endpoint) -> None:
    def run(seed: int) -> tuple[list[Any], list[Any], list[Any]]:
        world = new_world(s3_endpoint, seed=seed, faults=SimConfig().faults.chaos())
        world.advance_to(T0 + timedelta(hours=8))
        everything = [j for d in world.download_ids().values() for j in jobs(world, d)]
        log = [{k: v for k, v in e.items() if k != "uri"} for e in world.fault_log]
        cdr = read(world, jobs(world)[0]["output_files"][1]).to_pylist()
        strip = [
            {k: v for k, v in j.items() if k not in ("output_files", "files")} for j in everything
        ]
        return strip, log, cdr

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first[0] != other[0] and first[2] != other[2]


# --- faults --------------------------------------------------------------------------------------


def test_failed_and_timed_out_jobs_leave_placeholders_and_no_files(s3_endpoint: S3Endpoint) -> None:
    world = new_world(
        s3_endpoint,
        categories=("telephony",),
        failed_intervals=(T0,),
        timed_out_intervals=(T0 + timedelta(hours=1),),
    )
    world.advance_to(T0 + timedelta(hours=4))
    failed, timed_out = (j for j in jobs(world) if j["status"] != "COMPLETED")
    assert failed["status"] == "FAILED" and "failed" in failed["error_details"]
    assert timed_out["status"] == "TIMED_OUT" and "timed out" in timed_out["error_details"]
    assert parse_time(timed_out["end_time"]) - parse_time(timed_out["start_time"]) == timedelta(
        hours=1
    )
    for job in (failed, timed_out):
        assert job["output_files"] == [] and job["files"] == [] and job["record_count"] == 0
    left = world._s3.list_objects_v2(
        Bucket=world.config.bucket,
        Prefix="exports/telephony/cdr/year=2024/month=03/day=15/hour=00/",
    )["Contents"]
    assert [o["Key"].rsplit("/", 1)[1] for o in left] == ["part-00000.parquet"]
    assert [e["job_id"] for e in kinds(world, "failed")] == [failed["id"]]
    assert [e["job_id"] for e in kinds(world, "timed_out")] == [timed_out["id"]]
    assert {e["job_id"] for e in kinds(world, "placeholder")} == {failed["id"], timed_out["id"]}


def test_placeholder_is_visible_while_running_and_replaced_on_completion(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(s3_endpoint, categories=("telephony",), placeholder_rate=1.0)
    world.advance_to(T0 + timedelta(hours=1, minutes=22))
    (job,) = jobs(world)
    assert job["status"] == "RUNNING" and job["output_files"] == []
    placeholders = kinds(world, "placeholder")
    assert len(placeholders) == 3
    key = key_of(world, placeholders[0]["uri"])
    early = world._s3.get_object(Bucket=world.config.bucket, Key=key)["Body"].read()
    assert not early.endswith(b"PAR1")
    world.advance_to(T0 + timedelta(hours=2))
    (job,) = jobs(world)
    assert placeholders[0]["uri"] in job["output_files"]
    versions = world._s3.list_object_versions(Bucket=world.config.bucket, Prefix=key)["Versions"]
    assert len(versions) == 2
    assert read(world, placeholders[0]["uri"]).num_rows > 0


def test_duplicate_export_completes_twice_with_the_same_rows_in_other_files(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(s3_endpoint, categories=("telephony",), duplicate_export_intervals=(T0,))
    world.advance_to(T0 + timedelta(hours=2))
    first, second = jobs(world)
    assert first["status"] == second["status"] == "COMPLETED" and first["id"] != second["id"]
    assert first["interval_start"] == second["interval_start"]
    assert set(first["output_files"]).isdisjoint(second["output_files"])
    assert all("part-00001" in uri for uri in second["output_files"])
    rows = [read(world, job["output_files"][1]).sort_by("call_uuid") for job in (first, second)]
    assert rows[0].equals(rows[1])
    (entry,) = kinds(world, "duplicate_export")
    assert entry["job_id"] == first["id"]


def test_row_faults_late_updates_stale_redeliveries_and_in_file_duplicates(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(
        s3_endpoint,
        categories=("digital",),
        late_update_rate=0.2,
        stale_redelivery_rate=0.2,
        in_file_duplicate_rate=0.1,
        late_update_delay=timedelta(hours=2),
    )
    world.advance_to(T0 + timedelta(hours=4))
    dl = default_download_id("digital")
    first, _, third = (read(world, j["output_files"][0]) for j in jobs(world, dl)[:3])
    original = dict(
        zip(first["interaction_id"].to_pylist(), first["updated_at"].to_pylist(), strict=True)
    )
    counts: dict[str, int] = {}
    for key in third["interaction_id"].to_pylist():
        counts[key] = counts.get(key, 0) + 1
    reused = [k for k in counts if k in original]
    assert reused, "late updates and stale re-deliveries reuse keys of two intervals earlier"
    newer = older = 0
    for key, ts in zip(
        third["interaction_id"].to_pylist(), third["updated_at"].to_pylist(), strict=True
    ):
        if key in original:
            newer += ts > original[key]
            older += ts < original[key]
    assert newer and older
    assert any(n > 1 for n in counts.values())
    for kind in ("late_update", "stale_redelivery", "in_file_duplicate", "shuffle_rows"):
        assert kinds(world, kind), kind


def test_omitted_files_list_and_rewritten_bytes(s3_endpoint: S3Endpoint) -> None:
    world = new_world(
        s3_endpoint, categories=("telephony",), omit_files_rate=1.0, replaced_bytes=(T0,)
    )
    world.advance_to(T0 + timedelta(hours=1, minutes=40))
    (job,) = jobs(world)
    assert "files" not in job and len(job["output_files"]) == 3
    before = read(world, job["output_files"][1])
    assert job["record_count"] == sum(read(world, u).num_rows for u in job["output_files"])
    world.advance_to(T0 + timedelta(hours=2))
    key = key_of(world, job["output_files"][1])
    versions = world._s3.list_object_versions(Bucket=world.config.bucket, Prefix=key)["Versions"]
    assert len(versions) == 2
    after = read(world, job["output_files"][1])
    assert after.num_rows == before.num_rows and not after.equals(before)
    assert after.sort_by("call_uuid").equals(before.sort_by("call_uuid"))
    assert len(kinds(world, "replaced_bytes")) == 3 and kinds(world, "omit_files")


def test_denied_reads_null_keys_and_drift_are_recorded(s3_endpoint: S3Endpoint) -> None:
    hour1 = T0 + timedelta(hours=1)
    world = new_world(
        s3_endpoint,
        categories=("telephony",),
        denied_read=(T0,),
        null_key_intervals=(hour1,),
        drift=(DriftSpec("cdr", hour1, None, "incompatible_type", "talk_seconds"),),
    )
    world.advance_to(T0 + timedelta(hours=3))
    first, second = jobs(world)
    assert world.unreadable_keys() == {
        (world.config.bucket, key_of(world, uri)) for uri in first["output_files"]
    }
    cdr = read(world, second["output_files"][1])
    assert cdr["call_uuid"].null_count >= 1
    assert str(cdr.schema.field("talk_seconds").type) == "string"
    assert len(kinds(world, "denied_read")) == 3 and len(kinds(world, "null_key")) == 3
    (drift,) = kinds(world, "drift")
    assert drift["detail"] == {
        "drift": "incompatible_type",
        "column": "talk_seconds",
        "breaking": True,
    }


# --- API surface ---------------------------------------------------------------------------------


def test_download_config_and_job_listing_filters(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint)
    assert world.download_ids() == {c.name: default_download_id(c.name) for c in CATEGORIES}
    config = world.download_config(TEL)
    assert config is not None
    assert config["data_types"] == ["cdr", "acd", "skill_group"]
    assert config["destination"] == {
        "type": "aws_s3",
        "bucket": world.config.bucket,
        "prefix": "exports/telephony/",
    }
    assert config["schedule"] == {"frequency": "HOURLY", "offset_minutes": 20}
    assert world.download_config("dl-nope") is None
    world.advance_to(T0 + timedelta(hours=5, minutes=20, seconds=10))
    listed = jobs(world)
    assert [j["updated_at"] for j in listed] == sorted(j["updated_at"] for j in listed)
    assert {j["status"] for j in listed} == {"COMPLETED", "QUEUED"}
    cut = listed[2]["updated_at"]
    assert jobs(world, updated_since=parse_time(cut)) == listed[2:]
    assert jobs(world, statuses=("QUEUED",)) == listed[-1:]
    assert jobs(world, category="ivr") == []
    assert world.get_job(TEL, listed[0]["id"]) == listed[0]
    assert world.get_job(WFM, listed[0]["id"]) is None
    with pytest.raises(NotFound):
        world.list_jobs("dl-nope")


def test_manual_export_lifecycle_and_overwrite_false(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("telephony",))
    world.advance_to(T0 + timedelta(hours=4))
    body = {
        "category": "telephony",
        "start_time": "2024-03-15T00:00:00Z",
        "end_time": "2024-03-15T02:00:00Z",
        "destination_prefix": "exports/telephony/",
    }
    job = world.manual_export(TEL, body)
    assert (job["status"], job["trigger"], job["updated_at"]) == (
        "QUEUED",
        "MANUAL",
        "2024-03-15T04:00:00Z",
    )
    with pytest.raises(Conflict):
        world.manual_export(TEL, {**body, "start_time": "2024-03-15T01:00:00Z"})
    world.advance(timedelta(minutes=2))
    assert world.get_job(TEL, job["id"])["status"] == "RUNNING"  # type: ignore[index]
    world.advance(timedelta(minutes=10))
    done = world.get_job(TEL, job["id"])
    assert done is not None and done["status"] == "COMPLETED"
    assert len(done["files"]) == 6
    for f in done["files"]:
        assert f["uri"].endswith("part-00001.parquet")
        assert read(world, f["uri"]).num_rows == f["record_count"]
    hours = sorted({f["uri"].split("/hour=")[1][:2] for f in done["files"]})
    assert hours == ["00", "01"]
    queued = world.manual_export(TEL, {**body, "destination_prefix": "exports/telephony/backfill"})
    world.advance(timedelta(minutes=10))
    again = world.get_job(TEL, queued["id"])
    assert again is not None
    assert all(
        "/exports/telephony/backfill/" in u and u.endswith("part-00000.parquet")
        for u in again["output_files"]
    )


def test_manual_export_overwrite_replaces_existing_keys(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("telephony",))
    world.advance_to(T0 + timedelta(hours=2))
    (scheduled,) = jobs(world)
    body = {
        "category": "telephony",
        "start_time": "2024-03-15T00:00:00Z",
        "end_time": "2024-03-15T01:00:00Z",
        "overwrite": True,
    }
    manual = world.manual_export(TEL, body)
    world.advance(timedelta(minutes=10))
    done = world.get_job(TEL, manual["id"])
    assert done is not None and done["output_files"] == scheduled["output_files"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"category": "ivr"}, "category"),
        ({"start_time": "yesterday"}, "ISO-8601"),
        ({"end_time": "2024-03-15T00:00:00Z"}, "after"),
        ({"start_time": "2024-03-15T00:30:00Z"}, "boundary"),
        ({"end_time": "2024-03-16T00:00:00Z"}, "future"),
        ({"start_time": "2024-03-14T00:00:00Z"}, "before"),
        ({"destination_prefix": "exports/ivr/"}, "destination_prefix"),
        ({"destination_prefix": "exports/telephony/../ivr/"}, "destination_prefix"),
        ({"overwrite": "yes"}, "overwrite"),
    ],
)
def test_manual_export_rejects_bad_requests(
    s3_endpoint: S3Endpoint, change: dict[str, Any], message: str
) -> None:
    world = new_world(s3_endpoint, categories=("telephony",))
    world.advance_to(T0 + timedelta(hours=3))
    body = {
        "category": "telephony",
        "start_time": "2024-03-15T00:00:00Z",
        "end_time": "2024-03-15T02:00:00Z",
    }
    with pytest.raises(BadRequest, match=message):
        world.manual_export(TEL, {**body, **change})
    with pytest.raises(NotFound):
        world.manual_export("dl-nope", body)


def test_clock_cannot_go_back(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("ivr",))
    world.advance(timedelta(hours=2))
    with pytest.raises(ValueError, match="back"):
        world.advance_to(T0)


def test_manual_export_fails_only_when_a_fault_says_so(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("ivr",), failed_rate=1.0)
    world.advance_to(T0 + timedelta(hours=3))
    assert {j["status"] for j in jobs(world, IVR)} == {"FAILED"}
    placeholders = len(kinds(world, "placeholder"))
    body = {
        "category": "ivr",
        "start_time": "2024-03-15T00:00:00Z",
        "end_time": "2024-03-15T01:00:00Z",
        "destination_prefix": "exports/ivr/backfill/",
    }
    job = world.manual_export(IVR, body)
    world.advance(timedelta(minutes=15))
    failed = world.get_job(IVR, job["id"])
    assert failed is not None and failed["status"] == "FAILED" and failed["output_files"] == []
    assert len(kinds(world, "placeholder")) == placeholders, "manual exports leave no partials"
    clean = new_world(s3_endpoint, categories=("ivr",), failed_intervals=(T0,))
    clean.advance_to(T0 + timedelta(hours=3))
    healed = clean.manual_export(IVR, body)
    clean.advance(timedelta(minutes=15))
    assert clean.get_job(IVR, healed["id"])["status"] == "COMPLETED"  # type: ignore[index]


def test_world_serves_readers_from_other_threads_while_the_clock_moves(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(s3_endpoint, categories=("telephony", "ivr"))
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                listed = jobs(world)
                assert [j["updated_at"] for j in listed] == sorted(j["updated_at"] for j in listed)
                seen.append(len(listed))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(12):
        world.advance(timedelta(minutes=30))
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen and max(seen) <= len(jobs(world)) == 5
