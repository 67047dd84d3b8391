"""The bridge in the code location: CXONE_SOURCE adds its job, pool and schedule, and the cxone
resource routes bridged categories to the bridge's manifests (the others stay on Data Download)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from cxone_sync.bridge.defs import EXTRACTION_POOL
from cxone_sync.bridge.routing import RoutingSource
from cxone_sync.bridge.source import BridgeSource
from cxone_sync.cxone.client import CXoneClient
from cxone_sync.definitions import defs as build_defs
from cxone_sync.defs.resources import build_resources
from cxone_sync.settings import Settings
from cxone_sync_tests.fixtures import ExportBucket


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
