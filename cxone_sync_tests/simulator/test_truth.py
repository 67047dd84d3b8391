"""The ground truth: load rules applied to what the world wrote, checked against S3 read-backs."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest

from cxone_sync.catalog import category
from cxone_sync.simulator import generator as gen
from cxone_sync.simulator import truth
from cxone_sync.simulator.config import CountSkew, DriftSpec, SimConfig, parse_time
from cxone_sync.simulator.s3 import S3Endpoint
from cxone_sync_tests.simulator.test_world import T0, TEL, jobs, new_world, read

CDR = category("telephony").data_type("cdr")
HOUR = timedelta(hours=1)
FOLDER = re.compile(r"year=(\d{4})/month=(\d\d)/day=(\d\d)/hour=(\d\d)/")


def expected_from_s3(world: Any, data_type: str, start: Any, end: Any) -> dict[str, Any]:
    """Independent newest-wins over every COMPLETED job's files read back from S3."""
    completed = sorted(
        (j for j in jobs(world) if j["status"] == "COMPLETED"),
        key=lambda j: (j["end_time"], j["id"]),
    )
    best: dict[str, tuple[Any, int, dict[str, Any]]] = {}
    for rank, job in enumerate(completed):
        for f in job["files"]:
            y, m, d, h = FOLDER.search(f["uri"]).groups()  # type: ignore[union-attr]
            hour = parse_time(f"{y}-{m}-{d}T{h}:00:00Z")
            if f["data_type"] != data_type or not start <= hour < end:
                continue
            for row in read(world, f["uri"]).to_pylist():
                mine = (row["updated_at"], rank)
                held = best.get(row["call_uuid"])
                if held is None or mine > held[:2]:
                    best[row["call_uuid"]] = (*mine, row)
    return {key: value[2] for key, value in best.items()}


def test_ground_truth_is_newest_version_of_every_key_read_back_from_s3(
    s3_endpoint: S3Endpoint,
) -> None:
    world = new_world(
        s3_endpoint,
        categories=("telephony",),
        late_update_rate=0.2,
        stale_redelivery_rate=0.2,
        in_file_duplicate_rate=0.1,
        late_update_delay=timedelta(hours=2),
        duplicate_export_intervals=(T0 + 2 * HOUR,),
    )
    world.advance_to(T0 + 5 * HOUR)
    table = world.ground_truth("telephony", "cdr", T0, T0 + 4 * HOUR)
    expected = expected_from_s3(world, "cdr", T0, T0 + 4 * HOUR)
    assert table.num_rows == len(expected)
    assert table["call_uuid"].to_pylist() == sorted(expected)
    assert table.to_pylist() == [expected[k] for k in sorted(expected)]
    assert table.schema.names == gen.base_schema(CDR).names
    total = sum(
        f["record_count"]
        for j in jobs(world)
        for f in j["files"]
        if f["data_type"] == "cdr" and parse_time(j["interval_start"]) < T0 + 4 * HOUR
    )
    assert table.num_rows < total, "duplicates, stale and late versions collapse to one row"
    assert world.truth_exclusions() == []


def test_ground_truth_defaults_to_everything_exported_so_far(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("telephony",))
    world.advance_to(T0 + 3 * HOUR)
    everything = world.ground_truth("telephony", "acd")
    assert everything.num_rows == sum(
        f["record_count"] for j in jobs(world) for f in j["files"] if f["data_type"] == "acd"
    )
    assert world.ground_truth("telephony", "acd", T0 + HOUR, T0 + 2 * HOUR).num_rows < (
        everything.num_rows
    )


def excluded(world: Any, tolerance: float = 0.05) -> set[tuple[str, str, str]]:
    return {
        (e["data_type"], e["partition_start"][11:16], str(e["reason"]))
        for e in world.truth_exclusions(tolerance)
    }


@pytest.mark.parametrize(
    ("faults", "reason", "types"),
    [
        (
            {"record_count_skew": (CountSkew("telephony", T0, 20.0),)},
            "record_count_mismatch",
            {"cdr", "acd", "skill_group"},
        ),
        ({"null_key_intervals": (T0,)}, "null_key", {"cdr", "acd", "skill_group"}),
        ({"denied_read": (T0,)}, "denied_read", {"cdr", "acd", "skill_group"}),
        (
            {"drift": (DriftSpec("cdr", T0, T0 + HOUR, "incompatible_type"),)},
            "incompatible_type",
            {"cdr"},
        ),
        ({"drift": (DriftSpec("acd", T0, T0 + HOUR, "drop_key"),)}, "missing_key", {"acd"}),
        (
            {"drift": (DriftSpec("acd", T0, T0 + HOUR, "drop_column", "updated_at"),)},
            "missing_key",
            {"acd"},
        ),
        ({"failed_intervals": (T0,)}, "job_failed", {"cdr", "acd", "skill_group"}),
        ({"timed_out_intervals": (T0,)}, "job_timed_out", {"cdr", "acd", "skill_group"}),
    ],
)
def test_each_exclusion_reason_blocks_exactly_its_partitions(
    s3_endpoint: S3Endpoint, faults: dict[str, Any], reason: str, types: set[str]
) -> None:
    world = new_world(s3_endpoint, categories=("telephony",), **faults)
    world.advance_to(T0 + 3 * HOUR)
    assert excluded(world) == {(t, "00:00", reason) for t in types}
    for dt in ("cdr", "acd", "skill_group"):
        rows = world.ground_truth("telephony", dt, T0, T0 + HOUR).num_rows
        assert (rows == 0) == (dt in types)
        assert world.ground_truth("telephony", dt, T0 + HOUR, T0 + 2 * HOUR).num_rows > 0


def test_count_tolerance_and_job_level_check_without_files(s3_endpoint: S3Endpoint) -> None:
    small = new_world(
        s3_endpoint, categories=("ivr",), record_count_skew=(CountSkew("ivr", T0, 3.0),)
    )
    small.advance_to(T0 + 2 * HOUR)
    assert excluded(small) == set()
    assert excluded(small, tolerance=0.01) == {("ivr_session", "00:00", "record_count_mismatch")}
    whole = new_world(
        s3_endpoint,
        categories=("telephony",),
        omit_files_rate=1.0,
        record_count_skew=(CountSkew("telephony", T0, -10.0),),
    )
    whole.advance_to(T0 + 2 * HOUR)
    assert excluded(whole) == {
        (t, "00:00", "record_count_mismatch") for t in ("cdr", "acd", "skill_group")
    }


def test_a_later_manual_export_supersedes_a_blocked_partition(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("telephony",), null_key_intervals=(T0,))
    world.advance_to(T0 + 3 * HOUR)
    assert world.ground_truth("telephony", "cdr", T0, T0 + HOUR).num_rows == 0
    manual = world.manual_export(
        TEL,
        {
            "category": "telephony",
            "start_time": "2024-03-15T00:00:00Z",
            "end_time": "2024-03-15T01:00:00Z",
            "destination_prefix": "exports/telephony/backfill/",
        },
    )
    world.advance(timedelta(minutes=2))
    assert world.ground_truth("telephony", "cdr", T0, T0 + HOUR).num_rows == 0
    world.advance(timedelta(minutes=10))
    assert world.get_job(TEL, manual["id"])["status"] == "COMPLETED"  # type: ignore[index]
    assert excluded(world) == set()
    table = world.ground_truth("telephony", "cdr", T0, T0 + HOUR)
    (cdr_uri,) = [
        u
        for u in world.get_job(TEL, manual["id"])["output_files"]  # type: ignore[index]
        if "/cdr/" in u
    ]
    assert table.num_rows == read(world, cdr_uri).num_rows
    assert table["call_uuid"].null_count == 0


def test_overwriting_manual_export_makes_denied_files_readable(s3_endpoint: S3Endpoint) -> None:
    world = new_world(s3_endpoint, categories=("telephony",), denied_read=(T0,))
    world.advance_to(T0 + 2 * HOUR)
    (scheduled,) = jobs(world)
    assert len(world.unreadable_keys()) == 3 and excluded(world) != set()
    body = {
        "category": "telephony",
        "start_time": "2024-03-15T00:00:00Z",
        "end_time": "2024-03-15T01:00:00Z",
        "overwrite": True,
    }
    world.manual_export(TEL, body)
    world.advance(timedelta(minutes=10))
    assert world.unreadable_keys() == frozenset() and excluded(world) == set()
    table = world.ground_truth("telephony", "cdr", T0, T0 + HOUR)
    assert table.num_rows == read(world, scheduled["output_files"][1]).num_rows


def test_drifted_columns_union_with_nulls_and_widened_types(s3_endpoint: S3Endpoint) -> None:
    world = new_world(
        s3_endpoint,
        categories=("telephony",),
        drift=(
            DriftSpec("cdr", T0 + HOUR, None, "add_column", "queue_name"),
            DriftSpec("cdr", T0 + HOUR, None, "widen", "talk_seconds"),
            DriftSpec("cdr", T0 + HOUR, None, "drop_column", "ani"),
            DriftSpec("cdr", T0 + HOUR, None, "reorder"),
        ),
    )
    world.advance_to(T0 + 3 * HOUR)
    assert excluded(world) == set()
    table = world.ground_truth("telephony", "cdr", T0, T0 + 2 * HOUR)
    assert table.schema.names == [*gen.base_schema(CDR).names, "queue_name"]
    assert table.schema.field("talk_seconds").type == pa.int64()
    first = world.ground_truth("telephony", "cdr", T0, T0 + HOUR).num_rows
    assert table["queue_name"].null_count == first
    assert table["ani"].null_count == table.num_rows - first


# --- the supersede rule on hand-made jobs ---------------------------------------------------


def plan(drift: tuple[DriftSpec, ...] = (), null_keys: bool = False) -> gen.FilePlan:
    config = SimConfig(scale=0.02, start=T0)
    p = gen.plan_file(config, CDR, T0, order_salt="x", null_keys=null_keys)
    return dataclasses.replace(p, drift=drift)


def job(name: str, minute: int, p: gen.FilePlan, manifest: int | None = None) -> truth.TruthJob:
    count = p.num_rows if manifest is None else manifest
    f = truth.TruthFile(f"k/{name}", "cdr", T0, count, p, denied=False)
    return truth.TruthJob(name, T0 + timedelta(hours=2, minutes=minute), count, True, (f,))


def test_supersede_rule_orders_jobs_by_end_time_then_id() -> None:
    good, bad = plan(), plan(null_keys=True)
    window = (T0, T0 + HOUR)
    blocked = truth.partitions(CDR, [job("a", 1, good), job("b", 2, bad)], *window, 0.05)
    assert blocked[0].blocked and truth.ground_truth(CDR, blocked).num_rows == 0
    healed = truth.partitions(
        CDR, [job("c", 3, good), job("a", 1, good), job("b", 2, bad)], *window, 0.05
    )
    assert not healed[0].blocked
    assert [j.id for j, _ in healed[0].loaded()] == ["a", "c"]
    tie = truth.partitions(CDR, [job("z", 1, bad), job("y", 1, good)], *window, 0.05)
    assert tie[0].blocked, "same end_time: the id breaks the tie, so the failing z is last"


def test_equal_updated_at_goes_to_the_later_completed_job() -> None:
    tagged = plan(drift=(DriftSpec("cdr", T0, None, "add_column", "tag"),))
    window = (T0, T0 + HOUR)
    later_tagged = truth.ground_truth(
        CDR, truth.partitions(CDR, [job("a", 1, plan()), job("b", 2, tagged)], *window, 0.05)
    )
    assert later_tagged["tag"].null_count == 0
    earlier_tagged = truth.ground_truth(
        CDR, truth.partitions(CDR, [job("a", 1, tagged), job("b", 2, plan())], *window, 0.05)
    )
    assert earlier_tagged["tag"].null_count == earlier_tagged.num_rows
    assert later_tagged.num_rows == earlier_tagged.num_rows == plan().num_rows


def test_truth_and_platform_agree_on_the_record_count_tolerance_at_its_boundary() -> None:
    # relative to the manifest's count, as the contract says; 95 and 105 rows against a manifest
    # of 100 are both exactly 5% off: within the tolerance for both sides
    from cxone_sync.ingest.stage import deviation
    from cxone_sync.simulator.truth import deviates

    for manifest in (0, 1, 19, 20, 100, 1000, 4096):
        for actual in range(0, 2 * manifest + 3):
            platform_blocks = deviation(manifest, actual) > 0.05
            assert deviates(actual, manifest, 0.05) == platform_blocks, (manifest, actual)
    assert not deviates(95, 100, 0.05) and not deviates(105, 100, 0.05)
    assert deviates(94, 100, 0.05) and deviates(106, 100, 0.05)


def test_truth_blocks_a_file_missing_from_a_listed_files_array_until_a_reexport_with_it() -> None:
    config = SimConfig(scale=0.05, start=T0, categories=("telephony",))
    plan = gen.plan_file(config, CDR, T0, order_salt="a")
    acd = category("telephony").data_type("acd")
    acd_plan = gen.plan_file(config, acd, T0, order_salt="b")
    listed = truth.TruthFile("cdr/k", "cdr", T0, plan.num_rows, plan, denied=False)
    unlisted = dataclasses.replace(listed, manifest_count=None)
    acd_file = truth.TruthFile("acd/k", "acd", T0, acd_plan.num_rows, acd_plan, denied=False)
    bad = truth.TruthJob("a", T0 + HOUR, plan.num_rows, True, (unlisted, acd_file))
    # a later clean job without a cdr file of the hour is no re-export of the cdr partition
    acd_only = truth.TruthJob("b", T0 + 2 * HOUR, acd_plan.num_rows, True, (acd_file,))
    (part,) = truth.partitions(CDR, [bad, acd_only], T0, T0 + HOUR, 0.05)
    assert part.jobs == ((bad, truth.UNLISTED_FILE),) and part.blocked and part.loaded() == []
    (acd_part,) = truth.partitions(acd, [bad, acd_only], T0, T0 + HOUR, 0.05)
    assert not acd_part.blocked, "the job's other data types load"
    # a job without files[] at all is judged on its total instead: it loads
    unlisted_job = truth.TruthJob("u", T0 + HOUR, plan.num_rows, False, (unlisted,))
    (total,) = truth.partitions(CDR, [unlisted_job], T0, T0 + HOUR, 0.05)
    assert not total.blocked
    clean = truth.TruthJob("c", T0 + 3 * HOUR, plan.num_rows, True, (listed,))
    (repaired,) = truth.partitions(CDR, [bad, acd_only, clean], T0, T0 + HOUR, 0.05)
    assert not repaired.blocked and repaired.loaded() == [(clean, listed)]


def test_hostile_job_ids_take_every_form_and_leave_the_truth_unchanged(
    s3_endpoint: S3Endpoint,
) -> None:
    from cxone_sync.simulator.world import HOSTILE_ID_FORMS

    plain = new_world(s3_endpoint, categories=("telephony",), duplicate_export_rate=0.3)
    hostile = new_world(
        s3_endpoint, categories=("telephony",), duplicate_export_rate=0.3, hostile_job_ids=1.0
    )
    for world in (plain, hostile):
        world.advance_to(T0 + 10 * HOUR)
    logged = [e for e in hostile.fault_log if e["kind"] == "hostile_job_id"]
    listed = jobs(hostile)
    assert {e["job_id"] for e in logged} == {j["id"] for j in listed}
    assert {e["detail"]["form"] for e in logged} == {form for form, _ in HOSTILE_ID_FORMS}
    ids = [j["id"] for j in listed]
    assert any("\x00" in i for i in ids) and any(len(i) > 1000 for i in ids)
    assert any(i.startswith("/") for i in ids) and any(i.startswith("../") for i in ids)
    assert not any(e["kind"] == "hostile_job_id" for e in plain.fault_log)
    for dt in category("telephony").data_types:
        a = plain.ground_truth("telephony", dt.name, T0, T0 + 8 * HOUR)
        b = hostile.ground_truth("telephony", dt.name, T0, T0 + 8 * HOUR)
        assert a.num_rows > 0 and truth.differences(a, b, list(dt.key)) == [], dt.name
