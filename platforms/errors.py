"""Typed platform errors: every adapter maps HTTP and API outcomes to exactly these."""

from __future__ import annotations


class PlatformError(Exception):
    """Base class. ``code`` is the ``missing_reason`` recorded when an attempt ends on this error."""

    code = "fetch_error"
    #: Whether the circuit breaker counts this error as a platform failure.
    counts_as_failure = True
    #: Whether retrying inside the same attempt may help.
    transient = True

    def __init__(self, message: str = "", *, status: int | None = None):
        super().__init__(message or self.__class__.__name__)
        self.status = status


class NotFound(PlatformError):
    """The platform does not know the post (deleted, private, wrong id)."""

    code = "not_found"
    counts_as_failure = False
    transient = False


class RateLimited(PlatformError):
    """The platform throttled us; ``retry_after`` seconds until it accepts calls again (None: unknown)."""

    code = "rate_limited"
    counts_as_failure = False
    transient = True

    def __init__(self, message: str = "", *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class AuthError(PlatformError):
    """Our credentials were refused; retrying will not help until someone fixes them."""

    code = "auth_error"
    transient = False


class Timeout(PlatformError):
    """Connect or read timeout."""

    code = "timeout"


class FetchError(PlatformError):
    """Anything else: 5xx, connection refused, malformed JSON, an unexpected API error."""

    code = "fetch_error"
