"""X (Twitter) — X Ads API synchronous analytics.

``GET https://ads-api.x.com/12/stats/accounts/<account_id>?entity=PROMOTED_TWEET&entity_ids=<id>
&start_time=...&end_time=...&granularity=TOTAL&placement=ALL_ON_TWITTER
&metric_groups=ENGAGEMENT,BILLING,WEB_CONVERSION``
(https://developer.x.com/en/docs/x-ads-api/analytics/api-reference/synchronous)::

    {"data_type": "stats", "time_series_length": 1,
     "data": [{"id": "<id>", "id_data": [{"segment": null,
               "metrics": {"impressions": [1234], "url_clicks": [56], "clicks": [80], ...,
                           "conversion_purchases": {"metric": [3], "order_quantity": [3], ...}}}]}],
     "request": {"params": {...}}}

Every metric is an array (one value per time bucket; one bucket for TOTAL) or null when X has no data
for it. The Ads API authenticates with OAuth 1.0a user context, signed per request (HMAC-SHA1).
Throttling is a 429 with ``x-rate-limit-reset`` / ``x-account-rate-limit-reset`` (Unix time).
The endpoint is keyed by *promoted tweet id*; we pass the post id parsed from the claimed URL as that id.
The synchronous endpoint caps the window at 7 days, so these are the last 7 days' totals; lifetime
totals for older posts need the asynchronous job endpoint (``/12/stats/jobs/accounts/<id>``).
Mapping: views ← ``impressions``, clicks ← ``url_clicks`` (clicks on the link, what an affiliate
claims; ``clicks`` also counts profile and hashtag clicks), conversions ← ``conversion_purchases.metric``.

Credentials: ``consumer_key``, ``consumer_secret``, ``access_token``, ``access_token_secret``,
``account_id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from platforms.adapters.base import PlatformAdapter, PlatformMetrics
from platforms.adapters.http import (
    ApiResponse,
    call_api,
    endpoint,
    isoformat_z,
    require_credential,
    seconds_until_epoch,
    sum_counts,
    to_count,
    unexpected_shape,
    utc_hour_ceiling,
)
from platforms.errors import NotFound

PRODUCTION_BASE_URL = "https://ads-api.x.com"
API_VERSION = "12"
METRIC_GROUPS = ("ENGAGEMENT", "BILLING", "WEB_CONVERSION")
#: The synchronous stats endpoint rejects longer windows.
MAX_WINDOW = timedelta(days=7)


class XAdapter(PlatformAdapter):
    slug = "x"

    def fetch_metrics(self, post_id: str) -> PlatformMetrics:
        keys = {
            key: require_credential(self.config, key, self.slug)
            for key in ("consumer_key", "consumer_secret", "access_token", "access_token_secret", "account_id")
        }
        url = endpoint(self.config, API_VERSION, "stats", "accounts", keys["account_id"])
        # X wants whole hours for TOTAL granularity.
        end = utc_hour_ceiling()
        params = {
            "entity": "PROMOTED_TWEET",
            "entity_ids": post_id,
            "start_time": isoformat_z(end - MAX_WINDOW),
            "end_time": isoformat_z(end),
            "granularity": "TOTAL",
            "placement": "ALL_ON_TWITTER",
            "metric_groups": ",".join(METRIC_GROUPS),
        }
        authorization = oauth1_header(
            "GET",
            url,
            params,
            consumer_key=keys["consumer_key"],
            consumer_secret=keys["consumer_secret"],
            token=keys["access_token"],
            token_secret=keys["access_token_secret"],
        )
        body = call_api(
            self.config,
            "GET",
            url,
            platform=self.slug,
            params=params,
            headers={"Authorization": authorization},
            retry_hint=x_retry_hint,
        )
        with unexpected_shape(self.slug):
            entities: list[dict[str, Any]] = body["data"]
            entity = next((e for e in entities if e.get("id") == post_id), None)
            if entity is None:
                raise NotFound(f"x: no stats for promoted tweet {post_id!r}")
            metrics = [segment["metrics"] for segment in entity["id_data"]]
            return PlatformMetrics(
                views=sum_counts(_series(m.get("impressions"), "impressions") for m in metrics),
                clicks=sum_counts(_series(m.get("url_clicks"), "url_clicks") for m in metrics),
                conversions=sum_counts(_purchases(m.get("conversion_purchases")) for m in metrics),
                raw=body,
            )


def _series(values: Any, field: str) -> int | None:
    """Total of one metric's time series; None when X sent null (no data) for every bucket."""
    if values is None:
        return None
    return sum_counts(to_count(v, field) for v in values)


def _purchases(group: Any) -> int | None:
    if group is None:
        return None
    return _series(group.get("metric"), "conversion_purchases.metric")


def x_retry_hint(response: ApiResponse) -> float | None:
    """The later of the user-level and the account-level window resets (both Unix timestamps)."""
    resets = [
        seconds_until_epoch(response.headers.get(name)) for name in ("x-rate-limit-reset", "x-account-rate-limit-reset")
    ]
    present = [r for r in resets if r is not None]
    return max(present) if present else None


# --- OAuth 1.0a (RFC 5849 §3.4.1, HMAC-SHA1) ------------------------------------------------------------


def _pct(value: str) -> str:
    # RFC 3986 unreserved characters only; quote() would leave "/" alone by default.
    return quote(value, safe="-._~")


def oauth1_header(
    method: str,
    url: str,
    params: Mapping[str, str],
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    nonce: str | None = None,
    timestamp: str | None = None,
) -> str:
    """The ``Authorization: OAuth ...`` value for a request with these query (or form) parameters."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": timestamp or str(int(time.time())),
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    pairs = sorted((_pct(k), _pct(v)) for k, v in [*params.items(), *oauth.items()])
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base_string = "&".join([method.upper(), _pct(url.split("?", 1)[0]), _pct(normalized)])
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    oauth["oauth_signature"] = base64.b64encode(digest).decode()
    return "OAuth " + ", ".join(f'{_pct(k)}="{_pct(v)}"' for k, v in sorted(oauth.items()))
