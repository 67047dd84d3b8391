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

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from cxone_sync.catalog import Category, DataType
from cxone_sync.defs.automation.job_events import CONFIG_KEY as EVENTS_KEY
from cxone_sync.defs.automation.job_events import record as record_events
from cxone_sync.defs.ingest.names import WAREHOUSE_POOL, load_step_name, staged_key, table_key
from cxone_sync.defs.ingest.step import LoadStep
from cxone_sync.defs.partitions import partitions_for
from cxone_sync.defs.resources import CXoneAPIResource, IngestResource, WarehouseResource
from cxone_sync.defs.retries import retry_transient
from cxone_sync.ingest import checks as ck


def build_data_type_assets(
    category: Category,
    dt: DataType,
    pdef: dg.PartitionsDefinition,
    warehouse_kind: str,
    partitions_per_run: int = 24,
    record_count_tolerance: float = ck.DEFAULT_RECORD_COUNT_TOLERANCE,
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
                    description=ck.check_description(name, record_count_tolerance),
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
        config_schema={
            # what a sensor's load request is for, shown by `dagster sensor preview`; not read
            "cxone_request": dg.Field(dg.Permissive(), is_required=False),
            # the job state changes of the sensor tick that requested this run (first data type
            # of the category only), written before loading (automation/job_events.py)
            EVENTS_KEY: dg.Field(dg.Permissive(), is_required=False),
        },
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
        events = (context.op_execution_context.op_config or {}).get(EVENTS_KEY)
        if events:
            carried, added = record_events(warehouse.get(), events)
            context.log.info(
                f"{category.name}: {carried} job state change(s) of the requesting sensor tick, "
                f"{added} new in cxone_sync.job_events"
            )
        yield from LoadStep(category, dt, context, cxone, s3, warehouse, ingest).run()

    return [_load]


def build_ingest_assets(
    categories: tuple[Category, ...],
    start: Any,
    warehouse_kind: str,
    partitions_per_run: int = 24,
    record_count_tolerances: Mapping[str, float] | None = None,
) -> list[dg.AssetsDefinition]:
    """``record_count_tolerances``: category -> the tolerance in force (the check descriptions)."""
    assets: list[dg.AssetsDefinition] = []
    for category in categories:
        pdef = partitions_for(category, start)
        tolerance = (record_count_tolerances or {}).get(
            category.name, ck.DEFAULT_RECORD_COUNT_TOLERANCE
        )
        for dt in category.data_types:
            assets.extend(
                build_data_type_assets(
                    category, dt, pdef, warehouse_kind, partitions_per_run, tolerance
                )
            )
    return assets
