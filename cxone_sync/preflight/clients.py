"""The boto3 clients the preflight uses (doctor, ``cxone-sync policy``)."""

from __future__ import annotations

from typing import Any

from cxone_sync.settings import Settings


def aws_clients(settings: Settings) -> tuple[Any, Any]:
    """boto3 S3 and KMS clients for the settings (each on its own endpoint), failing fast."""
    from cxone_sync.clients import s3_and_kms

    return s3_and_kms(
        settings,
        max_attempts=2,
        retry_mode="legacy",
        connect_timeout=5,
        read_timeout=30,
        addressing_style="auto",
    )
