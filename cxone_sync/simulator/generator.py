"""Deterministic, vectorised rows of every CXone data type, and plans of the files holding them.

A row is a pure function of (seed, data type, interval start, row index, version), so any subset
of an interval's rows can be rebuilt exactly, in any chunking. A :class:`FilePlan` names the rows
of one exported file (the interval's own rows, late updates and stale re-deliveries of rows first
exported earlier, extra older in-file versions), their order and the schema drift.
:func:`write_parquet` streams a plan to Parquet in row groups; :func:`materialize` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cxone_sync.catalog import CATEGORIES, UPDATED_AT, DataType, category
from cxone_sync.simulator import _rand as rnd
from cxone_sync.simulator.config import DriftSpec, SimConfig

BASE, LATE_UPDATE, STALE, IN_FILE_DUPLICATE = 0, 1, 2, 3
"""Row versions: the interval's own record, a newer late update, an older stale re-delivery and an
older version of the same record inside the same file."""

TS = pa.timestamp("us", tz="UTC")
SLOT = timedelta(minutes=15)
BATCH_ROWS = 262_144
NULL_KEY_SHARE = 0.01
_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
_SETTLE_US = 10 * 60 * _US
"""A record's first ``updated_at`` lies at most this long after its interval ends."""


def us(t: datetime) -> int:
    return round(t.timestamp() * _US)


@dataclass(frozen=True, eq=False)
class Rows:
    """Rows ``idx`` of one interval of one data type, in one version."""

    seed: int
    data_type: str
    interval_start: int
    interval_us: int
    n: int
    idx: np.ndarray
    version: int

    def _salt(self, name: str, versioned: bool) -> int:
        version = self.version if versioned else -1
        return rnd.salt(self.seed, self.data_type, self.interval_start, name, version)

    def u(self, name: str, versioned: bool = False) -> np.ndarray:
        return rnd.unit(self._salt(name, versioned), self.idx)

    def i(self, name: str, lo: int, hi: int, versioned: bool = False) -> np.ndarray:
        return rnd.ints(self._salt(name, versioned), self.idx, lo, hi)

    def raw(self, name: str) -> np.ndarray:
        return rnd.mix(self._salt(name, False), self.idx)

    def event_us(self) -> np.ndarray:
        """Event times spread over the interval, increasing with the row index."""
        offset = (self.idx.astype(np.float64) + self.u("event")) / max(self.n, 1)
        return self.interval_start + (offset * self.interval_us).astype(np.int64)

    def settle(self, ts: np.ndarray) -> np.ndarray:
        """Clip first-version ``updated_at`` values to shortly after the interval ends."""
        return np.minimum(ts, self.interval_start + self.interval_us + _SETTLE_US)


Columns = dict[str, pa.Array]
Builder = Callable[[Rows], tuple[Columns, np.ndarray]]


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int64), type=TS)


def _i32(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int32), type=pa.int32())


def _f32(values: np.ndarray) -> pa.Array:
    return pa.array(np.round(values, 2).astype(np.float32), type=pa.float32())


def _nulls(array: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, array.type), array)


def _choices(*values: str) -> pa.Array:
    return pa.array(values, type=pa.string())


SKILLS = _choices(
    "Billing Inbound", "Tech Support T1", "Tech Support T2", "Sales Inbound", "Retention",
    "Collections Outbound", "Spanish Support", "VIP Care", "Claims", "Order Status",
)  # fmt: skip
DISPOSITIONS = _choices(
    "Resolved", "Follow-up Required", "Escalated", "Callback Scheduled", "Sale Completed",
    "No Answer", "Wrong Number", "Transferred",
)  # fmt: skip
POINTS_OF_CONTACT = _choices("Main Support Line", "Sales Line", "Billing Line", "VIP Line")
DNIS = _choices("+18005550100", "+18005550111", "+18005550122", "+18005550133")
DIRECTIONS = _choices("Inbound", "Outbound")
LANGUAGES = _choices("en-US", "es-US", "fr-CA")
CHANNELS = _choices("Chat", "Email", "SMS", "WhatsApp", "Facebook Messenger")
DIGITAL_STATUS = _choices("Closed", "Resolved", "Pending", "Open")
MENU_PATHS = _choices(
    "Main", "Main>Billing", "Main>Billing>Payment", "Main>Billing>Balance", "Main>Support",
    "Main>Support>Outage", "Main>Sales", "Main>Orders>Status", "Main>Language>Spanish",
)  # fmt: skip
EXIT_POINTS = _choices("Agent Transfer", "Self-Service Complete", "Caller Hangup", "Timeout")
ACTIVITIES = _choices("Open Time", "Break", "Lunch", "Training", "Meeting", "Coaching")
STATES = _choices("Available", "On Contact", "ACW", "Unavailable", "Logged Out")
EXCEPTIONS = _choices("", "Late Login", "Early Logout", "Extended Break", "System Issue")
FORMS = _choices("Inbound Service QA v3", "Sales Compliance v2", "Chat Quality v1", "Retention QA")
EVAL_STATUS = _choices("Completed", "Acknowledged", "Disputed", "Calibrated")
SENTIMENTS = _choices("Negative", "Neutral", "Positive")
PHRASES = _choices(
    "thank you for calling how can I help you today", "I would like to check my bill",
    "let me pull up your account", "can you confirm your date of birth please",
    "I understand that is frustrating", "the payment was posted yesterday",
    "my internet keeps dropping in the evening", "I can schedule a technician for you",
    "is there anything else I can help with", "I want to cancel my subscription",
    "I can offer you a discount for twelve months", "please hold while I transfer you",
    "your order shipped this morning", "the refund takes three to five business days",
    "have a great day", "I was charged twice this month",
)  # fmt: skip
AGENTS = 600
TEAM_SIZE = 12


def _agent(numbers: np.ndarray) -> pa.Array:
    return rnd.coded("AG-", numbers, 6)


def _contact_id(r: Rows) -> pa.Array:
    return pa.array((r.raw("contact") % np.uint64(4_000_000_000)).astype(np.int64) + 5 * 10**9)


def _cdr(r: Rows) -> tuple[Columns, np.ndarray]:
    start = r.event_us()
    abandoned = r.u("abandoned") < 0.06
    queue = (r.u("queue") ** 2 * 300).astype(np.int64)
    ring = np.where(abandoned, 0, r.i("ring", 3, 30))
    talk = np.where(abandoned, 0, np.clip(-np.log1p(-r.u("talk")) * 260, 15, 7200).astype(int))
    hold = np.where(~abandoned & (r.u("held") < 0.25), r.i("hold", 10, 400), 0)
    acw = np.where(abandoned, 0, r.i("acw", 5, 240, versioned=True))
    end = start + (queue + ring + talk + hold) * _US
    skill = r.i("skill", 0, len(SKILLS))
    agent = r.i("agent", 0, AGENTS)
    transfers = np.where(~abandoned & (r.u("transfer") < 0.08), r.i("transfers", 1, 3), 0)
    contact_id = _contact_id(r)
    master = pc.subtract(contact_id, pa.array(np.where(transfers > 0, r.i("master", 1, 900), 0)))
    columns = {
        "call_uuid": rnd.uuids(r.raw("uuid_hi"), r.raw("uuid_lo")),
        "contact_id": contact_id,
        "master_contact_id": master,
        "contact_start": _ts(start),
        "contact_end": _ts(end),
        "ani": rnd.coded("+1", r.i("ani", 2_012_000_000, 9_899_999_999), 10),
        "dnis": rnd.pick(DNIS, r.i("dnis", 0, len(DNIS))),
        "direction": rnd.pick(DIRECTIONS, (r.u("direction") > 0.82).astype(np.int64)),
        "skill_id": _i32(4000 + skill),
        "skill_name": rnd.pick(SKILLS, skill),
        "campaign_id": _i32(100 + skill // 3),
        "agent_id": _nulls(_agent(agent), abandoned),
        "team_id": _i32(np.where(abandoned, 0, 10 + agent // TEAM_SIZE)),
        "disposition_code": _i32(
            np.where(abandoned, 0, 1 + r.i("disp", 0, len(DISPOSITIONS), versioned=True))
        ),
        "disposition_name": rnd.pick(DISPOSITIONS, r.i("disp", 0, len(DISPOSITIONS), True)),
        "queue_seconds": _i32(queue),
        "ring_seconds": _i32(ring),
        "talk_seconds": _i32(talk),
        "hold_seconds": _i32(hold),
        "acw_seconds": _i32(acw),
        "abandoned": pa.array(abandoned),
        "transfer_count": _i32(transfers),
        "media_type": rnd.pick(_choices("Call"), np.zeros(len(r.idx), dtype=np.int64)),
        "point_of_contact": rnd.pick(POINTS_OF_CONTACT, r.i("dnis", 0, len(DNIS))),
    }
    return columns, r.settle(end + acw * _US + 5 * _US)


def _acd(r: Rows) -> tuple[Columns, np.ndarray]:
    queued = r.event_us()
    wait = (r.u("wait") ** 2 * 240 * _US).astype(np.int64)
    handle = np.clip(-np.log1p(-r.u("handle")) * 300, 20, 7200).astype(np.int64)
    skill = r.i("skill", 0, len(SKILLS))
    answered = queued + wait
    columns = {
        "interaction_id": rnd.hex_ids("ACD-", r.raw("interaction")),
        "contact_id": _contact_id(r),
        "agent_id": _agent(r.i("agent", 0, AGENTS)),
        "skill_id": _i32(4000 + skill),
        "skill_name": rnd.pick(SKILLS, skill),
        "queue_start": _ts(queued),
        "answered_at": _ts(answered),
        "handle_seconds": _i32(handle),
        "priority": _i32(r.i("priority", 1, 6)),
        "agent_state": rnd.pick(STATES, r.i("state", 0, len(STATES), versioned=True)),
        "service_level_met": pa.array(wait <= 30 * _US),
    }
    return columns, r.settle(answered + handle * _US + 2 * _US)


def _grid(r: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Entity number and slot start of grid data types (one row per entity and 15 minutes)."""
    slots = r.interval_us // (SLOT // _ONE_US)
    entity = r.idx.astype(np.int64) // slots
    slot_start = r.interval_start + (r.idx.astype(np.int64) % slots) * SLOT.seconds * _US
    return entity, slot_start


def _skill_group(r: Rows) -> tuple[Columns, np.ndarray]:
    group, slot_start = _grid(r)
    offered = r.i("offered", 5, 120)
    abandoned = (offered * r.u("abandon_share") * 0.12).astype(np.int64)
    handled = offered - abandoned
    columns = {
        "skill_group_id": rnd.coded("SG-", group, 5),
        "interval_start": _ts(slot_start),
        "skill_group_name": rnd.pick(SKILLS, group % len(SKILLS)),
        "offered": _i32(offered),
        "handled": _i32(handled),
        "abandoned": _i32(abandoned),
        "service_level_pct": _f32(60 + 40 * r.u("sl", versioned=True)),
        "avg_speed_answer_seconds": _f32(5 + 90 * r.u("asa")),
        "avg_handle_seconds": _f32(180 + 420 * r.u("aht", versioned=True)),
        "longest_wait_seconds": _i32(r.i("longest", 30, 900)),
        "agents_staffed": _i32(r.i("staffed", 2, 40)),
    }
    return columns, r.settle(slot_start + (SLOT.seconds + 60) * _US)


def _ivr_session(r: Rows) -> tuple[Columns, np.ndarray]:
    start = r.event_us()
    path = r.i("path", 0, len(MENU_PATHS))
    exit_point = r.i("exit", 0, len(EXIT_POINTS), versioned=True)
    end = start + r.i("duration", 15, 600) * _US
    columns = {
        "session_hash": rnd.uuids(r.raw("hash_hi"), r.raw("hash_lo")),
        "contact_id": _contact_id(r),
        "ani": rnd.coded("+1", r.i("ani", 2_012_000_000, 9_899_999_999), 10),
        "dnis": rnd.pick(DNIS, r.i("dnis", 0, len(DNIS))),
        "session_start": _ts(start),
        "session_end": _ts(end),
        "menu_path": rnd.pick(MENU_PATHS, path),
        "menu_depth": _i32(1 + path % 3),
        "exit_point": rnd.pick(EXIT_POINTS, exit_point),
        "self_service_success": pa.array(exit_point == 1),
        "inputs_count": _i32(r.i("inputs", 1, 12)),
        "language": rnd.pick(LANGUAGES, (r.u("lang") ** 4 * len(LANGUAGES)).astype(np.int64)),
    }
    return columns, r.settle(end + 1 * _US)


def _transcript(r: Rows) -> tuple[Columns, np.ndarray]:
    start = r.event_us()
    duration = r.i("duration", 30, 1800)
    phrases = [rnd.pick(PHRASES, r.i(f"phrase{k}", 0, len(PHRASES))) for k in range(4)]
    text = pc.binary_join_element_wise(*phrases, ". ")
    sentiment = np.tanh(r.u("sentiment", versioned=True) * 2.4 - 1.2)
    transcribed = start + duration * _US + r.i("asr", 60, 900) * _US
    columns = {
        "interaction_id": rnd.uuids(r.raw("id_hi"), r.raw("id_lo")),
        "contact_id": _contact_id(r),
        "agent_id": _agent(r.i("agent", 0, AGENTS)),
        "language": rnd.pick(LANGUAGES, (r.u("lang") ** 4 * len(LANGUAGES)).astype(np.int64)),
        "duration_seconds": _i32(duration),
        "word_count": pc.cast(pc.add(pc.count_substring(text, " "), 1), pa.int32()),
        "sentiment": _f32(sentiment),
        "sentiment_label": rnd.pick(SENTIMENTS, np.digitize(sentiment, [-0.3, 0.3])),
        "confidence": _f32(0.78 + 0.21 * r.u("confidence")),
        "transcript_text": text,
        "transcribed_at": _ts(transcribed),
    }
    return columns, transcribed + 5 * _US


def _digital_interaction(r: Rows) -> tuple[Columns, np.ndarray]:
    created = r.event_us()
    first = created + r.i("first_response", 10, 900) * _US
    closed = first + r.i("open", 60, 3600) * _US
    csat = r.i("csat", 1, 6, versioned=True)
    skill = r.i("skill", 0, len(SKILLS))
    columns = {
        "interaction_id": rnd.hex_ids("DI-", r.raw("interaction")),
        "channel": rnd.pick(CHANNELS, r.i("channel", 0, len(CHANNELS))),
        "contact_id": _contact_id(r),
        "customer_id": rnd.coded("CU-", r.i("customer", 0, 10**8), 8),
        "agent_id": _agent(r.i("agent", 0, AGENTS)),
        "skill_id": _i32(4000 + skill),
        "created_at": _ts(created),
        "first_response_at": _ts(first),
        "closed_at": _ts(closed),
        "message_count": _i32(r.i("messages", 2, 60)),
        "status": rnd.pick(DIGITAL_STATUS, r.i("status", 0, len(DIGITAL_STATUS), versioned=True)),
        "csat_score": _nulls(_i32(csat), r.u("surveyed") > 0.3),
    }
    return columns, r.settle(closed + 3 * _US)


def _adherence(r: Rows) -> tuple[Columns, np.ndarray]:
    agent, slot_start = _grid(r)
    in_adherence = r.i("in_adh", 420, 901, versioned=True)
    columns = {
        "agent_id": _agent(agent),
        "interval_start": _ts(slot_start),
        "team_id": _i32(10 + agent // TEAM_SIZE),
        "scheduled_activity": rnd.pick(ACTIVITIES, (r.u("activity") ** 3 * 6).astype(np.int64)),
        "actual_state": rnd.pick(STATES, r.i("state", 0, len(STATES), versioned=True)),
        "scheduled_seconds": _i32(np.full(len(r.idx), SLOT.seconds)),
        "in_adherence_seconds": _i32(in_adherence),
        "adherence_pct": _f32(100 * in_adherence / SLOT.seconds),
        "conformance_pct": _f32(80 + 25 * r.u("conformance")),
        "exception_code": rnd.pick(
            EXCEPTIONS, np.where(r.u("exception") < 0.9, 0, r.i("exc", 1, len(EXCEPTIONS)))
        ),
    }
    return columns, r.settle(slot_start + (SLOT.seconds + 120) * _US)


def _evaluation(r: Rows) -> tuple[Columns, np.ndarray]:
    evaluated = r.event_us()
    score = 55 + 45 * r.u("score", versioned=True)
    form = r.i("form", 0, len(FORMS))
    columns = {
        "evaluation_id": rnd.hex_ids("EV-", r.raw("evaluation")),
        "contact_id": _contact_id(r),
        "agent_id": _agent(r.i("agent", 0, AGENTS)),
        "form": rnd.pick(FORMS, form),
        "form_id": _i32(300 + form),
        "evaluator_id": rnd.coded("QA-", r.i("evaluator", 0, 40), 4),
        "score": _f32(score),
        "max_score": _f32(np.full(len(r.idx), 100.0)),
        "passed": pa.array(score >= 75),
        "status": rnd.pick(EVAL_STATUS, r.i("status", 0, len(EVAL_STATUS), versioned=True)),
        "evaluated_at": _ts(evaluated),
        "comments": rnd.pick(PHRASES, r.i("comment", 0, len(PHRASES), versioned=True)),
    }
    return columns, r.settle(evaluated + 30 * _US)


@dataclass(frozen=True)
class TypeSpec:
    build: Builder
    base_rows: int
    """Rows per interval at scale 1; for grid types, entities (rows = entities x 15-min slots)."""
    grid: bool = False


SPECS: dict[str, TypeSpec] = {
    "cdr": TypeSpec(_cdr, 3000),
    "acd": TypeSpec(_acd, 3000),
    "skill_group": TypeSpec(_skill_group, 50, grid=True),
    "ivr_session": TypeSpec(_ivr_session, 2000),
    "transcript": TypeSpec(_transcript, 1500),
    "digital_interaction": TypeSpec(_digital_interaction, 1000),
    "adherence": TypeSpec(_adherence, 200, grid=True),
    "evaluation": TypeSpec(_evaluation, 300),
}
_missing = {dt.name for c in CATEGORIES for dt in c.data_types} - set(SPECS)
if _missing:
    raise RuntimeError(f"simulator has no generator for data types {sorted(_missing)}")


@functools.cache
def base_schema(dt: DataType) -> pa.Schema:
    """The data type's columns before any drift."""
    empty = np.empty(0, dtype=np.uint64)
    rows = Rows(0, dt.name, 0, category(dt.category).interval // _ONE_US, 1, empty, BASE)
    columns, first = SPECS[dt.name].build(rows)
    columns[UPDATED_AT] = _ts(first)
    return pa.table(columns).schema


def rows_per_interval(seed: int, scale: float, dt: DataType, interval_start: datetime) -> int:
    """Rows of ``dt`` first exported for the interval (deterministic, linear in ``scale``)."""
    spec = SPECS[dt.name]
    if spec.grid:
        slots = category(dt.category).interval // SLOT
        return max(1, round(spec.base_rows * scale)) * slots
    wobble = 0.9 + 0.2 * rnd.scalar_unit(seed, dt.name, us(interval_start), "rows")
    return max(1, round(spec.base_rows * scale * wobble))


@dataclass(frozen=True, eq=False)
class Segment:
    """Rows ``idx`` of the interval starting at ``interval_start``, in one version."""

    interval_start: datetime
    idx: np.ndarray
    version: int


@dataclass(frozen=True, eq=False)
class FilePlan:
    """Everything that determines the rows, order and schema of one exported file."""

    seed: int
    scale: float
    data_type: DataType
    interval_start: datetime
    segments: tuple[Segment, ...]
    drift: tuple[DriftSpec, ...] = ()
    null_keys: bool = False
    order_seed: int | None = None

    @property
    def num_rows(self) -> int:
        return sum(len(s.idx) for s in self.segments)

    def rows_of(self, version: int) -> int:
        return sum(len(s.idx) for s in self.segments if s.version == version)

    def breaking_drift(self) -> tuple[DriftSpec, ...]:
        return tuple(d for d in self.drift if d.breaking(self.data_type))

    def with_order(self, order_seed: int | None) -> FilePlan:
        return dataclasses.replace(self, order_seed=order_seed)


def late_source(config: SimConfig, dt: DataType, interval_start: datetime) -> datetime | None:
    """The earlier interval whose records are re-delivered in this interval's export, if any."""
    step = category(dt.category).interval
    source = interval_start - step * math.ceil(config.faults.late_update_delay / step)
    return source if source >= config.start else None


def plan_file(
    config: SimConfig,
    dt: DataType,
    interval_start: datetime,
    *,
    order_salt: object,
    null_keys: bool = False,
    clean: bool = False,
) -> FilePlan:
    """The file of ``dt`` for one interval; ``clean`` drops breaking drift (manual exports)."""
    faults = config.faults
    n = rows_per_interval(config.seed, config.scale, dt, interval_start)
    base = np.arange(n, dtype=np.uint64)
    segments = [Segment(interval_start, base, BASE)]
    duplicated = _draw(config, "in_file_duplicate", dt, interval_start, base)
    segments.append(
        Segment(interval_start, base[duplicated < faults.in_file_duplicate_rate], IN_FILE_DUPLICATE)
    )
    source = late_source(config, dt, interval_start)
    if source is not None:
        earlier = np.arange(
            rows_per_interval(config.seed, config.scale, dt, source), dtype=np.uint64
        )
        redelivered = _draw(config, "redelivery", dt, source, earlier)
        late = redelivered < faults.late_update_rate
        stale = ~late & (redelivered < faults.late_update_rate + faults.stale_redelivery_rate)
        segments.append(Segment(source, earlier[late], LATE_UPDATE))
        segments.append(Segment(source, earlier[stale], STALE))
    drift = tuple(d for d in faults.drift if d.data_type == dt.name and d.active(interval_start))
    if clean:
        drift = tuple(d for d in drift if not d.breaking(dt))
    order = rnd.salt(config.seed, dt.name, us(interval_start), order_salt)
    return FilePlan(
        seed=config.seed,
        scale=config.scale,
        data_type=dt,
        interval_start=interval_start,
        segments=tuple(s for s in segments if len(s.idx)),
        drift=drift,
        null_keys=null_keys,
        order_seed=order if faults.shuffle_rows else None,
    )


def _draw(
    config: SimConfig, what: str, dt: DataType, interval_start: datetime, idx: np.ndarray
) -> np.ndarray:
    return rnd.unit(rnd.salt(config.seed, what, dt.name, us(interval_start)), idx)


def _segment_table(plan: FilePlan, segment: Segment, idx: np.ndarray) -> pa.Table:
    dt = plan.data_type
    interval = category(dt.category).interval
    rows = Rows(
        seed=plan.seed,
        data_type=dt.name,
        interval_start=us(segment.interval_start),
        interval_us=interval // _ONE_US,
        n=rows_per_interval(plan.seed, plan.scale, dt, segment.interval_start),
        idx=idx,
        version=segment.version,
    )
    build = SPECS[dt.name].build
    columns, first = build(rows)
    if segment.version != BASE:  # other versions are timed relative to the original record
        first = build(dataclasses.replace(rows, version=BASE))[1]
    columns[UPDATED_AT] = _ts(_updated_at(plan, rows, first))
    for spec in plan.drift:
        if spec.kind == "add_column":
            columns[spec.column or "routing_tag"] = rnd.coded("RT-", rows.i("routing", 0, 1000), 4)
    if plan.null_keys and segment.version == BASE:
        nulled = (rows.u("null_key") < NULL_KEY_SHARE) | (idx == 0)
        columns[dt.key[0]] = _nulls(columns[dt.key[0]], nulled)
    return pa.table(columns)


def _updated_at(plan: FilePlan, rows: Rows, first: np.ndarray) -> np.ndarray:
    if rows.version == LATE_UPDATE:
        window = rows.interval_us * 0.95
        target = us(plan.interval_start) + (rows.u("late_at") * window).astype(np.int64)
        return np.maximum(first + _US, target)
    if rows.version == STALE:
        return first - rows.i("stale_by", 1, 3600) * _US
    if rows.version == IN_FILE_DUPLICATE:
        return first - rows.i("older_by", 1, 600) * _US
    return first


def _apply_drift(plan: FilePlan, table: pa.Table) -> pa.Table:
    """Every drift but ``add_column`` (added while the rows are built) on a finished chunk."""
    for spec in plan.drift:
        if spec.kind != "add_column":
            table = _DRIFT[spec.kind](plan.data_type, spec, table)
    return table


def _non_key(dt: DataType, table: pa.Table, want: Callable[[pa.DataType], bool]) -> list[str]:
    return [f.name for f in table.schema if f.name not in (*dt.key, UPDATED_AT) and want(f.type)]


def _reorder(dt: DataType, spec: DriftSpec, table: pa.Table) -> pa.Table:
    return table.select(list(reversed(table.column_names)))


_WIDER = {pa.int32(): pa.int64(), pa.float32(): pa.float64()}


def _widen(dt: DataType, spec: DriftSpec, table: pa.Table) -> pa.Table:
    name = spec.column or _non_key(dt, table, lambda t: t in _WIDER)[0]
    at = table.schema.get_field_index(name)
    column = table.column(at)
    return table.set_column(at, name, pc.cast(column, _WIDER.get(column.type, column.type)))


def _drop_column(dt: DataType, spec: DriftSpec, table: pa.Table) -> pa.Table:
    name = spec.column or _non_key(dt, table, lambda t: True)[-1]
    return table.drop_columns([name])


def _drop_key(dt: DataType, spec: DriftSpec, table: pa.Table) -> pa.Table:
    return table.drop_columns([spec.column or dt.key[0]])


def _incompatible_type(dt: DataType, spec: DriftSpec, table: pa.Table) -> pa.Table:
    name = spec.column or _non_key(dt, table, pa.types.is_integer)[0]
    at = table.schema.get_field_index(name)
    column = table.column(at)
    if pa.types.is_string(column.type):
        return table.set_column(at, name, pc.utf8_length(column))
    return table.set_column(at, name, pc.cast(column, pa.string()))


_DRIFT: dict[str, Callable[[DataType, DriftSpec, pa.Table], pa.Table]] = {
    "reorder": _reorder,
    "widen": _widen,
    "drop_column": _drop_column,
    "drop_key": _drop_key,
    "incompatible_type": _incompatible_type,
}


def iter_tables(plan: FilePlan, batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """The file's rows in file order, ``batch_rows`` at a time (every plan has base rows)."""
    sizes = np.array([len(s.idx) for s in plan.segments], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    if plan.order_seed is None:
        order = np.arange(total, dtype=np.int64)
    else:
        order = np.random.default_rng(plan.order_seed).permutation(total)
    for begin in range(0, total, batch_rows):
        yield _chunk(plan, order[begin : begin + batch_rows], offsets)


def _chunk(plan: FilePlan, positions: np.ndarray, offsets: np.ndarray) -> pa.Table:
    owner = np.searchsorted(offsets, positions, side="right") - 1
    parts: list[pa.Table] = []
    ranks: list[np.ndarray] = []
    for s, segment in enumerate(plan.segments):
        chosen = np.flatnonzero(owner == s)
        if len(chosen):
            parts.append(_segment_table(plan, segment, segment.idx[positions[chosen] - offsets[s]]))
            ranks.append(chosen)
    table = pa.concat_tables(parts)
    if len(parts) > 1:
        table = table.take(pa.array(np.argsort(np.concatenate(ranks), kind="stable")))
    return _apply_drift(plan, table)


def materialize(plan: FilePlan) -> pa.Table:
    """The whole file as one table (for tests and the ground truth)."""
    return pa.concat_tables(list(iter_tables(plan)))


def _categorical(table: pa.Table, sample: int = 2048, distinct: int = 64) -> list[str]:
    """Columns worth dictionary encoding: few distinct values in a sample of the first rows."""
    head = table.slice(0, sample)
    return [name for name in head.column_names if pc.count_distinct(head[name]).as_py() <= distinct]


def write_parquet(
    plan: FilePlan, sink: IO[bytes], compression: str, batch_rows: int = BATCH_ROWS
) -> int:
    """Stream the file to ``sink`` as Parquet, one row group per batch; returns the rows written.

    The next batch is generated on a helper thread while the current one is compressed.
    """
    written = 0
    writer: pq.ParquetWriter | None = None
    batches = iter_tables(plan, batch_rows)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-gen") as pool:
        pending = pool.submit(next, batches, None)
        while (table := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            if writer is None:
                dictionary = _categorical(table)
                writer = pq.ParquetWriter(
                    sink, table.schema, compression=compression, use_dictionary=dictionary
                )
            writer.write_table(table, row_group_size=batch_rows)
            written += table.num_rows
    assert writer is not None, "every plan has rows"
    writer.close()
    return written
