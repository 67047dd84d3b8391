"""Which later job repairs a failing one, and a file the manifest's files[] forgets.

The files are the simulator's, in its S3 (real moto over loopback); the job manifests are the
simulator's too, served as they are or with files taken out by a scripted API server (a real HTTP
server), which is how a CXone job without some data type, or with an incomplete files[], looks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxone_sync.catalog import CATEGORIES, category, default_download_id
from cxone_sync.cxone.client import CXoneClient, RetryPolicy
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import PartitionLoadOutcome, load_partition
from cxone_sync.simulator.config import CountSkew
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.cxone.scripted import Reply, ScriptedServer, serve
from cxone_sync_tests.fixtures import MakeStack
from cxone_sync_tests.truth import client_for

START = datetime(2024, 3, 15, tzinfo=UTC)
BAD = START + timedelta(hours=2)
TEL = category("telephony")
CDR, ACD = TEL.data_type("cdr"), TEL.data_type("acd")
JOBS_PATH = "/api/v2/data-downloads/dl-telephony-prod/jobs"


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with serve() as server:
        yield server


def _client(url: str) -> CXoneClient:
    return CXoneClient(
        base_url=url,
        client_id="app",
        client_secret="secret",
        download_ids={c.name: default_download_id(c.name) for c in CATEGORIES},
        retry=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02),
    )


class Loader:
    def __init__(self, stack: LocalStack, tmp: Path) -> None:
        self.stack = stack
        self.tmp = tmp
        self.warehouse = DuckDBWarehouse(tmp / "wh.duckdb")
        self.runs = 0

    def load(self, url: str, dt: Any, hour: int) -> PartitionLoadOutcome:
        self.runs += 1
        t = START + timedelta(hours=hour)
        with client_for(url) if url == self.stack.api_url else _client(url) as client:
            return load_partition(
                data_type=dt,
                start=t,
                end=t + timedelta(hours=1),
                source=client,
                s3_client=self.stack.s3_client(),
                warehouse=self.warehouse,
                bucket=self.stack.config.bucket,
                prefix="exports/telephony/",
                staging_dir=self.tmp / f"stage-{self.runs}",
            )

    def partitions(self, dt: Any) -> set[str]:
        return {p.partition_key for p in self.warehouse.partition_loads(dt)}

    def equals_truth(self, dt: Any, first: int, end: int) -> list[str]:
        truth = self.stack.world.ground_truth(
            "telephony", dt.name, START + timedelta(hours=first), START + timedelta(hours=end)
        )
        return differences(truth, self.warehouse.read_table(dt), list(dt.key))


def _jobs(stack: LocalStack, start: datetime) -> list[dict[str, Any]]:
    return [
        j
        for j in stack.world.list_jobs("dl-telephony-prod")
        if j["status"] == "COMPLETED"
        and j["interval_start"] == start.strftime("%Y-%m-%dT%H:00:00Z")
    ]


def _without(job: dict[str, Any], data_type: str, *, from_files_only: bool) -> dict[str, Any]:
    """The job with the files of one data type taken out of files[] (and output_files)."""
    out = copy.deepcopy(job)
    out["files"] = [f for f in out["files"] if f["data_type"] != data_type]
    if not from_files_only:
        out["output_files"] = [u for u in out["output_files"] if f"/{data_type}/" not in u]
        out["record_count"] = sum(f["record_count"] for f in out["files"])
    return out


def _serve(server: ScriptedServer, jobs: list[dict[str, Any]], loads: int) -> None:
    """The job list for the next ``loads`` partition loads (one listing each)."""
    server.script("GET", JOBS_PATH, *[Reply(body={"jobs": jobs, "next_page_token": None})] * loads)


def _manual_export(stack: LocalStack, start: datetime) -> dict[str, Any]:
    job = stack.world.manual_export(
        "dl-telephony-prod",
        {
            "category": "telephony",
            "start_time": start.strftime("%Y-%m-%dT%H:00:00Z"),
            "end_time": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z"),
            "overwrite": False,
            "destination_prefix": "exports/telephony/backfill/",
        },
    )
    stack.world.advance(timedelta(hours=1))
    (done,) = [j for j in _jobs(stack, start) if j["id"] == job["id"]]
    return done


def test_a_later_job_without_files_of_the_data_type_does_not_supersede_a_failing_one(
    make_stack: MakeStack, scripted: ScriptedServer, tmp_path: Path
) -> None:
    stack = make_stack(scale=0.2, record_count_skew=(CountSkew("telephony", BAD, 10.0),))
    stack.world.advance_to(START + timedelta(hours=6))
    loader = Loader(stack, tmp_path)
    for hour in (0, 1):
        assert loader.load(stack.api_url, CDR, hour).merged is not None
    (failing,) = _jobs(stack, BAD)
    clean = _manual_export(stack, BAD)
    # the later COMPLETED job delivers acd and skill_group for the hour, but no cdr file
    no_cdr = _without(clean, "cdr", from_files_only=False)
    _serve(scripted, [failing, no_cdr], loads=2)

    blocked = loader.load(scripted.url, CDR, 2)
    assert blocked.staged.blocked and blocked.merged is None
    assert blocked.staged.superseded_jobs == []
    count = next(o for o in blocked.staged.outcomes if o.name == ck.RECORD_COUNT)
    assert not count.passed and count.severity == "ERROR"
    assert "exceeds" in count.description
    assert f"Later COMPLETED job(s) {clean['id']} deliver no cdr file" in count.description
    assert "2024-03-15-02:00" not in loader.partitions(CDR)
    # the same later job does re-export acd: there it supersedes the failing job
    acd = loader.load(scripted.url, ACD, 2)
    assert not acd.staged.blocked and acd.merged is not None
    assert acd.staged.superseded_jobs == [failing["id"]]

    # repair: the re-export as CXone sent it, with its cdr file, supersedes the failing job
    _serve(scripted, [failing, clean], loads=1)
    repaired = loader.load(scripted.url, CDR, 2)
    assert not repaired.staged.blocked and repaired.merged is not None
    assert repaired.staged.superseded_jobs == [failing["id"]]
    assert repaired.merged.rows_inserted > 0
    assert loader.equals_truth(CDR, 0, 3) == []
    assert loader.equals_truth(ACD, 2, 3) == []


def test_a_file_without_a_files_entry_blocks_its_data_type_until_a_clean_reexport(
    make_stack: MakeStack, scripted: ScriptedServer, tmp_path: Path
) -> None:
    stack = make_stack(scale=0.2)
    stack.world.advance_to(START + timedelta(hours=6))
    loader = Loader(stack, tmp_path)
    for hour in (0, 1):
        assert loader.load(stack.api_url, CDR, hour).merged is not None
    (scheduled,) = _jobs(stack, BAD)
    # files[] is given but forgets the cdr file that output_files names
    unlisted = _without(scheduled, "cdr", from_files_only=True)
    cdr_uri = next(u for u in scheduled["output_files"] if "/cdr/" in u)
    assert cdr_uri in unlisted["output_files"]
    _serve(scripted, [unlisted], loads=2)

    blocked = loader.load(scripted.url, CDR, 2)
    assert blocked.staged.blocked and blocked.merged is None
    count = next(o for o in blocked.staged.outcomes if o.name == ck.RECORD_COUNT)
    assert not count.passed and count.severity == "ERROR"
    assert f"{cdr_uri} is in job {scheduled['id']}'s output_files but has no files[] entry" in (
        count.description
    )
    assert "2024-03-15-02:00" not in loader.partitions(CDR)
    # the job's other data types still load: their files[] entries are there
    assert loader.load(scripted.url, ACD, 2).merged is not None

    # repair: a clean manual export of the interval supersedes the job
    clean = _manual_export(stack, BAD)
    _serve(scripted, [unlisted, clean], loads=1)
    repaired = loader.load(scripted.url, CDR, 2)
    assert not repaired.staged.blocked and repaired.merged is not None
    assert repaired.staged.superseded_jobs == [scheduled["id"]]
    assert loader.equals_truth(CDR, 0, 3) == []
