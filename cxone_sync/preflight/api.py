"""The CXone API: a token, then the download configuration of every category."""

from __future__ import annotations

from cxone_sync.catalog import CATEGORIES
from cxone_sync.preflight.common import CHECK_API, CheckLine, check_failed, check_passed
from cxone_sync.settings import Settings


def check_api(settings: Settings) -> CheckLine:
    """A token, then the download configuration of every category; never shows a secret."""
    import httpx

    from cxone_sync.clients import cxone_client
    from cxone_sync.cxone.client import RetryPolicy
    from cxone_sync.cxone.errors import AuthError, CXoneError

    name = CHECK_API
    try:
        client = cxone_client(
            settings, timeout=10.0, retry=RetryPolicy(attempts=2, initial_wait=0.2, jitter=0.2)
        )
    except ValueError as exc:
        return check_failed(name, str(exc), "fix CXONE_API_URL / CXONE_TOKEN_URL")
    token_call = f"POST {httpx.URL(settings.token_url).path}"
    failures: list[str] = []
    foreign: list[str] = []
    with client:
        for cat in CATEGORIES:
            if settings.source_for(cat.name) != "data_download":
                continue  # read through the bridge (its own doctor lines)
            try:
                config = client.download_config(cat.name)
            except AuthError as exc:
                if exc.what.startswith("POST "):
                    return check_failed(
                        name,
                        f"no token from {settings.token_url}: {exc.status_code}"
                        + (f" {exc.server_text}" if exc.server_text else ""),
                        "check CXONE_CLIENT_ID/CXONE_CLIENT_SECRET (and CXONE_ACCESS_KEY_ID/"
                        "CXONE_ACCESS_KEY_SECRET for the password grant) and CXONE_TOKEN_URL",
                    )
                failures.append(f"{cat.name}: {exc}")
            except CXoneError as exc:
                if str(exc).startswith(token_call):
                    return check_failed(
                        name,
                        f"no token from {settings.token_url}: {exc}",
                        "check that CXONE_TOKEN_URL / CXONE_API_URL are reachable from here "
                        "(`cxone-sync local-stack` for the embedded default)",
                    )
                failures.append(f"{cat.name}: {exc}")
            else:
                if config.destination.bucket != settings.cxone_bucket:
                    foreign.append(
                        f"{cat.name} exports to {config.destination.bucket}, "
                        f"not CXONE_BUCKET={settings.cxone_bucket}"
                    )
    if failures:
        first = failures[0].split(":", 1)[0]
        return check_failed(
            name,
            f"token ok; download configuration failed for {len(failures)} of "
            f"{len(CATEGORIES)} categories: " + "; ".join(failures),
            f"check CXONE_DOWNLOAD_IDS (the {first} download id is "
            f"{settings.download_id(first)}) and the API user's scope for Data Download",
        )
    if foreign:
        return check_failed(
            name,
            "; ".join(foreign),
            "set CXONE_BUCKET to the bucket the downloads export to, or change the "
            "downloads' destination in CXone",
        )
    return check_passed(
        name,
        f"token from {settings.token_url}; download configuration of all {len(CATEGORIES)} "
        f"categories read, all exporting to {settings.cxone_bucket}",
    )
