"""A local S3-compatible endpoint (moto's server) and the secure export bucket on it.

:class:`S3Endpoint` runs moto's WSGI application in a threaded werkzeug server on loopback,
wrapped in our own middleware that does two things moto does not:

* It pins every request to the endpoint's own AWS account. moto keeps its state per process,
  so two endpoints in one process would otherwise see each other's buckets; with one account
  per endpoint (and that account's state dropped on :meth:`S3Endpoint.stop`) each endpoint is
  an isolated store. Bucket names are still one namespace per process, as in AWS: two endpoints
  alive at once cannot both hold a bucket of the same name.
* It keeps bucket policies itself, stored and read back byte for byte but not enforced: moto
  evaluates policies without their conditions, so the export bucket's conditional denies (no
  plain HTTP, no upload without SSE-KMS) would deny every request. A preflight inspects them.
* It answers the reader's ``GetObject`` on keys the ``deny`` callable names with the 403
  ``AccessDenied`` S3 sends when the caller may not use the object's KMS key (``kms:Decrypt``),
  which stands for a rotated or revoked customer-managed key. ``HeadObject``, ``PutObject`` and
  listings still work for those keys, as they do on AWS. The writer (the simulated CXone
  exporter, signing with :data:`WRITER_ACCESS_KEY`) keeps its grant and reads everything; its
  requests never consult ``deny``, so the rule may lock what the writer holds locked.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode
from uuid import uuid4
from xml.sax.saxutils import escape

from moto.core.base_backend import BackendDict
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import FakeKey, s3_backends
from werkzeug.serving import BaseWSGIServer, make_server

from cxone_sync.settings import LOCAL_HOST, SIM_AWS_KEY, SIM_AWS_REGION
from cxone_sync.simulator._loopback import LoopbackServer

logger = logging.getLogger(__name__)

DenyRule = Callable[[str, str], bool]
"""``deny(bucket, key)``: True when the reader must not be able to read that object."""

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

WRITER_ACCESS_KEY = "cxone-sim-writer"
"""Access key id of the simulated exporter: exempt from the ``deny`` rule."""

KMS_DECRYPT_DENIED = (
    "User: arn:aws:iam::{account}:user/cxone-sync-reader is not authorized to perform: "
    "kms:Decrypt on resource: {key_arn} because no identity-based policy allows the "
    "kms:Decrypt action"
)

# GET on an object with one of these sub-resources is not GetObject (ACL, tags, attributes, ...).
_NON_READ_SUBRESOURCES = frozenset(
    {"acl", "tagging", "attributes", "legal-hold", "retention", "torrent", "uploadId"}
)

_account_lock = threading.Lock()
_account_counter = 0


def _next_account_id() -> str:
    """A fresh 12-digit AWS account id for one endpoint (distinct from moto's default)."""
    global _account_counter
    with _account_lock:
        _account_counter += 1
        return f"{900000000000 + _account_counter:012d}"


def _no_deny(bucket: str, key: str) -> bool:
    return False


def _bucket_and_key(environ: dict[str, Any]) -> tuple[str, str] | None:
    """The (bucket, key) an object request addresses, path-style or virtual-hosted."""
    path = str(environ.get("PATH_INFO", "")).lstrip("/")
    host = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0]
    if _is_virtual_host(host):
        bucket, key = host.split(".", 1)[0], path
    else:
        bucket, _, key = path.partition("/")
    return (bucket, key) if bucket and key else None


def _is_virtual_host(host: str) -> bool:
    """``bucket.localhost`` or ``bucket.s3.<region>...``; IP and plain hosts are path-style."""
    return host.endswith(".localhost") or ".s3." in host or ".s3-" in host


def _access_key(environ: dict[str, Any]) -> str | None:
    """The access key id a request is signed with (header or presigned query), if any."""
    credential = re.search(r"Credential=([^/,\s]+)/", str(environ.get("HTTP_AUTHORIZATION", "")))
    if credential is not None:
        return credential.group(1)
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    presigned = query.get("X-Amz-Credential", [""])[0]
    return presigned.split("/", 1)[0] or None


def _is_get_object(environ: dict[str, Any]) -> bool:
    if environ.get("REQUEST_METHOD") != "GET":
        return False
    query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    return not _NON_READ_SUBRESOURCES.intersection(query)


def _policy_bucket(environ: dict[str, Any]) -> str | None:
    """The bucket of a Put/Get/DeleteBucketPolicy request, else None."""
    query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    if "policy" not in query or environ.get("REQUEST_METHOD") not in {"GET", "PUT", "DELETE"}:
        return None
    path = str(environ.get("PATH_INFO", "")).strip("/")
    host = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0]
    if _is_virtual_host(host):
        return None if path else host.split(".", 1)[0]
    return path if path and "/" not in path else None


def _respond(
    start_response: StartResponse, status: str, body: bytes, content_type: str
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _error(code: str, message: str, resource: str) -> bytes:
    """An S3 XML error document."""
    request_id = uuid4().hex[:16].upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
        f"<HostId>{uuid4().hex}</HostId></Error>"
    ).encode()


class _EndpointApp:
    """WSGI middleware around moto: per-endpoint account, KMS-denied reads."""

    def __init__(self, moto_app: WsgiApp, account_id: str, deny: DenyRule) -> None:
        self._moto = moto_app
        self.account_id = account_id
        self.deny = deny
        self._policies: dict[str, bytes] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.account_id
        bucket = _policy_bucket(environ)
        if bucket is not None:
            return self._bucket_policy(environ, start_response, bucket)
        reader = _is_get_object(environ) and _access_key(environ) != WRITER_ACCESS_KEY
        target = _bucket_and_key(environ) if reader else None
        if target is not None and self.deny(*target):
            key_arn = self._object_kms_key(environ)
            if key_arn is not None:
                return self._deny(start_response, target, key_arn)
        return self._moto(environ, start_response)

    def _bucket_policy(
        self, environ: dict[str, Any], start_response: StartResponse, bucket: str
    ) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "PUT":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            self._policies[bucket] = environ["wsgi.input"].read(length)
            return _respond(start_response, "204 No Content", b"", "text/plain")
        if method == "DELETE":
            self._policies.pop(bucket, None)
            return _respond(start_response, "204 No Content", b"", "text/plain")
        policy = self._policies.get(bucket)
        if policy is None:
            body = _error("NoSuchBucketPolicy", "The bucket policy does not exist", f"/{bucket}")
            return _respond(start_response, "404 Not Found", body, "application/xml")
        return _respond(start_response, "200 OK", policy, "application/json")

    def _object_kms_key(self, environ: dict[str, Any]) -> str | None:
        """The object's KMS key ARN, read with a HeadObject through moto; None when absent."""
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        head = dict(environ)
        head.update(
            REQUEST_METHOD="HEAD",
            QUERY_STRING=urlencode({"versionId": query["versionId"][0]})
            if "versionId" in query
            else "",
            CONTENT_LENGTH="0",
        )
        head["wsgi.input"] = io.BytesIO(b"")
        head.pop("HTTP_RANGE", None)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            captured["status"] = status
            captured["headers"] = {k.lower(): v for k, v in headers}

        body = self._moto(head, capture)
        for _ in body:
            pass
        if not str(captured.get("status", "")).startswith("200"):
            return None
        headers: dict[str, str] = captured["headers"]
        return headers.get(
            "x-amz-server-side-encryption-aws-kms-key-id",
            f"arn:aws:kms:{SIM_AWS_REGION}:{self.account_id}:alias/aws/s3",
        )

    def _deny(
        self, start_response: StartResponse, target: tuple[str, str], key_arn: str
    ) -> list[bytes]:
        message = KMS_DECRYPT_DENIED.format(account=self.account_id, key_arn=key_arn)
        body = _error("AccessDenied", message, f"/{target[0]}/{target[1]}")
        return _respond(start_response, "403 Forbidden", body, "application/xml")


class _QuietRequestHandler(MotoRequestHandler):
    """moto's request handler, logging to ``logging`` at debug level instead of stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug(message, *args)


def _drop_account(account_id: str) -> None:
    """Forget everything moto holds for one account (and free its object buffers)."""
    for account_id_s3, _, backend in s3_backends.iter_backends():
        if account_id_s3 != account_id:
            continue
        for bucket in backend.buckets.values():  # type: ignore[attr-defined]
            for key in bucket.keys.values():
                if isinstance(key, FakeKey):
                    key.dispose()
            s3_backends.bucket_accounts.pop(bucket.name, None)
    instances: list[BackendDict[Any]] = BackendDict._instances  # type: ignore[misc]
    for backend_dict in list(instances):
        backend_dict.pop(account_id, None)


class S3Endpoint(LoopbackServer):
    """moto's server on ``127.0.0.1``; ``port=0`` picks a free port. A context manager."""

    def __init__(self, port: int = 0, deny: DenyRule | None = None) -> None:
        self.account_id = _next_account_id()
        self._app = _EndpointApp(
            DomainDispatcherApplication(create_backend_app), self.account_id, deny or _no_deny
        )
        server: BaseWSGIServer = make_server(
            LOCAL_HOST, port, self._app, threaded=True, request_handler=_QuietRequestHandler
        )
        self._serve(server, "s3-endpoint")

    def set_deny(self, deny: DenyRule) -> None:
        """Replace the rule naming the objects the reader may not decrypt."""
        self._app.deny = deny

    def client(self, service: str = "s3") -> Any:
        """A boto3 client for this endpoint as the reader (dummy credentials; moto accepts any)."""
        return make_client(self.url, service)

    def writer_client(self) -> Any:
        """A boto3 S3 client as the simulated exporter, which the ``deny`` rule never blocks."""
        return make_client(self.url, access_key=WRITER_ACCESS_KEY)

    def stop(self) -> None:
        super().stop()
        _drop_account(self.account_id)


def make_client(
    endpoint_url: str,
    service: str = "s3",
    region: str = SIM_AWS_REGION,
    access_key: str = SIM_AWS_KEY,
) -> Any:
    """A boto3 client on ``endpoint_url`` with dummy credentials (the reader's by default),
    built by :mod:`cxone_sync.clients` (so pyarrow reads beside it with the same key)."""
    from cxone_sync.clients import AwsConfig, client

    aws = AwsConfig(
        region=region,
        s3_endpoint_url=endpoint_url,
        kms_endpoint_url=endpoint_url,
        access_key_id=access_key,
        secret_access_key=SIM_AWS_KEY,
        max_attempts=2,
        retry_mode="legacy",
        addressing_style="path",
    )
    if service not in ("s3", "kms"):
        raise ValueError(f"make_client builds s3 and kms clients, not {service!r}")
    return client("kms" if service == "kms" else "s3", aws)


def export_bucket_policy(bucket: str) -> dict[str, Any]:
    """Deny plain-HTTP access and uploads that are not SSE-KMS encrypted."""
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyUnencryptedUploads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{arn}/*",
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
            },
        ],
    }


def create_export_bucket(endpoint_url: str, bucket: str, region: str = SIM_AWS_REGION) -> str:
    """Create ``bucket`` as a secure CXone export bucket; returns its KMS key ARN.

    Versioning on; default SSE-KMS with a new customer-managed key (bucket key enabled); all four
    public-access blocks on; a policy denying non-TLS access and non-KMS uploads.
    """
    kms = make_client(endpoint_url, "kms", region)
    key_arn: str = kms.create_key(
        Description=f"CXone export bucket {bucket}",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
    )["KeyMetadata"]["Arn"]
    s3 = make_client(endpoint_url, "s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(export_bucket_policy(bucket)))
    return key_arn
