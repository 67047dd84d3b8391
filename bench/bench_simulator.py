"""Generation throughput of the CXone simulator.

1. A simulated day of every category at ``--scale`` (default 1.0) through :class:`World`, writing
   to a moto S3 server over HTTP: rows/s and MB/s including the uploads; then the same files
   generated in memory without S3.
2. One hourly cdr file of at least ``--rows`` rows (default 5,000,000) streamed to a local file in
   row groups: rows/s, MB/s and the process's peak memory.

Run small: ``python bench/bench_simulator.py --hours 2 --rows 200000``.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
from datetime import timedelta

from moto.server import ThreadedMotoServer

from cxone_sync.catalog import category
from cxone_sync.simulator import generator as gen
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.s3 import make_client
from cxone_sync.simulator.world import World

MB = 1024 * 1024


def bench_day(scale: float, hours: int, compression: str) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = make_client(f"http://{host}:{port}")
        config = SimConfig(scale=scale, compression=compression)
        client.create_bucket(Bucket=config.bucket)
        world = World(config, client)
        began = time.perf_counter()
        world.advance(timedelta(hours=hours, minutes=40))
        took = time.perf_counter() - began
        jobs = [j for d in world.download_ids().values() for j in world.list_jobs(d)]
        files = [f for j in jobs for f in j.get("files", [])]
        rows = sum(f["record_count"] for f in files)
        size = sum(f["size_bytes"] for f in files)
        print(
            f"day   scale={scale:g} hours={hours} jobs={len(jobs)} files={len(files)} "
            f"rows={rows:,} bytes={size / MB:.1f}MB in {took:.2f}s: "
            f"{rows / took:,.0f} rows/s, {size / MB / took:.1f} MB/s (incl. S3 puts)"
        )
    finally:
        server.stop()


def bench_generation(scale: float, hours: int, compression: str) -> None:
    """The same day's files generated and compressed in memory, without S3."""
    config = SimConfig(scale=scale, compression=compression)
    rows = size = 0
    began = time.perf_counter()
    for name in config.categories:
        cat = category(name)
        for k in range(hours // cat.hours):
            for dt in cat.data_types:
                plan = gen.plan_file(config, dt, config.start + k * cat.interval, order_salt=k)
                sink = io.BytesIO()
                rows += gen.write_parquet(plan, sink, compression)
                size += sink.tell()
    took = time.perf_counter() - began
    print(
        f"gen   scale={scale:g} hours={hours} rows={rows:,} bytes={size / MB:.1f}MB in "
        f"{took:.2f}s: {rows / took:,.0f} rows/s, {size / MB / took:.1f} MB/s (no S3)"
    )


def bench_big_file(rows: int, compression: str, batch_rows: int) -> None:
    cdr = category("telephony").data_type("cdr")
    base = SimConfig()
    per_scale = gen.rows_per_interval(base.seed, 1.0, cdr, base.start)
    config = SimConfig(scale=rows / per_scale * 1.001, compression=compression)
    plan = gen.plan_file(config, cdr, config.start, order_salt="bench")
    with tempfile.TemporaryFile() as sink:
        began = time.perf_counter()
        written = gen.write_parquet(plan, sink, compression, batch_rows=batch_rows)
        took = time.perf_counter() - began
        size = sink.tell()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"file  cdr rows={written:,} bytes={size / MB:.1f}MB in {took:.2f}s: "
        f"{written / took:,.0f} rows/s, {size / MB / took:.1f} MB/s; peak RSS {peak:.0f}MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the simulated day")
    parser.add_argument("--hours", type=int, default=24, help="simulated hours (default a day)")
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the big cdr file")
    parser.add_argument("--batch-rows", type=int, default=gen.BATCH_ROWS, help="row-group size")
    parser.add_argument("--compression", choices=("zstd", "snappy"), default="zstd")
    parser.add_argument("--skip-day", action="store_true")
    parser.add_argument("--skip-file", action="store_true")
    args = parser.parse_args()
    if not args.skip_day:
        bench_day(args.scale, args.hours, args.compression)
        bench_generation(args.scale, args.hours, args.compression)
    if not args.skip_file:
        bench_big_file(args.rows, args.compression, args.batch_rows)


if __name__ == "__main__":
    main()
