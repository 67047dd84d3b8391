"""``cxone-sync doctor``: every preflight check against the configured API, bucket and
warehouse, one line each."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError

from cxone_sync.catalog import CATEGORIES
from cxone_sync.preflight.api import check_api
from cxone_sync.preflight.bucket import (
    check_bucket_policy,
    check_default_encryption,
    check_public_access_block,
    check_versioning,
)
from cxone_sync.preflight.clients import aws_clients
from cxone_sync.preflight.common import CheckLine, check_failed
from cxone_sync.preflight.read import check_read_decrypt
from cxone_sync.preflight.warehouse import check_warehouse
from cxone_sync.settings import Settings, get_settings


def iter_bucket_checks(s3: Any, kms: Any, bucket: str, prefix: str = "") -> Iterator[CheckLine]:
    """Every bucket check, in the order the doctor prints them, each as it completes."""
    steps: list[Callable[[], CheckLine]] = [
        lambda: check_versioning(s3, bucket),
        lambda: check_default_encryption(s3, kms, bucket),
        lambda: check_public_access_block(s3, bucket),
        lambda: check_bucket_policy(s3, bucket),
        lambda: check_read_decrypt(s3, bucket, prefix),
    ]
    for step in steps:
        yield step()


def bucket_checks(s3: Any, kms: Any, bucket: str, prefix: str = "") -> list[CheckLine]:
    """Every bucket check, in the order the doctor prints them."""
    return list(iter_bucket_checks(s3, kms, bucket, prefix))


def iter_doctor(settings: Settings) -> Iterator[CheckLine]:
    """Every preflight check against the configured API, bucket and warehouse, each line as
    its check completes (the doctor prints it then, not all at the end)."""
    from cxone_sync.bridge.doctor import bridge_lines

    download = [c for c in CATEGORIES if settings.source_for(c.name) == "data_download"]
    if download:
        yield check_api(settings)
    if len(download) < len(CATEGORIES) or settings.cxone_source:
        yield from bridge_lines(settings)
    try:
        s3, kms = aws_clients(settings)
    except (BotoCoreError, ValueError) as exc:
        yield check_failed(
            "aws_client",
            f"cannot create AWS clients: {type(exc).__name__}: {exc}",
            "check AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_KMS and the AWS "
            "credential chain",
        )
    else:
        yield from iter_bucket_checks(s3, kms, settings.cxone_bucket)
    yield check_warehouse(settings)


def run_doctor(settings: Settings) -> list[CheckLine]:
    """Every preflight check against the configured API, bucket and warehouse."""
    return list(iter_doctor(settings))


def doctor() -> int:
    """``cxone-sync doctor``: one line per check as it completes; 1 when any check failed."""
    # the client logs each retry; the doctor's lines already say what failed (the level is put
    # back afterwards: a process that runs the doctor keeps its client logs)
    client_log = logging.getLogger("cxone_sync.cxone.client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    passed = failed = 0
    try:
        for line in iter_doctor(get_settings()):
            print("\n".join(line.render()), flush=True)
            passed, failed = passed + line.ok, failed + (not line.ok)
    finally:
        client_log.setLevel(level)
    print(f"\n{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0
