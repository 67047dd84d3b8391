"""One execution of a data type's load step: list the export jobs once for the run's partitions
(one, or a backfill's range), stage, gate and merge each partition, yield its events, and fail
or ask for a retry naming the blocked partitions."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from cxone_sync.catalog import Category, DataType
from cxone_sync.cxone.errors import CXoneError
from cxone_sync.cxone.models import Job
from cxone_sync.defs.ingest.events import (
    blocked_failure,
    gate_events,
    merge_events,
    unstaged_events,
)
from cxone_sync.defs.ingest.names import staging_path, table_key
from cxone_sync.defs.resources import CXoneAPIResource, IngestResource, WarehouseResource
from cxone_sync.defs.retries import is_transient, step_retry_policy
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import load_partition
from cxone_sync.ingest.stage import NoCompletedExportError, Window, select_jobs
from cxone_sync.storage.staging import StagingError


@dataclass
class LoadStep:
    """What one execution of a data type's load step works with."""

    category: Category
    dt: DataType
    context: dg.AssetExecutionContext
    cxone: CXoneAPIResource
    s3: S3Resource
    warehouse: WarehouseResource
    ingest: IngestResource

    def windows(self) -> list[Window]:
        """The partitions of the run: one, or a range (a backfill batched by its policy)."""
        pdef = self.context.assets_def.partitions_def
        assert isinstance(pdef, dg.TimeWindowPartitionsDefinition)
        out = []
        for key in self.context.partition_keys:
            tw = pdef.time_window_for_partition_key(key)
            out.append(Window(self.dt, key, tw.start, tw.end))
        return out

    def flagged_unrecovered(self, windows: list[Window]) -> set[str]:
        """Partitions the jobs sensor reported as unrecovered (one query for the range)."""
        keys = [w.partition_key for w in windows]
        if not keys:
            return set()
        records = self.context.instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=table_key(self.dt), asset_partitions=keys),
            limit=len(keys) * 10,
        ).records
        return {
            r.partition_key
            for r in records
            if r.partition_key is not None
            and r.asset_observation is not None
            and ck.RECOVERY_METADATA in r.asset_observation.metadata
        }

    def run(self) -> Iterator[Any]:
        dt = self.dt
        # A re-execution or a step retry loads the whole range again: partitions merged before
        # change nothing (their files are in the ledger) and get fresh, current check results.
        todo = self.windows()
        flagged = self.flagged_unrecovered(todo)
        blocked: dict[str, str] = {}
        s3_client, wh = self.s3.get_client(), self.warehouse.get()
        with self.cxone.client() as client:
            jobs: list[Job] | None = None
            listing_error: str | None = None
            transient: set[str] = set()
            if todo:
                try:
                    prefix = client.download_config(self.category.name).destination.prefix
                    # one listing for the whole range, not one per partition
                    jobs = select_jobs(client, self.category.name, todo[0].start, todo[-1].end)
                except CXoneError as exc:
                    listing_error = f"could not ask CXone for the interval's export jobs: {exc}"
                    if is_transient(exc):
                        transient.update(w.partition_key for w in todo)
            for window in todo:
                key = window.partition_key
                if listing_error is not None:
                    blocked[key] = listing_error
                    yield from unstaged_events(dt, window, listing_error)
                    continue
                try:
                    outcome = load_partition(
                        data_type=dt,
                        start=window.start,
                        end=window.end,
                        source=client,
                        s3_client=s3_client,
                        warehouse=wh,
                        bucket=self.ingest.bucket,
                        prefix=prefix,
                        staging_dir=staging_path(
                            self.ingest.staging_dir, dt, key, self.context.run.run_id
                        ),
                        tolerance=self.ingest.tolerance(self.category.name),
                        jobs=jobs,
                    )
                except (NoCompletedExportError, CXoneError, StagingError) as exc:
                    # one interval's trouble (no export yet, an API or S3 error that outlasted
                    # the retries) blocks that partition only; the rest of the range goes on
                    why = str(exc) or type(exc).__name__
                    blocked[key] = why
                    if is_transient(exc):
                        transient.add(key)
                    yield from unstaged_events(dt, window, why)
                    continue
                yield from gate_events(dt, window, outcome)
                if outcome.merged is None:
                    blocked[key] = outcome.reason or "blocked"
                    continue
                yield from merge_events(
                    dt, window, outcome, outcome.merged, recovered=key in flagged
                )
        for key, why in sorted(blocked.items()):
            self.context.log.error(f"{dt.table} partition {key} not merged: {why}")
        # the step's check outputs close; their results were reported per partition above
        for name in self.context.assets_def.check_specs_by_output_name:
            yield dg.Output(None, output_name=name)
        if blocked:
            failure = blocked_failure(dt, len(todo), blocked)
            policy = step_retry_policy()
            attempt = self.context.retry_number + 1
            if transient and attempt <= policy.max_retries:
                # API or S3 trouble, not the data: the step runs again later (what it merged
                # is not merged twice: those files are in the ledger)
                wait = policy.calculate_delay(attempt)
                self.context.log.warning(
                    f"{dt.table}: {len(transient)} partition(s) met transient API/S3 errors; "
                    f"retry {attempt} of {policy.max_retries} in {wait:.1f} s"
                )
                raise dg.RetryRequested(
                    max_retries=policy.max_retries, seconds_to_wait=wait
                ) from failure
            raise failure
