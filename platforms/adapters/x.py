"""X (Twitter) — X Ads API asynchronous analytics jobs, for a promoted tweet's lifetime totals.

X's synchronous stats endpoint caps a request at 7 days, so for any older post it reports only the last
week, and a true claim reads as an over-claim. Lifetime totals come from the asynchronous analytics jobs
(https://developer.x.com/en/docs/x-ads-api/analytics/guides/asynchronous-analytics), which take windows
of up to 90 days. One fetch:

1. ``GET /12/accounts/<account_id>/promoted_tweets/<id>``: the promoted tweet and its ``created_at``, the
   start of its life (nothing can have been delivered before it). Unknown id: 404, NotFound.
2. The life ``[created_at, now]`` in whole UTC hours (TOTAL granularity wants whole hours), cut into
   windows of at most 90 days.
3. ``GET /12/stats/jobs/accounts/<account_id>``: the account's jobs; a job an earlier attempt created for
   the same window is reused, so a job still running at the end of one attempt is read by the next one.
   The last window ends at the end of the current hour, so its job is reused within that hour; after
   it, a new job covers the longer window (a stale total would be too low, the very error this avoids).
4. ``POST /12/stats/jobs/accounts/<account_id>?entity=PROMOTED_TWEET&entity_ids=<id>&start_time=...
   &end_time=...&granularity=TOTAL&placement=ALL_ON_TWITTER&metric_groups=...`` for each window without
   one; the answer is the job, ``{"data": {"id_str": ..., "status": "PROCESSING", "url": null, ...}}``.
5. ``GET /12/stats/jobs/accounts/<account_id>?job_ids=...`` once more for the jobs not yet done.
6. Each ``SUCCESS`` job's ``url``: a gzipped JSON file in the synchronous response's schema::

       {"data_type": "stats", "time_series_length": 1,
        "data": [{"id": "<id>", "id_data": [{"segment": null,
                  "metrics": {"impressions": [1234], "url_clicks": [56], "clicks": [80], ...,
                              "conversion_purchases": {"metric": [3], "order_quantity": [3], ...}}}]}],
        "request": {"params": {...}}}

Batch form (up to :data:`MAX_JOB_ENTITIES` promoted tweets): step 1 is one lookup, ``GET
/12/accounts/<account_id>/promoted_tweets?promoted_tweet_ids=<a>,<b>`` (an unknown id is left out of the
list: that tweet's NotFound); the windows run from the earliest creation among them; a job is reused for
every tweet in its ``entity_ids``, and the tweets no job covers get new jobs of up to 20 ``entity_ids``;
each result file is downloaded once and holds a row per tweet. A tweet whose jobs are not all done is
reported with every metric absent, the others are answered.

The fetcher's quota token covers one fetch, that is, all of these calls (X limits the jobs per account
by concurrency, not by rate). If a job is still running when the attempt ends, the lifetime totals are
not known: every metric is reported absent (None), never a partial sum, so the verdict cannot be an
over-claim; the attempt ends MISSING (``no_metrics``) and is retried, reusing the job. No window with a
row for the tweet: NotFound (X has no rows yet). The adapter does not wait for jobs: adapters never
sleep (the fetcher owns time).

Every metric is an array (one value per time bucket; one bucket for TOTAL) or null when X has no data for
it; a tweet's totals are the sums over windows. The Ads API authenticates with OAuth 1.0a user context,
signed per request (HMAC-SHA1); result files are pre-signed CDN links fetched without credentials, and
only from X's file host (ton.twimg.com) or the API's own origin (the sandbox). Throttling is a 429 with
``x-rate-limit-reset`` / ``x-account-rate-limit-reset`` (Unix time). The endpoints are keyed by *promoted
tweet id*; we pass the post id parsed from the claimed URL as that id.
Mapping: views ← ``impressions``, clicks ← ``url_clicks`` (clicks on the link, what an affiliate
claims; ``clicks`` also counts profile and hashtag clicks), conversions ← ``conversion_purchases.metric``.

Credentials: ``consumer_key``, ``consumer_secret``, ``access_token``, ``access_token_secret``,
``account_id``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_TYPE_AUTH_HEADER
from requests_oauthlib import OAuth1

from platforms.adapters.base import PlatformAdapter, PlatformMetrics
from platforms.adapters.http import (
    ApiResponse,
    call_api,
    download,
    endpoint,
    isoformat_z,
    require_credential,
    seconds_until_epoch,
    sum_counts,
    to_count,
    unexpected_shape,
    utc_hour_ceiling,
)
from platforms.errors import FetchError, NotFound, PlatformError

PRODUCTION_BASE_URL = "https://ads-api.x.com"
API_VERSION = "12"
METRIC_GROUPS = ("ENGAGEMENT", "BILLING", "WEB_CONVERSION")
#: The longest window one asynchronous job accepts (non-segmented).
MAX_JOB_WINDOW = timedelta(days=90)
#: ``entity_ids`` one analytics job takes.
MAX_JOB_ENTITIES = 20
#: Where X serves job results; anything else is refused (besides the API's own origin, for the sandbox).
RESULT_FILE_HOST = "ton.twimg.com"
#: Job states that will never produce a file: such a job is not reused.
_DEAD_JOB_STATES = frozenset({"FAILED", "EXPIRED", "CANCELLED"})


@dataclass(frozen=True)
class _Job:
    id: str
    start_time: str
    end_time: str
    status: str
    url: str | None

    @property
    def ready(self) -> bool:
        return self.status == "SUCCESS" and bool(self.url)


class XAdapter(PlatformAdapter):
    slug = "x"
    #: ``entity_ids`` per analytics job, X's limit.
    max_batch = MAX_JOB_ENTITIES

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        keys = {
            key: require_credential(self.config, key, self.slug)
            for key in ("consumer_key", "consumer_secret", "access_token", "access_token_secret", "account_id")
        }
        wanted = list(dict.fromkeys(post_ids))
        answers: dict[str, PlatformMetrics | PlatformError] = {}
        created = self._created_at(keys, wanted)
        for post_id in wanted:
            if post_id not in created:
                answers[post_id] = NotFound(f"x: promoted tweet {post_id!r} not found for this account")
        alive = [post_id for post_id in wanted if post_id in created]
        if not alive:
            return answers
        # One set of windows for the batch, from the earliest tweet's creation: a later tweet has nothing
        # before its own creation, so its totals over the longer windows are the same.
        windows = lifetime_windows(min(created[p] for p in alive), utc_hour_ceiling())
        jobs_url = endpoint(self.config, API_VERSION, "stats", "jobs", "accounts", keys["account_id"])

        existing = self._reusable_jobs(keys, jobs_url, alive)
        covering: dict[tuple[str, str], dict[str, _Job]] = {}
        for start, end in windows:
            found = {post_id: job for post_id, job in existing.get((start, end), {}).items() if post_id in alive}
            missing = [post_id for post_id in alive if post_id not in found]
            for index in range(0, len(missing), MAX_JOB_ENTITIES):
                chunk = missing[index : index + MAX_JOB_ENTITIES]
                job = self._create_job(keys, jobs_url, chunk, start, end)
                found.update(dict.fromkeys(chunk, job))
            covering[(start, end)] = found
        not_ready = sorted({job.id for found in covering.values() for job in found.values() if not job.ready})
        if not_ready:
            # One more look: a job created a moment ago may already be done (small jobs are quick).
            polled = self._poll(keys, jobs_url, not_ready)
            for found in covering.values():
                for post_id, job in found.items():
                    found[post_id] = polled.get(job.id, job)
        results: dict[str, dict[str, Any]] = {}
        for post_id in alive:
            jobs = [covering[window][post_id] for window in windows]
            pending = [job.id for job in jobs if not job.ready]
            if pending:
                # Without every window the total would be too low: report nothing rather than a partial sum.
                answers[post_id] = PlatformMetrics(
                    views=None,
                    clicks=None,
                    conversions=None,
                    raw={"pending_jobs": pending, "windows": len(windows), "created_at": isoformat_z(created[post_id])},
                )
                continue
            for job in jobs:
                if job.id not in results:
                    results[job.id] = self._result(job)
            try:
                answers[post_id] = self._metrics(post_id, created[post_id], jobs, results)
            except NotFound as exc:
                answers[post_id] = exc
        return answers

    def _metrics(
        self, post_id: str, created: datetime, jobs: list[_Job], results: dict[str, dict[str, Any]]
    ) -> PlatformMetrics:
        with unexpected_shape(self.slug):
            entities = [e for job in jobs for e in results[job.id]["data"] if e.get("id") == post_id]
            if not entities:
                raise NotFound(f"x: no stats rows for promoted tweet {post_id!r} (yet)")
            metrics = [segment["metrics"] for entity in entities for segment in entity["id_data"]]
            return PlatformMetrics(
                views=sum_counts(_series(m.get("impressions"), "impressions") for m in metrics),
                clicks=sum_counts(_series(m.get("url_clicks"), "url_clicks") for m in metrics),
                conversions=sum_counts(_purchases(m.get("conversion_purchases")) for m in metrics),
                raw={
                    "created_at": isoformat_z(created),
                    "jobs": [{"id": j.id, "start_time": j.start_time, "end_time": j.end_time} for j in jobs],
                    "data": entities,
                },
            )

    # --- the calls ----------------------------------------------------------------------------------

    def _signed(self, keys: Mapping[str, str], method: str, url: str, params: Mapping[str, str] | None = None) -> Any:
        return call_api(
            self.config, method, url, platform=self.slug, params=params, auth=oauth1(keys), retry_hint=x_retry_hint
        )

    def _created_at(self, keys: Mapping[str, str], post_ids: list[str]) -> dict[str, datetime]:
        """Each known promoted tweet's creation; an unknown one is absent (a single unknown id: X's 404)."""
        account = keys["account_id"]
        if len(post_ids) == 1:
            url = endpoint(self.config, API_VERSION, "accounts", account, "promoted_tweets", post_ids[0])
            try:
                body = self._signed(keys, "GET", url)
            except NotFound:
                return {}
            with unexpected_shape(self.slug):
                return {post_ids[0]: _parse_time(body["data"]["created_at"])}
        url = endpoint(self.config, API_VERSION, "accounts", account, "promoted_tweets")
        body = self._signed(keys, "GET", url, {"promoted_tweet_ids": ",".join(post_ids)})
        with unexpected_shape(self.slug):
            return {str(item["id"]): _parse_time(item["created_at"]) for item in body["data"]}

    def _reusable_jobs(
        self, keys: Mapping[str, str], jobs_url: str, post_ids: list[str]
    ) -> dict[tuple[str, str], dict[str, _Job]]:
        """Jobs an earlier attempt created, by window and by the tweets they cover."""
        body = self._signed(keys, "GET", jobs_url, {"count": "1000"})
        found: dict[tuple[str, str], dict[str, _Job]] = {}
        with unexpected_shape(self.slug):
            for data in body["data"]:
                covered = [post_id for post_id in post_ids if _same_request(data, post_id)]
                if not covered:
                    continue
                job = _job(data)
                if job.status in _DEAD_JOB_STATES:
                    continue
                by_post = found.setdefault((job.start_time, job.end_time), {})
                for post_id in covered:
                    # Prefer a finished job; among equals the list's order (newest first) decides.
                    if post_id not in by_post or (job.ready and not by_post[post_id].ready):
                        by_post[post_id] = job
        return found

    def _create_job(self, keys: Mapping[str, str], jobs_url: str, post_ids: list[str], start: str, end: str) -> _Job:
        params = {
            "entity": "PROMOTED_TWEET",
            "entity_ids": ",".join(post_ids),
            "start_time": start,
            "end_time": end,
            "granularity": "TOTAL",
            "placement": "ALL_ON_TWITTER",
            "metric_groups": ",".join(METRIC_GROUPS),
        }
        body = self._signed(keys, "POST", jobs_url, params)
        with unexpected_shape(self.slug):
            return _job(body["data"])

    def _poll(self, keys: Mapping[str, str], jobs_url: str, job_ids: list[str]) -> dict[str, _Job]:
        body = self._signed(keys, "GET", jobs_url, {"job_ids": ",".join(job_ids)})
        with unexpected_shape(self.slug):
            return {job.id: job for job in map(_job, body["data"])}

    def _result(self, job: _Job) -> dict[str, Any]:
        assert job.url is not None
        if not self._trusted_file_url(job.url):
            raise FetchError(f"x: job {job.id} result is at an unexpected host; not downloaded")
        content = download(self.config, job.url, platform=self.slug)
        try:
            if content[:2] == b"\x1f\x8b":
                content = gzip.decompress(content)
            body = json.loads(content.decode("utf-8"))
        except (OSError, EOFError, ValueError) as exc:
            raise FetchError(f"x: job {job.id} result is not gzipped JSON ({type(exc).__name__})") from exc
        if not isinstance(body, dict):
            raise FetchError(f"x: job {job.id} result is not a JSON object")
        return body

    def _trusted_file_url(self, url: str) -> bool:
        parts, api = urlsplit(url), urlsplit(self.config.base_url)
        if parts.username or parts.password:
            return False
        if parts.scheme == "https" and parts.hostname == RESULT_FILE_HOST and parts.port in (None, 443):
            return True
        return (parts.scheme, parts.netloc) == (api.scheme, api.netloc)


def lifetime_windows(created: datetime, end: datetime) -> list[tuple[str, str]]:
    """``[created, end)`` in whole hours, cut into job windows of at most :data:`MAX_JOB_WINDOW`."""
    start = created.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = min(start, end - timedelta(hours=1))
    windows = []
    while start < end:
        stop = min(start + MAX_JOB_WINDOW, end)
        windows.append((isoformat_z(start), isoformat_z(stop)))
        start = stop
    return windows


def _parse_time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _same_request(data: Mapping[str, Any], post_id: str) -> bool:
    return (
        data.get("entity") == "PROMOTED_TWEET"
        and post_id in list(data.get("entity_ids") or [])
        and data.get("granularity") == "TOTAL"
        and data.get("placement") == "ALL_ON_TWITTER"
        and data.get("segmentation_type") is None
        and set(data.get("metric_groups") or []) == set(METRIC_GROUPS)
    )


def _job(data: Mapping[str, Any]) -> _Job:
    return _Job(
        id=str(data.get("id_str") or data["id"]),
        start_time=isoformat_z(_parse_time(data["start_time"])),
        end_time=isoformat_z(_parse_time(data["end_time"])),
        status=str(data.get("status") or ""),
        url=data.get("url") or None,
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


# --- OAuth 1.0a --------------------------------------------------------------------------------------------


def oauth1(keys: Mapping[str, str], **client_options: Any) -> OAuth1:
    """requests' auth for X's OAuth 1.0a user context: HMAC-SHA1 in the ``Authorization`` header.

    requests-oauthlib signs each prepared request (method, URL without query, query and form parameters;
    RFC 5849 §3.4.1) with a fresh nonce and timestamp; ``client_options`` (``nonce``, ``timestamp``) are
    oauthlib's and only a test fixes them.
    """
    return OAuth1(
        keys["consumer_key"],
        client_secret=keys["consumer_secret"],
        resource_owner_key=keys["access_token"],
        resource_owner_secret=keys["access_token_secret"],
        signature_method=SIGNATURE_HMAC_SHA1,
        signature_type=SIGNATURE_TYPE_AUTH_HEADER,
        **client_options,
    )
