"""The automation sensors, generated per category from the catalog by one factory.

* ``{category}_jobs_sensor``: job state changes since its cursor -> a ``record_job_events_job``
  run (job-events table), partition loads for COMPLETED jobs (one run per job and partition, or
  ranged runs for long stretches; partitions already loaded from the same jobs skipped), manual
  exports for FAILED / TIMED_OUT intervals (``request_manual_export_job`` runs, bounded, with
  backoff).
* ``{category}_gap_sensor``: intervals overdue by CXone's clock with no load and no live job ->
  manual-export runs (bounded lookback).
* ``late_data_reconciliation_sensor`` (daily): partitions older than a day whose COMPLETED jobs
  the last load did not include -> re-load; loaded files re-verified against S3 (bounded slice
  per tick).

An evaluation writes nothing but its cursor and run requests (``dagster sensor preview`` is
safe), and every tick does bounded work, saving its position in the cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import dagster as dg
from dagster_aws.s3 import S3Resource

from cxone_sync.catalog import Category
from cxone_sync.defs.automation.actions import record_job_events_job, request_manual_export_job
from cxone_sync.defs.automation.gaps_tick import gap_tick
from cxone_sync.defs.automation.jobs_tick import jobs_tick
from cxone_sync.defs.automation.reconcile_tick import reconcile_tick
from cxone_sync.defs.automation.tick_common import Tick, first_instant
from cxone_sync.defs.ingest.jobs import category_job_name
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.defs.resources import CXoneAPIResource, WarehouseResource
from cxone_sync.settings import AutomationSettings, get_settings

RECONCILIATION_SENSOR = "late_data_reconciliation_sensor"


def jobs_sensor_name(category: Category) -> str:
    return f"{category.name}_jobs_sensor"


def gap_sensor_name(category: Category) -> str:
    return f"{category.name}_gap_sensor"


def _result(context: dg.SensorEvaluationContext, tick: Tick) -> dg.SensorResult:
    for line in tick.lines:
        context.log.info(line)
    for error in tick.errors:
        context.log.error(error)
    skip = tick.skip
    if skip and tick.errors:
        skip = f"{skip}; PROBLEMS: " + "; ".join(tick.errors)
    return dg.SensorResult(
        run_requests=tick.run_requests,
        skip_reason=skip if not tick.run_requests else None,
        cursor=tick.cursor,
        asset_events=tick.observations,
    )


def _pdef(category: Category, start: date) -> dg.TimeWindowPartitionsDefinition:
    return partitions_for(category, start)


def build_jobs_sensor(
    category: Category,
    start: date,
    job: dg.UnresolvedAssetJobDefinition,
    settings: AutomationSettings,
) -> dg.SensorDefinition:
    pdef = _pdef(category, start)
    name = jobs_sensor_name(category)

    @dg.sensor(
        name=name,
        jobs=[job, record_job_events_job, request_manual_export_job],
        minimum_interval_seconds=settings.jobs_sensor_interval(category.name),
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"{category.name}: CXone job state changes since the cursor. Requests a "
        "record_job_events_job run for them (cxone_sync.job_events), loads the partitions of "
        "every COMPLETED job (run key job id + partition, or ranged runs; partitions already "
        "loaded from the same jobs are skipped), requests manual exports for FAILED/TIMED_OUT "
        f"intervals (request_manual_export_job, at most {settings.recovery_max_attempts} per "
        "interval, backoff in ticks). Writes nothing itself: safe to preview.",
    )
    def _sensor(context: dg.SensorEvaluationContext, cxone: CXoneAPIResource) -> dg.SensorResult:
        with cxone.client() as client:
            tick = jobs_tick(
                category=category,
                pdef=pdef,
                source=client,
                instance=context.instance,
                cursor_text=context.cursor,
                settings=settings,
                history_start=first_instant(start),
                sensor=name,
            )
        return _result(context, tick)

    return _sensor


def build_gap_sensor(
    category: Category, start: date, settings: AutomationSettings
) -> dg.SensorDefinition:
    pdef = _pdef(category, start)
    name = gap_sensor_name(category)

    @dg.sensor(
        name=name,
        job=request_manual_export_job,
        minimum_interval_seconds=settings.gap_sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"{category.name}: every interval of the last {settings.gap_lookback_days} "
        "days overdue by CXone's clock (its HTTP Date; interval end + 20 min offset + lag + "
        "grace) with no loaded partition and no QUEUED/RUNNING/COMPLETED job gets a manual "
        "export (a request_manual_export_job run), also when CXone exported nothing at all.",
    )
    def _sensor(context: dg.SensorEvaluationContext, cxone: CXoneAPIResource) -> dg.SensorResult:
        with cxone.client() as client:
            tick = gap_tick(
                category=category,
                pdef=pdef,
                source=client,
                instance=context.instance,
                cursor_text=context.cursor,
                settings=settings,
                history_start=first_instant(start),
                sensor=name,
            )
        return _result(context, tick)

    return _sensor


def build_reconciliation_sensor(
    categories: Sequence[Category],
    start: date,
    jobs: Sequence[dg.UnresolvedAssetJobDefinition],
    settings: AutomationSettings,
) -> dg.SensorDefinition:
    pdefs = {c.name: _pdef(c, start) for c in categories}

    @dg.sensor(
        name=RECONCILIATION_SENSOR,
        jobs=[*jobs, request_manual_export_job],
        minimum_interval_seconds=settings.reconciliation_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Daily: partitions of the last "
        f"{settings.reconciliation_lookback_days} days older than "
        f"{settings.reconciliation_min_age_hours} h whose COMPLETED jobs their last load did not "
        "include are loaded again; every loaded file's S3 version and SHA-256 is re-verified "
        "(mismatch: manual export).",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        cxone: CXoneAPIResource,
        warehouse: WarehouseResource,
        s3: S3Resource,
    ) -> dg.SensorResult:
        with cxone.client() as client:
            tick = reconcile_tick(
                categories=categories,
                pdefs=pdefs,
                source=client,
                instance=context.instance,
                # only reads the file audit ledger: read-only, shares the file with readers
                warehouse=warehouse.reader(lock_wait_seconds=settings.sensor_lock_wait_seconds),
                s3_client=s3.get_client(),
                cursor_text=context.cursor,
                settings=settings,
                history_start=first_instant(start),
                sensor=RECONCILIATION_SENSOR,
            )
        return _result(context, tick)

    return _sensor


def build_automation_sensors(
    categories: Sequence[Category],
    start: date,
    jobs: Sequence[dg.UnresolvedAssetJobDefinition],
    settings: AutomationSettings | None = None,
) -> list[dg.SensorDefinition]:
    """Every automation sensor of the categories; ``jobs`` must hold ``sync_{category}_job``."""
    settings = settings or get_settings()
    by_name = {j.name: j for j in jobs}
    category_jobs = [by_name[category_job_name(c)] for c in categories]
    sensors: list[dg.SensorDefinition] = []
    for category, job in zip(categories, category_jobs, strict=True):
        sensors.append(build_jobs_sensor(category, start, job, settings))
        sensors.append(build_gap_sensor(category, start, settings))
    sensors.append(build_reconciliation_sensor(categories, start, category_jobs, settings))
    return sensors
