"""What the automation sensors ask for instead of doing it themselves.

A sensor evaluation writes nothing outside its cursor and its run requests, so ``dagster sensor
preview`` has no side effect and a tick that is evaluated but never committed changes nothing.
The two side effects a tick decides on run as small jobs of their own:

* ``record_job_events_job``: the job state changes a jobs-sensor tick saw, written to
  ``cxone_sync.job_events`` (idempotent: a (job, status) pair is stored once), when the tick
  requests no partition load to carry them (:mod:`.job_events`). The events travel in the run
  config, so the run page shows exactly what was recorded. These runs queue behind loads
  (``dagster/priority`` -1): they only keep an audit table current.
* ``request_manual_export_job``: one CXone manual export (a POST, ``overwrite: false``, into
  ``{prefix}backfill/``), one run per interval and attempt (run key
  ``manual-export:{category}:{start}/{end}:{attempt}``), so a repeated request never POSTs twice.
  A 409 (an overlapping manual export already runs) is a success: the interval is being exported.
"""

import dagster as dg

from cxone_sync.cxone.errors import ConflictError, CXoneError
from cxone_sync.defs.automation.job_events import JobEventsConfig, record
from cxone_sync.defs.ingest.jobs import RUN_RETRY_TAGS
from cxone_sync.defs.ingest.names import WAREHOUSE_POOL
from cxone_sync.defs.resources import CXoneAPIResource, WarehouseResource
from cxone_sync.timefmt import parse_utc as _parse

RECORD_JOB_EVENTS_JOB = "record_job_events_job"
REQUEST_MANUAL_EXPORT_JOB = "request_manual_export_job"
BACKFILL = "backfill/"


class ManualExportConfig(dg.Config):
    category: str
    start: str
    end: str
    attempt: int
    reason: str = ""
    sensor: str = ""


@dg.op(
    pool=WAREHOUSE_POOL,
    # another process may hold the DuckDB file for a while (a merge, doctor): wait, not fail
    retry_policy=dg.RetryPolicy(max_retries=5, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="Write the job state changes a jobs-sensor tick saw to cxone_sync.job_events.",
)
def record_job_events(
    context: dg.OpExecutionContext, config: JobEventsConfig, warehouse: WarehouseResource
) -> None:
    carried, added = record(warehouse.get(), config)
    context.log.info(
        f"{config.category}: {carried} job state change(s), {added} new in cxone_sync.job_events"
    )


@dg.op(
    description="Ask CXone for a manual export of one interval (overwrite false, into the "
    "download's prefix + backfill/); a 409 means one already runs.",
)
def request_manual_export(
    context: dg.OpExecutionContext, config: ManualExportConfig, cxone: CXoneAPIResource
) -> None:
    start, end = _parse(config.start), _parse(config.end)
    what = f"{config.category} {config.start} .. {config.end} (attempt {config.attempt})"
    with cxone.client() as client:
        try:
            prefix = client.download_config(config.category).destination.prefix + BACKFILL
            job = client.manual_export(config.category, start, end, prefix, overwrite=False)
        except ConflictError as exc:
            context.log.info(f"manual export for {what}: an overlapping one already runs ({exc})")
            return
        except CXoneError as exc:
            raise dg.Failure(
                description=f"manual export for {what} was not accepted: {exc}. The sensor asks "
                "again after its backoff; if this keeps failing, request the export by hand.",
                metadata={"category": config.category, "interval": f"{config.start}/{config.end}"},
            ) from None
    context.log.info(f"manual export {job.id} requested for {what}; reason: {config.reason}")


@dg.job(
    name=RECORD_JOB_EVENTS_JOB,
    description="Records the job state changes a jobs sensor saw (run config: the events).",
    # recording is idempotent (job id, status, updated_at): a run whose worker died is re-run
    tags={"cxone/automation": "job_events", **RUN_RETRY_TAGS},
    executor_def=dg.in_process_executor,
)
def record_job_events_job() -> None:
    record_job_events()


@dg.job(
    name=REQUEST_MANUAL_EXPORT_JOB,
    description="One CXone manual export requested by a sensor (run key per interval+attempt).",
    tags={"cxone/automation": "manual_export"},
    executor_def=dg.in_process_executor,
)
def request_manual_export_job() -> None:
    request_manual_export()


def automation_jobs() -> list[dg.JobDefinition]:
    return [record_job_events_job, request_manual_export_job]
