"""Meta (Facebook) — Marketing API ad insights.

``GET https://graph.facebook.com/v21.0/<ad_id>/insights?fields=impressions,clicks,actions&date_preset=maximum``
(https://developers.facebook.com/docs/marketing-api/insights). One lifetime row::

    {"data": [{"impressions": "1234", "clicks": "56",
               "actions": [{"action_type": "link_click", "value": "50"},
                           {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "3"}],
               "date_start": "...", "date_stop": "..."}],
     "paging": {"cursors": {...}}}

Values are strings. An empty ``data`` list (no delivery yet, or insights not yet reported) is
NotFound, never zeros. The insights edge is keyed by the *ad* id; we pass the post id parsed from the
claimed URL as that id (an affiliate's boosted post is reported under its ad). Mapping:
views ← ``impressions``, clicks ← ``clicks`` (all clicks; ``inline_link_clicks`` would be link clicks
only), conversions ← the first of :data:`CONVERSION_ACTION_TYPES` present in ``actions``.

Batch form: several ads in one Graph batch request (``graph.graph_batch``), billed per ad.

Credentials: ``access_token`` (sent as a Bearer header, which Graph accepts like the ``access_token``
query parameter, so the token never lands in a logged URL).
"""

from __future__ import annotations

from typing import Any

from platforms.adapters.base import PlatformAdapter, PlatformMetrics
from platforms.adapters.graph import MAX_BATCH, fetch_insights
from platforms.adapters.graph import PRODUCTION_BASE_URL as PRODUCTION_BASE_URL
from platforms.adapters.http import to_count, unexpected_shape
from platforms.errors import NotFound, PlatformError

FIELDS = ("impressions", "clicks", "actions")
#: Most specific first. ``purchase`` and ``omni_purchase`` aggregate the pixel event with app/offline
#: purchases, so summing them would count one sale several times: the first one present is the answer.
CONVERSION_ACTION_TYPES = ("offsite_conversion.fb_pixel_purchase", "purchase", "omni_purchase")


class MetaAdapter(PlatformAdapter):
    slug = "meta"

    max_batch = MAX_BATCH
    bills_per_item = True

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        return fetch_insights(
            self.config,
            platform=self.slug,
            params={"fields": ",".join(FIELDS), "date_preset": "maximum"},
            post_ids=post_ids,
            parse=_metrics,
        )


def _metrics(body: Any, post_id: str) -> PlatformMetrics:
    with unexpected_shape("meta"):
        rows: list[dict[str, Any]] = body["data"]
        if not isinstance(rows, list):
            raise TypeError("data is not a list")
        if not rows:
            # The ad exists (an unknown id is error 100/33) but Meta has no row for it: it has not
            # delivered yet, or its insights lag behind (they can for hours). Zeros here would make
            # every true claim a CRITICAL over-claim; "no data yet" is retried like a missing post.
            raise NotFound(f"meta: no insights rows for ad {post_id!r} (yet)")
        # Without time_increment or breakdowns the lifetime insights come back as a single row.
        row = rows[0]
        return PlatformMetrics(
            views=to_count(row.get("impressions"), "impressions"),
            clicks=to_count(row.get("clicks"), "clicks"),
            conversions=_conversions(row.get("actions")),
            raw=body,
        )


def _conversions(actions: Any) -> int | None:
    if actions is None:
        # No ``actions`` at all: the platform told us nothing about conversions.
        return None
    by_type = {a["action_type"]: a.get("value") for a in actions}
    for action_type in CONVERSION_ACTION_TYPES:
        if action_type in by_type:
            return to_count(by_type[action_type], f"actions[{action_type}]")
    # Meta omits action types whose count is zero, so an actions list without a purchase means none.
    return 0
