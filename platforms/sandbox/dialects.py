"""How each platform's reporting API looks on the wire, as the sandbox answers it.

One :class:`Dialect` per platform: which request it accepts (method, path, parameters, credential
header), and its success, not-found, throttle and error envelopes. The shapes mirror the documented
APIs the adapters call (see each adapter module's docstring); numbers are derived from the post's
:class:`~platforms.sandbox.state.Metrics`, with None meaning "the platform omits this field".

The sandbox checks that a credential is present and is not the literal ``invalid``; it never verifies
signatures or account ids, so any non-empty values work.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote

from platforms.sandbox.state import PostState, SandboxState

INVALID_TOKEN = "invalid"
SANDBOX_TOKEN = "sandbox-token"

#: Credentials each adapter needs to talk to the sandbox; every ``*token`` key is checked.
SANDBOX_CREDENTIALS: dict[str, dict[str, str]] = {
    "reddit": {"access_token": SANDBOX_TOKEN, "ad_account_id": "a2_sandbox"},
    "instagram": {"access_token": SANDBOX_TOKEN},
    "tiktok": {"access_token": SANDBOX_TOKEN, "advertiser_id": "7000000000000000001"},
    "youtube": {"developer_token": SANDBOX_TOKEN, "access_token": SANDBOX_TOKEN, "customer_id": "1234567890"},
    "x": {
        "consumer_key": "sandbox-consumer-key",
        "consumer_secret": "sandbox-consumer-secret",
        "access_token": SANDBOX_TOKEN,
        "access_token_secret": "sandbox-token-secret",
        "account_id": "18ce54d4x5t",
    },
    "meta": {"access_token": SANDBOX_TOKEN},
}


def sandbox_credentials(slug: str, token: str = SANDBOX_TOKEN) -> dict[str, str]:
    """Working sandbox credentials for ``slug``; ``token="invalid"`` makes the sandbox refuse them."""
    return {k: (token if k.endswith("token") else v) for k, v in SANDBOX_CREDENTIALS[slug].items()}


def token_ok(token: str | None) -> bool:
    return bool(token) and token != INVALID_TOKEN


@dataclass(frozen=True)
class ApiRequest:
    method: str
    #: The path after the ``/<slug>`` prefix, starting with "/".
    path: str
    query: Mapping[str, list[str]]
    headers: Message  # the handler's parsed headers: case-insensitive .get()
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def bearer(self, *schemes: str) -> str | None:
        value = self.header("Authorization") or ""
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() in (schemes or ("bearer",)) else None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: A file download (X's gzipped job results) instead of a JSON body.
    content: bytes | None = None
    content_type: str = "application/json; charset=utf-8"

    def encode(self, *, malformed: bool = False) -> bytes:
        if self.content is not None:
            return self.content
        data = json.dumps(self.body, separators=(",", ":")).encode()
        if malformed:
            # Cut inside the top-level object: the closing brace is gone, so this can never parse.
            return data[: max(1, len(data) // 2)]
        return data


def _request_id() -> str:
    return uuid.uuid4().hex


def _derived(value: int | None, ratio: float) -> int | None:
    return None if value is None else int(value * ratio)


#: Returned by :meth:`Dialect.route` for calls about the account rather than one post (X's job list and
#: result files); the server then answers them with :meth:`Dialect.account_call`.
ACCOUNT = object()

_WHOLE_LIFETIME = (-math.inf, math.inf)


@dataclass(frozen=True)
class Batch:
    """Returned by :meth:`Dialect.route` for a request about several posts (the platform's batch form); the
    server looks each post up and answers with :meth:`Dialect.batch`."""

    post_ids: tuple[str, ...]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Dialect:
    slug: ClassVar[str]

    def authenticate(self, request: ApiRequest) -> Reply | None:
        """None when the request carries an acceptable credential, else the platform's refusal."""
        raise NotImplementedError

    def route(self, request: ApiRequest) -> str | Reply | object:
        """The post id the request asks about, :data:`ACCOUNT`, or the error the platform gives a malformed
        request."""
        raise NotImplementedError

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        """The platform's answer for a post it knows, over the time range the request asks for."""
        raise NotImplementedError

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        """The platform's answer for a post it knows but whose report has no rows yet (reporting lag)."""
        raise NotImplementedError

    def not_found(self, request: ApiRequest, post_id: str) -> Reply:
        raise NotImplementedError

    def account_call(self, request: ApiRequest, state: SandboxState) -> Reply:
        """Answer a call :meth:`route` marked :data:`ACCOUNT`; only platforms with such calls override it."""
        raise NotImplementedError

    def route_batch(self, request: ApiRequest) -> Batch | Reply | None:
        """For APIs whose batch form is a request of its own (Graph's batch requests): its posts, or None when
        ``request`` is not one. Report-shaped APIs return their :class:`Batch` from :meth:`route`."""
        return None

    def batch(self, request: ApiRequest, posts: Mapping[str, PostState], state: SandboxState) -> Reply:
        """Answer a :class:`Batch` request. Report-shaped APIs list a row per known post with data and leave
        the others out; they only say where the rows live (:meth:`_rows`, :meth:`_with_rows`)."""
        rows: list[Any] = []
        for post_id, post in posts.items():
            if post.exists and not post.empty:
                rows.extend(self._rows(self.success(request, post_id, post, state).body))
        return self._with_rows(request, rows)

    def _rows(self, body: Any) -> list[Any]:
        raise NotImplementedError

    def _with_rows(self, request: ApiRequest, rows: list[Any]) -> Reply:
        raise NotImplementedError

    def throttled(self, retry_after: float) -> Reply:
        """The platform's own throttle signal; every variant also carries a standard Retry-After."""
        raise NotImplementedError

    def error(self, status: int) -> Reply:
        """An answer with this HTTP status in the platform's error envelope."""
        raise NotImplementedError


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(math.ceil(seconds))}


# --- Graph API: meta (Marketing API insights) and instagram (media insights) ----------------------------


class _GraphDialect(Dialect):
    _PATH = re.compile(r"^/v\d+\.\d+/(?P<id>[^/]+)/insights/?$")
    _THROTTLE_CODE: ClassVar[int]
    _BUC_TYPE: ClassVar[str]

    def authenticate(self, request: ApiRequest) -> Reply | None:
        token = request.bearer("bearer", "oauth") or request.param("access_token")
        if token_ok(token):
            return None
        message = (
            "Invalid OAuth access token - Cannot parse access token"
            if token
            else ("An active access token must be used to query information about the current user.")
        )
        # Graph refuses tokens with HTTP 400 and code 190, plus a WWW-Authenticate header.
        reply = self._graph_error(400, 190, message)
        reply.headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{message}"'
        return reply

    def _graph_error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        type_: str = "OAuthException",
        transient: bool = False,
    ) -> Reply:
        error: dict[str, Any] = {"message": message, "type": type_, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        if transient:
            error["is_transient"] = True
        error["fbtrace_id"] = uuid.uuid4().hex[:11]
        return Reply(status, {"error": error}, {"x-fb-trace-id": error["fbtrace_id"]})

    def not_found(self, request: ApiRequest, post_id: str) -> Reply:
        return self._graph_error(
            400,
            100,
            f"Unsupported get request. Object with ID '{post_id}' does not exist, cannot be loaded due to missing "
            "permissions, or does not support this operation. Please read the Graph API documentation at "
            "https://developers.facebook.com/docs/graph-api",
            subcode=33,
            type_="GraphMethodException",
        )

    def throttled(self, retry_after: float) -> Reply:
        reply = self._graph_error(400, self._THROTTLE_CODE, self._throttle_message(), subcode=2446079, transient=True)
        reply.headers.update(self._usage_headers(regain_minutes=math.ceil(retry_after / 60), pct=100))
        reply.headers.update(retry_after_header(retry_after))
        return reply

    def _throttle_message(self) -> str:
        raise NotImplementedError

    def error(self, status: int) -> Reply:
        if status in (401, 403):
            return self._graph_error(status, 190 if status == 401 else 200, "Permissions error")
        if status == 404:
            return self._graph_error(status, 100, "Unsupported get request.", subcode=33, type_="GraphMethodException")
        if status == 429:
            return self._graph_error(status, 4, "(#4) Application request limit reached", transient=True)
        if status >= 500:
            return self._graph_error(
                status, 2, "An unexpected error has occurred. Please retry your request later.", transient=True
            )
        return self._graph_error(status, 1, "An unknown error occurred", transient=False)

    def _usage_headers(self, *, regain_minutes: int = 0, pct: int = 1) -> dict[str, str]:
        usage = {
            "1234567890": [
                {
                    "type": self._BUC_TYPE,
                    "call_count": pct,
                    "total_cputime": pct,
                    "total_time": pct,
                    "estimated_time_to_regain_access": regain_minutes,
                }
            ]
        }
        return {"x-business-use-case-usage": json.dumps(usage), "x-fb-request-id": uuid.uuid4().hex[:16]}

    def _post_id(self, request: ApiRequest) -> str | None:
        if request.method != "GET":
            return None
        match = self._PATH.match(request.path)
        return unquote(match.group("id")) if match else None

    _BATCH_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/?$")
    #: The Graph API's limit on sub-requests per batch.
    MAX_BATCH = 50

    def _sub_requests(self, request: ApiRequest) -> list[ApiRequest] | Reply:
        """The GET sub-requests of a batch request (``POST /<version>/`` with ``batch=[...]``)."""
        version = self._BATCH_PATH.match(request.path)
        assert version is not None
        try:
            batch = (request.json() or {})["batch"]
            if isinstance(batch, str):  # form-encoded callers send the list as JSON text
                batch = json.loads(batch)
            if not isinstance(batch, list) or not batch:
                raise ValueError("batch must be a non-empty list")
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._graph_error(400, 100, "(#100) The parameter batch is required and must be a JSON list")
        if len(batch) > self.MAX_BATCH:
            return self._graph_error(400, 1, f"(#1) Batch requests cannot exceed {self.MAX_BATCH} requests")
        subs = []
        for item in batch:
            if not isinstance(item, dict) or str(item.get("method", "GET")).upper() != "GET":
                return self._graph_error(400, 100, "(#100) This sandbox answers GET sub-requests only")
            relative = str(item.get("relative_url", "")).lstrip("/")
            path, _, query = relative.partition("?")
            subs.append(
                ApiRequest(
                    method="GET",
                    path=f"/{version.group('version')}/{path}",
                    query=parse_qs(query, keep_blank_values=True),
                    headers=request.headers,
                    body=b"",
                )
            )
        return subs

    def route_batch(self, request: ApiRequest) -> Batch | Reply | None:
        """A batch request's post ids; None when ``request`` is not a batch request."""
        if request.method != "POST" or not self._BATCH_PATH.match(request.path):
            return None
        subs = self._sub_requests(request)
        if isinstance(subs, Reply):
            return subs
        ids = []
        for sub in subs:
            routed = self.route(sub)
            ids.append(routed if isinstance(routed, str) else "")
        return Batch(tuple(ids))

    def batch(self, request: ApiRequest, posts: Mapping[str, PostState], state: SandboxState) -> Reply:
        # Every sub-request is answered as a call of its own, in order: {"code", "headers", "body": JSON text}.
        subs = self._sub_requests(request)
        assert isinstance(subs, list)
        answers = []
        for sub in subs:
            routed = self.route(sub)
            if isinstance(routed, Reply):
                reply = routed
            else:
                assert isinstance(routed, str)
                post = posts[routed]
                if not post.exists:
                    reply = self.not_found(sub, routed)
                elif post.empty:
                    reply = self.empty(sub, routed, post, state)
                else:
                    reply = self.success(sub, routed, post, state)
            headers = [{"name": k, "value": v} for k, v in reply.headers.items()]
            answers.append({"code": reply.status, "headers": headers, "body": json.dumps(reply.body)})
        return Reply(200, answers, self._usage_headers(pct=len(answers)))

    def _unsupported(self, request: ApiRequest) -> Reply:
        return self._graph_error(
            400, 100, f"Unsupported {request.method.lower()} request.", type_="GraphMethodException"
        )


class MetaDialect(_GraphDialect):
    slug = "meta"
    _THROTTLE_CODE = 80000
    _BUC_TYPE = "ads_insights"
    FIELDS = frozenset(
        {
            "impressions",
            "clicks",
            "actions",
            "reach",
            "spend",
            "inline_link_clicks",
            "ctr",
            "cpc",
            "cpm",
            "frequency",
            "date_start",
            "date_stop",
            "ad_id",
            "ad_name",
        }
    )

    def _throttle_message(self) -> str:
        return (
            "There have been too many calls from this ad-account. Wait a bit and try again. For more info, please "
            "refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting#ads-management."
        )

    def _fields(self, request: ApiRequest) -> list[str]:
        return [f.strip() for f in (request.param("fields") or "").split(",") if f.strip()]

    def route(self, request: ApiRequest) -> str | Reply:
        post_id = self._post_id(request)
        if post_id is None:
            return self._unsupported(request)
        for name in self._fields(request):
            if name not in self.FIELDS:
                return self._graph_error(
                    400,
                    100,
                    f"(#100) {name} is not valid for fields param. please check "
                    "https://developers.facebook.com/docs/marketing-api/reference/ads-insights/ for all valid values",
                )
        if self._window(request, 0.0) is None:
            return self._graph_error(400, 100, f"(#100) date_preset must be one of {', '.join(self.PRESETS)}")
        return post_id

    #: ``date_preset`` values the sandbox models; without one Meta reports the last 30 days.
    PRESETS = ("maximum", "lifetime", "today", "last_7d", "last_14d", "last_28d", "last_30d", "last_90d")

    def _window(self, request: ApiRequest, now: float) -> tuple[float, float] | None:
        preset = request.param("date_preset") or "last_30d"
        if preset in ("maximum", "lifetime"):
            return _WHOLE_LIFETIME
        if preset == "today":
            return (now - now % 86_400, math.inf)
        match = re.fullmatch(r"last_(\d+)d", preset)
        if preset not in self.PRESETS or match is None:
            return None
        return (now - int(match.group(1)) * 86_400, math.inf)

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        # The ad exists but has no delivery yet, or the insights lag behind it: Meta returns no row.
        return Reply(200, {"data": [], "paging": {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}})

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        window = self._window(request, post.now) or _WHOLE_LIFETIME
        metrics = post.between(*window)
        fields = set(self._fields(request)) or {"impressions", "spend"}
        values: dict[str, int | None] = {
            "impressions": metrics.views,
            "reach": _derived(metrics.views, 0.71),
            "clicks": metrics.clicks,
            "inline_link_clicks": _derived(metrics.clicks, 0.85),
        }
        row: dict[str, Any] = {k: str(v) for k, v in values.items() if k in fields and v is not None}
        if "spend" in fields and metrics.views is not None:
            row["spend"] = f"{metrics.views * 0.0042:.2f}"
        if "actions" in fields and metrics.conversions is not None:
            # Meta lists only action types with a non-zero count, all values as strings.
            actions = []
            if metrics.clicks:
                actions.append({"action_type": "link_click", "value": str(int(metrics.clicks * 0.85))})
            if metrics.conversions:
                for action_type in ("offsite_conversion.fb_pixel_purchase", "purchase", "omni_purchase"):
                    actions.append({"action_type": action_type, "value": str(metrics.conversions)})
            row["actions"] = actions
        today = datetime.now(UTC).date()
        row["date_start"] = (today - timedelta(days=30)).isoformat()
        row["date_stop"] = today.isoformat()
        body = {"data": [row], "paging": {"cursors": {"before": "MAZDZD", "after": "MAZDZD"}}}
        headers = self._usage_headers()
        headers["x-fb-ads-insights-throttle"] = json.dumps(
            {"app_id_util_pct": 0.5, "acc_id_util_pct": 1.0, "ads_api_access_tier": "standard_access"}
        )
        return Reply(200, body, headers)


class InstagramDialect(_GraphDialect):
    slug = "instagram"
    _THROTTLE_CODE = 4
    _BUC_TYPE = "instagram"
    METRICS = (
        "views",
        "reach",
        "likes",
        "comments",
        "shares",
        "saved",
        "total_interactions",
        "profile_visits",
        "profile_activity",
        "follows",
        "impressions",
    )
    _RATIOS = {
        "reach": 0.62,
        "likes": 0.03,
        "comments": 0.003,
        "shares": 0.004,
        "saved": 0.006,
        "total_interactions": 0.045,
        "profile_visits": 0.01,
        "profile_activity": 0.002,
        "follows": 0.001,
        "impressions": 1.1,
    }

    def _throttle_message(self) -> str:
        return "(#4) Application request limit reached"

    def _metrics(self, request: ApiRequest) -> list[str]:
        return [m.strip() for m in (request.param("metric") or "").split(",") if m.strip()]

    def route(self, request: ApiRequest) -> str | Reply:
        post_id = self._post_id(request)
        if post_id is None:
            return self._unsupported(request)
        requested = self._metrics(request)
        if not requested:
            return self._graph_error(400, 100, "(#100) The parameter metric is required")
        for index, name in enumerate(requested):
            if name not in self.METRICS:
                return self._graph_error(
                    400, 100, f"(#100) metric[{index}] must be one of the following values: {', '.join(self.METRICS)}"
                )
        return post_id

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        return Reply(200, {"data": []}, self._usage_headers())

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        # Organic media insights have no clicks or conversions; everything derives from views. They are
        # lifetime figures (``period: lifetime``): no time range to apply.
        metrics = post.metrics
        data = []
        for name in self._metrics(request):
            # With views omitted the other insights are still reported (derived from a zero base).
            value = metrics.views if name == "views" else _derived(metrics.views or 0, self._RATIOS[name])
            if value is None:
                continue
            data.append(
                {
                    "name": name,
                    "period": "lifetime",
                    "values": [{"value": value}],
                    "title": name.replace("_", " ").capitalize(),
                    "description": f"The number of {name.replace('_', ' ')} of the media.",
                    "id": f"{post_id}/insights/{name}/lifetime",
                }
            )
        headers = self._usage_headers()
        headers["x-app-usage"] = json.dumps({"call_count": 1, "total_cputime": 1, "total_time": 1})
        return Reply(200, {"data": data}, headers)


# --- TikTok API for Business ---------------------------------------------------------------------------


class TikTokDialect(Dialect):
    slug = "tiktok"
    MAX_IDS = 100
    _PATH = re.compile(r"^/open_api/v1\.3/report/integrated/get/?$")
    METRICS = frozenset({"video_play_actions", "impressions", "clicks", "conversion", "spend", "reach", "ctr"})

    def _envelope(self, status: int, code: int, message: str, data: Any = None) -> Reply:
        request_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:18].upper()
        body = {"code": code, "message": message, "request_id": request_id, "data": data if data is not None else {}}
        return Reply(status, body, {"X-Tt-Logid": request_id})

    def authenticate(self, request: ApiRequest) -> Reply | None:
        token = request.header("Access-Token")
        if token_ok(token):
            return None
        # TikTok answers HTTP 200 and puts the refusal in ``code``.
        if not token:
            return self._envelope(200, 40104, "Access token is null, you should set it in http header 'Access-Token'.")
        return self._envelope(200, 40105, "Access token is incorrect or has been revoked.")

    def _json_param(self, request: ApiRequest, name: str) -> Any:
        raw = request.param(name)
        if raw is None:
            raise ValueError(f"{name}: Missing data for required field.")
        try:
            return json.loads(raw)
        except ValueError:
            raise ValueError(f"{name}: Not a valid JSON.") from None

    def route(self, request: ApiRequest) -> str | Reply | Batch:
        if request.method != "GET" or not self._PATH.match(request.path):
            return self._envelope(404 if request.method == "GET" else 405, 40002, "Unsupported API path or method.")
        try:
            if not request.param("advertiser_id"):
                raise ValueError("advertiser_id: Missing data for required field.")
            if request.param("report_type") != "BASIC":
                raise ValueError("report_type: Not a valid choice.")
            if "ad_id" not in (self._json_param(request, "dimensions") or []):
                raise ValueError("dimensions: ad_id is required for data_level AUCTION_AD.")
            unknown = set(self._json_param(request, "metrics")) - self.METRICS
            if unknown:
                raise ValueError(f"metrics: Invalid metrics {sorted(unknown)}.")
            self._window(request)
            for item in self._json_param(request, "filtering"):
                if item.get("field_name") == "ad_ids":
                    value = item.get("filter_value")
                    ids = json.loads(value) if isinstance(value, str) else value
                    if len(ids or []) > self.MAX_IDS:
                        raise ValueError(f"filtering: ad_ids takes at most {self.MAX_IDS} ids.")
                    if ids and len(ids) == 1:
                        return str(ids[0])
                    if ids:
                        return Batch(tuple(str(i) for i in ids))
            raise ValueError("filtering: ad_ids filter is required.")
        except (ValueError, TypeError, AttributeError) as exc:
            return self._envelope(200, 40002, str(exc))

    def _page(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "list": rows,
            "page_info": {"page": 1, "page_size": 10, "total_number": len(rows), "total_page": 1 if rows else 0},
        }

    def _rows(self, body: Any) -> list[Any]:
        return list(body["data"]["list"])

    def _with_rows(self, request: ApiRequest, rows: list[Any]) -> Reply:
        return self._envelope(200, 0, "OK", self._page(rows))

    def _window(self, request: ApiRequest) -> tuple[float, float]:
        """``query_lifetime=true``: the ad's lifetime; otherwise ``start_date``..``end_date`` (whole days)."""
        if request.param("query_lifetime") == "true":
            return _WHOLE_LIFETIME
        start, end = request.param("start_date"), request.param("end_date")
        if not start or not end:
            raise ValueError("start_date: Missing data for required field (or set query_lifetime).")
        return (_epoch(start + "T00:00:00Z"), _epoch(end + "T00:00:00Z") + 86_400)

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        return self._envelope(200, 0, "OK", self._page([]))

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        metrics = post.between(*self._window(request))
        values: dict[str, int | None] = {
            "video_play_actions": metrics.views,
            "impressions": _derived(metrics.views, 1.35),
            "reach": _derived(metrics.views, 0.8),
            "clicks": metrics.clicks,
            "conversion": metrics.conversions,
        }
        row_metrics: dict[str, str] = {}
        for name in self._json_param(request, "metrics"):
            if name == "spend" and metrics.views is not None:
                row_metrics[name] = f"{metrics.views * 0.003:.2f}"
            elif values.get(name) is not None:
                row_metrics[name] = str(values[name])  # TikTok sends every metric as a string
        row = {"dimensions": {"ad_id": post_id}, "metrics": row_metrics}
        return self._envelope(200, 0, "OK", self._page([row]))

    def not_found(self, request: ApiRequest, post_id: str) -> Reply:
        return self._envelope(200, 0, "OK", self._page([]))

    def throttled(self, retry_after: float) -> Reply:
        reply = self._envelope(200, 40100, "Too many requests. Please retry in some time.")
        reply.headers.update(retry_after_header(retry_after))
        return reply

    def error(self, status: int) -> Reply:
        code = {401: 40105, 403: 40001, 429: 40100}.get(status, 50000 if status >= 500 else 40002)
        message = "System error. Please retry later." if status >= 500 else "Request failed."
        return self._envelope(status, code, message)


# --- Reddit Ads API v3 ---------------------------------------------------------------------------------


class RedditDialect(Dialect):
    slug = "reddit"
    _PATH = re.compile(r"^/api/v3/ad_accounts/(?P<account>[^/]+)/reports/?$")
    _FILTER = re.compile(r"^ad:id==(?P<id>[^,\s]+)(?:,ad:id==[^,\s]+)*$")
    _FILTER_ID = re.compile(r"ad:id==([^,\s]+)")
    MAX_IDS = 100
    FIELDS = frozenset(
        {
            "IMPRESSIONS",
            "CLICKS",
            "KEY_CONVERSION_TOTAL_COUNT",
            "REACH",
            "SPEND",
            "CTR",
            "CPC",
            "ECPM",
            "VIDEO_STARTED",
            "CONVERSION_PURCHASE_CLICKS",
            "CONVERSION_PURCHASE_VIEWS",
        }
    )

    def _error(self, status: int, message: str, extra: Mapping[str, Any] | None = None) -> Reply:
        return Reply(status, {"error": {"code": status, "message": message, **(extra or {})}})

    def authenticate(self, request: ApiRequest) -> Reply | None:
        if token_ok(request.bearer()):
            return None
        reply = self._error(401, "Unauthorized")
        reply.headers["WWW-Authenticate"] = 'Bearer realm="reddit", error="invalid_token"'
        return reply

    def route(self, request: ApiRequest) -> str | Reply | Batch:
        if request.method != "POST" or not self._PATH.match(request.path):
            return self._error(405 if self._PATH.match(request.path) else 404, "Not Found")
        try:
            spec = request.json()["data"]
            fields = spec["fields"]
            unknown = [f for f in fields if f not in self.FIELDS]
            if unknown:
                return self._error(400, "Invalid field", {"fields": unknown})
            if "AD_ID" not in spec.get("breakdowns", []):
                return self._error(400, "breakdowns must include AD_ID to filter by ad")
            for key in ("starts_at", "ends_at"):
                datetime.fromisoformat(spec[key].replace("Z", "+00:00"))
            expression = spec.get("filter", "")
            if self._FILTER.match(expression) is None:
                return self._error(400, "Invalid filter expression", {"fields": ["filter"]})
            ids = self._FILTER_ID.findall(expression)
            if len(ids) > self.MAX_IDS:
                return self._error(400, f"A filter takes at most {self.MAX_IDS} ids", {"fields": ["filter"]})
            return ids[0] if len(ids) == 1 else Batch(tuple(ids))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._error(400, f"Invalid request body: {exc}")

    def _headers(self, remaining: int = 59, reset: float = 60) -> dict[str, str]:
        return {
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(60 - remaining),
            "x-ratelimit-reset": str(math.ceil(reset)),
        }

    def _body(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        updated = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z")
        return {"data": {"metrics": rows, "metrics_updated_at": updated}, "pagination": {"next_url": None}}

    def _rows(self, body: Any) -> list[Any]:
        return list(body["data"]["metrics"])

    def _with_rows(self, request: ApiRequest, rows: list[Any]) -> Reply:
        return Reply(200, self._body(rows), self._headers())

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        return Reply(200, self._body([]), self._headers())

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        spec = request.json()["data"]
        # Reddit reports exactly the requested range: a look-back shorter than the ad's life misses the start.
        metrics = post.between(_epoch(spec["starts_at"]), _epoch(spec["ends_at"]))
        values: dict[str, int | None] = {
            "IMPRESSIONS": metrics.views,
            "REACH": _derived(metrics.views, 0.6),
            "VIDEO_STARTED": _derived(metrics.views, 0.4),
            "CLICKS": metrics.clicks,
            "KEY_CONVERSION_TOTAL_COUNT": metrics.conversions,
            "CONVERSION_PURCHASE_CLICKS": metrics.conversions,
            "CONVERSION_PURCHASE_VIEWS": 0 if metrics.conversions is not None else None,
            "SPEND": _derived(metrics.views, 3_500),  # microcurrency
        }
        row: dict[str, Any] = {"ad_id": post_id}
        for name in request.json()["data"]["fields"]:
            if values.get(name) is not None:
                row[name.lower()] = values[name]  # requested upper-case, returned lower-case
        return Reply(200, self._body([row]), self._headers())

    def not_found(self, request: ApiRequest, post_id: str) -> Reply:
        return Reply(200, self._body([]), self._headers())

    def throttled(self, retry_after: float) -> Reply:
        reply = self._error(429, "Too Many Requests")
        reply.headers.update(self._headers(remaining=0, reset=retry_after))
        reply.headers.update(retry_after_header(retry_after))
        return reply

    def error(self, status: int) -> Reply:
        messages = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}
        return self._error(status, messages.get(status, "Internal Server Error" if status >= 500 else "Bad Request"))


# --- X Ads API -----------------------------------------------------------------------------------------


class XDialect(Dialect):
    """X Ads API: the synchronous stats endpoint (7-day windows) and the asynchronous analytics jobs.

    Jobs (https://developer.x.com/en/docs/x-ads-api/analytics/guides/asynchronous-analytics): ``POST
    stats/jobs/accounts/<account>`` with the synchronous endpoint's parameters (windows up to 90 days)
    answers the job with ``"status": "PROCESSING"`` and ``"url": null``; ``GET stats/jobs/accounts/<account>
    [?job_ids=...]`` lists jobs, ``SUCCESS`` with a ``url`` once done (after the ``job_seconds`` fault);
    the ``url`` is a gzipped JSON file in the synchronous response's schema, fetched without OAuth (on X
    it is a CDN, ton.twimg.com; here ``/x/ton/...`` on the sandbox). ``GET accounts/<account>/
    promoted_tweets/<id>`` gives the promoted tweet, with its ``created_at``.
    """

    slug = "x"
    _PATH = re.compile(r"^/12/stats/accounts/(?P<account>[^/]+)/?$")
    _JOBS = re.compile(r"^/12/stats/jobs/accounts/(?P<account>[^/]+)/?$")
    _ENTITY = re.compile(r"^/12/accounts/(?P<account>[^/]+)/promoted_tweets/(?P<id>[^/]+)/?$")
    _ENTITIES = re.compile(r"^/12/accounts/(?P<account>[^/]+)/promoted_tweets/?$")
    #: ``entity_ids`` per analytics job, and ``promoted_tweet_ids`` per lookup, as X limits them.
    MAX_JOB_ENTITIES = 20
    MAX_LOOKUP_IDS = 200
    _FILE = re.compile(r"^/ton/advertiser-api-async-analytics/stats_job_(?P<job>\d+)\.json\.gz$")
    _OAUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')
    REQUIRED = ("entity", "entity_ids", "start_time", "end_time", "granularity", "placement", "metric_groups")
    METRIC_GROUPS = frozenset({"ENGAGEMENT", "BILLING", "WEB_CONVERSION", "VIDEO", "MEDIA", "MOBILE_CONVERSION"})
    SYNC_MAX_DAYS = 7
    ASYNC_MAX_DAYS = 90
    _CODES = {
        400: "INVALID_PARAMETER",
        401: "UNAUTHORIZED_ACCESS",
        403: "UNAUTHORIZED_CLIENT_APPLICATION",
        404: "NOT_FOUND",
        429: "TOO_MANY_REQUESTS",
        503: "SERVICE_UNAVAILABLE",
    }

    def _error(self, status: int, code: str, message: str, **extra: str) -> Reply:
        return Reply(status, {"errors": [{"code": code, "message": message, **extra}], "request": {"params": {}}})

    def authenticate(self, request: ApiRequest) -> Reply | None:
        if self._FILE.match(request.path):
            return None  # result files are pre-signed CDN downloads: no OAuth
        header = request.header("Authorization") or ""
        if header.startswith("OAuth "):
            oauth = {k: unquote(v) for k, v in self._OAUTH_PARAM.findall(header)}
            required = ("oauth_consumer_key", "oauth_signature", "oauth_signature_method", "oauth_timestamp")
            if all(oauth.get(k) for k in required) and token_ok(oauth.get("oauth_token")):
                return None
        return self._error(401, "UNAUTHORIZED_ACCESS", "This request is not properly authenticated")

    def route(self, request: ApiRequest) -> str | Reply | object:
        path = request.path
        if request.method == "GET" and (match := self._ENTITY.match(path)):
            return unquote(match.group("id"))
        if request.method == "GET" and self._ENTITIES.match(path):
            ids = [i for i in (request.param("promoted_tweet_ids") or "").split(",") if i]
            if not ids or len(ids) > self.MAX_LOOKUP_IDS:
                return self._error(
                    400,
                    "INVALID_PARAMETER",
                    f"promoted_tweet_ids takes 1 to {self.MAX_LOOKUP_IDS} ids",
                    parameter="promoted_tweet_ids",
                )
            return Batch(tuple(ids))
        if request.method == "GET" and (self._FILE.match(path) or self._JOBS.match(path)):
            return ACCOUNT
        if request.method == "POST" and self._JOBS.match(path):
            return self._stats_request(request, self.ASYNC_MAX_DAYS)
        if request.method == "GET" and self._PATH.match(path):
            return self._stats_request(request, self.SYNC_MAX_DAYS)
        return self._error(404, "ROUTE_NOT_FOUND", "Sorry, that page does not exist")

    def _stats_request(self, request: ApiRequest, max_days: int) -> str | Reply | Batch:
        for name in self.REQUIRED:
            if not request.param(name):
                return self._error(400, "MISSING_PARAMETER", f'"{name}" is a required parameter', parameter=name)
        if request.param("entity") != "PROMOTED_TWEET":
            return self._error(400, "INVALID_PARAMETER", "Expected PROMOTED_TWEET", parameter="entity")
        unknown = set(self._groups(self._params(request))) - self.METRIC_GROUPS
        if unknown:
            return self._error(
                400, "INVALID_PARAMETER", f"Unknown metric groups {sorted(unknown)}", parameter="metric_groups"
            )
        try:
            start, end = _epoch(request.param("start_time") or ""), _epoch(request.param("end_time") or "")
        except ValueError:
            return self._error(400, "INVALID_PARAMETER", "start_time and end_time must be ISO 8601 times")
        if start % 3600 or end % 3600:
            return self._error(400, "INVALID_PARAMETER", "TOTAL granularity needs whole hours", parameter="start_time")
        if not 0 < end - start <= max_days * 86_400:
            return self._error(
                400,
                "INVALID_PARAMETER",
                f"Time range must be positive and at most {max_days} days",
                parameter="end_time",
            )
        ids = [i for i in (request.param("entity_ids") or "").split(",") if i]
        if len(ids) > self.MAX_JOB_ENTITIES:
            return self._error(
                400, "INVALID_PARAMETER", f"At most {self.MAX_JOB_ENTITIES} entity_ids", parameter="entity_ids"
            )
        return ids[0] if len(ids) == 1 else Batch(tuple(ids))

    def batch(self, request: ApiRequest, posts: Mapping[str, PostState], state: SandboxState) -> Reply:
        if self._ENTITIES.match(request.path):
            # The promoted tweets X knows, in one list; unknown ids are simply not in it.
            found = [self._promoted_tweet(i, p)["data"] for i, p in posts.items() if p.exists]
            return Reply(200, {"request": {"params": {}}, "next_cursor": None, "data": found}, self._headers())
        params = self._params(request)
        if request.method == "POST":
            job = state.create_job(self.slug, next(iter(posts)), params)
            return Reply(
                200,
                {"request": {"params": self._echo(params)}, "data": self._job_json(request, state, job)},
                {"x-concurrent-job-limit": "100", "x-concurrent-job-limit-remaining": "99"},
            )
        body = self._stats(params, "", replace(next(iter(posts.values())), empty=True))
        for post_id, post in posts.items():
            if post.exists:
                body["data"] += self._stats(params, post_id, post)["data"]
        return Reply(200, body, self._headers())

    @staticmethod
    def _params(request: ApiRequest) -> dict[str, str]:
        return {k: v[0] for k, v in request.query.items() if v}

    @staticmethod
    def _groups(params: Mapping[str, str]) -> list[str]:
        return [g for g in (params.get("metric_groups") or "").split(",") if g]

    def _headers(self, remaining: int = 249, reset_in: float = 900) -> dict[str, str]:
        reset = str(math.ceil(time.time() + reset_in))
        return {
            "x-rate-limit-limit": "250",
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": reset,
            "x-account-rate-limit-limit": "2000",
            "x-account-rate-limit-remaining": str(remaining * 8),
            "x-account-rate-limit-reset": reset,
        }

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        # The promoted tweet exists; only its stats are empty (``_stats`` looks at ``post.empty``).
        return self.success(request, post_id, post, state)

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        params = self._params(request)
        if self._ENTITY.match(request.path):
            return Reply(200, self._promoted_tweet(post_id, post), self._headers())
        if request.method == "POST":
            job = state.create_job(self.slug, post_id, params)
            return Reply(
                200,
                {"request": {"params": self._echo(params)}, "data": self._job_json(request, state, job)},
                {"x-concurrent-job-limit": "100", "x-concurrent-job-limit-remaining": "99"},
            )
        return Reply(200, self._stats(params, post_id, post), self._headers())

    def _promoted_tweet(self, post_id: str, post: PostState) -> dict[str, Any]:
        created = _iso(post.created_at)
        return {
            "request": {"params": {"promoted_tweet_id": post_id}},
            "data": {
                "id": post_id,
                "tweet_id": post_id,
                "line_item_id": "sandbox-line-item",
                "entity_status": "ACTIVE",
                "approval_status": "ACCEPTED",
                "deleted": False,
                "created_at": created,
                "updated_at": created,
            },
        }

    def _stats(self, params: Mapping[str, str], post_id: str, post: PostState) -> dict[str, Any]:
        body: dict[str, Any] = {
            "data_type": "stats",
            "time_series_length": 1,
            "data": [],
            "request": {"params": self._echo(params)},
        }
        if post.empty:
            return body
        metrics = post.between(_epoch(params["start_time"]), _epoch(params["end_time"]))

        def series(value: int | None) -> list[int] | None:
            return None if value is None else [value]  # one bucket for granularity=TOTAL

        def conversion(value: int | None) -> dict[str, list[int] | None] | None:
            if value is None:
                return None
            return {
                "metric": [value],
                "assisted": [value // 3],
                "post_engagement": [value - value // 4],
                "post_view": [value // 4],
                "order_quantity": [value],
                "sale_amount": [value * 25_000_000],
            }

        groups = set(self._groups(params))
        m: dict[str, Any] = {}
        if "ENGAGEMENT" in groups:
            m.update(
                impressions=series(metrics.views),
                engagements=series(_derived(metrics.views, 0.04)),
                likes=series(_derived(metrics.views, 0.02)),
                retweets=series(_derived(metrics.views, 0.004)),
                replies=series(_derived(metrics.views, 0.002)),
                follows=series(_derived(metrics.views, 0.0005)),
                clicks=series(_derived(metrics.clicks, 1.4)),
                url_clicks=series(metrics.clicks),
                app_clicks=None,
                card_engagements=None,
            )
        if "BILLING" in groups:
            m.update(
                billed_engagements=series(_derived(metrics.views, 0.04)),
                billed_charge_local_micro=series(_derived(metrics.views, 2_800)),
            )
        if "WEB_CONVERSION" in groups:
            m.update(
                conversion_purchases=conversion(metrics.conversions),
                conversion_sign_ups=conversion(_derived(metrics.conversions, 0.5)),
                conversion_site_visits=conversion(_derived(metrics.clicks, 0.9)),
                conversion_downloads=None,
                conversion_custom=None,
            )
        body["data"] = [{"id": post_id, "id_data": [{"segment": None, "metrics": m}]}]
        return body

    def _echo(self, params: Mapping[str, str]) -> dict[str, Any]:
        return {
            "start_time": params.get("start_time"),
            "end_time": params.get("end_time"),
            "granularity": params.get("granularity"),
            "entity": params.get("entity"),
            "entity_ids": (params.get("entity_ids") or "").split(","),
            "placement": params.get("placement"),
            "metric_groups": self._groups(params),
        }

    def _job_json(self, request: ApiRequest, state: SandboxState, job: Any) -> dict[str, Any]:
        done = state.job_done(job)
        url = None
        if done:
            # Absolute, like X's CDN links: the adapter downloads it as given.
            host = request.header("Host") or "127.0.0.1"
            url = f"http://{host}/{self.slug}/ton/advertiser-api-async-analytics/stats_job_{job.id}.json.gz"
        echo = self._echo(job.params)
        return {
            "start_time": echo["start_time"],
            "end_time": echo["end_time"],
            "segmentation_type": None,
            "url": url,
            "id": job.id,
            "id_str": str(job.id),
            "entity_ids": echo["entity_ids"],
            "entity": echo["entity"],
            "granularity": echo["granularity"],
            "placement": echo["placement"],
            "metric_groups": echo["metric_groups"],
            "country": None,
            "platform": None,
            "account_id": SANDBOX_CREDENTIALS["x"]["account_id"],
            "status": "SUCCESS" if done else "PROCESSING",
            "expires_at": _iso(job.created + 7 * 86_400) if done else None,
            "created_at": _iso(job.created),
            "updated_at": _iso(job.created),
        }

    def account_call(self, request: ApiRequest, state: SandboxState) -> Reply:
        file = self._FILE.match(request.path)
        if file is not None:
            jobs = state.jobs(self.slug, {int(file.group("job"))})
            if not jobs or not state.job_done(jobs[0]):
                return Reply(404, {"error": "no such file"})
            job = jobs[0]
            entity_ids = [i for i in str(job.params.get("entity_ids") or job.post_id).split(",") if i]
            body = None
            for entity_id in entity_ids:
                post = state.post(self.slug, entity_id)
                if not post.exists:
                    post = replace(post, empty=True)
                if state.fault(self.slug).partial:
                    post = replace(post, metrics=post.metrics.without("clicks", "conversions"))
                stats = self._stats(job.params, entity_id, post)
                if body is None:
                    body = stats
                else:
                    body["data"] += stats["data"]
            return Reply(200, content=gzip.compress(json.dumps(body).encode()), content_type="application/octet-stream")
        wanted = {int(i) for i in (request.param("job_ids") or "").split(",") if i.strip().isdigit()}
        jobs = state.jobs(self.slug, wanted or None)
        body = {
            "request": {"params": {"job_ids": sorted(wanted)} if wanted else {}},
            "next_cursor": None,
            "data": [self._job_json(request, state, job) for job in sorted(jobs, key=lambda j: -j.id)],
        }
        return Reply(200, body, {"x-concurrent-job-limit": "100", "x-concurrent-job-limit-remaining": "99"})

    def not_found(self, request: ApiRequest, post_id: str) -> Reply:
        reply = self._error(404, "NOT_FOUND", f"Promoted tweet {post_id} not found for this account")
        reply.body["request"]["params"] = self._echo(self._params(request))
        return reply

    def throttled(self, retry_after: float) -> Reply:
        reply = self._error(429, "TOO_MANY_REQUESTS", "Rate limit exceeded")
        reply.headers.update(self._headers(remaining=0, reset_in=retry_after))
        reply.headers.update(retry_after_header(retry_after))
        return reply

    def error(self, status: int) -> Reply:
        code = self._CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "INVALID_PARAMETER")
        return self._error(status, code, code.replace("_", " ").capitalize())


# --- Google Ads API (YouTube) ---------------------------------------------------------------------------


class YouTubeDialect(Dialect):
    slug = "youtube"
    _PATH = re.compile(r"^/v\d+/customers/(?P<customer>[^/]+)/googleAds:search$")
    _QUERY = re.compile(
        r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<resource>\w+)\s+WHERE\s+video\.id\s*"
        r"(?:=\s*'(?P<id>[^']*)'|IN\s*\((?P<ids>\s*'[^']*'(?:\s*,\s*'[^']*')*\s*)\))\s*$",
        re.IGNORECASE | re.DOTALL,
    )
    #: GAQL field → JSON path; int64 metrics are strings in JSON, doubles are numbers.
    FIELDS = {
        "video.id": "video.id",
        "video.title": "video.title",
        "metrics.video_views": "metrics.videoViews",
        "metrics.clicks": "metrics.clicks",
        "metrics.impressions": "metrics.impressions",
        "metrics.conversions": "metrics.conversions",
    }
    _GRPC = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }

    def _error(
        self, status: int, message: str, *, error_code: Mapping[str, str] | None = None, details: Any = None
    ) -> Reply:
        request_id = uuid.uuid4().hex[:22]
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": self._GRPC.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
        }
        if error_code is not None:
            failure: dict[str, Any] = {"errorCode": dict(error_code), "message": message}
            if details is not None:
                failure["details"] = details
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.ads.googleads.v18.errors.GoogleAdsFailure",
                    "errors": [failure],
                    "requestId": request_id,
                }
            ]
        return Reply(status, {"error": error}, {"request-id": request_id})

    def authenticate(self, request: ApiRequest) -> Reply | None:
        if not token_ok(request.bearer()):
            return self._error(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential.",
                error_code={"authenticationError": "AUTHENTICATION_ERROR"},
            )
        if not token_ok(request.header("developer-token")):
            return self._error(
                401, "The developer token is not valid.", error_code={"authenticationError": "DEVELOPER_TOKEN_INVALID"}
            )
        return None

    def _parse(self, request: ApiRequest) -> tuple[list[str], str, str | list[str]]:
        query = (request.json() or {}).get("query", "")
        match = self._QUERY.match(query)
        if match is None:
            raise ValueError("Error in query: unexpected input; expected SELECT ... FROM video WHERE video.id = '...'.")
        if match.group("resource").lower() != "video":
            raise ValueError(f"Resource '{match.group('resource')}' is not supported by this sandbox.")
        fields = [f.strip() for f in match.group("fields").split(",")]
        for name in fields:
            if name not in self.FIELDS:
                raise ValueError(f"Unrecognized field in the query: '{name}'.")
        if match.group("ids") is not None:
            return fields, match.group("resource"), re.findall(r"'([^']*)'", match.group("ids"))
        return fields, match.group("resource"), match.group("id")

    def route(self, request: ApiRequest) -> str | Reply | Batch:
        if request.method != "POST" or not self._PATH.match(request.path):
            return self._error(404, "The requested URL was not found on this server.")
        try:
            ids = self._parse(request)[2]
        except (ValueError, AttributeError) as exc:
            return self._error(400, str(exc), error_code={"queryError": "UNRECOGNIZED_FIELD"})
        return ids if isinstance(ids, str) else Batch(tuple(ids))

    def empty(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        return self.not_found(request, post_id)

    def success(self, request: ApiRequest, post_id: str, post: PostState, state: SandboxState) -> Reply:
        # A GAQL query without a ``segments.date`` condition covers all time: the video's lifetime.
        metrics = post.metrics
        fields, _, _ = self._parse(request)
        customer = self._PATH.match(request.path).group("customer")  # type: ignore[union-attr]
        values: dict[str, Any] = {
            "video.id": post_id,
            "video.title": f"Sandbox video {post_id}",
            "metrics.videoViews": None if metrics.views is None else str(metrics.views),
            "metrics.impressions": None if metrics.views is None else str(int(metrics.views * 2.2)),
            "metrics.clicks": None if metrics.clicks is None else str(metrics.clicks),
            "metrics.conversions": None if metrics.conversions is None else float(metrics.conversions),
        }
        row: dict[str, Any] = {"video": {"resourceName": f"customers/{customer}/videos/{post_id}"}}
        for name in fields:
            path = self.FIELDS[name]
            if values[path] is None:
                continue
            resource, _, attribute = path.partition(".")
            row.setdefault(resource, {})[attribute] = values[path]
        body = {
            "results": [row],
            "fieldMask": ",".join(self.FIELDS[f] for f in fields),
            "requestId": uuid.uuid4().hex[:22],
            "queryResourceConsumption": "200",
        }
        return Reply(200, body)

    def _rows(self, body: Any) -> list[Any]:
        return list(body["results"])

    def _with_rows(self, request: ApiRequest, rows: list[Any]) -> Reply:
        fields, _, _ = self._parse(request)
        body: dict[str, Any] = {
            "fieldMask": ",".join(self.FIELDS[f] for f in fields),
            "requestId": uuid.uuid4().hex[:22],
        }
        if rows:  # no row at all: the ``results`` key is absent, as for a single video
            body["results"] = rows
        return Reply(200, body)

    def not_found(self, request: ApiRequest, post_id: str) -> Reply:
        # Google Ads has no "not found" for a filter that matches nothing: the result list is just absent.
        fields, _, _ = self._parse(request)
        return Reply(200, {"fieldMask": ",".join(self.FIELDS[f] for f in fields), "requestId": uuid.uuid4().hex[:22]})

    def throttled(self, retry_after: float) -> Reply:
        delay = math.ceil(retry_after)
        reply = self._error(
            429,
            "Resource has been exhausted (e.g. check quota).",
            error_code={"quotaError": "RESOURCE_EXHAUSTED"},
            details={
                "quotaErrorDetails": {
                    "rateScope": "DEVELOPER",
                    "rateName": "Number of operations for basic access",
                    "retryDelay": f"{delay}s",
                }
            },
        )
        reply.headers.update(retry_after_header(retry_after))
        return reply

    def error(self, status: int) -> Reply:
        if status == 429:
            return self.throttled(1)
        codes = {
            401: {"authenticationError": "AUTHENTICATION_ERROR"},
            403: {"authorizationError": "USER_PERMISSION_DENIED"},
        }
        message = "Internal error encountered." if status >= 500 else f"Request failed with HTTP {status}."
        return self._error(status, message, error_code=codes.get(status, {"internalError": "INTERNAL_ERROR"}))


DIALECTS: dict[str, Dialect] = {
    d.slug: d
    for d in (RedditDialect(), InstagramDialect(), TikTokDialect(), YouTubeDialect(), XDialect(), MetaDialect())
}
