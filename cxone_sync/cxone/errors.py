"""Exceptions raised by the CXone export client, its models and URI checks.

No message ever carries a secret: API calls are named by method and path only (never a token,
header or query value that could hold one), and server error text is redacted by the client.
"""

from __future__ import annotations


class CXoneError(Exception):
    """Base of every error raised by the CXone export source."""


class TransientAPIError(CXoneError):
    """A failure worth repeating later: 429, 5xx, timeout, transport error or a broken body.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one. ``maybe_applied``
    is false only when the server cannot have acted on the request (connection never made, 429,
    503), which is what makes repeating a non-idempotent call (a manual export) safe.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = True,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class APIStatusError(CXoneError):
    """The API answered with a status that repeating the call will not change."""

    hint = ""

    def __init__(self, what: str, status_code: int, server_text: str) -> None:
        message = f"{what} answered {status_code}"
        if server_text:
            message += f": {server_text}"
        if self.hint:
            message += f" ({self.hint})"
        super().__init__(message)
        self.what = what
        self.status_code = status_code
        self.server_text = server_text


class AuthError(APIStatusError):
    hint = (
        "refused even with a fresh token, or no token was issued; check CXONE_TOKEN_URL, "
        "CXONE_CLIENT_ID/CXONE_CLIENT_SECRET and CXONE_ACCESS_KEY_ID/CXONE_ACCESS_KEY_SECRET"
    )


class BadRequestError(APIStatusError):
    hint = "the API refused the request's parameters"


class ForbiddenError(APIStatusError):
    hint = "the API user lacks the scope for this download; ask the CXone admin to grant it"


class NotFoundError(APIStatusError):
    hint = "unknown download or job id; check CXONE_DOWNLOAD_IDS"


class ConflictError(APIStatusError):
    hint = "an overlapping manual export is already running; wait for it to end"


class ManifestError(CXoneError):
    """A job or download configuration from the API is missing a field or has a wrong one."""


class ForeignFileError(CXoneError):
    """A job lists a file outside the export bucket and the allowed prefixes: refused whole."""
