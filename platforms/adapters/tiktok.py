"""TikTok — TikTok API for Business, synchronous integrated report.

``GET https://business-api.tiktok.com/open_api/v1.3/report/integrated/get/`` with header
``Access-Token`` and query ``advertiser_id``, ``report_type=BASIC``, ``data_level=AUCTION_AD``,
``dimensions=["ad_id"]``, ``metrics=[...]``, ``filtering=[{"field_name": "ad_ids", ...}]``,
``query_lifetime=true`` (https://business-api.tiktok.com/portal/docs?id=1740302848100353)::

    {"code": 0, "message": "OK", "request_id": "...",
     "data": {"list": [{"dimensions": {"ad_id": "..."},
                        "metrics": {"video_play_actions": "1234", "clicks": "56", "conversion": "3", ...}}],
              "page_info": {...}}}

Metric values are strings. Errors come back as HTTP 200 with a non-zero ``code``: 40100 is the
throttle, 40001/40102/40104/40105 are permission/token problems. The report is keyed by *ad id*; we
pass the post id parsed from the claimed URL as that id. The report cannot tell an unknown id from an
ad without delivery: both give an empty list, which we report as NotFound.
Batch form: the ``ad_ids`` filter takes a list (up to :data:`MAX_BATCH` ids) and the answer has one row
per ad (``dimensions.ad_id``); an ad without a row is that ad's NotFound. One request, one quota unit.
Mapping: views ← ``video_play_actions``, clicks ← ``clicks``, conversions ← ``conversion``.

Credentials: ``access_token``, ``advertiser_id``.
"""

from __future__ import annotations

import json
from typing import Any

from platforms.adapters.base import PlatformAdapter, PlatformMetrics
from platforms.adapters.http import (
    ApiResponse,
    call_api,
    endpoint,
    require_credential,
    retry_after_seconds,
    sum_counts,
    to_count,
    unexpected_shape,
)
from platforms.errors import AuthError, FetchError, NotFound, PlatformError, RateLimited

PRODUCTION_BASE_URL = "https://business-api.tiktok.com"
API_PATH = ("open_api", "v1.3", "report", "integrated", "get", "")  # trailing slash is part of the path
METRICS = ("video_play_actions", "impressions", "clicks", "conversion")

#: The ``ad_ids`` filter's documented limit; the page holds them all (``page_size`` up to 1000).
MAX_BATCH = 100
THROTTLE_CODE = 40100
AUTH_CODES = frozenset({40001, 40102, 40104, 40105})


class TikTokAdapter(PlatformAdapter):
    slug = "tiktok"

    max_batch = MAX_BATCH

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        token = require_credential(self.config, "access_token", self.slug)
        advertiser_id = require_credential(self.config, "advertiser_id", self.slug)
        wanted = list(dict.fromkeys(post_ids))
        # List parameters travel as JSON text in the query string, as the Business API documents.
        params = {
            "advertiser_id": advertiser_id,
            "report_type": "BASIC",
            "data_level": "AUCTION_AD",
            "dimensions": json.dumps(["ad_id"]),
            "metrics": json.dumps(list(METRICS)),
            "filtering": json.dumps(
                [{"field_name": "ad_ids", "filter_type": "IN", "filter_value": json.dumps(wanted)}]
            ),
            "query_lifetime": "true",
            "page": "1",
            "page_size": str(max(10, len(wanted))),
        }
        body = call_api(
            self.config,
            "GET",
            endpoint(self.config, *API_PATH),
            platform=self.slug,
            params=params,
            headers={"Access-Token": token},
            api_error=tiktok_api_error,
        )
        answers: dict[str, PlatformMetrics | PlatformError] = {}
        with unexpected_shape(self.slug):
            by_ad: dict[str, list[dict[str, Any]]] = {}
            for row in body["data"]["list"]:
                ad_id = str(row["dimensions"]["ad_id"]) if len(wanted) > 1 else wanted[0]
                by_ad.setdefault(ad_id, []).append(row)
            for post_id in wanted:
                rows = by_ad.get(post_id)
                if not rows:
                    answers[post_id] = NotFound(f"tiktok: no report row for ad {post_id!r}")
                    continue
                metrics = [row["metrics"] for row in rows]
                answers[post_id] = PlatformMetrics(
                    views=sum_counts(to_count(m.get("video_play_actions"), "video_play_actions") for m in metrics),
                    clicks=sum_counts(to_count(m.get("clicks"), "clicks") for m in metrics),
                    conversions=sum_counts(to_count(m.get("conversion"), "conversion") for m in metrics),
                    raw=body if len(wanted) == 1 else {"list": rows},
                )
        return answers


def tiktok_api_error(response: ApiResponse) -> PlatformError | None:
    """TikTok reports API errors in ``code`` with HTTP 200, so the status cannot be trusted alone."""
    code = response.json_object().get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code == 0:
        return None
    message = f"tiktok code={code}: {str(response.json_object().get('message', ''))[:200]}"
    if code == THROTTLE_CODE:
        return RateLimited(message, retry_after=retry_after_seconds(response), status=response.status)
    if code in AUTH_CODES:
        return AuthError(message, status=response.status)
    if 200 <= response.status < 300:
        return FetchError(message, status=response.status)
    return None  # a non-2xx status with its envelope: the HTTP mapping decides
