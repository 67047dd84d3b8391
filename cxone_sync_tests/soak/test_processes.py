"""The soak harness leaves no process behind: everything it starts runs in sessions it tracks,
and ``kill_all`` kills every process of them, grandchildren and orphans included."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cxone_sync_tests.soak.harness import Processes, _descendants, _stat, _wait

# a parent that starts a child which outlives it (an orphan, like a run worker of a dead daemon)
TREE = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "time.sleep(float(sys.argv[1]))\n"
)


def test_kill_all_kills_children_and_orphans_of_the_sessions(tmp_path: Path) -> None:
    procs = Processes(env={"PATH": "/usr/bin:/bin"}, logdir=tmp_path)
    lasting = procs.spawn([sys.executable, "-c", TREE, "120"], "lasting.log")
    orphaning = procs.spawn([sys.executable, "-c", TREE, "3"], "orphaning.log")
    _wait("both trees to start", lambda: len(procs.members()) == 4, 60, every=0.1)
    assert len(_descendants(lasting.pid)) == 1
    orphaning.wait(timeout=60)  # its child lives on, reparented, still in the session
    _wait("the orphan alone", lambda: len(procs.members()) == 3, 30, every=0.1)
    members = procs.members()
    killed = procs.kill_all(timeout=10)
    assert set(members) <= set(killed)
    assert procs.members() == []
    time.sleep(0.2)
    assert all(_stat(pid) is None for pid in members)
