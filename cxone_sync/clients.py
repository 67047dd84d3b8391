"""The one environment-to-clients map: the settings object in, the clients out.

Plain Python (no Dagster): the Dagster resources (:mod:`cxone_sync.defs.resources`, which the
assets and sensors use), the command line, ``doctor`` and ``policy`` all get their CXone API
client, boto3 S3 and KMS clients and pyarrow S3 filesystem from here, so an endpoint, region or
credential rule is written once.

* **Endpoints.** S3 and KMS are separate services with separate endpoints, resolved as boto3
  does: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_KMS``, then ``AWS_ENDPOINT_URL``, then AWS.
  A production ``AWS_ENDPOINT_URL_S3`` (an S3 interface endpoint) never sends KMS calls there.
  On the embedded default both are the local S3 store, which serves KMS as well.
* **pyarrow** does not read those variables: :func:`arrow_s3_endpoint` is the one place that
  resolves the S3 endpoint for it, and :func:`arrow_s3_filesystem` hands it the same region and
  credentials (boto3's credential chain) as the boto3 client.
* **Credentials** come from AWS's chain (environment, profile, role); only the embedded default
  without ``AWS_ACCESS_KEY_ID`` uses the local store's dummy key. A secret never appears in a
  ``repr``, a cache key or an error of this module.
* **Caching.** Building a boto3 client costs ~150 ms (it loads the service model), so
  :func:`cached_client` shares one client per process and configuration; the key is a SHA-256
  over every field, secrets and the ``AWS_*`` variables boto3 reads included, so two
  configurations that differ only in a secret never share a client.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from cxone_sync.settings import SIM_AWS_KEY, Settings

if TYPE_CHECKING:
    import httpx
    from pyarrow.fs import S3FileSystem

    from cxone_sync.cxone.client import CXoneClient, RetryPolicy

Service = Literal["s3", "kms"]

DEFAULT_MAX_ATTEMPTS = 5
"""boto3 attempts per call (standard retry mode), as dagster-aws's S3Resource defaults to."""

_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
"""What boto3 reads from the environment when a field below is left to its chain."""

_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")


@dataclass(frozen=True)
class AwsConfig:
    """Where and as whom the platform talks to S3 and KMS. None: boto3's own resolution."""

    region: str | None = None
    s3_endpoint_url: str | None = None
    kms_endpoint_url: str | None = None
    profile_name: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_mode: Literal["standard", "legacy"] = "standard"
    connect_timeout: float | None = None
    read_timeout: float | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    use_ssl: bool = True
    verify: bool | str | None = None
    unsigned: bool = False

    def endpoint(self, service: Service) -> str | None:
        return self.s3_endpoint_url if service == "s3" else self.kms_endpoint_url

    def fingerprint(self) -> str:
        """A SHA-256 over every field and the ``AWS_*`` variables: a cache key that tells
        configurations apart by their secrets without containing one."""
        env = {name: os.environ.get(name) for name in _AWS_VARIABLES}
        text = json.dumps([asdict(self), env], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def kms_endpoint_url(settings: Settings) -> str | None:
    """KMS's endpoint: ``AWS_ENDPOINT_URL_KMS``, then ``AWS_ENDPOINT_URL``; else None (AWS's).

    ``AWS_ENDPOINT_URL_S3`` is never used for KMS (an S3 endpoint serves no KMS), except on the
    embedded default, whose S3 endpoint is the local store: it serves KMS as well."""
    explicit = settings.aws_endpoint_url_kms or settings.aws_endpoint_url
    if explicit:
        return explicit
    return settings.s3_endpoint_url if settings.embedded else None


def aws_config(settings: Settings, **overrides: Any) -> AwsConfig:
    """The platform's AWS configuration from the settings; ``overrides`` replace fields
    (e.g. ``doctor`` asks for fewer attempts and short timeouts)."""
    credentials: dict[str, str] = {}
    if settings.embedded and not os.environ.get("AWS_ACCESS_KEY_ID"):
        # the local S3 store accepts any key; AWS's credential chain is used otherwise
        credentials = {"access_key_id": SIM_AWS_KEY, "secret_access_key": SIM_AWS_KEY}
    fields: dict[str, Any] = {
        "region": settings.region,
        "s3_endpoint_url": settings.s3_endpoint_url,
        "kms_endpoint_url": kms_endpoint_url(settings),
        **credentials,
        **overrides,
    }
    return AwsConfig(**fields)


# ------------------------------------------------------------------------------------ boto3


def _session(aws: AwsConfig) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
        aws_session_token=aws.session_token,
        region_name=aws.region,
        profile_name=aws.profile_name,
    )


def _botocore_config(aws: AwsConfig, service: Service) -> Config:
    options: dict[str, Any] = {
        "retries": {"max_attempts": aws.max_attempts, "mode": aws.retry_mode}
    }
    if aws.connect_timeout is not None:
        options["connect_timeout"] = aws.connect_timeout
    if aws.read_timeout is not None:
        options["read_timeout"] = aws.read_timeout
    if service == "s3" and aws.addressing_style:
        options["s3"] = {"addressing_style": aws.addressing_style}
    if aws.unsigned:
        options["signature_version"] = UNSIGNED
    return Config(**options)


_CONFIG_OF: weakref.WeakKeyDictionary[Any, AwsConfig] = weakref.WeakKeyDictionary()
"""The configuration each S3 client of this module was built from (for pyarrow)."""


def client(service: Service, aws: AwsConfig) -> Any:
    """A new boto3 client of ``service`` (``s3`` or ``kms``) for ``aws``."""
    built = _session(aws).client(
        service,  # type: ignore[call-overload]
        endpoint_url=aws.endpoint(service),
        use_ssl=aws.use_ssl,
        verify=aws.verify,
        config=_botocore_config(aws, service),
    )
    if service == "s3":
        _CONFIG_OF[built] = aws
    return built


_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def cached_client(service: Service, aws: AwsConfig) -> Any:
    """One client per process, service and configuration (boto3 clients are thread-safe)."""
    key = (service, aws.fingerprint())
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is None:
            found = _CACHE[key] = client(service, aws)
        return found


def s3_and_kms(settings: Settings, **overrides: Any) -> tuple[Any, Any]:
    """New S3 and KMS clients for the settings (each on its own endpoint)."""
    aws = aws_config(settings, **overrides)
    return client("s3", aws), client("kms", aws)


def aws_credentials(aws: AwsConfig) -> tuple[str, str, str | None] | None:
    """(access key id, secret, session token) from boto3's chain for ``aws``; None when the
    chain finds none. For the libraries that sign their own requests (pyarrow, s3fs)."""
    found = _session(aws).get_credentials()
    if found is None:
        return None
    frozen = found.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        return None
    return frozen.access_key, frozen.secret_key, frozen.token


# ---------------------------------------------------------------------------------- pyarrow


def arrow_s3_endpoint(aws: AwsConfig) -> str | None:
    """The S3 endpoint to hand pyarrow (and the Snowflake emulator's s3fs), which read no
    ``AWS_ENDPOINT_URL*`` variable: the configured one, else ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``; None: AWS's own endpoint for the region."""
    return (
        aws.s3_endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def arrow_s3_options(aws: AwsConfig) -> dict[str, Any]:
    """Keyword arguments of ``pyarrow.fs.S3FileSystem`` for the same endpoint, region and
    credentials as the boto3 S3 client of ``aws``.

    The credentials are frozen at call time (a role's temporary credentials included): build
    the filesystem where it is used, not once per process.
    """
    from pyarrow.fs import AwsStandardS3RetryStrategy

    options: dict[str, Any] = {
        "retry_strategy": AwsStandardS3RetryStrategy(max_attempts=aws.max_attempts),
    }
    session = _session(aws)
    region = aws.region or session.region_name
    if region:
        options["region"] = region
    endpoint = arrow_s3_endpoint(aws)
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        options["scheme"] = parts.scheme
        if aws.addressing_style == "virtual":
            options["force_virtual_addressing"] = True
    elif not aws.use_ssl:
        options["scheme"] = "http"
    if aws.connect_timeout is not None:
        options["connect_timeout"] = aws.connect_timeout
    if aws.read_timeout is not None:
        options["request_timeout"] = aws.read_timeout
    credentials = None if aws.unsigned else aws_credentials(aws)
    if credentials is None:
        options["anonymous"] = True  # what boto3 does without credentials: unsigned requests
    else:
        key, secret, token = credentials
        options.update(access_key=key, secret_key=secret)
        if token:
            options["session_token"] = token
    return options


def arrow_s3_filesystem(aws: AwsConfig) -> S3FileSystem:
    """pyarrow's S3 filesystem for ``aws`` (ranged reads: ``open_input_file``)."""
    from pyarrow.fs import S3FileSystem

    return S3FileSystem(**arrow_s3_options(aws))


def arrow_filesystem_for(s3_client: Any) -> S3FileSystem:
    """pyarrow's S3 filesystem beside a boto3 S3 client.

    A client built here carries its configuration (same endpoint, region, credential chain).
    A client built elsewhere (a test's, a benchmark's) gives its endpoint and region; its
    credentials then come from boto3's default chain, as its own would without explicit keys.
    """
    aws = _CONFIG_OF.get(s3_client)
    if aws is None:
        endpoint = str(s3_client.meta.endpoint_url or "")
        host = urlsplit(endpoint).hostname or ""
        aws = AwsConfig(
            region=s3_client.meta.region_name,
            s3_endpoint_url=None if not endpoint or host.endswith(_AWS_HOSTS) else endpoint,
        )
    return arrow_s3_filesystem(aws)


# ------------------------------------------------------------------------------------ CXone


def cxone_client(
    settings: Settings,
    *,
    timeout: float | httpx.Timeout | None = None,
    retry: RetryPolicy | None = None,
) -> CXoneClient:
    """The CXone Data Download API client (or the simulator's) for the settings."""
    from cxone_sync.cxone.client import DEFAULT_TIMEOUT, CXoneClient

    return CXoneClient(
        base_url=settings.cxone_api_url,
        token_url=settings.token_url,
        client_id=settings.cxone_client_id,
        client_secret=settings.cxone_client_secret,
        access_key_id=settings.cxone_access_key_id,
        access_key_secret=settings.cxone_access_key_secret,
        download_ids=settings.download_ids(),
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        retry=retry,
    )
