"""Job ids that try to steer paths, URLs, tags and logs, through ``cxone-sync sync``.

Every job of the simulated tenant gets a hostile id (a traversal out of the staging folder, one
deep enough to reach ``/tmp``, an absolute path, ``/ ? #``, unicode with spaces, 1,000+
characters, NUL and terminal escapes, ``,`` and ``%``). The sync must load every table exactly
as the truth says and write nothing outside its data folder.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cxone_sync.catalog import category
from cxone_sync.cli import main
from cxone_sync.cxone.untrusted import label
from cxone_sync.simulator.truth import differences
from cxone_sync.simulator.world import HOSTILE_ID_FORMS
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack

START = datetime(2024, 3, 15, tzinfo=UTC)
END = START + timedelta(hours=6)
CATEGORIES = ("telephony",)
STAGED_NAME = re.compile(r"[0-9a-f]{64}\.parquet|manifest\.json")


def _files(root: Path) -> set[Path]:
    return {Path(d) / f for d, _, fs in os.walk(root) for f in fs}


def _tmp_entries() -> set[Path]:
    """What the hostile ids aim at in /tmp (absolute ids, deep traversals), with the contents."""
    aimed = {p for p in Path("/tmp").iterdir() if p.name.startswith(("x-", "cxone-hostile"))}
    return aimed | {f for p in aimed if p.is_dir() for f in _files(p)}


def test_sync_with_hostile_job_ids_loads_the_truth_and_writes_only_in_its_data_folder(
    make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack(
        scale=0.05,
        categories=CATEGORIES,
        hostile_job_ids=1.0,
        duplicate_export_intervals=(START + timedelta(hours=1), START + timedelta(hours=3)),
        # 6 hourly jobs and 2 duplicates: each of the 8 hostile forms once
    )
    data = tmp_path / "deep" / "er" / "data"
    for key, value in stack.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CXONE_DATA_DIR", str(data))
    monkeypatch.setenv("DAGSTER_HOME", str(data / "dagster_home"))
    (data / "dagster_home").mkdir(parents=True)
    stack.world.advance_to(END + timedelta(hours=1))
    jobs = [
        j
        for c in CATEGORIES
        for j in stack.world.list_jobs(f"dl-{c}-prod")
        if j["interval_start"] < "2024-03-15T06"
    ]
    forms = {
        e["detail"]["form"]
        for e in stack.world.fault_log
        if e["kind"] == "hostile_job_id" and e["job_id"] in {j["id"] for j in jobs}
    }
    assert forms == {form for form, _ in HOSTILE_ID_FORMS}, "every hostile form is loaded"
    assert jobs and all(label(j["id"]) != j["id"] for j in jobs), "no id is a safe tag value"
    tmp_before = _tmp_entries()

    args = ["sync", "--start", "2024-03-15T00:00Z", "--end", "2024-03-15T06:00Z"]
    code = main([*args, "--category", "telephony"])
    out = capsys.readouterr().out
    assert code == 0, out

    # nothing outside the data folder; inside it, only the warehouse, the Dagster home and the
    # staging folder (whose files all carry hashed names)
    assert {p for p in _files(tmp_path) if data not in p.parents} == set()
    assert _tmp_entries() == tmp_before
    homes = (data / "staging", data / "dagster_home")
    stray = {
        p
        for p in _files(data)
        if not any(h in p.parents for h in homes) and not p.name.startswith("warehouse.duckdb")
    }
    assert stray == set()
    staged = _files(data / "staging")
    assert all(STAGED_NAME.fullmatch(p.name) for p in staged), sorted(p.name for p in staged)
    assert "\x00" not in out and "\x1b" not in out, "control characters reach the terminal"

    # every table equals the truth
    warehouse = DuckDBWarehouse(data / "warehouse.duckdb")
    for name in CATEGORIES:
        for dt in category(name).data_types:
            truth = stack.world.ground_truth(name, dt.name, START, END)
            assert truth.num_rows > 0
            table = warehouse.read_table(dt)
            assert differences(truth, table, list(dt.key)) == [], dt.table
            # the audit trail keeps the raw ids (bound SQL values), NUL and all
            audited = set(table.column("_cxone_job_id").to_pylist())
            assert audited <= {j["id"] for j in jobs}

    # the materialization metadata keeps the exact ids and the tag form of each
    with dg.DagsterInstance.get() as instance:
        record = instance.get_latest_materialization_event(dg.AssetKey(["cxone", "telephony__cdr"]))
        assert record is not None and record.asset_materialization is not None
        metadata = record.asset_materialization.metadata
        exact = metadata["job_ids_exact"].value
        labels = metadata["job_labels"].value
        assert isinstance(exact, list) and isinstance(labels, dict) and exact
        assert all(labels[label(j)] == j for j in exact if label(j) != j)
