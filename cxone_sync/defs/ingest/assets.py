"""The per-data-type load step, generated from the catalog.

Every data type is one step that materializes two assets, partition by partition:

* ``cxone_staged/{table}``: the files of the interval's COMPLETED export jobs, verified (SHA-256,
  S3 version, record count, schema) and staged; its blocking checks are the quality gates,
  evaluated per partition (``completed_export`` fails when the interval has no COMPLETED export);
* ``cxone/{table}``: the newest-wins MERGE of the partitions that passed.

Staging and merging share one step so that a run re-executed from failure (or a backfill's failed
partitions re-executed) stages again what it merges: a partition whose export did not exist yet
loads once it does. A partition is recorded as staged only when something was staged, and as
loaded only when it was merged; a blocked partition fails its check, is named in the step's
failure, and leaves the table as it was. The same code runs for one partition (sensors, a single
materialize) and for a range (a backfill batched by the backfill policy).
"""

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from cxone_sync.catalog import Category, DataType
from cxone_sync.cxone.errors import CXoneError
from cxone_sync.cxone.models import Job
from cxone_sync.cxone.untrusted import label, shown
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.defs.resources import CXoneAPIResource, IngestResource, WarehouseResource
from cxone_sync.defs.retries import is_transient, retry_transient, step_retry_policy
from cxone_sync.ingest import checks as ck
from cxone_sync.ingest.load import PartitionLoadOutcome, load_partition
from cxone_sync.ingest.stage import NoCompletedExportError, Window, select_jobs
from cxone_sync.storage.staging import StagingError
from cxone_sync.timefmt import utc_iso as _iso
from cxone_sync.warehouse.base import MergeResult

STAGED_PREFIX = "cxone_staged"
TABLE_PREFIX = "cxone"
JOB_IDS_JSON = "job_ids_exact"
"""Metadata: the raw job ids as a JSON list (``job_ids`` is the readable text form)."""
JOB_LABELS = "job_labels"
"""Metadata: hash form -> raw id, for the job ids that run tags and run keys carry hashed."""
WAREHOUSE_POOL = "cxone_warehouse"
"""Concurrency pool around everything that opens the warehouse (DuckDB: one writer)."""


def job_metadata(job_ids: Sequence[str]) -> dict[str, Any]:
    """The jobs a load considered: readable (escaped, bounded), exact (JSON list), and the
    mapping from the hash form in run tags to the raw id where the two differ."""
    out: dict[str, Any] = {
        "job_ids": ", ".join(shown(j) for j in job_ids),
        JOB_IDS_JSON: dg.MetadataValue.json(list(job_ids)),
    }
    hashed = {label(j): j for j in job_ids if label(j) != j}
    if hashed:
        out[JOB_LABELS] = dg.MetadataValue.json(hashed)
    return out


def staged_key(dt: DataType) -> dg.AssetKey:
    return dg.AssetKey([STAGED_PREFIX, dt.table])


def table_key(dt: DataType) -> dg.AssetKey:
    return dg.AssetKey([TABLE_PREFIX, dt.table])


def load_step_name(dt: DataType) -> str:
    """The op (and step key) that stages and merges one data type: ``load__{table}``."""
    return f"load__{dt.table}"


def staging_path(base: str, dt: DataType, partition_key: str, run_id: str) -> Path:
    safe = re.sub(r"[^0-9A-Za-z_-]", "_", partition_key)
    return Path(base) / dt.table / safe / run_id


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, dg.EventLogRecord]:
    """partition -> its newest materialization record, for many partitions in one query."""
    if not partitions:
        return {}
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)),
        limit=len(partitions) * 20,
    )
    latest: dict[str, dg.EventLogRecord] = {}
    for record in result.records:  # newest first
        partition = record.partition_key
        if partition is not None and partition not in latest:
            latest[partition] = record
    return latest


# ------------------------------------------------------------------ gate outcomes -> events


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Check metadata: scalars as they are, structures as JSON."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (int, float, str, bool, dg.MetadataValue)) or value is None:
            out[key] = value
        else:
            out[key] = dg.MetadataValue.json(value)
    return out


def _evaluation(
    key: dg.AssetKey,
    partition: str,
    name: str,
    *,
    passed: bool,
    severity: str = "ERROR",
    description: str,
    metadata: dict[str, Any] | None = None,
    blocking: bool = False,
) -> dg.AssetCheckEvaluation:
    """One check result for one partition. Emitted after the partition's materialization in the
    same run, so the UI evaluates it against that materialization."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity(severity),
        description=description,
        metadata=_jsonable(metadata or {}),
        blocking=blocking,
        partition=partition,
    )


def gate_events(dt: DataType, window: Window, outcome: PartitionLoadOutcome) -> Iterator[Any]:
    """The staged partition's materialization and its gates (``completed_export`` included).

    A partition that was not merged (a gate blocked it, or the warehouse refused it) is not
    recorded as staged: its failed check or the step's failure says why, and re-executing the
    backfill's failed partitions then runs both assets of the step again (the step cannot run
    one without the other)."""
    staged = outcome.staged
    key = staged_key(dt)
    if outcome.merged is not None:
        yield dg.AssetMaterialization(
            asset_key=key,
            partition=window.partition_key,
            metadata={
                **staged.stats,
                **job_metadata(staged.jobs),
                "superseded_jobs": ", ".join(shown(j) for j in staged.superseded_jobs),
                "window": f"{_iso(window.start)} .. {_iso(window.end)}",
            },
        )
    yield _evaluation(
        key,
        window.partition_key,
        ck.COMPLETED_EXPORT,
        passed=True,
        description="COMPLETED export job(s) " + ", ".join(shown(j) for j in staged.jobs),
        metadata=job_metadata(staged.jobs),
        blocking=True,
    )
    for o in staged.outcomes:
        yield _evaluation(
            key,
            window.partition_key,
            o.name,
            passed=o.passed,
            severity=o.severity,
            description=o.description,
            metadata=o.metadata,
            blocking=True,
        )


def unstaged_events(dt: DataType, window: Window, why: str) -> Iterator[Any]:
    """Nothing could be staged (no COMPLETED export, or the API kept failing): no staged
    materialization, a failed blocking ``completed_export`` check with the reason."""
    yield _evaluation(
        staged_key(dt),
        window.partition_key,
        ck.COMPLETED_EXPORT,
        passed=False,
        description=why,
        metadata={"window": f"{_iso(window.start)} .. {_iso(window.end)}"},
        blocking=True,
    )


def merge_events(
    dt: DataType,
    window: Window,
    outcome: PartitionLoadOutcome,
    result: MergeResult,
    *,
    recovered: bool,
) -> Iterator[Any]:
    """The table partition's materialization; ``recovered`` passes again where the jobs sensor
    had reported the interval as unrecovered (elsewhere it has nothing to say)."""
    key = table_key(dt)
    jobs = ", ".join(shown(j) for j in outcome.staged.jobs)
    yield dg.AssetMaterialization(
        asset_key=key,
        partition=window.partition_key,
        metadata=merge_metadata(result, outcome),
    )
    if recovered:
        # the jobs sensor had given up on this interval (its `recovered` check is red): loaded now
        yield _evaluation(
            key,
            window.partition_key,
            ck.RECOVERED,
            passed=True,
            description="loaded from COMPLETED export job(s) " + jobs,
            metadata=job_metadata(outcome.staged.jobs),
        )


def merge_metadata(result: MergeResult, outcome: PartitionLoadOutcome) -> dict[str, Any]:
    staged = outcome.staged
    return {
        # the jobs this load considered: late-data reconciliation compares against them
        **job_metadata(staged.jobs),
        "files_loaded": result.files_loaded,
        "files_skipped": result.files_skipped + len(staged.skipped_files),
        "rows_read": result.rows_read,
        "in_file_duplicates_dropped": result.duplicates_dropped,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "stale_rows_ignored": result.rows_stale,
        "columns_added": ", ".join(result.columns_added),
        "columns_widened": ", ".join(result.columns_widened),
        # keys first seen in another partition: late updates, legitimate and worth knowing
        "cross_partition_keys": result.cross_partition_keys,
        "schema_hash": result.schema_hash,
        **{f"seconds_{k}": round(v, 3) for k, v in result.seconds.items()},
    }


def blocked_failure(dt: DataType, total: int, blocked: dict[str, str]) -> dg.Failure:
    listed = "\n".join(f"  {key}: {why}" for key, why in sorted(blocked.items()))
    loaded = total - len(blocked)
    return dg.Failure(
        description=f"{dt.table}: {len(blocked)} of {total} partitions not merged"
        + (f"; the other {loaded} were" if loaded else "")
        + f". Blocked:\n{listed}\nFix the cause (the failed check or the message names it), "
        "then re-execute this run from failure, re-execute the backfill's failed partitions, or "
        "run `cxone-sync sync` over their interval: each re-stages what it merges.",
        metadata={"table": dt.table, "blocked": dg.MetadataValue.json(blocked)},
    )


# ------------------------------------------------------------------ the step


@dataclass
class _Step:
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


def build_data_type_assets(
    category: Category,
    dt: DataType,
    pdef: dg.PartitionsDefinition,
    warehouse_kind: str,
    partitions_per_run: int = 24,
) -> list[dg.AssetsDefinition]:
    staged, table = staged_key(dt), table_key(dt)

    @dg.multi_asset(
        name=load_step_name(dt),
        specs=[
            dg.AssetSpec(
                staged,
                group_name=category.name,
                kinds={"s3", "parquet"},
                description=f"{dt.table}: the files of COMPLETED CXone export jobs of each "
                "interval, verified (SHA-256, S3 version, record count, schema) and staged for "
                "the MERGE. Recorded only for partitions where something was staged.",
                metadata={"natural_key": list(dt.key)},
                skippable=True,
            ),
            dg.AssetSpec(
                table,
                deps=[staged],
                group_name=category.name,
                kinds={warehouse_kind},
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=category.freshness),
                description=f"cxone.{dt.table}: one row per natural key ({', '.join(dt.key)}), "
                "the newest version by updated_at (tie: the later-completed job).",
                metadata={"natural_key": list(dt.key), "table": f"cxone.{dt.table}"},
                skippable=True,
            ),
        ],
        check_specs=[
            *(
                dg.AssetCheckSpec(
                    name,
                    asset=staged,
                    blocking=True,
                    description=ck.CHECK_DESCRIPTIONS[name],
                    partitions_def=pdef,
                )
                for name in ck.BLOCKING_CHECKS
            ),
            *(
                dg.AssetCheckSpec(
                    name,
                    asset=table,
                    description=ck.CHECK_DESCRIPTIONS[name],
                    partitions_def=pdef,
                )
                for name in ck.TABLE_CHECKS
            ),
        ],
        partitions_def=pdef,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run),
        pool=WAREHOUSE_POOL,
        can_subset=False,
        # what a sensor's load request is for, shown by `dagster sensor preview`; not read here
        config_schema={"cxone_request": dg.Field(dg.Permissive(), is_required=False)},
        description=f"Stage, gate and merge {dt.table}, partition by partition.",
    )
    @retry_transient
    def _load(
        context: dg.AssetExecutionContext,
        cxone: CXoneAPIResource,
        s3: S3Resource,
        warehouse: WarehouseResource,
        ingest: IngestResource,
    ) -> Iterator[Any]:
        yield from _Step(category, dt, context, cxone, s3, warehouse, ingest).run()

    return [_load]


def build_ingest_assets(
    categories: tuple[Category, ...],
    start: Any,
    warehouse_kind: str,
    partitions_per_run: int = 24,
) -> list[dg.AssetsDefinition]:
    assets: list[dg.AssetsDefinition] = []
    for category in categories:
        pdef = partitions_for(category, start)
        for dt in category.data_types:
            assets.extend(
                build_data_type_assets(category, dt, pdef, warehouse_kind, partitions_per_run)
            )
    return assets
