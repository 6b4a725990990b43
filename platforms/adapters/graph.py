"""What Meta's two APIs share: the Graph API version, host, error envelope and throttle headers.

The Marketing API (``meta``) and the Instagram Graph API (``instagram``) are both served by
graph.facebook.com and signal errors the same way: an ``{"error": {"code", "error_subcode", ...}}``
envelope, usually with HTTP 400 whatever the cause, so the status alone cannot tell a throttle from a
bad id. See https://developers.facebook.com/docs/graph-api/guides/error-handling and
https://developers.facebook.com/docs/graph-api/overview/rate-limiting.
"""

from __future__ import annotations

import json
from typing import Any

from platforms.adapters.http import ApiResponse, retry_after_seconds
from platforms.errors import AuthError, NotFound, PlatformError, RateLimited

GRAPH_API_VERSION = "v21.0"
PRODUCTION_BASE_URL = "https://graph.facebook.com"

# 4 app, 17 user, 32 page, 613 calls-within-window; 80000-80014 the business-use-case (BUC) limits,
# e.g. 80000 ads insights, 80002 Instagram, 80004 ads management.
_THROTTLE_CODES = frozenset({4, 17, 32, 613})
_BUC_THROTTLE_RANGE = range(80000, 80100)
# 190 invalid/expired token, 102 session key, 10 and 200-299 permission not granted.
_AUTH_CODES = frozenset({102, 190, 10})
_PERMISSION_RANGE = range(200, 300)
# 100/33: "Object with ID ... does not exist, cannot be loaded due to missing permissions...";
# 803: "Some of the aliases you requested do not exist".
_NOT_FOUND_SUBCODE = 33


def graph_api_error(response: ApiResponse) -> PlatformError | None:
    """Map a Graph ``error`` envelope by its code; None lets the HTTP status decide (e.g. code 2 on 5xx)."""
    error = response.json_object().get("error")
    if not isinstance(error, dict):
        return None
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    message = f"graph error code={code} subcode={subcode}: {str(error.get('message', ''))[:200]}"
    if code in _THROTTLE_CODES or (code is not None and code in _BUC_THROTTLE_RANGE):
        return RateLimited(message, retry_after=retry_after_seconds(response, usage_retry_hint), status=response.status)
    if (code == 100 and subcode == _NOT_FOUND_SUBCODE) or code == 803:
        return NotFound(message, status=response.status)
    if code in _AUTH_CODES or (code is not None and code in _PERMISSION_RANGE):
        return AuthError(message, status=response.status)
    return None


def usage_retry_hint(response: ApiResponse) -> float | None:
    """Seconds until access returns, from the usage headers Graph sends instead of Retry-After.

    ``x-business-use-case-usage``: ``{"<business id>": [{"type": ..., "estimated_time_to_regain_access":
    <minutes>, ...}]}``; ``x-ad-account-usage``: ``{"reset_time_duration": <seconds>, ...}``.
    """
    candidates: list[float] = []
    buc = _json_header(response, "x-business-use-case-usage")
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else []:
                minutes = entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
                if isinstance(minutes, int | float) and not isinstance(minutes, bool) and minutes > 0:
                    candidates.append(float(minutes) * 60)
    account = _json_header(response, "x-ad-account-usage")
    if isinstance(account, dict):
        reset = account.get("reset_time_duration")
        if isinstance(reset, int | float) and not isinstance(reset, bool) and reset > 0:
            candidates.append(float(reset))
    return max(candidates) if candidates else None


def _json_header(response: ApiResponse, name: str) -> Any:
    raw = response.headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
