"""Dagster wiring of the bridge: one job, ``bridge_extract``, run by a schedule.

Each run, for every bridged category (``CXONE_SOURCE`` ``data_extraction`` or ``reporting``):
perform the manual exports the platform's recovery queued, then export the due intervals of the
last ``lookback_hours`` (run config, 48) that have no bridge job yet (at most ``max_intervals``
per category, the Data Extraction API allowing one call per 30 s). The op is in the Dagster pool
``cxone_extraction`` (set its limit to 1: ``dagster instance concurrency set cxone_extraction
1``), and the tenant lock file holds across processes too (:mod:`cxone_sync.bridge.pacing`).
The manifests it publishes are read by the ordinary jobs sensors and assets.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_aws.s3 import S3Resource

from cxone_sync.bridge.source import bridged_categories, build_bridge
from cxone_sync.settings import Settings, get_settings

EXTRACTION_POOL = "cxone_extraction"


class BridgeRunConfig(dg.Config):
    lookback_hours: int = 48
    max_intervals: int = 12


@dg.op(pool=EXTRACTION_POOL)
def bridge_extract(context: dg.OpExecutionContext, config: BridgeRunConfig, s3: S3Resource) -> None:
    settings = get_settings()
    bridge = build_bridge(settings, s3.get_client())
    now = datetime.now(UTC)
    try:
        for name in bridged_categories(settings):
            queued = bridge.run_queued(name)
            done = bridge.sync(
                name,
                now - timedelta(hours=config.lookback_hours),
                now,
                limit=config.max_intervals,
            )
            for job in [*queued, *done]:
                context.log.info(
                    f"{name} {job.interval_start:%Y-%m-%dT%H:%M}Z: bridge job {job.id} "
                    f"{job.status.value} ({job.record_count} rows)"
                    + (f": {job.error_details}" if job.error_details else "")
                )
    finally:
        bridge.extractor.close()
    context.log.info(f"bridge stats: {bridge.stats}")


@dg.job(tags={"cxone_sync/kind": "bridge"})
def bridge_extract_job() -> None:
    bridge_extract()


def build_bridge_defs(settings: Settings) -> dg.Definitions:
    """The bridge's job and its schedule (running by default when a category is bridged)."""
    running = bool(bridged_categories(settings))
    schedule = dg.ScheduleDefinition(
        name="bridge_extract_schedule",
        job=bridge_extract_job,
        cron_schedule="*/30 * * * *",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
        ),
    )
    return dg.Definitions(jobs=[bridge_extract_job], schedules=[schedule])
