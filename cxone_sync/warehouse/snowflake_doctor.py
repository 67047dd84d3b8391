"""``cxone-sync doctor`` for CXONE_WAREHOUSE=snowflake: connect, role, grants, the stage.

Every failure names what is missing and the statement that fixes it. Secrets never appear: the
connector's errors name the account and user, never the password or key.
"""

from __future__ import annotations

from typing import Any

from cxone_sync.settings import Settings


def required_grants(settings: Settings) -> list[tuple[str, str, str]]:
    """(privilege, object type, object name) the loading role needs."""
    database = (settings.snowflake_database or "<database>").upper()
    stage = settings.snowflake_stage.upper()
    if stage.count(".") == 1:
        stage = f"{database}.{stage}"
    grants = [
        ("USAGE", "DATABASE", database),
        ("CREATE SCHEMA", "DATABASE", database),
        ("USAGE", "STAGE", stage),
    ]
    if settings.snowflake_warehouse:
        grants.insert(1, ("USAGE", "WAREHOUSE", settings.snowflake_warehouse.upper()))
    return grants


def grant_statements(settings: Settings) -> list[str]:
    """The GRANT statements for the loading role (the role owns the schemas it creates, so
    CREATE TABLE, INSERT, UPDATE, DELETE there come with ownership)."""
    role = (settings.snowflake_role or "<role>").upper()
    return [
        f"GRANT {p} ON {kind} {name} TO ROLE {role};" for p, kind, name in required_grants(settings)
    ]


def check_snowflake(settings: Settings) -> Any:
    from cxone_sync.defs.snowflake import snowflake_resource
    from cxone_sync.preflight.common import CHECK_WAREHOUSE, check_failed, check_passed

    name = CHECK_WAREHOUSE
    missing = settings.snowflake_missing()
    if missing:
        return check_failed(
            name,
            f"CXONE_WAREHOUSE=snowflake but {', '.join(missing)} not set",
            "set them (cxone-sync local-snowflake prints them for the local emulator)",
        )
    resource = snowflake_resource(settings)
    assert resource is not None
    try:
        with resource.get_connection() as con:
            cur = con.cursor()
            cur.execute("SELECT CURRENT_ROLE(), CURRENT_DATABASE()")
            role, database = cur.fetchall()[0]
            missing_grants = _missing_grants(cur, settings, str(role))
            try:
                listed = _list_exports(cur, settings.snowflake_stage)
            except Exception as exc:
                return check_failed(
                    name,
                    f"role {role} cannot list stage {settings.snowflake_stage}: "
                    f"{type(exc).__name__}: {_first_line(exc)}",
                    " ".join(grant_statements(settings)[-1:])
                    + f" -- and check that the stage's storage integration can read "
                    f"s3://{settings.cxone_bucket}/ (cxone-sync policy prints the trust policy)",
                )
    except Exception as exc:
        return check_failed(
            name,
            f"cannot connect to Snowflake account {settings.snowflake_account} as "
            f"{settings.snowflake_user}: {type(exc).__name__}: {_first_line(exc)}",
            "check SNOWFLAKE_ACCOUNT/USER and the password or key (and SNOWFLAKE_HOST/PORT for "
            "private link or the emulator)",
        )
    if missing_grants:
        fixes = [s for s in grant_statements(settings) if any(g in s for g in missing_grants)]
        return check_failed(
            name,
            f"role {role} lacks {', '.join(missing_grants)}",
            " ".join(fixes),
        )
    return check_passed(
        name,
        f"Snowflake {settings.snowflake_account} database {database} as role {role}; stage "
        f"{settings.snowflake_stage} lists {listed} file(s) under exports/",
    )


def _missing_grants(cur: Any, settings: Settings, role: str) -> list[str]:
    """Privileges not granted to the role; [] when the account cannot list grants (emulator)."""
    try:
        cur.execute(f'SHOW GRANTS TO ROLE "{role}"')
        rows = cur.fetchall()
        names = [d[0].lower() for d in cur.description]
    except Exception:
        return []
    have = set()
    for row in rows:
        r = dict(zip(names, row, strict=False))
        privilege = str(r.get("privilege", "")).upper()
        kind = str(r.get("granted_on", "")).upper()
        target = str(r.get("name", "")).upper().replace('"', "")
        have.add((privilege, kind, target))
        if privilege == "OWNERSHIP":
            have.add(("OWNERSHIP-ANY", kind, target))
    return [
        f"{p} ON {kind} {target}"
        for p, kind, target in required_grants(settings)
        if (p, kind, target) not in have and ("OWNERSHIP-ANY", kind, target) not in have
    ]


def _list_exports(cur: Any, stage: str) -> int:
    """Files under ``exports/`` in the stage. The emulator's LIST takes no path (nor PATTERN):
    when the path form fails, the whole stage is listed and filtered here."""
    try:
        cur.execute(f"LIST @{stage}/exports/")
        return len(cur.fetchall())
    except Exception:
        cur.execute(f"LIST @{stage}")
        return sum(1 for row in cur.fetchall() if "/exports/" in str(row[0]))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
