"""CXONE_SOURCE=data_extraction end to end: the simulated world's data through the Data
Extraction fake, the bridge (CSV -> Parquet -> landing bucket -> manifests) and the platform's
own load path (``load_partition``: ExportSource, S3 over HTTP, gates, MERGE into DuckDB), equal
to the ground truth, with the API misbehaving (jobs FAILED/EXPIRED, 403/429, expired links)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from cxone_sync.bridge.extraction import DataExtractionClient
from cxone_sync.bridge.pacing import FakeClock
from cxone_sync.bridge.source import BridgeSource, build_bridge
from cxone_sync.catalog import category
from cxone_sync.cxone.models import JobStatus
from cxone_sync.ingest.load import load_partition
from cxone_sync.settings import Settings
from cxone_sync.simulator.extraction import (
    FAKE_ACCESS_KEY_ID,
    FAKE_ACCESS_KEY_SECRET,
    FAKE_CLIENT_ID,
    FAKE_CLIENT_SECRET,
    ExtractionFake,
    FakeConfig,
    world_entities,
)
from cxone_sync.simulator.stack import LocalStack
from cxone_sync.simulator.truth import differences
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack

FAST = (["ivr", "quality_management"], 6)
WHOLE = (
    ["telephony", "ivr", "speech", "digital", "workforce_management", "quality_management"],
    24,
)


@pytest.fixture(
    params=[pytest.param(FAST, id="fast"), pytest.param(WHOLE, id="day", marks=pytest.mark.soak)]
)
def world(
    make_stack: MakeStack, request: pytest.FixtureRequest
) -> Iterator[tuple[LocalStack, datetime, datetime, list[str]]]:
    categories, hours = request.param
    stack = make_stack(scale=0.1)
    start = stack.config.start
    end = start + timedelta(hours=hours)
    stack.world.advance_to(end + timedelta(hours=3))
    yield stack, start, end, categories


def bridge_env(
    stack: LocalStack, fake: ExtractionFake, mapping: str, tmp_path: Path, categories: list[str]
) -> dict[str, str]:
    """Environment variables alone point the bridge at a tenant (here: the fake)."""
    return {
        "CXONE_SOURCE": json.dumps({c: "data_extraction" for c in categories}),
        "CXONE_AUTH_URL": fake.url,
        "CXONE_CLIENT_ID": FAKE_CLIENT_ID,
        "CXONE_CLIENT_SECRET": FAKE_CLIENT_SECRET,
        "CXONE_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "CXONE_ACCESS_KEY_SECRET": FAKE_ACCESS_KEY_SECRET,
        "CXONE_EXTRACTION_ENTITIES": mapping,
        "CXONE_BUCKET": stack.config.bucket,
        "CXONE_DATA_DIR": str(tmp_path),
    }


def load_all(
    categories: list[str],
    stack: LocalStack,
    source: BridgeSource,
    warehouse: DuckDBWarehouse,
    start: datetime,
    end: datetime,
    staging: Path,
) -> dict[str, Any]:
    outcomes: dict[str, Any] = {}
    for name in categories:
        cat = category(name)
        prefix = source.download_config(name).destination.prefix
        for dt in cat.data_types:
            for t in cat.interval_starts(start, end):
                outcomes[f"{dt.table}@{t:%H}"] = load_partition(
                    data_type=dt,
                    start=t,
                    end=t + cat.interval,
                    source=source,
                    s3_client=stack.s3_client(),
                    warehouse=warehouse,
                    bucket=stack.config.bucket,
                    prefix=prefix,
                    staging_dir=staging / dt.table / f"{t:%Y%m%d%H}",
                )
    return outcomes


def test_data_extraction_through_the_bridge_equals_the_truth(
    world: tuple[LocalStack, datetime, datetime, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stack, start, end, categories = world
    clock = FakeClock()
    entities, data, mapping = world_entities(stack.world, categories)
    first = f"sim-{categories[0]}-{category(categories[0]).data_types[0].name}".replace("_", "-")
    faults = FakeConfig(
        min_interval=40.0,  # stricter than the client's 30 s: calls too soon answer 403/429
        job_seconds=75,
        busy_calls=3,
        expired_links=2,
        outcomes={first: ["FAILED", "EXPIRED"], "sim-quality-management-evaluation": ["CANCELLED"]},
    )
    with ExtractionFake(data, entities, clock=clock, config=faults) as fake:
        for key, value in bridge_env(stack, fake, mapping, tmp_path, categories).items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        bridge = build_bridge(
            settings,
            stack.s3.writer_client(),
            clock=clock,
            sleep=clock.sleep,
            now=lambda: stack.world.now,
        )
        jobs = [j for c in categories for j in bridge.sync(c, start, end)]
        assert bridge.sync(categories[0], start, end) == [], "a synced interval is not asked again"
        refusals = list(fake.refusals)

    expected = sum(len(category(c).interval_starts(start, end)) for c in categories)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * expected
    assert bridge.stats.extraction_retries == 3  # FAILED, EXPIRED, CANCELLED: asked again
    assert refusals.count(429) >= 3 and refusals.count(403) >= 1
    assert clock.slept > 0 and clock.slept == pytest.approx(clock() - 1_700_000_000.0)

    # every file carries its SHA-256 (S3 checksum and manifest)
    s3 = stack.s3_client()
    first_job = jobs[0]
    assert first_job.files
    for f in first_job.files:
        key = f.uri.split("/", 3)[3]
        got = s3.get_object(Bucket=stack.config.bucket, Key=key)
        assert got["Metadata"]["sha256"] == hashlib.sha256(got["Body"].read()).hexdigest()
        assert key.startswith(f"cxone-bridge/{categories[0]}/")

    source = bridge.source
    warehouse = DuckDBWarehouse(tmp_path / "bridge.duckdb")
    outcomes = load_all(categories, stack, source, warehouse, start, end, tmp_path / "staging")
    not_merged = {k: o.reason for k, o in outcomes.items() if o.merged is None}
    assert not_merged == {}
    rows = 0
    for name in categories:
        for dt in category(name).data_types:
            truth = stack.world.ground_truth(name, dt.name, start, end)
            table = warehouse.read_table(dt)
            assert differences(truth, table, list(dt.key)) == [], dt.table
            rows += table.num_rows
    assert rows > 200

    for secret in (FAKE_CLIENT_SECRET, FAKE_ACCESS_KEY_SECRET, "fake-signature"):
        assert secret not in caplog.text


def test_failed_extraction_is_a_failed_manifest_then_a_manual_export_recovers(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    """Bounded retries, then FAILED with the reason, as a Data Download job fails; the
    platform's recovery asks for a manual export, which the bridge performs."""
    stack = make_stack(scale=0.1)
    start = stack.config.start
    stack.world.advance_to(start + timedelta(hours=9))
    clock = FakeClock()
    entities, data, _ = world_entities(stack.world, ["quality_management"])
    evaluation = "sim-quality-management-evaluation"
    config = FakeConfig(job_seconds=1, outcomes={evaluation: ["FAILED"] * 3})
    with ExtractionFake(data, entities, clock=clock, config=config) as fake:
        client = DataExtractionClient(
            auth_url=fake.url,
            client_id=FAKE_CLIENT_ID,
            client_secret=FAKE_CLIENT_SECRET,
            access_key_id=FAKE_ACCESS_KEY_ID,
            access_key_secret=FAKE_ACCESS_KEY_SECRET,
            lock_dir=tmp_path,
            clock=clock,
            sleep=clock.sleep,
        )
        from cxone_sync.bridge.source import Bridge, EntityMapping

        types = json.loads(world_entities(stack.world, ["quality_management"])[2])
        spec = types["quality_management/evaluation"]
        source = BridgeSource(stack.s3.writer_client(), stack.config.bucket)
        bridge = Bridge(
            source,
            client,
            {
                ("quality_management", "evaluation"): EntityMapping(
                    "quality_management", "evaluation", evaluation, "1", spec["types"]
                )
            },
            now=lambda: stack.world.now,
        )
        cat = category("quality_management")
        failed = bridge.export(cat, start, start + cat.interval, "SCHEDULED")
        assert failed.status == JobStatus.FAILED
        assert failed.error_details and "FAILED" in failed.error_details
        assert "gave up after 3 extraction jobs" in failed.error_details
        listed = list(source.iter_jobs("quality_management", statuses=[JobStatus.FAILED]))
        assert [j.id for j in listed] == [failed.id]
        assert failed.output_files == []

        prefix = f"{source.download_config('quality_management').destination.prefix}backfill/"
        queued = source.manual_export("quality_management", start, start + cat.interval, prefix)
        assert queued.status == JobStatus.QUEUED
        recovered = bridge.run_queued("quality_management")
        client.close()

    assert [j.id for j in recovered] == [queued.id]
    assert recovered[0].status == JobStatus.COMPLETED
    assert all("/backfill/evaluation/" in u for u in recovered[0].output_files)
    assert source.get_job("quality_management", queued.id).status == JobStatus.COMPLETED

    warehouse = DuckDBWarehouse(tmp_path / "recovered.duckdb")
    outcome = load_partition(
        data_type=cat.data_types[0],
        start=start,
        end=start + cat.interval,
        source=source,
        s3_client=stack.s3_client(),
        warehouse=warehouse,
        bucket=stack.config.bucket,
        prefix=source.download_config("quality_management").destination.prefix,
        staging_dir=tmp_path / "staging",
    )
    assert outcome.merged is not None
    truth = stack.world.ground_truth(
        "quality_management", "evaluation", start, start + cat.interval
    )
    assert differences(truth, warehouse.read_table(cat.data_types[0]), ["evaluation_id"]) == []


def test_bridged_categories_load_through_cxone_sync_sync(
    make_stack: MakeStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bridge's manifests and files through the platform's Dagster path unchanged: assets,
    gates and MERGE of ``cxone-sync sync`` (CXONE_SOURCE picks the surface per category; the
    other category stays on Data Download), equal to the truth; a second sync skips it all."""
    from cxone_sync.cli import main

    stack = make_stack(scale=0.1)
    start = stack.config.start
    end = start + timedelta(hours=6)
    stack.world.advance_to(end + timedelta(hours=3))
    clock = FakeClock()
    bridged = ["quality_management"]
    entities, data, mapping = world_entities(stack.world, bridged)
    # one tenant, one set of credentials for every NICE API (the simulator's)
    sim = stack.config
    tenant = (sim.client_id, sim.client_secret, sim.access_key_id, sim.access_key_secret)
    config = FakeConfig(job_seconds=5, credentials=tenant)
    with ExtractionFake(data, entities, clock=clock, config=config) as fake:
        env = {
            **bridge_env(stack, fake, mapping, tmp_path / "data", bridged),
            **stack.environment(),
            "CXONE_ACCESS_KEY_ID": sim.access_key_id,
            "CXONE_ACCESS_KEY_SECRET": sim.access_key_secret,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("CXONE_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        (tmp_path / "home").mkdir()
        bridge = build_bridge(
            Settings(),
            stack.s3.writer_client(),
            clock=clock,
            sleep=clock.sleep,
            now=lambda: stack.world.now,
        )
        assert all(j.status == JobStatus.COMPLETED for j in bridge.sync(bridged[0], start, end))
    args = ["sync", "--start", start.isoformat(), "--end", end.isoformat()]
    categories = ["--category", "quality_management", "--category", "ivr"]
    assert main([*args, *categories]) == 0
    warehouse = DuckDBWarehouse(tmp_path / "data" / "warehouse.duckdb", read_only=True)
    for name in ("quality_management", "ivr"):
        for dt in category(name).data_types:
            truth = stack.world.ground_truth(name, dt.name, start, end)
            assert truth.num_rows > 0, dt.table
            assert differences(truth, warehouse.read_table(dt), list(dt.key)) == [], dt.table
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # the bridged category's jobs are recognised as loaded like Data Download's: nothing to run
    assert main([*args, *categories]) == 0
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 2
