"""YouTube — Google Ads API search (YouTube video ads are reported through Google Ads).

``POST https://googleads.googleapis.com/v18/customers/<customer_id>/googleAds:search`` with headers
``Authorization: Bearer <oauth token>``, ``developer-token`` (and ``login-customer-id`` when reached
through a manager account) and a GAQL query
(https://developers.google.com/google-ads/api/rest/reference/rest/v18/customers.googleAds/search)::

    request  {"query": "SELECT video.id, metrics.video_views, metrics.clicks, metrics.conversions
                        FROM video WHERE video.id = '<id>'"}
    response {"results": [{"video": {"resourceName": "customers/1/videos/<id>", "id": "<id>"},
                           "metrics": {"videoViews": "1234", "clicks": "56", "conversions": 3.0}}],
              "fieldMask": "video.id,metrics.videoViews,metrics.clicks,metrics.conversions", "requestId": "..."}

int64 metrics are JSON strings, ``conversions`` is a double (fractional under data-driven attribution;
rounded to the nearest whole conversion). No row for the video: no ``results`` key at all, reported
as NotFound. Batch form: ``WHERE video.id IN ('<id>', '<id>', ...)`` (up to :data:`MAX_BATCH` ids), one
search request billed as one operation; the rows carry ``video.id``, and an id without a row is that
video's NotFound. Quota errors are ``RESOURCE_EXHAUSTED`` (HTTP 429) with the wait in
``details[].errors[].details.quotaErrorDetails.retryDelay`` (e.g. ``"30s"``), not in Retry-After.
``video.id`` is the YouTube video id we parse from the URL, so no id translation is needed here.
Mapping: views ← ``videoViews``, clicks ← ``clicks``, conversions ← ``conversions``.

Credentials: ``developer_token``, ``access_token``, ``customer_id`` (dashes allowed), optional
``login_customer_id``.
"""

from __future__ import annotations

import re
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
from platforms.errors import NotFound, PlatformError, RateLimited

PRODUCTION_BASE_URL = "https://googleads.googleapis.com"
API_VERSION = "v18"
#: The id is interpolated into GAQL; anything outside YouTube's alphabet could change the query.
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)s\s*")
#: Ids per GAQL ``IN`` list: far below the query's length limit, and one page of results.
MAX_BATCH = 100


class YouTubeAdapter(PlatformAdapter):
    slug = "youtube"

    max_batch = MAX_BATCH

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        answers: dict[str, PlatformMetrics | PlatformError] = {
            post_id: NotFound(f"youtube: {post_id!r} is not a YouTube video id")
            for post_id in post_ids
            if not _VIDEO_ID.fullmatch(post_id)
        }
        wanted = [post_id for post_id in dict.fromkeys(post_ids) if post_id not in answers]
        if not wanted:
            return answers
        developer_token = require_credential(self.config, "developer_token", self.slug)
        token = require_credential(self.config, "access_token", self.slug)
        customer_id = require_credential(self.config, "customer_id", self.slug).replace("-", "")
        headers = {"Authorization": f"Bearer {token}", "developer-token": developer_token}
        login_customer_id = self.config.credentials.get("login_customer_id")
        if login_customer_id:
            headers["login-customer-id"] = login_customer_id.replace("-", "")
        # Ids are checked against YouTube's alphabet above, so quoting them cannot change the query.
        condition = (
            f"video.id = '{wanted[0]}'"
            if len(wanted) == 1
            else "video.id IN (" + ", ".join(f"'{post_id}'" for post_id in wanted) + ")"
        )
        fields = "video.id, metrics.video_views, metrics.clicks, metrics.conversions"
        query = f"SELECT {fields} FROM video WHERE {condition}"
        body = call_api(
            self.config,
            "POST",
            endpoint(self.config, API_VERSION, "customers", customer_id) + "/googleAds:search",
            platform=self.slug,
            json_body={"query": query},
            headers=headers,
            api_error=google_ads_error,
            retry_hint=google_retry_hint,
        )
        with unexpected_shape(self.slug):
            by_video: dict[str, list[dict[str, Any]]] = {}
            for row in body.get("results") or []:
                # One id asked: every row is that video's, whether or not it repeats the id.
                video_id = _video_of(row) if len(wanted) > 1 else wanted[0]
                by_video.setdefault(str(video_id), []).append(row)
            for post_id in wanted:
                # A video used by several ads may come back as several rows: the video's totals are the sum.
                rows = by_video.get(post_id)
                if not rows:
                    answers[post_id] = NotFound(f"youtube: no Google Ads row for video {post_id!r}")
                    continue
                metrics = [row.get("metrics") or {} for row in rows]
                answers[post_id] = PlatformMetrics(
                    views=sum_counts(to_count(m.get("videoViews"), "videoViews") for m in metrics),
                    clicks=sum_counts(to_count(m.get("clicks"), "clicks") for m in metrics),
                    conversions=sum_counts(to_count(m.get("conversions"), "conversions") for m in metrics),
                    raw=body if len(wanted) == 1 else {"results": rows},
                )
        return answers


def _video_of(row: dict[str, Any]) -> str:
    video = row.get("video") or {}
    return str(video["id"])


def google_ads_error(response: ApiResponse) -> PlatformError | None:
    """Quota exhaustion is a throttle whatever the HTTP status says; everything else maps by status."""
    error = response.json_object().get("error")
    if isinstance(error, dict) and error.get("status") == "RESOURCE_EXHAUSTED":
        return RateLimited(
            f"youtube: {str(error.get('message', ''))[:200]}",
            retry_after=retry_after_seconds(response, google_retry_hint),
            status=response.status,
        )
    return None


def google_retry_hint(response: ApiResponse) -> float | None:
    """The largest ``retryDelay`` anywhere in the error details (QuotaErrorDetails or google.rpc.RetryInfo)."""
    delays = [d for d in _find_values(response.json_object().get("error"), "retryDelay") if d is not None]
    return max(delays) if delays else None


def _find_values(node: Any, key: str) -> list[float | None]:
    found: list[float | None] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                match = _DURATION.fullmatch(v)
                found.append(float(match.group(1)) if match else None)
            else:
                found.extend(_find_values(v, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_find_values(item, key))
    return found
