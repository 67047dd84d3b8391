"""ISO 8601 times in the one form the platform writes: UTC with a literal ``Z``.

The API, cursors, run configs, metadata and control tables all use it; every module formats and
parses times here, so ``2024-03-15T00:00:00Z`` is written one way everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken as UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_iso(value: datetime, timespec: str = "auto") -> str:
    """An aware datetime as ISO 8601 UTC with ``Z`` (``timespec`` as :meth:`datetime.isoformat`).

    A naive datetime is refused: its zone is unknown, and guessing would shift a window.
    """
    if value.tzinfo is None:
        raise ValueError(f"expected a time-zone-aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """ISO 8601 text (``Z`` or any offset; without one, UTC) as an aware UTC datetime.

    Raises ``ValueError`` for text that is not an ISO date or time.
    """
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def utc_now_iso() -> str:
    """Now, to the microsecond (control tables order rows by it)."""
    return utc_iso(datetime.now(UTC), timespec="microseconds")
