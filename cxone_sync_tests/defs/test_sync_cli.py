"""``cxone-sync sync`` runs real Dagster runs in the configured instance, against the simulator."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from cxone_sync.catalog import category
from cxone_sync.cli import main
from cxone_sync.simulator.config import CountSkew
from cxone_sync.simulator.truth import differences
from cxone_sync.sync_command import Progress, partial_intervals
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse
from cxone_sync_tests.fixtures import MakeStack

START = datetime(2024, 3, 15, tzinfo=UTC)


@pytest.fixture
def env(make_stack: MakeStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    stack = make_stack(
        scale=0.2,
        record_count_skew=(CountSkew("telephony", START + timedelta(hours=2), 10.0),),
        duplicate_export_rate=0.3,
    )
    for key, value in stack.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CXONE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    stack.world.advance_to(START + timedelta(hours=8))
    return stack, tmp_path


def test_sync_blocks_one_partition_loads_neighbours_then_repairs(env, capsys) -> None:  # type: ignore[no-untyped-def]
    stack, tmp = env
    args = ["sync", "--start", "2024-03-15T00:00Z", "--end", "2024-03-15T06:00Z"]
    code = main([*args, "--category", "telephony", "--category", "workforce_management"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "record_count" in out and "2024-03-15-02:00" in out
    # the plan, then a line per run as it ends (partitions done / total, rows), then the summary
    assert out.startswith("sync: 7 partition(s) to load in 2 run(s)\n"), out
    assert (
        "[6/7] run 1/2: 2024-03-15-00:00 .. 2024-03-15-05:00 (6 partition(s) of telephony): "
        "FAILED" in out
    ), out
    done = re.search(
        r"\[7/7\] run 2/2: 2024-03-15-00:00 \(1 partition\(s\) of workforce_management\): "
        r"loaded, ([\d,]+) row\(s\) merged",
        out,
    )
    assert done, out
    assert out.index("run 2/2: ") < out.index("Dagster runs")
    assert "\x1b" not in out  # not a terminal: plain lines only
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        # batched like a UI backfill: one ranged run per interval length, not one per partition
        assert len(runs) == 2
        ranges = {
            r.job_name: (
                r.tags.get("dagster/asset_partition_range_start", r.tags.get("dagster/partition")),
                r.tags.get("dagster/asset_partition_range_end", r.tags.get("dagster/partition")),
                r.status,
            )
            for r in runs
        }
        assert ranges == {
            "sync_hourly_categories_job": (
                "2024-03-15-00:00",
                "2024-03-15-05:00",
                dg.DagsterRunStatus.FAILURE,
            ),
            "sync_6h_categories_job": (
                "2024-03-15-00:00",
                "2024-03-15-00:00",
                dg.DagsterRunStatus.SUCCESS,
            ),
        }
        # first-class runs: recorded with the code location's origin, like UI-launched runs
        for run in runs:
            origin = run.remote_job_origin
            assert origin is not None, run.run_id
            assert origin.location_name == "cxone_sync"
            assert origin.repository_origin.repository_name == "__repository__"
            assert origin.job_name == run.job_name
            assert run.job_code_origin is not None
            assert run.tags["cxone/trigger"] == "cli-sync"
        table_key = dg.AssetKey(["cxone", "telephony__cdr"])
        assert instance.get_materialized_partitions(table_key) == {
            f"2024-03-15-{h:02d}:00" for h in (0, 1, 3, 4, 5)
        }
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["cxone_staged", "telephony__cdr"]), "record_count")]
        )
        assert check
    warehouse = DuckDBWarehouse(tmp / "data" / "warehouse.duckdb")
    cdr = category("telephony").data_type("cdr")
    partitions = set(warehouse.read_table(cdr).column("_cxone_partition").to_pylist())
    assert "2024-03-15-02:00" not in partitions and len(partitions) == 5
    adherence = category("workforce_management").data_type("adherence")
    truth = stack.world.ground_truth(
        "workforce_management", "adherence", START, START + timedelta(hours=6)
    )
    assert differences(truth, warehouse.read_table(adherence), list(adherence.key)) == []
    # the run's line counted the rows it merged: the 6-hourly category's tables hold just those
    merged = sum(
        warehouse.read_table(dt).num_rows for dt in category("workforce_management").data_types
    )
    assert int(done.group(1).replace(",", "")) == merged > 0

    # repair with a manual export of the bad interval, then sync that hour again
    stack.world.manual_export(
        "dl-telephony-prod",
        {
            "category": "telephony",
            "start_time": "2024-03-15T02:00:00Z",
            "end_time": "2024-03-15T03:00:00Z",
            "overwrite": False,
            "destination_prefix": "exports/telephony/backfill/",
        },
    )
    stack.world.advance(timedelta(hours=1))
    assert (
        main(
            [
                "sync",
                "--start",
                "2024-03-15T02:00Z",
                "--end",
                "2024-03-15T03:00Z",
                "--category",
                "telephony",
            ]
        )
        == 0
    )
    for dt in category("telephony").data_types:
        truth = stack.world.ground_truth("telephony", dt.name, START, START + timedelta(hours=6))
        assert differences(truth, warehouse.read_table(dt), list(dt.key)) == [], dt.table
    before = warehouse.read_table(cdr).sort_by("call_uuid")
    with dg.DagsterInstance.get() as instance:
        runs_before = len(instance.get_runs())
    capsys.readouterr()
    # a re-run with nothing new: no Dagster run at all, the skip said, the table untouched
    assert main([*args, "--category", "telephony"]) == 0
    out = capsys.readouterr().out
    assert "6 category partition(s) skipped" in out, out
    assert "0 Dagster runs, 0 failed." in out, out
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == runs_before
    assert warehouse.read_table(cdr).sort_by("call_uuid").equals(before)
    # --force loads every partition again (files verified against the ledger): same table
    assert main([*args, "--category", "telephony", "--force"]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out and "1 Dagster runs, 0 failed." in out, out
    assert warehouse.read_table(cdr).sort_by("call_uuid").equals(before)
    # a new COMPLETED job for one hour: only that partition runs again
    stack.world.manual_export(
        "dl-telephony-prod",
        {
            "category": "telephony",
            "start_time": "2024-03-15T04:00:00Z",
            "end_time": "2024-03-15T05:00:00Z",
            "overwrite": False,
            "destination_prefix": "exports/telephony/backfill/",
        },
    )
    stack.world.advance(timedelta(hours=1))
    assert main([*args, "--category", "telephony"]) == 0
    out = capsys.readouterr().out
    assert "5 category partition(s) skipped" in out and "1 Dagster runs, 0 failed." in out, out
    with dg.DagsterInstance.get() as instance:
        last = instance.get_runs(limit=1)[0]
        assert last.tags.get("dagster/partition") == "2024-03-15-04:00", last.tags
    for dt in category("telephony").data_types:
        truth = stack.world.ground_truth("telephony", dt.name, START, START + timedelta(hours=6))
        assert differences(truth, warehouse.read_table(dt), list(dt.key)) == [], dt.table


def test_sync_refuses_ranges_without_partitions_and_names_skipped_categories(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXONE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXONE_PARTITIONS_START", "2024-03-15")
    (tmp_path / "home").mkdir()
    # before the first partition: refused, nothing run
    code = main(["sync", "--start", "2024-03-14T00:00Z", "--end", "2024-03-15T06:00Z"])
    err = capsys.readouterr().err
    assert code == 2 and "before the first partition (2024-03-15" in err, err
    assert "CXONE_PARTITIONS_START" in err
    assert "the range it would use is [2024-03-15T00:00Z, 2024-03-15T06:00Z)" in err, err
    # 03:00-09:00 holds no whole 6-hour partition: refused for a 6-hourly category alone
    args = ["sync", "--start", "2024-03-15T03:00Z", "--end", "2024-03-15T09:00Z"]
    code = main([*args, "--category", "workforce_management"])
    err = capsys.readouterr().err
    assert code == 2 and "holds no whole partition of workforce_management" in err, err
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


def test_sync_names_intervals_only_partly_inside_the_range() -> None:
    wfm, tel = category("workforce_management"), category("telephony")
    start, end = START + timedelta(hours=3), START + timedelta(hours=15, minutes=30)
    # 6-hourly: 00-06 and 12-18 are cut by the range's edges; 06-12 is whole
    assert partial_intervals(wfm, start, end) == [
        "[2024-03-15T00:00Z, 2024-03-15T06:00Z)",
        "[2024-03-15T12:00Z, 2024-03-15T18:00Z)",
    ]
    assert [t.hour for t in wfm.interval_starts(start, end)] == [6]
    # hourly: only the hour the end cuts
    assert partial_intervals(tel, start, end) == ["[2024-03-15T15:00Z, 2024-03-15T16:00Z)"]
    assert partial_intervals(tel, START, START + timedelta(hours=2)) == []


def test_progress_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term, log = Terminal(), io.StringIO()
    for stream in (term, log):
        progress = Progress(total=4, runs=2, stream=stream)
        progress.line("sync: 4 partition(s) to load in 2 run(s)")
        progress.advance(3, 1200)
        progress.line("[3/4] run 1/2: ...")
        progress.advance(1, 34)
        progress.line("[4/4] run 2/2: ...")
    assert log.getvalue() == (
        "sync: 4 partition(s) to load in 2 run(s)\n[3/4] run 1/2: ...\n[4/4] run 2/2: ...\n"
    )
    shown = term.getvalue()
    # each line clears the bar drawn under the previous one; the bar shows done / total, rows
    assert shown.count("\r\x1b[K") == 3
    assert "[######################........] 3/4 partition(s), 1,200 row(s) merged" in shown
    assert "[..............................] 0/4 partition(s)" in shown
    assert shown.endswith("[4/4] run 2/2: ...\n")  # finished: no bar left under the summary
