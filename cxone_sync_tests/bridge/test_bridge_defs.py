"""The bridge in the code location: CXONE_SOURCE adds its job, pool and schedule, and the cxone
resource routes bridged categories to the bridge's manifests (the others stay on Data Download)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cxone_sync.bridge.pacing import FakeClock
from cxone_sync.bridge.routing import RoutingSource
from cxone_sync.bridge.source import BridgeSource
from cxone_sync.cxone.client import CXoneClient
from cxone_sync.cxone.models import JobStatus
from cxone_sync.definitions import defs as build_defs
from cxone_sync.defs.bridge import EXTRACTION_POOL, bridge_extract_job
from cxone_sync.defs.resources import build_resources
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
from cxone_sync_tests.fixtures import ExportBucket, MakeStack


def test_default_code_location_has_no_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXONE_SOURCE", raising=False)
    defs = build_defs()
    assert "bridge_extract_job" not in {j.name for j in defs.resolve_all_job_defs()}
    with build_resources(Settings())["cxone"].client() as client:
        assert isinstance(client, CXoneClient)


def test_bridged_categories_route_to_the_bridge(
    monkeypatch: pytest.MonkeyPatch, export_bucket: ExportBucket
) -> None:
    monkeypatch.setenv("CXONE_SOURCE", json.dumps({"quality_management": "data_extraction"}))
    monkeypatch.setenv("CXONE_BUCKET", export_bucket.name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", export_bucket.endpoint.url)
    defs = build_defs()
    job = defs.resolve_job_def("bridge_extract_job")
    assert job.graph.node_defs[0].pools == {EXTRACTION_POOL}
    schedule = defs.resolve_schedule_def("bridge_extract_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    with build_resources(Settings())["cxone"].client() as client:
        assert isinstance(client, RoutingSource)
        assert set(client.bridged) == {"quality_management"}
        config = client.download_config("quality_management")
        assert config.destination.prefix == "cxone-bridge/quality_management/"
        assert config.destination.bucket == export_bucket.name
        assert isinstance(client.bridged["quality_management"], BridgeSource)
        # a queued manual export is a manifest the platform lists like any job
        start = datetime(2024, 3, 15, tzinfo=UTC)
        queued = client.manual_export(
            "quality_management",
            start,
            start + timedelta(hours=6),
            "cxone-bridge/quality_management/backfill/",
        )
        listed = list(client.iter_jobs("quality_management"))
        assert [j.id for j in listed] == [queued.id]
        assert client.get_job("quality_management", queued.id).status == "QUEUED"
        with pytest.raises(ValueError, match="must lie under"):
            client.manual_export("quality_management", start, start + timedelta(hours=6), "x/")


def test_bridge_extract_job_runs_in_dagster(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The scheduled job, in process: it extracts the oldest due interval through the fake and
    publishes its COMPLETED manifest, which the platform's resource then lists."""
    stack = make_stack(scale=0.1)
    start = stack.config.start
    stack.world.advance_to(start + timedelta(hours=9))
    entities, data, mapping = world_entities(stack.world, ["quality_management"])
    fake_config = FakeConfig(min_interval=0, job_seconds=0)
    with ExtractionFake(data, entities, clock=FakeClock(), config=fake_config) as fake:
        for key, value in {
            **stack.environment(),  # bucket and S3; the CXONE_* below replace its API settings
            "CXONE_SOURCE": json.dumps({"quality_management": "data_extraction"}),
            "CXONE_EXTRACTION_ENTITIES": mapping,
            "CXONE_EXTRACTION_MIN_INTERVAL_SECONDS": "0",
            "CXONE_AUTH_URL": fake.url,
            "CXONE_CLIENT_ID": FAKE_CLIENT_ID,
            "CXONE_CLIENT_SECRET": FAKE_CLIENT_SECRET,
            "CXONE_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "CXONE_ACCESS_KEY_SECRET": FAKE_ACCESS_KEY_SECRET,
            "CXONE_DATA_DIR": str(tmp_path),
        }.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        resources = build_resources(settings)
        lookback = math.ceil((datetime.now(UTC) - start) / timedelta(hours=1))
        result = bridge_extract_job.execute_in_process(
            resources={"s3": resources["s3"]},
            run_config={
                "ops": {
                    "bridge_extract": {"config": {"lookback_hours": lookback, "max_intervals": 1}}
                }
            },
            instance=dg.DagsterInstance.ephemeral(),
        )
    assert result.success
    with resources["cxone"].client() as client:
        jobs = list(client.iter_jobs("quality_management"))
    assert [(j.status, j.interval_start) for j in jobs] == [(JobStatus.COMPLETED, start)]
    assert (
        jobs[0].record_count
        == stack.world.ground_truth(
            "quality_management", "evaluation", start, start + timedelta(hours=6)
        ).num_rows
    )
