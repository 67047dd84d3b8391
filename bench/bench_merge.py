"""Merge benchmark: the asset's load path against a bare-DuckDB floor, same file, same S3.

One CDR-like partition (2% in-file duplicates, 10% of its keys already in the target) is
uploaded to a moto S3 server on loopback. Every measured run is a fresh subprocess (so peak RSS
is per run) on a fresh copy of a DuckDB file holding the pre-existing target, and fetches the file
from S3 with the platform's staging function (streamed to disk, SHA-256 while reading):

- ``asset``: fetch + hash + ``DuckDBWarehouse.merge_partition`` (audit, watermark, counts)
- ``rerun``: the same again on the database the asset run left: files already in the audit
  ledger are skipped, so it costs the fetch and the hash
- ``floor_merge``: fetch + hash + bare ``MERGE`` of the QUALIFY-deduplicated file
- ``floor_delete_insert``: fetch + hash + bare delete-newer then insert-absent

The floor is the faster of the floor variants run (median over runs); ``--floors
delete-insert`` skips the bare MERGE, which takes ~100 s at 1M rows. Every run's database copy
is flushed (``os.sync()``) before the run starts, for every mode alike.

    python bench/bench_merge.py --sizes 100000,1000000 --runs 3 --target-rows 2000000 \
        --floors delete-insert
    python bench/bench_merge.py --sizes 5000000 --runs 1 --target-rows 2000000 \
        --floors delete-insert --memory-limit 1GB
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cxone_sync.catalog import category
from cxone_sync.storage.staging import fetch_s3_file
from cxone_sync.warehouse.base import StagedFile
from cxone_sync.warehouse.duckdb_warehouse import DuckDBWarehouse

CDR = category("telephony").data_type("cdr")
BUCKET = "bench-cxone"
REGION = "us-east-1"
WINDOW_START = datetime(2024, 3, 15, 14, tzinfo=UTC)
JOB_END = datetime(2024, 3, 15, 15, 42, tzinfo=UTC)
BASE_TIME = np.datetime64("2024-03-01T00:00:00", "us")
CHUNK_ROWS = 1_000_000
FLOORS = {"merge": "floor_merge", "delete-insert": "floor_delete_insert"}
TARGET_RATIO = 1.3
RERUN_RATIO = 0.1

AGENTS = [f"agent-{i:04d}" for i in range(500)]
SKILLS = [f"skill-{i:03d}" for i in range(60)]
DISPOSITIONS = ["resolved", "callback", "escalated", "voicemail", "abandoned", "transferred"]
REGIONS = ["us-east", "us-west", "emea", "apac"]


# -- data ------------------------------------------------------------------------------------


def _keys(ids: np.ndarray) -> pa.Array:
    """UUID-like, unordered call ids from integer ids (a bijection, so no collisions)."""
    scrambled = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0x5BD1E995)
    return pc.binary_join_element_wise("call-", pc.cast(pa.array(scrambled), pa.string()), "")


def cdr_chunk(ids: np.ndarray, updated_minutes: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """~27 realistic CDR columns for the given call ids."""
    n = len(ids)
    start = BASE_TIME + (rng.integers(0, 14 * 24 * 3600, n) * 1_000_000).astype("timedelta64[us]")
    talk = rng.gamma(2.0, 150.0, n).astype(np.int32)
    queue = rng.exponential(40.0, n).astype(np.int32)
    pick = rng.integers
    return pa.table(
        {
            "call_uuid": _keys(ids),
            "updated_at": pa.array(
                BASE_TIME + (updated_minutes * 60_000_000).astype("timedelta64[us]")
            ),
            "contact_id": pa.array(ids.astype(np.int64) + 10_000_000_000),
            "master_contact_id": pa.array(ids.astype(np.int64) // 3 + 10_000_000_000),
            "agent_id": pa.array(pick(1, 500, n).astype(np.int32)),
            "agent_name": pa.array(np.array(AGENTS)[pick(0, len(AGENTS), n)]),
            "team_id": pa.array(pick(1, 40, n).astype(np.int32)),
            "skill_id": pa.array(pick(1, 60, n).astype(np.int32)),
            "skill_name": pa.array(np.array(SKILLS)[pick(0, len(SKILLS), n)]),
            "campaign": pa.array(np.array(["sales", "support", "billing"])[pick(0, 3, n)]),
            "direction": pa.array(np.array(["inbound", "outbound"])[pick(0, 2, n)]),
            "ani": pc.cast(pa.array(pick(2_000_000_000, 9_999_999_999, n)), pa.string()),
            "dnis": pc.cast(pa.array(pick(8_000_000_000, 8_009_999_999, n)), pa.string()),
            "start_time": pa.array(start),
            "end_time": pa.array(start + ((queue + talk) * 1_000_000).astype("timedelta64[us]")),
            "queue_seconds": pa.array(queue),
            "talk_seconds": pa.array(talk),
            "hold_seconds": pa.array(rng.exponential(10.0, n).astype(np.int32)),
            "acw_seconds": pa.array(rng.exponential(30.0, n).astype(np.int32)),
            "disposition": pa.array(np.array(DISPOSITIONS)[pick(0, len(DISPOSITIONS), n)]),
            "is_abandoned": pa.array(rng.random(n) < 0.05),
            "transfer_count": pa.array(rng.poisson(0.2, n).astype(np.int8)),
            "charge": pa.array(np.round(rng.gamma(2.0, 0.05, n), 4)),
            "media_type": pa.array(np.array(["voice", "callback"])[pick(0, 2, n)]),
            "point_of_contact": pc.cast(
                pa.array(pick(8_000_000_000, 8_000_000_100, n)), pa.string()
            ),
            "region": pa.array(np.array(REGIONS)[pick(0, len(REGIONS), n)]),
            "sentiment": pa.array(rng.uniform(-1, 1, n).astype(np.float32)),
        }
    )


def write_target(path: Path, rows: int, seed: int = 1) -> None:
    """The pre-existing table: ids 0..rows-1, versions a week old."""
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    for lo in range(0, rows, CHUNK_ROWS):
        ids = np.arange(lo, min(rows, lo + CHUNK_ROWS))
        chunk = cdr_chunk(ids, rng.integers(0, 7 * 24 * 60, len(ids)), rng)
        writer = writer or pq.ParquetWriter(path, chunk.schema, compression="zstd")
        writer.write_table(chunk)
    if writer:
        writer.close()


def write_partition(path: Path, rows: int, target_rows: int, seed: int = 2) -> None:
    """One export file: 10% of its keys exist in the target, 2% of rows are repeat versions."""
    rng = np.random.default_rng(seed)
    dups = rows // 50
    distinct = rows - dups
    existing = min(distinct // 10, target_rows)
    ids = np.concatenate(
        [
            rng.choice(target_rows, existing, replace=False),
            np.arange(target_rows, target_rows + distinct - existing),
        ]
    )
    ids = np.concatenate([ids, rng.choice(ids, dups)])
    minutes = 14 * 24 * 60 + rng.integers(0, 60, rows)  # newer than every target version
    order = rng.permutation(rows)
    writer: pq.ParquetWriter | None = None
    for lo in range(0, rows, CHUNK_ROWS):
        sel = order[lo : lo + CHUNK_ROWS]
        chunk = cdr_chunk(ids[sel], minutes[sel], rng)
        writer = writer or pq.ParquetWriter(path, chunk.schema, compression="zstd")
        writer.write_table(chunk)
    if writer:
        writer.close()


def build_base_db(db: Path, target_parquet: Path, target_rows: int) -> None:
    """A warehouse holding the target as the asset would have loaded it."""
    warehouse = DuckDBWarehouse(db)
    warehouse.ensure_control_tables()
    if target_rows == 0:
        return
    staged = StagedFile(
        path=target_parquet,
        uri=f"s3://{BUCKET}/seed/target.parquet",
        version_id=None,
        sha256="seed",
        rows=target_rows,
        size_bytes=target_parquet.stat().st_size,
        job_id="job-seed",
        job_end_time=WINDOW_START - timedelta(days=7),
    )
    start = WINDOW_START - timedelta(days=7)
    warehouse.merge_partition(CDR, "seed", start, start + timedelta(hours=1), [staged])


# -- one measured run (child process) ---------------------------------------------------------

FLOOR_STAGE = """
CREATE TEMP TABLE s AS
SELECT *, 'job-bench' AS _cxone_job_id, $end::TIMESTAMPTZ AS _cxone_job_completed_at,
       $uri AS _cxone_source_uri, 'p' AS _cxone_partition, now() AS _cxone_loaded_at
FROM read_parquet($path)
QUALIFY row_number() OVER (PARTITION BY call_uuid ORDER BY updated_at DESC) = 1
"""
NEWER = """(s.updated_at > t.updated_at OR (s.updated_at = t.updated_at
           AND (s._cxone_job_completed_at > t._cxone_job_completed_at
                OR (s._cxone_job_completed_at = t._cxone_job_completed_at
                    AND s._cxone_job_id > t._cxone_job_id))))"""
FLOOR_MERGE = f"""
MERGE INTO cxone.telephony__cdr AS t USING s ON t.call_uuid = s.call_uuid
WHEN MATCHED AND {NEWER} THEN UPDATE
WHEN NOT MATCHED THEN INSERT
"""
FLOOR_DELETE = f"""
DELETE FROM cxone.telephony__cdr AS t USING s WHERE t.call_uuid = s.call_uuid AND {NEWER}
"""
FLOOR_INSERT = """
INSERT INTO cxone.telephony__cdr BY NAME
SELECT * FROM s
WHERE NOT EXISTS (SELECT 1 FROM cxone.telephony__cdr t WHERE t.call_uuid = s.call_uuid)
"""


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    s3 = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    dest = Path(spec["work"]) / "staged" / "part-00000.parquet"
    started = time.perf_counter()
    fetched = fetch_s3_file(s3, BUCKET, spec["key"], dest)
    fetch_seconds = time.perf_counter() - started
    staged = StagedFile(
        path=dest,
        uri=fetched.uri,
        version_id=fetched.version_id,
        sha256=fetched.sha256,
        rows=pq.ParquetFile(dest).metadata.num_rows,
        size_bytes=fetched.size_bytes,
        job_id="job-bench",
        job_end_time=JOB_END,
    )
    counts: dict[str, Any] = {}
    if spec["mode"] in ("asset", "rerun"):
        warehouse = DuckDBWarehouse(
            spec["db"],
            memory_limit=spec["memory_limit"],
            temp_directory=Path(spec["work"]) / "spill",
            threads=spec["threads"],
        )
        result = warehouse.merge_partition(
            CDR, "2024-03-15-14:00", WINDOW_START, WINDOW_START + timedelta(hours=1), [staged]
        )
        counts = {
            "files_loaded": result.files_loaded,
            "rows_inserted": result.rows_inserted,
            "rows_updated": result.rows_updated,
            "rows_stale": result.rows_stale,
            "duplicates_dropped": result.duplicates_dropped,
            "cross_partition_keys": result.cross_partition_keys,
            "steps": result.seconds,
        }
    else:
        run_floor(spec, staged)
    return {
        "seconds": time.perf_counter() - started,
        "fetch_seconds": fetch_seconds,
        "peak_rss_mb": peak_rss_mb(),
        **counts,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), reset by exec unlike ru_maxrss after fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_floor(spec: dict[str, Any], staged: StagedFile) -> None:
    config: dict[str, Any] = {"preserve_insertion_order": False}
    config["temp_directory"] = str(Path(spec["work"]) / "spill")
    if spec["memory_limit"]:
        config["memory_limit"] = spec["memory_limit"]
    if spec["threads"]:
        config["threads"] = spec["threads"]
    with duckdb.connect(spec["db"], config=config) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.begin()
        params = {"path": str(staged.path), "uri": staged.uri, "end": JOB_END}
        con.execute(FLOOR_STAGE, params)
        if spec["mode"] == "floor_merge":
            con.execute(FLOOR_MERGE)
        else:
            con.execute(FLOOR_DELETE)
            con.execute(FLOOR_INSERT)
        con.commit()


# -- orchestration (parent) --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure_size(
    args: argparse.Namespace, endpoint: str, work: Path, base_db: Path, rows: int, s3: Any
) -> dict[str, Any]:
    local = work / f"cdr-{rows}.parquet"
    write_partition(local, rows, args.target_rows)
    key = f"exports/telephony/cdr/year=2024/month=03/day=15/hour=14/part-{rows}.parquet"
    s3.upload_file(str(local), BUCKET, key)
    size_mb = local.stat().st_size / 2**20
    local.unlink()
    modes = ("asset", *(FLOORS[f] for f in args.floors))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in (*modes, "rerun")}
    for i in range(args.runs):
        k = i % len(modes)
        for mode in modes[k:] + modes[:k]:  # rotate the order between runs
            run_dir = work / f"run-{rows}-{i}-{mode}"
            run_dir.mkdir()
            db = run_dir / "warehouse.duckdb"
            shutil.copyfile(base_db, db)
            os.sync()  # the copy's write-back must not land inside the timed run, for any mode
            spec = {
                "mode": mode,
                "endpoint": endpoint,
                "key": key,
                "db": str(db),
                "work": str(run_dir),
                "memory_limit": args.memory_limit,
                "threads": args.threads,
            }
            runs[mode].append(spawn(spec))
            if mode == "asset":
                os.sync()
                runs["rerun"].append(spawn({**spec, "mode": "rerun"}))
            shutil.rmtree(run_dir)
    return summarize(rows, size_mb, runs)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarize(rows: int, size_mb: float, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {m: _median([r["seconds"] for r in rs]) for m, rs in runs.items()}
    rss = {m: _median([r["peak_rss_mb"] for r in rs]) for m, rs in runs.items()}
    floor_mode = min((m for m in med if m.startswith("floor_")), key=lambda m: med[m])
    asset = runs["asset"][0]
    return {
        "rows": rows,
        "file_mb": round(size_mb, 1),
        "median_seconds": med,
        "rows_per_second": {m: rows / s for m, s in med.items()},
        "peak_rss_mb": rss,
        "floor": floor_mode,
        "ratio_to_floor": med["asset"] / med[floor_mode],
        "rerun_ratio": med["rerun"] / med["asset"],
        "fetch_seconds": _median([r["fetch_seconds"] for r in runs["asset"]]),
        "asset_counts": {
            k: asset[k]
            for k in (
                "rows_inserted",
                "rows_updated",
                "rows_stale",
                "duplicates_dropped",
                "cross_partition_keys",
                "steps",
            )
        },
        "runs": runs,
    }


def _cell(values: dict[str, float], mode: str, fmt: str) -> str:
    return format(values[mode], fmt) if mode in values else "-"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"target rows: {args.target_rows:,}; runs: {args.runs} (median); memory limit: "
        f"{args.memory_limit or 'DuckDB default'}; threads: {args.threads or 'all'}; "
        f"floors run: {', '.join(args.floors)}",
        "",
        "| rows | file MB | asset s | rerun s | MERGE s | del+ins s | floor used | asset rows/s "
        "| ratio to floor | rerun / first | RSS asset MB | RSS rerun MB | RSS floor MB |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s, rss = r["median_seconds"], r["peak_rss_mb"]
        floor = r["floor"].removeprefix("floor_").replace("_", "+")
        lines.append(
            f"| {r['rows']:,} | {r['file_mb']} | {s['asset']:.2f} | {s['rerun']:.2f} | "
            f"{_cell(s, 'floor_merge', '.2f')} | {_cell(s, 'floor_delete_insert', '.2f')} | "
            f"{floor} | {r['rows_per_second']['asset']:,.0f} | {r['ratio_to_floor']:.2f} | "
            f"{r['rerun_ratio']:.3f} | {rss['asset']:.0f} | {rss['rerun']:.0f} | "
            f"{rss[r['floor']]:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 1GB")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--floors",
        type=lambda text: [f.strip() for f in text.split(",") if f.strip()],
        default=list(FLOORS),
        help="floor variants to run: merge,delete-insert (MERGE takes ~100 s at 1M rows)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    unknown = set(args.floors) - set(FLOORS)
    if unknown or not args.floors:
        raise SystemExit(f"--floors: choose from {', '.join(FLOORS)} (got {args.floors})")
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    endpoint = f"http://127.0.0.1:{server._port}"  # moto exposes no getter
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
            work = Path(tmp)
            target = work / "target.parquet"
            write_target(target, args.target_rows)
            base_db = work / "base.duckdb"
            build_base_db(base_db, target, args.target_rows)
            target.unlink()
            for rows in (int(s) for s in args.sizes.split(",")):
                results.append(measure_size(args, endpoint, work, base_db, rows, s3))
                print(markdown(results[-1:], args), flush=True)
    finally:
        server.stop()
    table = markdown(results, args)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"bench_merge-{stamp}.json"
    meta = {
        "machine": platform.platform(),
        "cpus": platform.machine(),
        "duckdb": duckdb.__version__,
    }
    out.write_text(
        json.dumps(
            {"args": vars(args) | {"out": str(args.out)}, "meta": meta, "results": results},
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
