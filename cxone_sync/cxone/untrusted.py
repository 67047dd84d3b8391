"""Strings the CXone API sends are data, never structure.

A job id, download id, URI, ``error_details`` or category is whatever the API put there: it may
hold ``/``, ``..``, NUL and other control characters, spaces, non-ASCII text, or run to thousands
of characters. The platform decides per sink, and this module is the one place it does:

* **local paths**: never built from API text. A staged file is named by :func:`file_stem`, a
  SHA-256 of (job id, URI, data type), so no id can escape the staging folder or make two data
  types of one job share a file.
* **URL paths**: every segment is percent-encoded by :func:`url_segment`, ``.`` and ``..``
  included (they would otherwise address another endpoint).
* **SQL**: values are always bound parameters (the warehouse never formats one into SQL), so the
  raw id is stored as it is, NUL included.
* **Dagster tags and run keys**: :func:`label` keeps an id that meets Dagster's strict tag rule
  (``[A-Za-z0-9_.-]``, at most 63 characters) and replaces any other by a stable hash form
  ``sha256-<32 hex>``; the raw id stays readable in the asset metadata (``job_labels``).
* **text for people** (logs, errors, check descriptions, metadata shown as text): :func:`shown`
  keeps a plain id as it is and otherwise quotes it ``repr``-style (control and format
  characters escaped) and bounds its length; :func:`clean_text` does the same to a whole
  message built elsewhere.

Nothing is refused for its id alone: every id above loads, because no sink takes it raw.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

LABEL_PREFIX = "sha256-"
_STRICT_TAG_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,63}")
"""Dagster's strict tag value rule (``dagster._utils.tags.VALID_STRICT_TAG_VALUE_REGEX``)."""
_PLAIN = re.compile(r"[A-Za-z0-9_.:/=+@,-]+")
SHOWN_LIMIT = 120
TEXT_LIMIT = 4000


def _digest(*parts: str) -> str:
    """SHA-256 over length-prefixed UTF-8 parts (lone surrogates kept), so parts never blur."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def label(value: str) -> str:
    """``value`` itself when it is a safe Dagster tag value, else ``sha256-<32 hex>`` of it.

    Injective in practice: a raw value starting with the hash prefix is hashed too.
    """
    if _STRICT_TAG_VALUE.fullmatch(value) and not value.startswith(LABEL_PREFIX):
        return value
    return LABEL_PREFIX + _digest(value)[:32]


def file_stem(*parts: str) -> str:
    """A local file name stem (64 hex characters) determined by ``parts`` and nothing else."""
    return _digest(*parts)


def url_segment(value: str) -> str:
    """One URL path segment: every reserved character percent-encoded, ``.``/``..`` too."""
    encoded = quote(value, safe="")
    if encoded in (".", ".."):
        return encoded.replace(".", "%2E")
    return encoded


def shown(value: str | None, limit: int = SHOWN_LIMIT) -> str:
    """``value`` as it may appear in a message: as it is when plain (``job-8f3a``, an s3 URI),
    else ``repr``-quoted with control characters escaped; at most ``limit`` characters of it, and
    a cut one says its length and its :func:`label` (the form its run tags carry)."""
    if value is None:
        return "None"
    if len(value) <= limit and _PLAIN.fullmatch(value):
        return value
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters, {label(value)})"


def clean_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """A message that may carry API text: non-printable characters escaped (newlines kept),
    at most ``limit`` characters (the cut is said)."""
    out = "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)
    if len(out) > limit:
        out = out[:limit] + f"... [{len(out) - limit} more characters cut]"
    return out
