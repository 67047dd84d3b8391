"""The local Snowflake emulator (fakesnow), wired to the platform's S3 endpoint.

This is the ONE module that touches fakesnow's non-public names (``FakeSnow``, its
``duck_conn``, ``fakesnow.server.shared_fs`` and ``fakesnow.server.app``,
``fakesnow.instance.GLOBAL_DATABASE_NAME``). ``test_snowflake_emulator.py`` restarts a persisted
emulator so an upgrade that renames any of them fails loudly there.

* :class:`Emulator` is an in-process instance: unit tests connect through :meth:`Emulator.connect`
  (a fakesnow connection, the same DB-API surface as the connector's).
* :func:`serve` runs the emulator's HTTP server on loopback so the real connector (and Dagster
  runs in other processes) connect to it with ``host``/``port``/``protocol=http``;
  ``cxone-sync local-snowflake`` is built on it.

COPY from ``s3://`` works through an fsspec S3 filesystem (s3fs) registered on the emulator's
DuckDB instance and pointed at the local S3 endpoint (DuckDB's httpfs extension cannot be
installed offline for this DuckDB version).

Requires the ``local`` extra: ``pip install -e '.[local]'``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EMULATOR_USER = "fake"
EMULATOR_PASSWORD = "snow"  # noqa: S105 - the emulator accepts any password
EMULATOR_ACCOUNT = "fakesnow"
DEFAULT_DATABASE = "CXONE_DB"
DEFAULT_STAGE = "PUBLIC.CXONE_EXPORTS"


class EmulatorUnavailableError(RuntimeError):
    """fakesnow (the ``local`` extra) is not installed."""


def _fakesnow() -> Any:
    from cxone_sync.extras import INSTALL_LOCAL

    try:
        import fakesnow.instance
        import fakesnow.server
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise EmulatorUnavailableError(
            f"the Snowflake emulator needs the 'local' extra: {INSTALL_LOCAL} ({exc})"
        ) from None
    return fakesnow


@dataclass(frozen=True)
class S3Wiring:
    """Where the emulator's COPY reads ``s3://`` URLs: the platform's S3 settings."""

    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None = field(repr=False)
    region: str | None
    session_token: str | None = field(default=None, repr=False)


def register_s3(duck_conn: Any, s3: S3Wiring) -> None:
    """Register an s3fs filesystem on the emulator's DuckDB instance (all its sessions)."""
    import s3fs

    client_kwargs: dict[str, Any] = {"region_name": s3.region} if s3.region else {}
    if s3.endpoint_url:
        client_kwargs["endpoint_url"] = s3.endpoint_url
    fs = s3fs.S3FileSystem(
        key=s3.access_key_id,
        secret=s3.secret_access_key,
        token=s3.session_token,
        client_kwargs=client_kwargs,
        config_kwargs={"s3": {"addressing_style": "path"}},
        use_listings_cache=False,
        skip_instance_cache=True,
        default_cache_type="none",
        version_aware=False,
    )
    fs.invalidate_cache()
    duck_conn.register_filesystem(fs)


class Emulator:
    """One in-process fakesnow instance; databases in memory, or in files under ``data_dir``."""

    def __init__(self, s3: S3Wiring | None = None, data_dir: Path | None = None) -> None:
        fakesnow = _fakesnow()
        self.data_dir = data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.instance = fakesnow.instance.FakeSnow(
            db_path=str(data_dir) if data_dir is not None else None
        )
        duck = self.instance.duck_conn
        if data_dir is not None:
            # persisted databases, attached now so every session sees the same ones
            for path in sorted(data_dir.glob("*.db")):
                duck.execute(f"ATTACH IF NOT EXISTS '{path}' AS \"{path.stem}\"")
        if s3 is not None:
            register_s3(duck, s3)

    @property
    def duck_conn(self) -> Any:
        return self.instance.duck_conn

    def connect(self, database: str = DEFAULT_DATABASE, schema: str = "PUBLIC") -> Any:
        """A new session (fakesnow connection) on this instance."""
        return self.instance.connect(database=database, schema=schema)

    @contextmanager
    def connection(self, database: str = DEFAULT_DATABASE) -> Iterator[Any]:
        """A session whose cursors also answer ``fetch_arrow_all`` as the connector's do."""
        with closing(self.connect(database)) as con:
            yield _ArrowConnection(con)

    def create_stage(self, name: str, url: str, database: str = DEFAULT_DATABASE) -> None:
        """``CREATE STAGE name URL=url`` (idempotent), as an administrator does in production."""
        with self.connection(database) as con:
            con.cursor().execute(f"CREATE STAGE IF NOT EXISTS {name} URL='{url}'")

    def checkpoint(self) -> None:
        """Flush every attached database file (called on shutdown)."""
        duck = self.instance.duck_conn
        for (name,) in duck.execute(
            "SELECT database_name FROM duckdb_databases() WHERE NOT internal AND path IS NOT NULL"
        ).fetchall():
            duck.execute(f'CHECKPOINT "{name}"')

    def close(self) -> None:
        self.instance.duck_conn.close()


class _ArrowConnection:
    """fakesnow's in-process cursor lacks ``fetch_arrow_all``; its result is already Arrow."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def cursor(self) -> Any:
        cur = self._con.cursor()

        def fetch_arrow_all(force_return_table: bool = False) -> Any:
            return cur._arrow_table

        cur.fetch_arrow_all = fetch_arrow_all
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@contextmanager
def serve(emulator: Emulator, port: int = 0, host: str = "127.0.0.1") -> Iterator[dict[str, Any]]:
    """Serve ``emulator`` over HTTP on loopback; yields the connector's connection parameters."""
    import socket

    import uvicorn

    fakesnow = _fakesnow()
    fakesnow.server.shared_fs = emulator.instance
    # one INFO line per session login is noise for a platform that logs in per operation
    logging.getLogger(fakesnow.server.__name__).setLevel(logging.WARNING)
    if not port:
        with closing(socket.socket()) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(fakesnow.server.app, host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="snowflake-emulator", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the Snowflake emulator could not listen on {host}:{port}")
        threading.Event().wait(0.02)
    try:
        yield {
            "user": EMULATOR_USER,
            "password": EMULATOR_PASSWORD,
            "account": EMULATOR_ACCOUNT,
            "host": host,
            "port": port,
            "protocol": "http",
        }
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_until_signalled(emulator: Emulator, port: int, announce: Any) -> None:
    """Serve until Ctrl-C or SIGTERM, then checkpoint the database files."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with serve(emulator, port) as params:
            announce(params)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        emulator.checkpoint()
        emulator.close()


LOCAL_SNOWFLAKE_PORT = 9020


def environment(params: dict[str, Any], database: str, stage: str) -> dict[str, str]:
    """The SNOWFLAKE_* variables (and CXONE_WAREHOUSE) that point the platform at the emulator."""
    return {
        "CXONE_WAREHOUSE": "snowflake",
        "SNOWFLAKE_ACCOUNT": str(params["account"]),
        "SNOWFLAKE_USER": str(params["user"]),
        "SNOWFLAKE_PASSWORD": str(params["password"]),
        "SNOWFLAKE_ROLE": "CXONE_LOADER",
        "SNOWFLAKE_WAREHOUSE": "CXONE_WH",
        "SNOWFLAKE_DATABASE": database,
        "SNOWFLAKE_STAGE": stage,
        "SNOWFLAKE_HOST": str(params["host"]),
        "SNOWFLAKE_PORT": str(params["port"]),
        "SNOWFLAKE_PROTOCOL": str(params["protocol"]),
    }


def export_lines(env: dict[str, str]) -> list[str]:
    lines = [f"export {name}={value}" for name, value in env.items()]
    lines.append(
        "# SNOWFLAKE_PRIVATE_KEY_PATH / SNOWFLAKE_PRIVATE_KEY_PASSPHRASE: key-pair auth for a "
        "real account; the emulator uses the password above"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """``cxone-sync local-snowflake``: the emulator on loopback, wired to the platform's S3."""
    import argparse

    from cxone_sync.clients import arrow_s3_endpoint, aws_config, aws_credentials
    from cxone_sync.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="cxone-sync local-snowflake",
        description="Start the Snowflake emulator (fakesnow) on loopback, its stage over the "
        "export bucket; prints export lines; runs until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--port", type=int, default=LOCAL_SNOWFLAKE_PORT)
    parser.add_argument("--data-dir", type=Path, default=settings.cxone_data_dir / "snowflake")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    args = parser.parse_args(argv)
    aws = aws_config(settings)
    key, secret, token = aws_credentials(aws) or (None, None, None)
    wiring = S3Wiring(
        endpoint_url=arrow_s3_endpoint(aws),
        access_key_id=key,
        secret_access_key=secret,
        region=aws.region,
        session_token=token,
    )
    emulator = Emulator(wiring, data_dir=args.data_dir)
    database = args.database.upper()
    stage = settings.snowflake_stage
    emulator.create_stage(stage, f"s3://{settings.cxone_bucket}/", database=database)

    def announce(params: dict[str, Any]) -> None:
        print(
            f"Snowflake emulator on {params['protocol']}://{params['host']}:{params['port']} "
            f"(databases in {args.data_dir}; stage {stage} over s3://{settings.cxone_bucket}/ "
            f"at {wiring.endpoint_url or 'AWS'})",
            flush=True,
        )
        for line in export_lines(environment(params, database, stage)):
            print(line, flush=True)

    run_until_signalled(emulator, args.port, announce)
    return 0


@contextmanager
def serve_beside(s3_url: str, bucket: str, port: int = 0) -> Iterator[dict[str, str]]:
    """An in-memory emulator served on loopback, its stage over ``s3://bucket/`` on the local S3
    endpoint ``s3_url`` (the simulator's credentials); yields the variables to export."""
    from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION

    emulator = Emulator(S3Wiring(s3_url, SIM_AWS_KEY, SIM_AWS_KEY, SIM_AWS_REGION))
    try:
        emulator.create_stage(DEFAULT_STAGE, f"s3://{bucket}/")
        with serve(emulator, port) as params:
            yield environment(params, DEFAULT_DATABASE, DEFAULT_STAGE)
    finally:
        emulator.close()
