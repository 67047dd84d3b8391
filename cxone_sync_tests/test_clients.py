"""The one environment-to-clients map: S3 and KMS endpoints resolved separately (boto3 clients,
doctor's clients and the Dagster resources alike), the process-wide cache keyed by every
credential, and pyarrow's S3 filesystem on the same endpoint and credentials as boto3's."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxone_sync import clients
from cxone_sync.defs.resources import CachedS3Resource, build_resources
from cxone_sync.preflight.clients import aws_clients
from cxone_sync.settings import LOCAL_S3_URL, SIM_AWS_KEY, get_settings
from cxone_sync.simulator.s3 import S3Endpoint

PRODUCTION_API = "https://api-c1.niceincontact.com"
S3_VPCE = "https://bucket.vpce-0a1b2c3d-e4f5g6h7.s3.eu-west-1.vpce.amazonaws.com"
KMS_VPCE = "https://vpce-0a1b2c3d-kms.kms.eu-west-1.vpce.amazonaws.com"
AWS_KMS = "https://kms.eu-west-1.amazonaws.com"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KMS")


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A deployment: CXone's API, AWS in eu-west-1, credentials from the environment."""
    for name in ("AWS_PROFILE", *ENDPOINT_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CXONE_API_URL", PRODUCTION_API)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEREADER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "reader-secret-not-to-be-shown")
    yield


def _endpoints(s3: Any, kms: Any) -> tuple[str, str]:
    return s3.meta.endpoint_url, kms.meta.endpoint_url


def _all_endpoints() -> dict[str, tuple[str, str]]:
    """(S3, KMS) endpoints of every way the platform builds its AWS clients."""
    settings = get_settings()
    resource = build_resources(settings)["s3"]
    return {
        "clients": _endpoints(*clients.s3_and_kms(settings)),
        "doctor": _endpoints(*aws_clients(settings)),
        "resource": _endpoints(resource.get_client(), resource.get_kms_client()),
    }


def test_kms_is_not_sent_to_the_s3_endpoint(
    production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", S3_VPCE)
    assert _all_endpoints() == {
        "clients": (S3_VPCE, AWS_KMS),
        "doctor": (S3_VPCE, AWS_KMS),
        "resource": (S3_VPCE, AWS_KMS),
    }


def test_each_service_takes_its_own_endpoint_and_the_shared_one_as_fallback(
    production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", S3_VPCE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", KMS_VPCE)
    assert set(_all_endpoints().values()) == {(S3_VPCE, KMS_VPCE)}
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv("AWS_ENDPOINT_URL_KMS")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert set(_all_endpoints().values()) == {("http://127.0.0.1:4566", "http://127.0.0.1:4566")}


def test_the_embedded_default_uses_the_local_store_for_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CXONE_API_URL", "AWS_ACCESS_KEY_ID", *ENDPOINT_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    aws = clients.aws_config(get_settings())
    assert aws.s3_endpoint_url == aws.kms_endpoint_url == LOCAL_S3_URL
    assert aws.access_key_id == SIM_AWS_KEY  # the local store's dummy key, never a real one


def _resource(secret: str, token: str | None = None) -> CachedS3Resource:
    return CachedS3Resource(
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIAEXAMPLESHARED",
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def test_resources_differing_only_in_a_secret_never_share_a_client() -> None:
    first, again = _resource("secret-one").get_client(), _resource("secret-one").get_client()
    assert first is again  # one client per process and configuration
    assert _resource("secret-two").get_client() is not first
    assert _resource("secret-one", token="session-a").get_client() is not first
    assert _resource("secret-one", token="session-a").get_kms_client() is not first
    # and the key that tells them apart shows no secret
    aws = clients.AwsConfig(access_key_id="AKIA1", secret_access_key="s3cr3t", session_token="t0k")
    for shown in (aws.fingerprint(), repr(aws), str(aws)):
        assert "s3cr3t" not in shown and "t0k" not in shown
    assert (
        aws.fingerprint()
        != clients.AwsConfig(
            access_key_id="AKIA1", secret_access_key="other", session_token="t0k"
        ).fingerprint()
    )


def test_arrow_gets_the_s3_endpoint_region_and_chain_credentials(
    production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9999")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-from-the-chain")
    options = clients.arrow_s3_options(clients.aws_config(get_settings()))
    assert options["endpoint_override"] == "127.0.0.1:9999" and options["scheme"] == "http"
    assert options["region"] == "eu-west-1"
    assert (options["access_key"], options["secret_key"], options["session_token"]) == (
        "AKIAEXAMPLEREADER",
        "reader-secret-not-to-be-shown",
        "session-from-the-chain",
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    options = clients.arrow_s3_options(clients.aws_config(get_settings()))
    assert "endpoint_override" not in options  # AWS's own endpoint for the region


def test_arrow_reads_a_footer_beside_a_boto3_client(s3_endpoint: S3Endpoint) -> None:
    s3 = s3_endpoint.client()
    bucket = "cxone-clients-arrow"
    s3.create_bucket(Bucket=bucket)
    body = io.BytesIO()
    pq.write_table(pa.table({"n": list(range(1234))}), body)
    s3.put_object(Bucket=bucket, Key="a/f.parquet", Body=body.getvalue())

    fs = clients.arrow_filesystem_for(s3)
    with fs.open_input_file(f"{bucket}/a/f.parquet") as handle:
        assert pq.read_metadata(handle).num_rows == 1234
    with pytest.raises(FileNotFoundError):
        fs.open_input_file(f"{bucket}/a/missing.parquet")
