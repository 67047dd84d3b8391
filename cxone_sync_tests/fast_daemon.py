"""``dagster-daemon`` with a 1-second loop, for tests: ``python -m cxone_sync_tests.fast_daemon``.

Dagster 1.13 sleeps a fixed 30 s (``DEFAULT_DAEMON_INTERVAL_SECONDS``) between backfill daemon
iterations, with no setting; a test of a backfill and its re-execution would spend minutes
waiting. Everything else is Dagster's own daemon, started the way ``dagster-daemon run`` does.
"""

from __future__ import annotations

import sys

import dagster._daemon.controller as controller

controller.DEFAULT_DAEMON_INTERVAL_SECONDS = 1  # type: ignore[misc]

if __name__ == "__main__":
    from dagster._daemon.cli import main

    sys.argv[0] = "dagster-daemon"
    main()
