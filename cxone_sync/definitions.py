"""Assembles the code location: the defs of every domain plus the resources for the environment."""

from __future__ import annotations

import warnings

import dagster as dg

from cxone_sync.bridge.source import bridged_categories
from cxone_sync.catalog import CATEGORIES
from cxone_sync.defs.automation.actions import automation_jobs
from cxone_sync.defs.automation.sensors import build_automation_sensors
from cxone_sync.defs.bridge import build_bridge_defs
from cxone_sync.defs.ingest.assets import build_ingest_assets
from cxone_sync.defs.ingest.jobs import build_jobs
from cxone_sync.defs.maintenance.staging import build_maintenance_defs
from cxone_sync.defs.resources import build_resources
from cxone_sync.defs.storage.assets import build_storage_defs
from cxone_sync.settings import get_settings

# Partition-aware asset checks are a preview in Dagster 1.13 (the tested range in pyproject).
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
# Backfill policies (ranged runs for UI backfills) are beta in 1.13.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


@dg.definitions
def defs() -> dg.Definitions:
    settings = get_settings()
    jobs = build_jobs(CATEGORIES)
    core = dg.Definitions(
        assets=build_ingest_assets(
            CATEGORIES,
            settings.cxone_partitions_start,
            settings.cxone_warehouse,
            settings.cxone_backfill_partitions_per_run,
            {c.name: settings.record_count_tolerance(c.name) for c in CATEGORIES},
        ),
        jobs=[*jobs, *automation_jobs()],
        sensors=build_automation_sensors(CATEGORIES, settings.cxone_partitions_start, jobs),
        resources=build_resources(settings),
    )
    # The bucket checks' daily schedule is on by default only on the embedded default (local stack).
    return dg.Definitions.merge(
        core,
        build_storage_defs(schedule_running=settings.embedded),
        build_maintenance_defs(settings),
        *([build_bridge_defs(settings)] if bridged_categories(settings) else []),
    )
