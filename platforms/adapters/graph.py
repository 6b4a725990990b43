"""What Meta's two APIs share: the Graph API version, host, error envelope and throttle headers.

The Marketing API (``meta``) and the Instagram Graph API (``instagram``) are both served by
graph.facebook.com and signal errors the same way: an ``{"error": {"code", "error_subcode", ...}}``
envelope, usually with HTTP 400 whatever the cause, so the status alone cannot tell a throttle from a
bad id. See https://developers.facebook.com/docs/graph-api/guides/error-handling and
https://developers.facebook.com/docs/graph-api/overview/rate-limiting.

Batch form (https://developers.facebook.com/docs/graph-api/batch-requests): ``POST /<version>/`` with
``batch=[{"method": "GET", "relative_url": "<id>/insights?..."}, ...]`` (at most :data:`MAX_BATCH`); the
answer is a list in the same order of ``{"code": <status>, "headers": [...], "body": "<JSON text>"}``, or
null for a sub-request that did not complete. Each sub-request is mapped like a call of its own, so an
unknown id fails only its own post. Meta counts every sub-request against the rate limits, so these
adapters bill a batch per item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from platforms.adapters.base import AdapterConfig, PlatformMetrics
from platforms.adapters.http import (
    ApiResponse,
    call_api,
    endpoint,
    map_response,
    require_credential,
    retry_after_seconds,
    unexpected_shape,
)
from platforms.errors import AuthError, FetchError, NotFound, PlatformError, RateLimited

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
#: Sub-requests per batch request, the Graph API's limit.
MAX_BATCH = 50


def fetch_insights(
    config: AdapterConfig,
    *,
    platform: str,
    params: dict[str, str],
    post_ids: list[str],
    parse: Callable[[Any, str], PlatformMetrics],
) -> dict[str, PlatformMetrics | PlatformError]:
    """``GET <id>/insights?<params>`` for each id (both Meta adapters' ``fetch_batch``): one plain call for a
    single id, one batch request (:func:`graph_batch`) for several."""
    token = require_credential(config, "access_token", platform)
    wanted = list(dict.fromkeys(post_ids))
    if len(wanted) > 1:
        return graph_batch(
            config, platform=platform, token=token, edge="insights", params=params, post_ids=wanted, parse=parse
        )
    post_id = wanted[0]
    body = call_api(
        config,
        "GET",
        endpoint(config, GRAPH_API_VERSION, post_id, "insights"),
        platform=platform,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        api_error=graph_api_error,
        retry_hint=usage_retry_hint,
    )
    try:
        return {post_id: parse(body, post_id)}
    except NotFound as exc:
        return {post_id: exc}


def graph_batch(
    config: AdapterConfig,
    *,
    platform: str,
    token: str,
    edge: str,
    params: dict[str, str],
    post_ids: list[str],
    parse: Callable[[Any, str], PlatformMetrics],
) -> dict[str, PlatformMetrics | PlatformError]:
    """``GET <id>/<edge>?<params>`` for every id in one batch request; each answer mapped on its own."""
    query = urlencode(params)
    batch = [{"method": "GET", "relative_url": f"{post_id}/{edge}?{query}"} for post_id in post_ids]
    body = call_api(
        config,
        "POST",
        endpoint(config, GRAPH_API_VERSION) + "/",
        platform=platform,
        json_body={"batch": batch, "include_headers": False},
        headers={"Authorization": f"Bearer {token}"},
        api_error=graph_api_error,
        retry_hint=usage_retry_hint,
    )
    if not isinstance(body, list) or len(body) != len(post_ids):
        raise FetchError(f"{platform}: a batch answer must be a list of {len(post_ids)} answers")
    answers: dict[str, PlatformMetrics | PlatformError] = {}
    for post_id, item in zip(post_ids, body, strict=True):
        try:
            answers[post_id] = _batch_item(item, platform=platform, post_id=post_id, parse=parse)
        except PlatformError as exc:
            answers[post_id] = exc
    return answers


def _batch_item(
    item: Any, *, platform: str, post_id: str, parse: Callable[[Any, str], PlatformMetrics]
) -> PlatformMetrics:
    if item is None:
        raise FetchError(f"{platform}: the batch's request for {post_id!r} did not complete")
    with unexpected_shape(platform):
        status = int(item["code"])
        text = item.get("body") or ""
        try:
            decoded = json.loads(text) if text else None
        except ValueError:
            decoded = None
    response = ApiResponse(status=status, headers={}, body=decoded, text=str(text)[:200])
    error = map_response(response, platform=platform, api_error=graph_api_error, retry_hint=usage_retry_hint)
    if error is not None:
        raise error
    return parse(decoded, post_id)


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
