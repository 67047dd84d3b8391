"""Shared pytest fixtures (a plugin, loaded by ``conftest.py``): local S3 and simulator stacks.

* ``s3_endpoint`` (session): one bare S3 endpoint for storage tests; make buckets on it with
  ``export_bucket`` (a fresh, uniquely named secure export bucket per test).
* ``make_stack(config=None, **overrides)``: starts a :class:`LocalStack` with its own S3 endpoint,
  API server and world; every stack it started is stopped after the test. ``overrides`` are
  :class:`SimConfig` fields, or :class:`FaultConfig` fields (applied to ``config.faults``).
* ``stack``: a stack with the default config; ``stack_env``: the same, with the platform's
  environment pointed at it (and ``CXONE_DATA_DIR`` at ``tmp_path``).

Bucket names are one namespace per process (as in AWS): stacks alive at the same time must use
different bucket names; stacks one after another may reuse them (a stopped endpoint forgets its
buckets).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cxone_sync.simulator.config import FaultConfig, SimConfig
from cxone_sync.simulator.s3 import S3Endpoint, create_export_bucket
from cxone_sync.simulator.stack import LocalStack

MakeStack = Callable[..., LocalStack]

# Variables that would point the platform somewhere other than the stack when left set.
_FOREIGN_ENV = (
    "CXONE_TOKEN_URL",
    "CXONE_ACCESS_KEY_ID",
    "CXONE_ACCESS_KEY_SECRET",
    "CXONE_DOWNLOAD_IDS",
    "CXONE_WAREHOUSE",
    "CXONE_DUCKDB_PATH",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)

_SIM_FIELDS = frozenset(f.name for f in dataclasses.fields(SimConfig))
_FAULT_FIELDS = frozenset(f.name for f in dataclasses.fields(FaultConfig))


@dataclass(frozen=True)
class ExportBucket:
    name: str
    kms_key_arn: str
    endpoint: S3Endpoint


def build_config(config: SimConfig | None = None, **overrides: Any) -> SimConfig:
    """``config`` (default ``SimConfig()``) with SimConfig and FaultConfig fields replaced."""
    base = config or SimConfig()
    unknown = set(overrides) - _SIM_FIELDS - _FAULT_FIELDS
    if unknown:
        raise TypeError(f"unknown SimConfig/FaultConfig field(s): {', '.join(sorted(unknown))}")
    sim = {k: v for k, v in overrides.items() if k in _SIM_FIELDS}
    faults = {k: v for k, v in overrides.items() if k not in _SIM_FIELDS}
    if faults:
        sim["faults"] = dataclasses.replace(sim.get("faults", base.faults), **faults)
    return dataclasses.replace(base, **sim) if sim else base


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with S3Endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def export_bucket(s3_endpoint: S3Endpoint) -> ExportBucket:
    name = f"cxone-test-{uuid.uuid4().hex[:12]}"
    return ExportBucket(name, create_export_bucket(s3_endpoint.url, name), s3_endpoint)


@pytest.fixture
def make_stack() -> Iterator[MakeStack]:
    started: list[LocalStack] = []

    def factory(config: SimConfig | None = None, **overrides: Any) -> LocalStack:
        stack = LocalStack(build_config(config, **overrides))
        started.append(stack)
        return stack

    yield factory
    for stack in reversed(started):
        stack.stop()


@pytest.fixture
def stack(make_stack: MakeStack) -> LocalStack:
    return make_stack()


@pytest.fixture
def stack_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalStack:
    for name in _FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CXONE_DATA_DIR", str(tmp_path))
    return stack
