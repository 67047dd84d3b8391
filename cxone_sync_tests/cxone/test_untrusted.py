"""API strings as data: staged file names, tag labels, run keys, URL segments, shown text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cxone_sync.catalog import category
from cxone_sync.cxone.untrusted import clean_text, file_stem, label, shown, url_segment
from cxone_sync.defs.automation.run_requests import run_key
from cxone_sync.ingest.stage import PartitionStager, Window
from cxone_sync.simulator.world import HOSTILE_ID_FORMS
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.truth import client_for

STRICT_TAG = re.compile(r"[A-Za-z0-9_.-]{0,63}")
"""Dagster's strict tag value rule (dagster/_utils/tags.py, VALID_STRICT_TAG_VALUE_REGEX)."""
HOSTILE = [make("0123456789abcdef") for _, make in HOSTILE_ID_FORMS] + [
    "sha256-" + "0" * 32,
    "a" * 64,
    "x:y",
]
START = datetime(2024, 3, 15, tzinfo=UTC)


def test_ordinary_ids_keep_their_run_keys_and_tags() -> None:
    for job_id in ("job-8f3a2b", "1234567", "a" * 63, "JOB_1.2-3", ".."):
        assert label(job_id) == job_id
        assert run_key(job_id, "2024-03-15-14:00") == f"{job_id}:2024-03-15-14:00"


def test_hostile_ids_get_distinct_strict_tag_labels_and_run_keys() -> None:
    labels = [label(h) for h in HOSTILE]
    assert len(set(labels)) == len(HOSTILE)
    assert all(STRICT_TAG.fullmatch(t) and t.startswith("sha256-") for t in labels), labels
    assert label(HOSTILE[0]) == label(HOSTILE[0]), "stable"
    keys = {run_key(h, "2024-03-15-14:00") for h in HOSTILE}
    assert len(keys) == len(HOSTILE) and all(len(k) < 100 for k in keys)


def test_staged_names_differ_per_job_uri_and_data_type() -> None:
    uri = "s3://b/exports/telephony/cdr/year=2024/month=03/day=15/hour=14/part-00000.parquet"
    combos = [
        (job, u, dt)
        for job in ("job-1", "/tmp/x", "../../x", "job-1\x00")
        for u in (uri, uri.replace("00000", "00001"))
        for dt in ("cdr", "acd", "skill_group")
    ]
    stems = {file_stem(*c) for c in combos}
    assert len(stems) == len(combos)
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in stems)
    assert file_stem("ab", "c") != file_stem("a", "bc"), "parts never blur together"


def test_url_segments_and_shown_text() -> None:
    assert url_segment("..") == "%2E%2E" and url_segment(".") == "%2E"
    assert url_segment("a/b?c#d%") == "a%2Fb%3Fc%23d%25"
    for h in [*HOSTILE, "..", "."]:
        text = shown(h)
        assert text.isprintable() and len(text) < 250, text
    assert shown("job-8f3a") == "job-8f3a"
    assert shown("job\x00x") == "'job\\x00x'"
    long = shown("L" * 5000)
    assert "5000 characters" in long and label("L" * 5000) in long
    assert clean_text("a\x00\x1b[31mb\u202e\nc") == "a\\x00\\x1b[31mb\\u202e\nc"
    assert len(clean_text("x" * 10_000, 100)) < 150


def test_three_data_types_of_one_job_with_hostile_ids_stage_inside_their_folders(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_stack(scale=0.05, categories=("telephony",), hostile_job_ids=1.0)
    stack.world.advance_to(START + timedelta(hours=5))
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
    staged_paths: set[Path] = set()
    with client_for(stack.api_url) as client:
        for hour in range(3):
            t = START + timedelta(hours=hour)
            for dt in category("telephony").data_types:
                folder = tmp_path / "staging" / f"{dt.table}-{hour}"
                stager = PartitionStager(
                    source=client,
                    s3_client=stack.s3_client(),
                    warehouse=warehouse,
                    bucket=stack.config.bucket,
                    prefixes=["exports/telephony/"],
                    staging_dir=folder,
                )
                staged = stager.stage(Window(dt, f"p{hour}", t, t + timedelta(hours=1)))
                assert not staged.blocked, staged.blocked_reasons
                (f,) = staged.files
                assert f.path == folder / f"{file_stem(f.job_id, f.uri, dt.name)}.parquet"
                assert f.path.is_file() and f.job_id.startswith(("../", "/", "job/", "jö"))
                staged_paths.add(f.path)
    assert len(staged_paths) == 9
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and "staging" not in p.parts]
    assert [p.name for p in outside if not p.name.startswith("wh.duckdb")] == []
