"""One ExportSource for the platform, each category routed to its surface (``CXONE_SOURCE``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from cxone_sync.cxone.models import DownloadConfig, Job, JobStatus
from cxone_sync.cxone.source import ExportSource


class RoutingSource:
    """Categories in ``bridged`` read the bridge's manifests; every other one the Data
    Download API. ``server_now`` is the Data Download client's (None until it answered, then
    the sensors fall back to the local clock)."""

    def __init__(self, default: ExportSource, bridged: Mapping[str, ExportSource]) -> None:
        self.default = default
        self.bridged = dict(bridged)

    def _for(self, category: str) -> ExportSource:
        return self.bridged.get(category, self.default)

    def server_now(self) -> datetime | None:
        server_now = getattr(self.default, "server_now", None)
        return server_now() if server_now is not None else None

    def download_config(self, category: str) -> DownloadConfig:
        return self._for(category).download_config(category)

    def iter_jobs(
        self,
        category: str,
        *,
        statuses: Iterable[JobStatus] = (),
        updated_since: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        return self._for(category).iter_jobs(
            category, statuses=statuses, updated_since=updated_since, page_size=page_size
        )

    def get_job(self, category: str, job_id: str) -> Job:
        return self._for(category).get_job(category, job_id)

    def manual_export(
        self,
        category: str,
        start: datetime,
        end: datetime,
        destination_prefix: str,
        overwrite: bool = False,
    ) -> Job:
        return self._for(category).manual_export(
            category, start, end, destination_prefix, overwrite
        )
