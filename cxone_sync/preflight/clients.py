"""The boto3 clients the preflight uses (doctor, ``cxone-sync policy``)."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

from cxone_sync.settings import SIM_AWS_KEY, Settings


def aws_clients(settings: Settings) -> tuple[Any, Any]:
    """boto3 S3 and KMS clients for the configured endpoint and region (KMS on the same one)."""
    credentials: dict[str, str] = {}
    if settings.embedded and not os.environ.get("AWS_ACCESS_KEY_ID"):
        credentials = {"aws_access_key_id": SIM_AWS_KEY, "aws_secret_access_key": SIM_AWS_KEY}
    config = Config(
        retries={"max_attempts": 2},
        connect_timeout=5,
        read_timeout=30,
        s3={"addressing_style": "auto"},
    )
    endpoint = settings.s3_endpoint_url
    s3, kms = (
        boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint,
            region_name=settings.region,
            config=config,
            **credentials,
        )
        for service in ("s3", "kms")
    )
    return s3, kms
