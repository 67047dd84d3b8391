"""``cxone-sync doctor``: every preflight check against the configured API, bucket and
warehouse, one line each."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
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


def bucket_checks(s3: Any, kms: Any, bucket: str, prefix: str = "") -> list[CheckLine]:
    """Every bucket check, in the order the doctor prints them."""
    steps: list[Callable[[], CheckLine]] = [
        lambda: check_versioning(s3, bucket),
        lambda: check_default_encryption(s3, kms, bucket),
        lambda: check_public_access_block(s3, bucket),
        lambda: check_bucket_policy(s3, bucket),
        lambda: check_read_decrypt(s3, bucket, prefix),
    ]
    return [step() for step in steps]


def run_doctor(settings: Settings) -> list[CheckLine]:
    """Every preflight check against the configured API, bucket and warehouse."""
    from cxone_sync.bridge.doctor import bridge_lines

    download = [c for c in CATEGORIES if settings.source_for(c.name) == "data_download"]
    lines = [check_api(settings)] if download else []
    if len(download) < len(CATEGORIES) or settings.cxone_source:
        lines += bridge_lines(settings)
    try:
        s3, kms = aws_clients(settings)
    except (BotoCoreError, ValueError) as exc:
        lines.append(
            check_failed(
                "aws_client",
                f"cannot create AWS clients: {type(exc).__name__}: {exc}",
                "check AWS_REGION, AWS_ENDPOINT_URL_S3 and the AWS credential chain",
            )
        )
    else:
        lines += bucket_checks(s3, kms, settings.cxone_bucket)
    lines.append(check_warehouse(settings))
    return lines


def doctor() -> int:
    """``cxone-sync doctor``: one line per check; 1 when any check failed."""
    # the client logs each retry; the doctor's lines already say what failed
    logging.getLogger("cxone_sync.cxone.client").setLevel(logging.ERROR)
    lines = run_doctor(get_settings())
    for line in lines:
        print("\n".join(line.render()))
    failed = sum(not line.ok for line in lines)
    print(f"\n{len(lines) - failed} passed, {failed} failed")
    sys.stdout.flush()
    return 1 if failed else 0
