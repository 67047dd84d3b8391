"""The warehouse: the DuckDB file can be written (checked read-only), or Snowflake's checks."""

from __future__ import annotations

import os
from pathlib import Path

from cxone_sync.preflight.common import CHECK_WAREHOUSE, CheckLine, check_failed, check_passed
from cxone_sync.settings import Settings


def check_warehouse(settings: Settings) -> CheckLine:
    """The DuckDB file can be written (file and folder writable, no writer holds its lock).

    Checked read-only: the doctor never takes DuckDB's single-writer lock, so running it beside
    the platform never fails a run, and it never creates the file.
    """
    import duckdb

    from cxone_sync.warehouse.locks import is_lock_error, lock_holder

    name = CHECK_WAREHOUSE
    if settings.cxone_warehouse == "snowflake":
        from cxone_sync.warehouse.snowflake_doctor import check_snowflake

        line: CheckLine = check_snowflake(settings)
        return line
    path = settings.duckdb_path
    folder = _existing_parent(path)
    if not os.access(folder, os.W_OK | os.X_OK):
        return check_failed(name, f"cannot create files in {folder}", _path_fix(path))
    if not path.exists():
        return check_passed(
            name,
            f"DuckDB {path} opens for writing: it does not exist yet and {folder} is writable "
            "(the first load creates it)",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        return check_failed(
            name, f"{path} is not readable and writable by this user", _path_fix(path)
        )
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        text = " ".join(str(exc).split())
        if is_lock_error(exc):
            holder = lock_holder(exc)
            who = f"{holder[0]} (PID {holder[1]})" if holder else "another process"
            pid = holder[1] if holder else "<pid>"
            return check_failed(
                name,
                f"{path} is locked for writing by {who}; DuckDB allows one writing process",
                f"stop that process (e.g. `kill {pid}` once its run is done, or close the "
                "DuckDB shell / notebook holding the file), or point CXONE_DUCKDB_PATH at "
                "another file",
            )
        return check_failed(name, f"cannot open {path}: {text}", _path_fix(path))
    except (OSError, duckdb.Error) as exc:
        return check_failed(name, f"cannot open {path}: {exc}", _path_fix(path))
    try:
        connection.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    except duckdb.Error as exc:
        return check_failed(name, f"{path} opened but cannot be read: {exc}", _path_fix(path))
    finally:
        connection.close()
    return check_passed(
        name,
        f"DuckDB {path} opens for writing (no other process holds its write lock; checked "
        "read-only, so the doctor never holds it either)",
    )


def _existing_parent(path: Path) -> Path:
    """The folder the file is (or would be) created in, or its nearest existing ancestor."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _path_fix(path: Path) -> str:
    return f"make {path.parent} writable by this user, or set CXONE_DUCKDB_PATH to a writable file"
