"""The settings object: JSON settings keyed by category reject unknown names, record-count
tolerances are validated and reach the check descriptions, the AWS region follows the SDK chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxone_sync.catalog import CATEGORIES
from cxone_sync.definitions import defs as build_defs
from cxone_sync.defs.ingest.assets import staged_key
from cxone_sync.defs.resources import build_resources
from cxone_sync.ingest import checks as ck
from cxone_sync.settings import LOCAL_API_URL, SIM_AWS_REGION, get_settings

# every JSON setting keyed by category, with one valid entry for a misspelt category
BY_CATEGORY = {
    "CXONE_DOWNLOAD_IDS": {"telephone": "dl-telephony-prod"},
    "CXONE_JOBS_SENSOR_INTERVALS": {"telephone": 600},
    "CXONE_SOURCE": {"telephone": "data_download"},
    "CXONE_RECORD_COUNT_TOLERANCES": {"telephone": 0.1},
    "CXONE_EXTRACTION_ENTITIES": {"telephone/cdr": {"entity": "cdr", "version": "1"}},
}


@pytest.mark.parametrize("variable", sorted(BY_CATEGORY))
def test_an_unknown_category_is_refused_naming_variable_name_and_known_ones(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, json.dumps(BY_CATEGORY[variable]))
    with pytest.raises(ValueError) as raised:
        get_settings()
    text = str(raised.value)
    assert f"{variable} names unknown categories ['telephone']" in text, text
    assert "known: " + ", ".join(c.name for c in CATEGORIES) in text, text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"speech": 1}', "from 0 up to (not including) 1"),
        ('{"speech": -0.1}', "from 0 up to (not including) 1"),
        ('{"speech": "ten percent"}', "CXONE_RECORD_COUNT_TOLERANCES"),
        ('{"speech": 0.1', "CXONE_RECORD_COUNT_TOLERANCES must be a JSON object"),
    ],
)
def test_a_bad_tolerance_is_refused(
    value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXONE_RECORD_COUNT_TOLERANCES", value)
    with pytest.raises(ValueError, match="CXONE_RECORD_COUNT_TOLERANCES") as raised:
        get_settings()
    assert expected in str(raised.value)
    monkeypatch.delenv("CXONE_RECORD_COUNT_TOLERANCES")
    monkeypatch.setenv("CXONE_RECORD_COUNT_TOLERANCE", "1.5")
    with pytest.raises(ValueError, match="CXONE_RECORD_COUNT_TOLERANCE"):
        get_settings()


def test_tolerances_per_category_reach_the_resource_and_the_check_descriptions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CXONE_RECORD_COUNT_TOLERANCE", "0.02")
    monkeypatch.setenv("CXONE_RECORD_COUNT_TOLERANCES", '{"speech": 0.1}')
    settings = get_settings()
    assert settings.record_count_tolerance("speech") == 0.1
    assert settings.record_count_tolerance("telephony") == 0.02
    ingest = build_resources(settings)["ingest"]
    assert (ingest.tolerance("speech"), ingest.tolerance("telephony")) == (0.1, 0.02)

    defs = build_defs()
    for cat in CATEGORIES:
        shown = "10%" if cat.name == "speech" else "2%"
        for dt in cat.data_types:
            assets = defs.resolve_assets_def(staged_key(dt))
            spec = next(
                s
                for s in assets.check_specs
                if s.asset_key == staged_key(dt) and s.name == ck.RECORD_COUNT
            )
            assert f"(tolerance {shown}:" in (spec.description or ""), (dt.table, spec)


def _isolate_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str = "") -> None:
    """No AWS region from this machine: the test's own config file, no region variables; the
    API not on the embedded default (which has the local store's region)."""
    path = tmp_path / "aws-config"
    path.write_text(config)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CXONE_API_URL", "https://api-c1.incontact.example")


def test_region_comes_from_aws_region_else_the_sdk_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _isolate_aws(
        monkeypatch,
        tmp_path,
        "[default]\nregion = eu-central-1\n\n[profile reader]\nregion = ap-southeast-2\n",
    )
    assert get_settings().region == "eu-central-1"  # the config file's default profile
    assert build_resources(get_settings())["s3"].region_name == "eu-central-1"
    monkeypatch.setenv("AWS_PROFILE", "reader")
    assert get_settings().region == "ap-southeast-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    assert get_settings().region == "ca-central-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    settings = get_settings()
    assert settings.region == "eu-west-2"
    assert build_resources(settings)["s3"].region_name == "eu-west-2"


def test_without_any_region_none_is_invented(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _isolate_aws(monkeypatch, tmp_path)
    settings = get_settings()
    assert settings.region is None  # not us-east-1: boto3 decides per service
    resources = build_resources(settings)
    assert resources["s3"].region_name is None
    monkeypatch.setenv("AWS_PROFILE", "absent")  # a profile the config file lacks
    assert get_settings().region is None
    # the embedded default (the local stack) keeps its store's region
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("CXONE_API_URL", LOCAL_API_URL)
    assert get_settings().region == SIM_AWS_REGION
