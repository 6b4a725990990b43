"""Reddit — Reddit Ads API v3 reports.

``POST https://ads-api.reddit.com/api/v3/ad_accounts/<ad_account_id>/reports`` with a Bearer token
(https://ads-api.reddit.com/docs/v3/)::

    request  {"data": {"breakdowns": ["AD_ID"], "fields": ["IMPRESSIONS", "CLICKS", "KEY_CONVERSION_TOTAL_COUNT"],
                       "filter": "ad:id==<id>", "starts_at": "...Z", "ends_at": "...Z", "time_zone_id": "GMT"}}
    response {"data": {"metrics": [{"ad_id": "...", "impressions": 1234, "clicks": 56,
                                    "key_conversion_total_count": 3}],
                       "metrics_updated_at": "..."},
              "pagination": {"next_url": null}}

Fields are requested upper-case and returned lower-case, as JSON integers. Reddit rate-limits with 429
and ``x-ratelimit-reset`` (seconds until the window resets). The report is keyed by *ad id*; we pass
the post id parsed from the claimed URL as that id. An empty ``metrics`` list (unknown ad, or an ad
that never delivered, or whose numbers are not reported yet) is reported as NotFound.

The metrics are the ad's lifetime totals: the report has no all-time preset, so it runs from
:data:`ALL_TIME_START`, a moment before any Reddit ad could have delivered, to now. A shorter look-back
(it was 365 days) leaves out the start of an older ad's life and turns a true claim into an over-claim.
Mapping: views ← ``impressions``, clicks ← ``clicks``, conversions ← ``key_conversion_total_count``.

Batch form: the filter ORs ad ids with ``,`` (``ad:id==<a>,ad:id==<b>``, the FIQL syntax the reports take),
up to :data:`MAX_BATCH` ids; rows carry ``ad_id``, and an ad without a row is that ad's NotFound. One
request counts once against Reddit's per-minute limit.

Credentials: ``access_token``, ``ad_account_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from platforms.adapters.base import PlatformAdapter, PlatformMetrics
from platforms.adapters.http import (
    ApiResponse,
    call_api,
    endpoint,
    isoformat_z,
    parse_retry_after,
    require_credential,
    sum_counts,
    to_count,
    unexpected_shape,
    utc_hour_ceiling,
)
from platforms.errors import NotFound, PlatformError

PRODUCTION_BASE_URL = "https://ads-api.reddit.com"
FIELDS = ("IMPRESSIONS", "CLICKS", "KEY_CONVERSION_TOTAL_COUNT")
#: Stands for "all time": before Reddit's self-serve ads platform existed, so before any ad's first delivery.
ALL_TIME_START = datetime(2015, 1, 1, tzinfo=UTC)
MAX_BATCH = 100


class RedditAdapter(PlatformAdapter):
    slug = "reddit"

    max_batch = MAX_BATCH

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        token = require_credential(self.config, "access_token", self.slug)
        account_id = require_credential(self.config, "ad_account_id", self.slug)
        wanted = list(dict.fromkeys(post_ids))
        ends_at = utc_hour_ceiling()
        body = call_api(
            self.config,
            "POST",
            endpoint(self.config, "api", "v3", "ad_accounts", account_id, "reports"),
            platform=self.slug,
            json_body={
                "data": {
                    "breakdowns": ["AD_ID"],
                    "fields": list(FIELDS),
                    "filter": ",".join(f"ad:id=={post_id}" for post_id in wanted),
                    "starts_at": isoformat_z(ALL_TIME_START),
                    "ends_at": isoformat_z(ends_at),
                    "time_zone_id": "GMT",
                }
            },
            headers={"Authorization": f"Bearer {token}"},
            retry_hint=reddit_retry_hint,
        )
        answers: dict[str, PlatformMetrics | PlatformError] = {}
        with unexpected_shape(self.slug):
            by_ad: dict[str, list[dict[str, Any]]] = {}
            for row in body["data"]["metrics"]:
                ad_id = str(row["ad_id"]) if len(wanted) > 1 else wanted[0]
                by_ad.setdefault(ad_id, []).append(row)
            for post_id in wanted:
                rows = by_ad.get(post_id)
                if not rows:
                    answers[post_id] = NotFound(f"reddit: no report row for ad {post_id!r}")
                    continue
                answers[post_id] = PlatformMetrics(
                    views=sum_counts(to_count(r.get("impressions"), "impressions") for r in rows),
                    clicks=sum_counts(to_count(r.get("clicks"), "clicks") for r in rows),
                    conversions=sum_counts(
                        to_count(r.get("key_conversion_total_count"), "key_conversion_total_count") for r in rows
                    ),
                    raw=body if len(wanted) == 1 else {"data": {"metrics": rows}},
                )
        return answers


def reddit_retry_hint(response: ApiResponse) -> float | None:
    # Reddit counts the reset in seconds from now, the same format as delay-seconds.
    return parse_retry_after(response.headers.get("x-ratelimit-reset"))
