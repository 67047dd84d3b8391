"""Partitions per category: hourly, or 6-hourly at 00/06/12/18 UTC (from the catalog)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import dagster as dg

from cxone_sync.catalog import PARTITION_FMT, Category


def partitions_for(category: Category, start: date) -> dg.TimeWindowPartitionsDefinition:
    """One partition per export interval of the category, UTC."""
    first = datetime.combine(start, time(0))
    if category.interval == timedelta(hours=1):
        return dg.HourlyPartitionsDefinition(start_date=first, timezone="UTC")
    hours = category.hours
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=f"0 */{hours} * * *",
        start=first,
        timezone="UTC",
        fmt=PARTITION_FMT,
    )
