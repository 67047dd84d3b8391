"""The optional ``local`` extra: what the local stack needs and a production install leaves out.

``pip install cxone_sync`` installs what production runs. The simulator (``cxone-sync
local-stack``, ``sim``, ``make demo``) needs moto's S3 server and numpy, the Snowflake emulator
(``cxone-sync local-snowflake``) fakesnow and s3fs: they come with ``cxone_sync[local]``, and
the package imports them only inside the commands that use them. :func:`require_local` says
what is missing, and how to install it, before such a command starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

INSTALL_LOCAL = "pip install 'cxone_sync[local]'"
"""How to add the extra (from a checkout: ``pip install -e '.[local]'`` or ``make install``)."""

SIMULATOR_MODULES: Mapping[str, str] = {
    "moto.moto_server.werkzeug_app": "moto[server]",
    "numpy": "numpy",
}
"""module the simulator imports -> the requirement of the ``local`` extra that provides it."""

EMULATOR_MODULES: Mapping[str, str] = {"fakesnow.server": "fakesnow", "s3fs": "s3fs"}
"""module the Snowflake emulator imports -> the requirement that provides it."""

LOCAL_COMMANDS: Mapping[str, Mapping[str, str]] = {
    "local-stack": SIMULATOR_MODULES,
    "sim": SIMULATOR_MODULES,
    "local-snowflake": EMULATOR_MODULES,
}
"""``cxone-sync`` commands that need the extra, and what each imports."""


class MissingExtraError(RuntimeError):
    """A command of the local stack ran in an install without the ``local`` extra."""


def missing(modules: Mapping[str, str]) -> list[str]:
    """The requirements of ``modules`` (module -> requirement) that cannot be imported here."""
    out: list[str] = []
    for module, requirement in modules.items():
        try:
            importlib.import_module(module)
        except ImportError:
            if requirement not in out:
                out.append(requirement)
    return out


def require_local(what: str, modules: Mapping[str, str]) -> None:
    """Raise :class:`MissingExtraError` naming what ``what`` needs and how to install it."""
    absent = missing(modules)
    if not absent:
        return
    names = " and ".join(absent)
    one = len(absent) == 1
    raise MissingExtraError(
        f"{what} needs {names}, which {'is' if one else 'are'} not installed here: "
        f"{'it comes' if one else 'they come'} with the optional 'local' extra (the simulator, "
        "its local S3 store and the Snowflake emulator, which a production install leaves out). "
        f"Install it with: {INSTALL_LOCAL} (in a checkout: pip install -e '.[local]', or "
        "make install)"
    )
