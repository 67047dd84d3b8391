"""``make ui-check``: what a user sees in the Dagster UI after a backfill, as screenshots.

Starts a live simulator world (yesterday and today so far, IVR only, small scale, yesterday 05:00
with a manifest overstating its rows by 10%), the real webserver and daemon on a fresh on-disk
instance (partitions start at the world's first day), launches a backfill of yesterday through
GraphQL as the UI's Materialize dialog does, waits for it, then opens three pages in headless
Chromium (Debian's ``chromium``, driven by Playwright; nothing is downloaded) and saves:

* ``asset-partitions.png``: the BI table's partitions (23 materialized, the blocked hour missing);
* ``asset-checks.png``: the staged asset's checks tab (``record_count`` failed);
* ``backfill.png``: the backfill page (the ranged run, status, partitions per asset);
* ``asset-partitions-after-sensor.png``: the same partitions after the IVR jobs sensor was turned
  on and the world's last hour exported: that hour loaded by a sensor-launched run.

Exits 1 when a page cannot be loaded or an expected text is not on it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cxone_sync.catalog import category, partition_key
from cxone_sync.simulator.config import CountSkew, FaultConfig, SimConfig
from cxone_sync.simulator.stack import LocalStack, history_start
from cxone_sync_tests.dagster_processes import TERMINAL, dagster_processes, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""
STATUS = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
START_SENSOR = """mutation($name: String!) {
  startSensor(sensorSelector: {repositoryLocationName: "cxone_sync",
      repositoryName: "__repository__", sensorName: $name}) {
    __typename ... on Sensor { sensorState { status } } ... on PythonError { message }
  }
}"""
MATERIALIZED = """query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { assetMaterializations(limit: 200) { partition runId } }
  }
}"""
RUN_TAGS = """query($id: ID!) {
  runOrError(runId: $id) { ... on Run { tags { key value } } }
}"""


def _dismiss_community_dialog(page: Any) -> None:
    """The webserver's first-visit "Join the Dagster community" dialog hides the page: Skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:
        return  # not shown (already skipped in this browser)


def _open_failing_check(page: Any) -> None:
    """Select ``record_count`` in the checks tab and show its per-partition results."""
    try:
        page.get_by_text("record_count", exact=True).first.click(timeout=10_000)
        page.wait_for_timeout(1000)
        page.get_by_role("tab", name="Partitions").last.click(timeout=10_000)
    except Exception as exc:  # the screenshot still shows the list of checks
        print(f"ui-check: could not open record_count's partitions: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxone_sync_tests.ui_check")
    parser.add_argument("--out", type=Path, default=Path("data/ui-check"))
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"ui-check: no Chromium at {args.chromium} (apt-get install chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    start = history_start(now, 1)
    yesterday = [start + timedelta(hours=h) for h in range(24)]
    bad = start + timedelta(hours=5)
    ivr = category("ivr")
    table = ["cxone", ivr.data_types[0].table]
    staged = ["cxone_staged", ivr.data_types[0].table]
    faults = FaultConfig(record_count_skew=(CountSkew("ivr", bad, 10.0),))
    config = SimConfig(start=start, scale=0.05, categories=("ivr",), faults=faults)
    root = Path(tempfile.mkdtemp(prefix="ui-check-"))
    try:
        with LocalStack(config) as stack:
            # an hour short of now: the last hour's export completes later, with the sensor on
            stack.world.advance_to(now - timedelta(hours=1))
            env = {"CXONE_PARTITIONS_START": start.date().isoformat()}
            with dagster_processes(stack, root, extra_env=env) as dagster:
                launched = dagster.graphql(
                    LAUNCH,
                    params={
                        "assetSelection": [{"path": staged}, {"path": table}],
                        "partitionNames": [partition_key(t) for t in yesterday],
                    },
                )["launchPartitionBackfill"]
                if launched["__typename"] != "LaunchBackfillSuccess":
                    print(f"ui-check: backfill not launched: {launched}")
                    return 1
                backfill_id = launched["backfillId"]

                def finished() -> str | None:
                    data = dagster.graphql(STATUS, id=backfill_id)["partitionBackfillOrError"]
                    return data["status"] if data["status"] in TERMINAL else None

                status = wait_for(f"backfill {backfill_id}", finished, 600, every=2)
                print(f"backfill {backfill_id}: {status} (expected COMPLETED_FAILED: one bad hour)")
                pages = {
                    "asset-partitions.png": (
                        f"{dagster.url}/assets/{'/'.join(table)}?view=partitions",
                        "Materialized",
                    ),
                    "asset-checks.png": (
                        f"{dagster.url}/assets/{'/'.join(staged)}?view=checks",
                        "record_count",
                    ),
                    "backfill.png": (f"{dagster.url}/runs/b/{backfill_id}", backfill_id),
                }
                missing = []
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
                        executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS
                    )
                    page = browser.new_page(viewport={"width": 1600, "height": 1000})
                    for name, (url, expected) in pages.items():
                        page.goto(url, wait_until="networkidle", timeout=120_000)
                        _dismiss_community_dialog(page)
                        try:
                            page.get_by_text(expected).first.wait_for(timeout=60_000)
                        except Exception:
                            missing.append(f"{name}: {expected!r} not on {url}")
                        if name == "asset-checks.png":
                            _open_failing_check(page)
                        page.wait_for_timeout(1500)  # let charts and counts settle
                        page.screenshot(path=str(args.out / name), full_page=True)
                        print(f"saved {args.out / name} ({url})")
                    # Automation: the jobs sensor on, then the world's last hour exported: that
                    # hour is loaded by a sensor-launched run, with nobody asking
                    sensor = f"{ivr.name}_jobs_sensor"
                    started = dagster.graphql(START_SENSOR, name=sensor)["startSensor"]
                    if started.get("sensorState", {}).get("status") != "RUNNING":
                        missing.append(f"{sensor} not started: {started}")
                    before = {
                        j["id"] for j in stack.world.list_jobs(stack.world.download_ids()[ivr.name])
                    }
                    stack.world.advance_to(now)  # the world catches up with the wall clock
                    newest = max(
                        j["interval_start"]
                        for j in stack.world.list_jobs(stack.world.download_ids()[ivr.name])
                        if j["status"] == "COMPLETED" and j["id"] not in before
                    )
                    newest_key = partition_key(
                        datetime.fromisoformat(newest.replace("Z", "+00:00"))
                    )

                    def sensor_loaded() -> str | None:
                        node = dagster.graphql(MATERIALIZED, path=table)["assetNodeOrError"]
                        for mat in node.get("assetMaterializations") or []:
                            if mat["partition"] != newest_key:
                                continue
                            run = dagster.graphql(RUN_TAGS, id=mat["runId"])["runOrError"]
                            tags = {t["key"]: t["value"] for t in run.get("tags") or []}
                            if tags.get("dagster/sensor_name") == sensor:
                                return mat["runId"]
                        return None

                    try:
                        run_id = wait_for(f"{newest_key} loaded by {sensor}", sensor_loaded, 600, 3)
                        print(f"{newest_key} loaded by {sensor} in run {run_id}")
                    except TimeoutError as exc:
                        missing.append(str(exc))
                    name = "asset-partitions-after-sensor.png"
                    page.goto(
                        f"{dagster.url}/assets/{'/'.join(table)}?view=partitions",
                        wait_until="networkidle",
                        timeout=120_000,
                    )
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(args.out / name), full_page=True)
                    print(f"saved {args.out / name}")
                    browser.close()
        for line in missing:
            print(f"ui-check: {line}")
        return 1 if missing else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
