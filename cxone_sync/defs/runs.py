"""Headless runs of the code location that the UI treats like its own (``cxone-sync sync``).

A run shows on the Overview timeline and re-executes from the UI when its record carries the
*remote job origin* (code location name, repository name, job name) of the code location the
webserver loads from ``workspace.yaml``. ``JobDefinition.execute_in_process`` and
``dagster.execute_job`` (the public ways to run a job without a webserver) record no such origin.

Dagster 1.13 (tested: 1.13.27) has no public API to create a run with that origin outside a
workspace; ``dagster job launch`` does it with the same internals used here
(``RemoteJobOrigin``, ``DagsterInstance.create_run_for_job``, ``execute_run``); the partition
tag names of backfill runs are not exported either (``dagster._core.storage.tags``). This module
and :mod:`cxone_sync.defs.launcher` are the only ones in ``cxone_sync/`` that import private
Dagster modules (adapters, one per need): on a Dagster upgrade, check them first
(``cxone_sync_tests/defs/test_webserver_e2e.py`` re-executes a CLI run through GraphQL).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from cxone_sync.settings import PROJECT_ROOT

MODULE_NAME = "cxone_sync.definitions"
DEFS_ATTRIBUTE = "defs"
LOCATION_NAME = "cxone_sync"
"""The code location's name in ``workspace.yaml`` and ``[tool.dagster]`` of ``pyproject.toml``."""
REPOSITORY_NAME = "__repository__"
"""The name Dagster gives the single repository of a ``Definitions`` object."""


def partition_tags(keys: Sequence[str]) -> dict[str, str]:
    """The tags Dagster's backfills put on a run of one partition or of a range of them."""
    if len(keys) == 1:
        return {PARTITION_NAME_TAG: keys[0]}
    return {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}


def code_location_origin() -> ManagedGrpcPythonEnvCodeLocationOrigin:
    """The origin ``dagster dev -w workspace.yaml`` gives the ``cxone_sync`` code location."""
    return ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=MODULE_NAME,
            working_directory=str(PROJECT_ROOT),
        ),
        location_name=LOCATION_NAME,
    )


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    events: list[Any]
    """The run's Dagster events (``DagsterEvent``), in order, read back from the instance."""


class CodeLocationRunner:
    """Creates and executes (in this process) runs of the code location's jobs."""

    def __init__(self) -> None:
        self._repo = ReconstructableRepository.for_module(
            MODULE_NAME, DEFS_ATTRIBUTE, working_directory=str(PROJECT_ROOT)
        )
        self._repo_origin = RemoteRepositoryOrigin(code_location_origin(), REPOSITORY_NAME)

    def run(
        self,
        instance: dg.DagsterInstance,
        job_name: str,
        asset_selection: Iterable[dg.AssetKey],
        tags: Mapping[str, str],
        run_config: Mapping[str, Any],
    ) -> RunOutcome:
        """Create the run with the code location's origin, execute it here, return its events."""
        recon_job = self._repo.get_reconstructable_job(job_name)
        run = instance.create_run_for_job(
            recon_job.get_definition(),
            run_config=run_config,
            tags=dict(tags),
            asset_selection=set(asset_selection),
            remote_job_origin=RemoteJobOrigin(self._repo_origin, job_name),
            job_code_origin=recon_job.get_python_origin(),
        )
        execute_run(recon_job, run, instance, raise_on_error=False)
        finished = instance.get_run_by_id(run.run_id)
        events = [
            entry.dagster_event
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event is not None
        ]
        success = finished is not None and finished.status == dg.DagsterRunStatus.SUCCESS
        return RunOutcome(run.run_id, success, events)
