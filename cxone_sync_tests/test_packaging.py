"""A production install (no ``local`` extra) runs the platform, and the local stack's commands say
what is missing instead of failing with a traceback.

Each case runs the real ``cxone-sync`` entry point in a fresh interpreter where the extra's
modules cannot be imported (``sys.modules[name] = None``: every ``import`` of them raises
``ImportError``, as in an install without them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cxone_sync.extras import INSTALL_LOCAL

LOCAL_ONLY = ("moto", "numpy", "fakesnow", "s3fs", "pandas", "flask", "werkzeug")
"""What the ``local`` extra brings and a core install lacks (pandas: the connector's extra)."""


def _without_local(
    code: str, tmp_path: Path, blocked: tuple[str, ...] = LOCAL_ONLY
) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "CXONE_DATA_DIR": str(tmp_path / "data"),
            "DAGSTER_HOME": str(tmp_path),
        },
    )


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["local-stack"], "moto[server] and numpy"),
        (["sim", "advance", "--hours", "1"], "moto[server] and numpy"),
        (["local-snowflake"], "fakesnow and s3fs"),
    ],
)
def test_local_commands_without_the_extra_say_what_to_install(
    argv: list[str], named: str, tmp_path: Path
) -> None:
    done = _without_local(f"from cxone_sync.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"cxone-sync {argv[0]} needs {named}, which are not installed here" in done.stderr
    assert INSTALL_LOCAL in done.stderr and "'local' extra" in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "data").exists(), "nothing started"


def test_the_code_location_and_the_cli_load_without_the_extra(tmp_path: Path) -> None:
    done = _without_local(
        "import cxone_sync.definitions as d\n"
        "defs = d.defs()\n"
        "print(len(list(defs.resolve_asset_graph().get_all_asset_keys())), 'assets')\n"
        "from cxone_sync.cli import main\n"
        "sys.exit(main(['policy', '--kms-key-arn', 'arn:aws:kms:eu-west-1:1:key/k', "
        "'--external-id', 'x', '--cxone-account-id', '1']))",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "assets" in done.stdout and "Trust policy of the export role" in done.stdout
