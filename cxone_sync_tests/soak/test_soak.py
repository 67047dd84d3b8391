"""The soak on the real daemon (issue 11, item 7): see :mod:`.harness`.

The short variant (1 simulated day of the two 6-hourly categories, one daemon kill and one run
worker kill) runs in the default suite; the full one (7 simulated days of every category, two
daemon kills, three run worker kills) with ``make soak``. The summary is printed (``-s``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cxone_sync_tests.soak.harness import SoakPlan, SoakReport, run_soak


def soak(plan: SoakPlan, work: Path) -> SoakReport:
    report = run_soak(plan, work)
    print("\n" + report.summary())
    kinds = [k.kind for k in report.kills]
    assert kinds.count("daemon") == plan.daemon_kills, report.summary()
    assert kinds.count("worker") == plan.worker_kills, report.summary()
    assert report.partitions["loaded"] > 0 and sum(report.runs.values()) > 0
    assert not report.problems, report.summary()
    return report


@pytest.mark.timeout(900)
def test_short_soak_on_the_real_daemon_survives_kills(tmp_path: Path) -> None:
    soak(SoakPlan.short(), tmp_path / "soak")


@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
def test_seven_day_soak_on_the_real_daemon_survives_kills(tmp_path: Path) -> None:
    soak(SoakPlan.full(), tmp_path / "soak")
