"""``cxone-sync doctor`` lines for the bridge: which surface each category uses, and for the
Data Extraction API discovery, token, tenant host and one harmless call (the tenant's job list;
read-only, it creates nothing). No secret appears in a line."""

from __future__ import annotations

import time
from collections.abc import Callable

from cxone_sync.bridge.extraction import DataExtractionClient, ExtractionError
from cxone_sync.bridge.source import entity_mappings
from cxone_sync.catalog import CATEGORIES
from cxone_sync.preflight.common import CheckLine
from cxone_sync.settings import Settings

CHECK_SOURCES = "sources"
CHECK_EXTRACTION = "data_extraction_api"


def check_sources(settings: Settings) -> CheckLine:
    """Which surface each category is read from, and whether its entities are configured."""
    try:
        mappings = entity_mappings(settings)
    except ValueError as exc:
        return CheckLine(CHECK_SOURCES, False, str(exc), "fix CXONE_EXTRACTION_ENTITIES")
    used = ", ".join(f"{c.name}={settings.source_for(c.name)}" for c in CATEGORIES)
    missing = [
        f"{c.name}/{dt.name}"
        for c in CATEGORIES
        if settings.source_for(c.name) != "data_download"
        for dt in c.data_types
        if (c.name, dt.name) not in mappings
    ]
    if missing:
        return CheckLine(
            CHECK_SOURCES,
            False,
            f"{used}; no entity for {missing}",
            "map every data type of a bridged category in CXONE_EXTRACTION_ENTITIES",
        )
    return CheckLine(CHECK_SOURCES, True, used)


def check_extraction(
    settings: Settings,
    *,
    list_jobs: bool = True,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckLine:
    """Discovery, token, tenant host, then (``list_jobs``) ``GET /data-extraction/v1/jobs``
    (waits its turn); the Reporting API alone needs no extraction permission."""
    if settings.cxone_access_key_id is None or settings.cxone_access_key_secret is None:
        return CheckLine(
            CHECK_EXTRACTION,
            False,
            "no access key configured",
            "set CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET (an API user's access key)",
        )
    try:
        client = DataExtractionClient(
            auth_url=settings.cxone_auth_url,
            client_id=settings.cxone_client_id,
            client_secret=settings.cxone_client_secret,
            access_key_id=settings.cxone_access_key_id,
            access_key_secret=settings.cxone_access_key_secret,
            lock_dir=settings.cxone_data_dir / "locks",
            clock=clock,
            sleep=sleep,
            tenant_id=settings.cxone_tenant_id,
            api_url=settings.cxone_extraction_api_url,
            timeout=15.0,
        )
    except ValueError as exc:
        return CheckLine(CHECK_EXTRACTION, False, str(exc), "fix CXONE_AUTH_URL")
    with client:
        try:
            tenant = client.tenant_id
            host = client.api_url
            jobs = client.list_jobs() if list_jobs else None
        except ExtractionError as exc:
            return CheckLine(
                CHECK_EXTRACTION,
                False,
                str(exc),
                "check CXONE_AUTH_URL, CXONE_CLIENT_ID/CXONE_CLIENT_SECRET, "
                "CXONE_ACCESS_KEY_ID/CXONE_ACCESS_KEY_SECRET and the API user's Data "
                "Extraction permissions",
            )
    return CheckLine(
        CHECK_EXTRACTION,
        True,
        f"discovery {settings.cxone_auth_url}, token for tenant {tenant}, API host {host}"
        + (f", {len(jobs)} extraction job(s) listed" if jobs is not None else ""),
    )


def bridge_lines(settings: Settings) -> list[CheckLine]:
    lines = [check_sources(settings)]
    surfaces = {settings.source_for(c.name) for c in CATEGORIES}
    if surfaces - {"data_download"}:
        lines.append(check_extraction(settings, list_jobs="data_extraction" in surfaces))
    return lines
