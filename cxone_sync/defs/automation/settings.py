"""Settings of the automation (sensors, recovery, reconciliation), read lazily from the environment.

Kept beside the sensors until they are folded into :class:`cxone_sync.settings.Settings`; the
variables follow the same naming (CONTRACT §4 style) and have working defaults.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AutomationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    jobs_sensor_interval_seconds: int = Field(
        default=25 * 60, alias="CXONE_JOBS_SENSOR_INTERVAL_SECONDS"
    )
    """How often ``{category}_jobs_sensor`` asks the API for job state changes."""
    gap_sensor_interval_seconds: int = Field(
        default=60 * 60, alias="CXONE_GAP_SENSOR_INTERVAL_SECONDS"
    )
    reconciliation_interval_seconds: int = Field(
        default=24 * 60 * 60, alias="CXONE_RECONCILIATION_INTERVAL_SECONDS"
    )
    max_jobs_per_tick: int = Field(default=2000, alias="CXONE_SENSOR_MAX_JOBS_PER_TICK")
    """Job state changes handled per tick; the rest wait for the next tick (cursor-exact)."""
    recovery_max_attempts: int = Field(default=3, alias="CXONE_RECOVERY_MAX_ATTEMPTS")
    """Manual exports requested for one failed or missing interval before giving up."""
    recovery_backoff_ticks: int = Field(default=1, alias="CXONE_RECOVERY_BACKOFF_TICKS")
    """Ticks to wait after the first attempt; doubles with every further attempt."""
    max_exports_per_tick: int = Field(default=24, alias="CXONE_MAX_EXPORTS_PER_TICK")
    gap_lookback_days: int = Field(default=7, alias="CXONE_GAP_LOOKBACK_DAYS")
    gap_grace_minutes: int = Field(default=10, alias="CXONE_GAP_GRACE_MINUTES")
    """Allowance beyond interval end + offset + the category's lag before an interval is a gap."""
    reconciliation_lookback_days: int = Field(default=7, alias="CXONE_RECONCILIATION_LOOKBACK_DAYS")
    reconciliation_min_age_hours: int = Field(
        default=24, alias="CXONE_RECONCILIATION_MIN_AGE_HOURS"
    )

    @property
    def gap_lookback(self) -> timedelta:
        return timedelta(days=self.gap_lookback_days)

    @property
    def gap_grace(self) -> timedelta:
        return timedelta(minutes=self.gap_grace_minutes)

    @property
    def reconciliation_lookback(self) -> timedelta:
        return timedelta(days=self.reconciliation_lookback_days)

    @property
    def reconciliation_min_age(self) -> timedelta:
        return timedelta(hours=self.reconciliation_min_age_hours)


def get_automation_settings() -> AutomationSettings:
    """Read the environment now (never at import time)."""
    return AutomationSettings()
