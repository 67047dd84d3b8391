"""Fixtures for the bridge: a fake clock, the Data Extraction fake, a bridge pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cxone_sync.bridge.extraction import DataExtractionClient, ExtractionPolicy
from cxone_sync.bridge.pacing import FakeClock
from cxone_sync.simulator.extraction import (
    FAKE_ACCESS_KEY_ID,
    FAKE_ACCESS_KEY_SECRET,
    FAKE_CLIENT_ID,
    FAKE_CLIENT_SECRET,
    ExtractionFake,
    FakeConfig,
)

ENTITY = "qm-workflows"
VERSION = "4"


def rows_of(entity: str, version: str, start: datetime, end: datetime) -> pa.Table:
    """Two rows per window, with the CSV quirks a real export has."""
    stamp = pa.scalar(start, pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "id": [f"{start:%Y%m%d%H}-1", f"{start:%Y%m%d%H}-2"],
            "comment": ['a "quoted", comma', "two\nlines"],
            "score": pa.array([1, None], pa.int32()),
            "updated_at": pa.array([stamp, stamp], pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeFake = Callable[..., ExtractionFake]


@pytest.fixture
def make_fake(clock: FakeClock) -> Iterator[MakeFake]:
    started: list[ExtractionFake] = []

    def make(
        data: Any = rows_of, entities: dict[str, str] | None = None, **config: Any
    ) -> ExtractionFake:
        fake = ExtractionFake(
            data, entities or {ENTITY: VERSION}, clock=clock, config=FakeConfig(**config)
        )
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


def client_for(
    fake: ExtractionFake, clock: FakeClock, lock_dir: Path, **policy: Any
) -> DataExtractionClient:
    return DataExtractionClient(
        auth_url=fake.url,
        client_id=FAKE_CLIENT_ID,
        client_secret=FAKE_CLIENT_SECRET,
        access_key_id=FAKE_ACCESS_KEY_ID,
        access_key_secret=FAKE_ACCESS_KEY_SECRET,
        lock_dir=lock_dir,
        clock=clock,
        sleep=clock.sleep,
        policy=ExtractionPolicy(**policy),
    )
