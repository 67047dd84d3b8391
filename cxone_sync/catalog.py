"""The CXone category catalog: categories, data types, natural keys, intervals and lags.

This module is data. Assets, checks, sensors and the simulator are all generated from it;
nothing else in the code base names a category or a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PARTITION_FMT = "%Y-%m-%d-%H:%M"
"""Partition keys: the UTC start of the interval (Dagster's hourly format, for every category)."""

UPDATED_AT = "updated_at"
"""Every record carries this UTC timestamp; of two versions of one key, the newer wins."""


@dataclass(frozen=True)
class DataType:
    category: str
    name: str
    key: tuple[str, ...]

    @property
    def table(self) -> str:
        """Warehouse table name inside schema ``cxone`` (CONTRACT §5)."""
        return f"{self.category}__{self.name}"


@dataclass(frozen=True)
class Category:
    name: str
    interval: timedelta
    data_types: tuple[DataType, ...]
    lag_min: timedelta = timedelta(0)
    """Extra lag before the scheduled export starts (speech transcription), lower bound."""
    lag_max: timedelta = timedelta(0)
    freshness: timedelta = timedelta(hours=1, minutes=25)
    """How long after interval end the BI table must hold the interval."""

    @property
    def hours(self) -> int:
        return int(self.interval.total_seconds() // 3600)

    def interval_starts(self, start: datetime, end: datetime) -> list[datetime]:
        """Starts of every interval of this category lying wholly inside [start, end)."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        t = epoch + -((epoch - start) // self.interval) * self.interval  # ceil to a boundary
        out = []
        while t + self.interval <= end:
            out.append(t)
            t += self.interval
        return out

    def data_type(self, name: str) -> DataType:
        for dt in self.data_types:
            if dt.name == name:
                return dt
        raise KeyError(f"category {self.name!r} has no data type {name!r}")


def _cat(name: str, hours: int, types: dict[str, tuple[str, ...]], **kw: timedelta) -> Category:
    return Category(
        name=name,
        interval=timedelta(hours=hours),
        data_types=tuple(DataType(name, dt, key) for dt, key in types.items()),
        **kw,
    )


CATEGORIES: tuple[Category, ...] = (
    _cat(
        "telephony",
        1,
        {
            "cdr": ("call_uuid",),
            "acd": ("interaction_id",),
            "skill_group": ("skill_group_id", "interval_start"),
        },
    ),
    _cat("ivr", 1, {"ivr_session": ("session_hash",)}),
    _cat(
        "speech",
        1,
        {"transcript": ("interaction_id",)},
        lag_min=timedelta(minutes=45),
        lag_max=timedelta(minutes=90),
        freshness=timedelta(hours=2, minutes=50),
    ),
    _cat("digital", 1, {"digital_interaction": ("interaction_id",)}),
    _cat(
        "workforce_management",
        6,
        {"adherence": ("agent_id", "interval_start")},
        freshness=timedelta(hours=6, minutes=30),
    ),
    _cat(
        "quality_management",
        6,
        {"evaluation": ("evaluation_id",)},
        freshness=timedelta(hours=6, minutes=30),
    ),
)

CATEGORY_BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}

DEFAULT_OFFSET = timedelta(minutes=20)
"""Scheduled jobs start ``offset_minutes`` after the interval ends (CONTRACT §3)."""


def category(name: str) -> Category:
    try:
        return CATEGORY_BY_NAME[name]
    except KeyError:
        known = ", ".join(CATEGORY_BY_NAME)
        raise KeyError(f"unknown CXone category {name!r}; known categories: {known}") from None


def all_data_types() -> list[DataType]:
    return [dt for c in CATEGORIES for dt in c.data_types]


def partition_key(start: datetime) -> str:
    return start.strftime(PARTITION_FMT)


def default_download_id(category_name: str) -> str:
    return f"dl-{category_name}-prod"


# --- Export surfaces and the entities of NICE's public APIs (the bridge, cxone_sync/bridge) ---

SURFACES = ("data_download", "data_extraction", "reporting")
"""Where a category's data comes from (``CXONE_SOURCE``): the contract's Data Download jobs (the
default), NICE's Data Extraction API or its Reporting API, both through the bridge."""


@dataclass(frozen=True)
class SourceEntity:
    """One entity of a public CXone API, as the bridge asks for it.

    ``version`` is part of the contract (NICE keeps several versions of an entity with different
    columns). ``key`` and ``updated_at`` are column names as the API's CSV/JSON writes them;
    ``lag`` is how late NICE says data can arrive; ``types`` fixes the Parquet type of named
    columns (every other column is read as text, never guessed).
    """

    surface: str
    name: str
    version: str
    key: tuple[str, ...]
    lag: timedelta
    updated_at: str | None = None
    """The column that says when a record last changed; None: the extraction's own time."""
    types: tuple[tuple[str, str], ...] = ()


PUBLIC_ENTITIES: tuple[SourceEntity, ...] = (
    SourceEntity(
        "data_extraction",
        "recording-interaction-metadata",
        "4",
        key=("acdCallId", "segmentId"),
        lag=timedelta(minutes=30),
    ),
    SourceEntity("data_extraction", "qm-workflows", "4", key=("id",), lag=timedelta(minutes=30)),
    SourceEntity("data_extraction", "qm-questions", "3", key=("id",), lag=timedelta(minutes=30)),
    SourceEntity(
        "reporting",
        "contacts/completed",
        "21.0",
        key=("contactId",),
        lag=timedelta(minutes=15),
        updated_at="lastUpdateTime",
    ),
)
"""The public entities named by NICE's documentation. Their column lists are not public, so no
BI table is generated from them yet: map one onto a data type with ``CXONE_EXTRACTION_ENTITIES``
(see the README's bridge section). Versions other than qm-workflows' 4 (documented) and
contacts/completed's 21.0 (the Singer tap's) are this project's choice: check them against the
tenant's developer portal."""

PUBLIC_ENTITY_BY_NAME: dict[str, SourceEntity] = {e.name: e for e in PUBLIC_ENTITIES}
