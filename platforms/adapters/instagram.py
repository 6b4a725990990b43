"""Instagram — Instagram Graph API media insights.

``GET https://graph.facebook.com/v21.0/<ig_media_id>/insights?metric=views,reach,total_interactions``
(https://developers.facebook.com/docs/instagram-platform/reference/instagram-media/insights)::

    {"data": [{"name": "views", "period": "lifetime", "values": [{"value": 1234}],
               "title": "Views", "description": "...", "id": "<media_id>/insights/views/lifetime"}, ...]}

Values are JSON integers; an empty ``data`` list (insights not reported yet) is NotFound. The edge is
keyed by the IG *media id*; we pass the post id parsed from the claimed URL as that id (resolving a
shortcode to a media id needs the owner's media list).
Mapping: views ← ``views``. Organic media insights report no link clicks (``profile_links_taps`` and
``website_clicks`` are account-level, not per post) and no conversions, so clicks and conversions are
always None: the engine must treat Instagram clicks/conversions as unverifiable, not as zero.

Batch form: several media in one Graph batch request (``graph.graph_batch``), billed per media.

Credentials: ``access_token`` (Bearer header, see meta.py).
"""

from __future__ import annotations

from typing import Any

from platforms.adapters.base import PlatformAdapter, PlatformMetrics
from platforms.adapters.graph import MAX_BATCH, fetch_insights
from platforms.adapters.graph import PRODUCTION_BASE_URL as PRODUCTION_BASE_URL
from platforms.adapters.http import to_count, unexpected_shape
from platforms.errors import NotFound, PlatformError

#: ``reach`` and ``total_interactions`` are not mapped; they are kept in ``raw`` for investigators.
METRICS = ("views", "reach", "total_interactions")


class InstagramAdapter(PlatformAdapter):
    slug = "instagram"

    max_batch = MAX_BATCH
    bills_per_item = True

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        return fetch_insights(
            self.config, platform=self.slug, params={"metric": ",".join(METRICS)}, post_ids=post_ids, parse=_metrics
        )


def _metrics(body: Any, post_id: str) -> PlatformMetrics:
    with unexpected_shape("instagram"):
        entries: list[dict[str, Any]] = body["data"]
        if not entries:
            # The media exists (an unknown id is error 100/33) but has no insights yet.
            raise NotFound(f"instagram: no insights rows for media {post_id!r} (yet)")
        by_name = {entry["name"]: entry for entry in entries}
        views_entry = by_name.get("views")
        views = None
        if views_entry is not None and views_entry.get("values"):
            # Lifetime metrics carry exactly one value.
            views = to_count(views_entry["values"][0].get("value"), "views")
        return PlatformMetrics(views=views, clicks=None, conversions=None, raw=body)
