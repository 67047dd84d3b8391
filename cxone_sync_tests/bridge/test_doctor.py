"""``cxone-sync doctor`` on the bridge: sources per category, and the Data Extraction API's
discovery, token, tenant host and one harmless call, against the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxone_sync.bridge.doctor import CHECK_EXTRACTION, CHECK_SOURCES, bridge_lines
from cxone_sync.settings import Settings
from cxone_sync.simulator.extraction import (
    FAKE_ACCESS_KEY_ID,
    FAKE_ACCESS_KEY_SECRET,
    FAKE_CLIENT_ID,
    FAKE_CLIENT_SECRET,
    FAKE_TENANT,
    JOBS,
)
from cxone_sync_tests.bridge.conftest import MakeFake

QM = {"quality_management/evaluation": {"entity": "qm-workflows", "version": "4"}}


def env(monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path, secret: str) -> None:
    monkeypatch.setenv("CXONE_SOURCE", json.dumps({"quality_management": "data_extraction"}))
    monkeypatch.setenv("CXONE_EXTRACTION_ENTITIES", json.dumps(QM))
    monkeypatch.setenv("CXONE_AUTH_URL", url)
    monkeypatch.setenv("CXONE_CLIENT_ID", FAKE_CLIENT_ID)
    monkeypatch.setenv("CXONE_CLIENT_SECRET", FAKE_CLIENT_SECRET)
    monkeypatch.setenv("CXONE_ACCESS_KEY_ID", FAKE_ACCESS_KEY_ID)
    monkeypatch.setenv("CXONE_ACCESS_KEY_SECRET", secret)
    monkeypatch.setenv("CXONE_DATA_DIR", str(tmp_path))


def test_doctor_reaches_the_tenant_read_only(
    make_fake: MakeFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = make_fake()
    env(monkeypatch, fake.url, tmp_path, FAKE_ACCESS_KEY_SECRET)
    sources, extraction = bridge_lines(Settings())
    assert sources.name == CHECK_SOURCES and sources.ok
    assert "quality_management=data_extraction" in sources.detail
    assert "telephony=data_download" in sources.detail
    assert extraction.name == CHECK_EXTRACTION and extraction.ok, extraction.detail
    assert FAKE_TENANT in extraction.detail and fake.url in extraction.detail
    api = [(r.method, r.path) for r in fake.requests if r.path.startswith(JOBS)]
    assert api == [("GET", JOBS)], "the doctor creates no extraction job"


def test_doctor_fails_clearly_without_leaking(
    make_fake: MakeFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = make_fake()
    env(monkeypatch, fake.url, tmp_path, "a-wrong-secret-value")
    _, extraction = bridge_lines(Settings())
    assert not extraction.ok and extraction.fix
    assert "token endpoint answered 400" in extraction.detail
    assert "a-wrong-secret-value" not in extraction.detail + extraction.fix


def test_doctor_names_unmapped_data_types(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXONE_SOURCE", json.dumps({"telephony": "data_extraction"}))
    monkeypatch.setenv("CXONE_EXTRACTION_ENTITIES", "{}")
    sources = bridge_lines(Settings())[0]
    assert not sources.ok
    assert "telephony/cdr" in sources.detail and "CXONE_EXTRACTION_ENTITIES" in (sources.fix or "")
