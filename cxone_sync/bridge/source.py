"""The bridge's landing side: Parquet files, job manifests, and the ExportSource over them.

Layout in the landing bucket (``CXONE_BUCKET``), under ``CXONE_BRIDGE_PREFIX`` (``cxone-bridge/``):

* files: ``{prefix}{category}/{data_type}/year=YYYY/month=MM/day=DD/hour=HH/part-NNNNN.parquet``
  (CONTRACT §2; the hour folder is the interval's start; a manual export writes the same under
  its ``destination_prefix``), zstd-compressed, uploaded with their SHA-256 (S3's
  ``ChecksumSHA256`` and the manifest's ``files[].sha256``);
* manifests: ``{prefix}_manifests/{category}/{job id}.json``, one Data Download job each
  (CONTRACT §1 shape: QUEUED, RUNNING, COMPLETED with ``files[]`` counts, or FAILED with
  ``error_details``).

:class:`BridgeSource` serves those manifests through the platform's ``ExportSource``, so
assets, gates, sensors and MERGE consume them unchanged. :class:`Bridge` does the extractions:
``sync`` for intervals that are due, ``run_queued`` for the manual exports the platform's
recovery asked for (a FAILED bridge job is recovered like a FAILED Data Download job: bounded
manual exports, then UNRECOVERED).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cxone_sync.bridge.convert import CsvFormatError, csv_to_table
from cxone_sync.bridge.extraction import (
    DataExtractionClient,
    ExtractionError,
    iso_z,
)
from cxone_sync.bridge.reporting import DEFAULT_DATA_KEYS, fetch_updated, records_to_table
from cxone_sync.catalog import CATEGORIES, Category, category
from cxone_sync.cxone.errors import NotFoundError
from cxone_sync.cxone.models import DownloadConfig, Job, JobStatus
from cxone_sync.settings import Settings

log = logging.getLogger(__name__)

MANIFESTS = "_manifests/"
ABANDONED_AFTER = timedelta(hours=6)
MANIFEST_CLOCK_SKEW = timedelta(hours=1)
"""A RUNNING bridge job not updated for this long was abandoned (its process died)."""


@dataclass(frozen=True)
class EntityMapping:
    """Which entity (and version) of which surface feeds one platform data type."""

    category: str
    data_type: str
    entity: str
    version: str
    types: Mapping[str, str]
    updated_at: str | None = None
    lag: timedelta = timedelta(minutes=30)
    surface: str = "data_extraction"
    data_key: str | None = None
    """Reporting API: the answer's list (``completedContacts``)."""


def entity_mappings(settings: Settings) -> dict[tuple[str, str], EntityMapping]:
    """``CXONE_EXTRACTION_ENTITIES`` parsed and checked against the catalog."""
    out: dict[tuple[str, str], EntityMapping] = {}
    for target, spec in settings.cxone_extraction_entities.items():
        cat_name, _, dt_name = target.partition("/")
        try:
            category(cat_name).data_type(dt_name)
        except KeyError as exc:
            raise ValueError(f"CXONE_EXTRACTION_ENTITIES: {target!r}: {exc.args[0]}") from None
        entity, version = spec.get("entity"), spec.get("version")
        types = spec.get("types", {})
        updated_at = spec.get("updated_at")
        lag = spec.get("lag_minutes", 30)
        if not isinstance(entity, str) or not isinstance(version, str | int):
            raise ValueError(
                f"CXONE_EXTRACTION_ENTITIES: {target!r} needs 'entity' and 'version' "
                '(e.g. {"entity": "qm-workflows", "version": "4"})'
            )
        if not isinstance(types, dict) or not isinstance(lag, int | float):
            raise ValueError(f"CXONE_EXTRACTION_ENTITIES: {target!r}: bad 'types' or 'lag'")
        data_key = spec.get("data_key") or DEFAULT_DATA_KEYS.get(entity)
        out[(cat_name, dt_name)] = EntityMapping(
            cat_name,
            dt_name,
            entity,
            str(version),
            {str(k): str(v) for k, v in types.items()},
            updated_at if isinstance(updated_at, str) else None,
            timedelta(minutes=lag),
            surface=settings.source_for(cat_name),
            data_key=data_key if isinstance(data_key, str) else None,
        )
    return out


class BridgeSource:
    """An :class:`~cxone_sync.cxone.source.ExportSource` over the bridge's manifests in S3."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str = "cxone-bridge/") -> None:
        if not prefix.endswith("/") or prefix.startswith("/"):
            raise ValueError(
                f"CXONE_BRIDGE_PREFIX must end with '/' and not start with one: {prefix!r}"
            )
        self.s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    def category_prefix(self, category_name: str) -> str:
        return f"{self.prefix}{category_name}/"

    def download_id(self, category_name: str) -> str:
        return f"bridge-{category_name}"

    # ExportSource

    def download_config(self, category: str) -> DownloadConfig:
        cat = _category(category)
        return DownloadConfig.parse(
            {
                "download_id": self.download_id(cat.name),
                "category": cat.name,
                "data_types": [dt.name for dt in cat.data_types],
                "format": "parquet",
                "compression": "zstd",
                "partitioning": {
                    "enabled": True,
                    "structure": "year={yyyy}/month={MM}/day={dd}/hour={HH}",
                },
                "schedule": {
                    "frequency": "HOURLY" if cat.hours == 1 else "EVERY_6_HOURS",
                    "offset_minutes": 30,
                },
                "destination": {
                    "type": "aws_s3",
                    "bucket": self.bucket,
                    "prefix": self.category_prefix(cat.name),
                },
            }
        )

    def iter_jobs(
        self,
        category: str,
        *,
        statuses: Iterable[JobStatus] = (),
        updated_since: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        wanted = {JobStatus(s) for s in statuses}
        for job in self._all(category, updated_since):
            if wanted and job.status not in wanted:
                continue
            if updated_since is not None and job.updated_at < updated_since:
                continue
            yield job

    def get_job(self, category: str, job_id: str) -> Job:
        try:
            raw = self.s3.get_object(Bucket=self.bucket, Key=self._manifest_key(category, job_id))
        except self.s3.exceptions.NoSuchKey:
            raise NotFoundError(f"GET bridge job of {category}", 404, "unknown job id") from None
        return Job.parse(json.loads(raw["Body"].read()))

    def manual_export(
        self,
        category: str,
        start: datetime,
        end: datetime,
        destination_prefix: str,
        overwrite: bool = False,
    ) -> Job:
        """Queue an export of ``[start, end)``; :meth:`Bridge.run_queued` performs it."""
        if start >= end:
            raise ValueError(f"manual export needs start < end, got {iso_z(start)}..{iso_z(end)}")
        if not destination_prefix.startswith(self.category_prefix(category)):
            raise ValueError(
                f"destination_prefix {destination_prefix!r} must lie under "
                f"{self.category_prefix(category)!r}"
            )
        now = datetime.now(UTC)
        job = self._new_job(category, start, end, "MANUAL", now)
        job["status"] = "QUEUED"
        job["destination_prefix"] = destination_prefix
        self.publish(job)
        return Job.parse(job)

    # manifests

    def publish(self, job: dict[str, Any]) -> None:
        body = json.dumps(job, sort_keys=True).encode()
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._manifest_key(job["category"], job["id"]),
            Body=body,
            ContentType="application/json",
        )

    def raw_jobs(
        self, category: str, updated_since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Every manifest of a category; with ``updated_since``, manifests last written more
        than an hour before it are not read (a manifest is written after its ``updated_at``
        is set, so it cannot have changed since; the hour covers clock skew)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{MANIFESTS}{category}/"
        )
        floor = updated_since - MANIFEST_CLOCK_SKEW if updated_since is not None else None
        out = []
        for page in pages:
            for obj in page.get("Contents", []):
                if floor is not None and obj["LastModified"] < floor:
                    continue
                raw = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])
                out.append(json.loads(raw["Body"].read()))
        return sorted(out, key=lambda j: (j.get("updated_at", ""), j.get("id", "")))

    def _all(self, category: str, updated_since: datetime | None = None) -> list[Job]:
        return [Job.parse(raw) for raw in self.raw_jobs(category, updated_since)]

    def _manifest_key(self, category: str, job_id: str) -> str:
        return f"{self.prefix}{MANIFESTS}{category}/{job_id}.json"

    def _new_job(
        self, category: str, start: datetime, end: datetime, trigger: str, now: datetime
    ) -> dict[str, Any]:
        return {
            "id": f"bx-{category}-{start:%Y%m%d%H}-{uuid.uuid4().hex[:12]}",
            "download_id": self.download_id(category),
            "category": category,
            "status": "RUNNING",
            "trigger": trigger,
            "interval_start": iso_z(start),
            "interval_end": iso_z(end),
            "start_time": iso_z(now),
            "end_time": None,
            "updated_at": iso_z(now),
            "output_files": [],
            "files": [],
            "record_count": 0,
            "error_details": None,
        }


@dataclass
class BridgeStats:
    jobs_completed: int = 0
    jobs_failed: int = 0
    extractions: int = 0
    extraction_retries: int = 0
    rows: int = 0


class Bridge:
    """Runs extractions and lands them; one extraction at a time (the tenant allows no more)."""

    def __init__(
        self,
        source: BridgeSource,
        extractor: DataExtractionClient,
        mappings: Mapping[tuple[str, str], EntityMapping],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        attempts: int = 3,
    ) -> None:
        self.source = source
        self.extractor = extractor
        self.mappings = dict(mappings)
        self.now = now
        self.attempts = attempts
        self.stats = BridgeStats()

    def check(self, category_name: str) -> None:
        """Every data type of the category has an entity, else a clear error."""
        cat = _category(category_name)
        missing = [dt.name for dt in cat.data_types if (cat.name, dt.name) not in self.mappings]
        if missing:
            raise ValueError(
                f"category {cat.name!r} is read from the Data Extraction API but data types "
                f"{missing} have no entity; add them to CXONE_EXTRACTION_ENTITIES"
            )

    def sync(
        self, category_name: str, start: datetime, end: datetime, *, limit: int | None = None
    ) -> list[Job]:
        """Export every interval of ``[start, end)`` that is due (interval end plus the
        entities' lag has passed) and has no COMPLETED or running bridge job yet, oldest
        first, at most ``limit`` of them."""
        cat = _category(category_name)
        self.check(cat.name)
        lag = max(self.mappings[(cat.name, dt.name)].lag for dt in cat.data_types)
        done = set()
        for raw in self.source.raw_jobs(cat.name):
            job = Job.parse(raw)
            if job.status == JobStatus.RUNNING and job.updated_at < self.now() - ABANDONED_AFTER:
                # a bridge that died mid-export (the tenant lock was released with it)
                raw.update(
                    status="FAILED",
                    error_details="abandoned: the bridge stopped during this export",
                    end_time=iso_z(self.now()),
                    updated_at=iso_z(self.now()),
                )
                self.source.publish(raw)
                continue
            if job.status in (JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.QUEUED):
                done.add(job.interval_start)
        out: list[Job] = []
        for t in cat.interval_starts(start, end):
            if t in done or t + cat.interval + lag > self.now():
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(self.export(cat, t, t + cat.interval, "SCHEDULED"))
        return out

    def run_queued(self, category_name: str) -> list[Job]:
        """Perform the manual exports the platform asked for (QUEUED manifests)."""
        out = []
        for raw in self.source.raw_jobs(category_name):
            if raw.get("status") != "QUEUED":
                continue
            job = Job.parse(raw)
            out.append(
                self.export(
                    _category(category_name),
                    job.interval_start,
                    job.interval_end,
                    "MANUAL",
                    job=raw,
                    prefix=raw.get("destination_prefix"),
                )
            )
        return out

    def export(
        self,
        cat: Category,
        start: datetime,
        end: datetime,
        trigger: str,
        *,
        job: dict[str, Any] | None = None,
        prefix: str | None = None,
    ) -> Job:
        """One interval of one category: RUNNING manifest, extraction of every data type,
        files, then COMPLETED (or FAILED with the reason). Nothing is half-published: the
        files of a FAILED job are not named by its manifest."""
        self.check(cat.name)
        now = self.now()
        manifest = job or self.source._new_job(cat.name, start, end, trigger, now)
        manifest.update(status="RUNNING", start_time=iso_z(now), updated_at=iso_z(now))
        self.source.publish(manifest)
        files: list[dict[str, Any]] = []
        try:
            for dt in cat.data_types:
                files += self._land(
                    cat, dt.name, start, end, prefix or self.source.category_prefix(cat.name)
                )
        except (ExtractionError, CsvFormatError) as exc:
            self.stats.jobs_failed += 1
            log.warning("bridge job %s failed: %s", manifest["id"], exc)
            manifest.update(status="FAILED", error_details=str(exc))
        else:
            self.stats.jobs_completed += 1
            manifest.update(
                status="COMPLETED",
                files=files,
                output_files=[f["uri"] for f in files],
                record_count=sum(f["record_count"] for f in files),
            )
        ended = self.now()
        manifest.update(end_time=iso_z(ended), updated_at=iso_z(ended))
        self.source.publish(manifest)
        return Job.parse(manifest)

    def _land(
        self, cat: Category, dt_name: str, start: datetime, end: datetime, prefix: str
    ) -> list[dict[str, Any]]:
        mapping = self.mappings[(cat.name, dt_name)]
        table = self._extract_table(mapping, start, end)
        body = _parquet(table)
        folder = f"{prefix}{dt_name}/{start:year=%Y/month=%m/day=%d/hour=%H}/"
        key = f"{folder}part-{self._first_free_part(folder):05d}.parquet"
        digest = hashlib.sha256(body).digest()
        self.source.s3.put_object(
            Bucket=self.source.bucket,
            Key=key,
            Body=body,
            ChecksumSHA256=base64.b64encode(digest).decode(),
            Metadata={
                "sha256": digest.hex(),
                "cxone-entity": f"{mapping.entity}@{mapping.version}",
            },
        )
        self.stats.rows += table.num_rows
        return [
            {
                "uri": f"s3://{self.source.bucket}/{key}",
                "data_type": dt_name,
                "record_count": table.num_rows,
                "size_bytes": len(body),
                "sha256": digest.hex(),
            }
        ]

    def _extract_table(self, m: EntityMapping, start: datetime, end: datetime) -> pa.Table:
        """Extract, retrying a job the API ended FAILED/CANCELLED/EXPIRED (bounded)."""
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            self.stats.extractions += 1
            try:
                if m.surface == "reporting":
                    return self._report_table(m, start, end)
                got = self.extractor.extract(m.entity, m.version, start, end)
            except ExtractionError as exc:
                last = exc
                self.stats.extraction_retries += 1
                log.warning(
                    "extraction of %s attempt %d of %d: %s", m.entity, attempt, self.attempts, exc
                )
                continue
            return csv_to_table(
                got.body,
                m.types,
                what=f"extraction job {got.job_id} ({m.entity} v{m.version})",
                updated_at=m.updated_at,
                extracted_at=self.now(),
            )
        assert last is not None
        raise ExtractionError(f"{last} (gave up after {self.attempts} extraction jobs)")

    def _report_table(self, m: EntityMapping, start: datetime, end: datetime) -> pa.Table:
        if m.data_key is None:
            raise ExtractionError(
                f"{m.category}/{m.data_type}: the Reporting API entity {m.entity!r} needs "
                "'data_key' (the answer's list) in CXONE_EXTRACTION_ENTITIES"
            )
        order_by = m.updated_at or "updated_at"
        records = fetch_updated(self.extractor, m.entity, m.version, m.data_key, order_by, start)
        return records_to_table(
            records,
            dict(m.types),
            what=f"GET {m.entity} v{m.version} updated since {iso_z(start)}",
            updated_at=m.updated_at,
            start=start,
            end=end,
        )

    def _first_free_part(self, folder: str) -> int:
        pages = self.source.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.source.bucket, Prefix=folder
        )
        taken = [
            int(obj["Key"].rsplit("part-", 1)[1].split(".", 1)[0])
            for page in pages
            for obj in page.get("Contents", [])
            if obj["Key"].rsplit("/", 1)[1].startswith("part-")
        ]
        return max(taken, default=-1) + 1


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _category(name: str) -> Category:
    return category(name)


def bridged_categories(settings: Settings) -> list[str]:
    return [c.name for c in CATEGORIES if settings.source_for(c.name) != "data_download"]


def build_bridge(
    settings: Settings,
    s3_client: Any,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    now: Callable[[], datetime] | None = None,
    attempts: int = 3,
) -> Bridge:
    """The bridge from the environment alone (CONTRACT §4 variables plus the bridge's)."""
    import time

    from cxone_sync.bridge.extraction import ExtractionPolicy

    if settings.cxone_access_key_id is None or settings.cxone_access_key_secret is None:
        raise ValueError(
            "the Data Extraction API needs CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET "
            "(an API user's access key; the password grant)"
        )
    extractor = DataExtractionClient(
        auth_url=settings.cxone_auth_url,
        client_id=settings.cxone_client_id,
        client_secret=settings.cxone_client_secret,
        access_key_id=settings.cxone_access_key_id,
        access_key_secret=settings.cxone_access_key_secret,
        lock_dir=settings.cxone_data_dir / "locks",
        clock=clock or time.time,
        sleep=sleep or time.sleep,
        tenant_id=settings.cxone_tenant_id,
        api_url=settings.cxone_extraction_api_url,
        policy=ExtractionPolicy(min_interval=settings.cxone_extraction_min_interval_seconds),
    )
    source = BridgeSource(s3_client, settings.cxone_bucket, settings.cxone_bridge_prefix)
    return Bridge(
        source,
        extractor,
        entity_mappings(settings),
        now=now or (lambda: datetime.now(UTC)),
        attempts=attempts,
    )
