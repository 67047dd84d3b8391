"""The interface the platform consumes CXone exports through.

CONTRACT §1: the Data Download job endpoints are not in NICE's public documentation, so the
platform talks to this Protocol, and another source (the Data Extraction API, a replay of stored
manifests) can implement it without touching assets or sensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol, runtime_checkable

from cxone_sync.cxone.models import DownloadConfig, Job, JobStatus


@runtime_checkable
class ExportSource(Protocol):
    def download_config(self, category: str) -> DownloadConfig:
        """The configuration (data types, destination bucket and prefix) of a category."""
        ...

    def iter_jobs(
        self,
        category: str,
        *,
        statuses: Iterable[JobStatus] = (),
        updated_since: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every job of a category (all pages), optionally only these statuses or those whose
        state changed at or after ``updated_since`` (time-zone aware)."""
        ...

    def get_job(self, category: str, job_id: str) -> Job:
        """One job of a category by id."""
        ...

    def manual_export(
        self,
        category: str,
        start: datetime,
        end: datetime,
        destination_prefix: str,
        overwrite: bool = False,
    ) -> Job:
        """Ask for an export of ``[start, end)`` under ``destination_prefix``; the queued job."""
        ...
