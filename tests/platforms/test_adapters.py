"""Every platform adapter against the sandbox over real HTTP: one behaviour per test, all six platforms."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from platforms.adapters import http
from platforms.adapters.base import AdapterConfig, PlatformAdapter
from platforms.adapters.graph import graph_api_error, usage_retry_hint
from platforms.adapters.http import ApiResponse, parse_retry_after, to_count
from platforms.adapters.reddit import reddit_retry_hint
from platforms.adapters.tiktok import tiktok_api_error
from platforms.adapters.x import XAdapter, lifetime_windows, oauth1, x_retry_hint
from platforms.adapters.youtube import google_retry_hint
from platforms.errors import AuthError, FetchError, NotFound, RateLimited, Timeout
from platforms.registry import ADAPTERS, UnknownPlatform, adapter_class, build_adapter, get_adapter, reset_adapters
from platforms.sandbox import SandboxClient
from tests.platforms.conftest import AdapterFactory

SLUGS = sorted(ADAPTERS)
POST_ID = "1700000000000000001"
#: Which metrics each platform's reporting API can report at all.
REPORTED = {
    "meta": {"views", "clicks", "conversions"},
    "instagram": {"views"},
    "tiktok": {"views", "clicks", "conversions"},
    "reddit": {"views", "clicks", "conversions"},
    "x": {"views", "clicks", "conversions"},
    "youtube": {"views", "clicks", "conversions"},
}

per_platform = pytest.mark.parametrize("slug", SLUGS)


def _expected(slug: str, views: int | None, clicks: int | None, conversions: int | None) -> tuple[Any, ...]:
    values = {"views": views, "clicks": clicks, "conversions": conversions}
    return tuple(values[m] if m in REPORTED[slug] else None for m in ("views", "clicks", "conversions"))


def _metrics(adapter: PlatformAdapter, post_id: str = POST_ID) -> tuple[Any, ...]:
    result = adapter.fetch_metrics(post_id)
    return result.views, result.clicks, result.conversions


# --- success and partial data ------------------------------------------------------------------------


@per_platform
def test_success_reports_the_platforms_numbers(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_post(slug, POST_ID, views=12_345, clicks=678, conversions=9)

    result = make_adapter(slug).fetch_metrics(POST_ID)

    assert (result.views, result.clicks, result.conversions) == _expected(slug, 12_345, 678, 9)
    assert isinstance(result.raw, dict) and result.raw


@per_platform
def test_generated_metrics_are_consistent(slug: str, make_adapter: AdapterFactory) -> None:
    first = _metrics(make_adapter(slug))
    second = _metrics(make_adapter(slug))

    assert first == second
    assert first[0] is not None and first[0] > 0


@per_platform
def test_zero_counts_are_reported_as_zero_not_missing(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_post(slug, POST_ID, views=500, clicks=0, conversions=0)

    assert _metrics(make_adapter(slug)) == _expected(slug, 500, 0, 0)


@per_platform
def test_partial_fault_leaves_clicks_and_conversions_missing(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_post(slug, POST_ID, views=1_000, clicks=50, conversions=5)
    sandbox_client.set_fault(slug, partial=True)

    result = make_adapter(slug).fetch_metrics(POST_ID)

    assert (result.views, result.clicks, result.conversions) == (1_000, None, None)
    assert result.missing_fields() == ["clicks", "conversions"]


@per_platform
def test_metric_the_platform_omits_is_none(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_post(slug, POST_ID, views=None, clicks=40, conversions=4)

    assert _metrics(make_adapter(slug)) == _expected(slug, None, 40, 4)


# --- lifetime totals and empty answers ----------------------------------------------------------------


@per_platform
@pytest.mark.parametrize("age_days", [30, 400])
def test_an_old_post_reports_its_lifetime_totals(
    slug: str, age_days: int, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    # The sandbox accrues the totals evenly over the post's life, so a look-back shorter than the life
    # (X's 7-day synchronous stats, Reddit's former 365 days) reports less than the lifetime totals.
    sandbox_client.set_post(slug, POST_ID, views=90_000, clicks=4_500, conversions=300, age_days=age_days)

    assert _metrics(make_adapter(slug)) == _expected(slug, 90_000, 4_500, 300)


@per_platform
def test_a_known_post_without_report_rows_is_not_found_never_zero(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    # The platform knows the post but has no rows for it yet (no delivery, or its reporting lags):
    # zeros here would turn every true claim into a CRITICAL over-claim.
    sandbox_client.set_post(slug, POST_ID, views=5_000, clicks=100, conversions=5, empty=True)

    with pytest.raises(NotFound):
        make_adapter(slug).fetch_metrics(POST_ID)


def test_x_reports_nothing_while_a_lifetime_job_runs_then_reuses_it(
    make_adapter: AdapterFactory, sandbox_client: SandboxClient, sandbox: Any
) -> None:
    sandbox_client.set_post("x", POST_ID, views=90_000, clicks=4_500, conversions=300, age_days=200)
    sandbox_client.set_fault("x", job_seconds=3_600)
    adapter = make_adapter("x")

    running = adapter.fetch_metrics(POST_ID)

    # No partial sum: every metric absent, so the verdict cannot be an over-claim.
    assert (running.views, running.clicks, running.conversions) == (None, None, None)
    assert len(running.raw["pending_jobs"]) == 3  # 200 days in windows of at most 90
    sandbox_client.clear_fault("x")  # the jobs finish

    assert _metrics(adapter) == (90_000, 4_500, 300)
    assert len(sandbox.state.jobs("x")) == 3  # the second fetch reused the first one's jobs


def test_x_never_downloads_a_result_from_a_foreign_host(make_adapter: AdapterFactory, sandbox: Any) -> None:
    adapter = make_adapter("x")
    assert isinstance(adapter, XAdapter)
    assert not adapter._trusted_file_url("https://evil.example/advertiser-api-async-analytics/a.json.gz")
    assert not adapter._trusted_file_url("http://ton.twimg.com/advertiser-api-async-analytics/a.json.gz")
    assert adapter._trusted_file_url("https://ton.twimg.com/advertiser-api-async-analytics/a.json.gz")
    assert adapter._trusted_file_url(f"{sandbox.url}/x/ton/advertiser-api-async-analytics/stats_job_1.json.gz")


def test_x_lifetime_windows_are_whole_hours_of_at_most_90_days() -> None:
    created = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    end = datetime(2026, 7, 1, 12, tzinfo=UTC)

    windows = lifetime_windows(created, end)

    assert windows[0][0] == "2026-01-01T10:00:00Z" and windows[-1][1] == "2026-07-01T12:00:00Z"
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))
    spans = [
        datetime.fromisoformat(e.replace("Z", "+00:00")) - datetime.fromisoformat(s.replace("Z", "+00:00"))
        for s, e in windows
    ]
    assert len(windows) == 3 and max(spans) <= timedelta(days=90)


# --- typed errors ------------------------------------------------------------------------------------


@per_platform
def test_unknown_post_is_not_found(slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_post(slug, POST_ID, exists=False)

    with pytest.raises(NotFound):
        make_adapter(slug).fetch_metrics(POST_ID)


@per_platform
def test_404_status_is_not_found(slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault(slug, status=404)

    with pytest.raises(NotFound):
        make_adapter(slug).fetch_metrics(POST_ID)


@per_platform
def test_invalid_credential_is_auth_error(slug: str, make_adapter: AdapterFactory) -> None:
    with pytest.raises(AuthError) as caught:
        make_adapter(slug, token="invalid").fetch_metrics(POST_ID)

    assert caught.value.transient is False  # retrying will not help until someone fixes the credential


@per_platform
@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_errors(
    slug: str, status: int, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_fault(slug, status=status)

    with pytest.raises(AuthError):
        make_adapter(slug).fetch_metrics(POST_ID)


@per_platform
def test_missing_credentials_fail_without_a_call(slug: str, sandbox_client: SandboxClient, sandbox: Any) -> None:
    adapter = build_adapter(slug, AdapterConfig(base_url=sandbox.base_url(slug), credentials={}))

    with pytest.raises(AuthError):
        adapter.fetch_metrics(POST_ID)
    assert sandbox_client.requests_served(slug) == 0


@per_platform
def test_throttle_is_rate_limited_with_retry_after(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    # Each platform's own throttle signal: Graph error 80000/4 on HTTP 400, TikTok code 40100 on HTTP 200,
    # Google RESOURCE_EXHAUSTED, 429 for Reddit and X.
    sandbox_client.set_fault(slug, rate_limit_retry_after=7)

    with pytest.raises(RateLimited) as caught:
        make_adapter(slug).fetch_metrics(POST_ID)

    assert caught.value.retry_after == 7


@per_platform
def test_429_status_is_rate_limited(slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault(slug, status=429, rate_limit_retry_after=3)

    with pytest.raises(RateLimited) as caught:
        make_adapter(slug).fetch_metrics(POST_ID)

    assert caught.value.retry_after == 3


@per_platform
@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_fetch_error(
    slug: str, status: int, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_fault(slug, status=status)

    with pytest.raises(FetchError) as caught:
        make_adapter(slug).fetch_metrics(POST_ID)

    assert caught.value.status == status


@per_platform
def test_outage_is_fetch_error_even_with_a_bad_credential(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_fault(slug, outage=True)

    with pytest.raises(FetchError) as caught:
        make_adapter(slug, token="invalid").fetch_metrics(POST_ID)

    assert type(caught.value) is FetchError and caught.value.status == 503


@per_platform
def test_error_rate_one_fails_every_call(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_fault(slug, error_rate=1.0)

    with pytest.raises(FetchError):
        make_adapter(slug).fetch_metrics(POST_ID)


@per_platform
def test_held_connection_is_timeout(slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault(slug, timeout=5)
    started = time.monotonic()

    with pytest.raises(Timeout):
        make_adapter(slug, read_timeout=0.3).fetch_metrics(POST_ID)

    assert time.monotonic() - started < 2


@per_platform
def test_latency_past_the_read_timeout_is_timeout(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_fault(slug, latency_ms=1_000)

    with pytest.raises(Timeout):
        make_adapter(slug, read_timeout=0.3).fetch_metrics(POST_ID)


@per_platform
def test_latency_within_the_read_timeout_succeeds(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_post(slug, POST_ID, views=10)
    sandbox_client.set_fault(slug, latency_ms=50)

    assert _metrics(make_adapter(slug, read_timeout=2))[0] == 10


@per_platform
def test_malformed_json_is_fetch_error(slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault(slug, malformed=True)

    with pytest.raises(FetchError) as caught:
        make_adapter(slug).fetch_metrics(POST_ID)

    assert "invalid JSON" in str(caught.value)


@per_platform
def test_connection_refused_is_fetch_error(slug: str, make_adapter: AdapterFactory, refused_url: str) -> None:
    with pytest.raises(FetchError) as caught:
        make_adapter(slug, base_url=f"{refused_url}/{slug}").fetch_metrics(POST_ID)

    assert type(caught.value) is FetchError
    assert "sandbox-token" not in str(caught.value)


@per_platform
def test_registry_entry_is_the_adapter_for_its_slug(slug: str) -> None:
    assert adapter_class(slug).slug == slug


# --- platform-specific mappings (no HTTP) ------------------------------------------------------------


def _response(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status=status, headers=CaseInsensitiveDict(headers or {}), body=body, text="")


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80000, 80004])
def test_graph_throttle_codes_are_rate_limited(code: int) -> None:
    assert isinstance(graph_api_error(_response(400, {"error": {"code": code}})), RateLimited)


def test_graph_object_does_not_exist_is_not_found() -> None:
    assert isinstance(graph_api_error(_response(400, {"error": {"code": 100, "error_subcode": 33}})), NotFound)


def test_graph_invalid_parameter_without_subcode_is_left_to_the_status() -> None:
    assert graph_api_error(_response(400, {"error": {"code": 100}})) is None


def test_graph_token_error_is_auth_error() -> None:
    assert isinstance(graph_api_error(_response(400, {"error": {"code": 190, "error_subcode": 463}})), AuthError)


def test_graph_retry_hint_comes_from_business_use_case_usage() -> None:
    usage = {"123": [{"type": "ads_insights", "estimated_time_to_regain_access": 5}]}
    response = _response(400, {"error": {"code": 80000}}, {"x-business-use-case-usage": json.dumps(usage)})

    error = graph_api_error(response)

    assert isinstance(error, RateLimited) and error.retry_after == 300
    assert usage_retry_hint(_response()) is None


@pytest.mark.parametrize("code", [40001, 40105])
def test_tiktok_auth_codes_are_auth_errors(code: int) -> None:
    assert isinstance(tiktok_api_error(_response(200, {"code": code, "message": "no"})), AuthError)


def test_tiktok_unknown_code_on_200_is_fetch_error() -> None:
    assert isinstance(tiktok_api_error(_response(200, {"code": 51000, "message": "busy"})), FetchError)


def test_google_retry_delay_is_read_from_quota_details() -> None:
    body = {"error": {"details": [{"errors": [{"details": {"quotaErrorDetails": {"retryDelay": "42s"}}}]}]}}
    assert google_retry_hint(_response(429, body)) == 42


def test_x_retry_hint_is_seconds_until_the_reset_timestamp() -> None:
    reset = str(int(time.time()) + 60)
    hint = x_retry_hint(_response(429, None, {"x-rate-limit-reset": reset}))
    assert hint is not None and 55 <= hint <= 61


def test_reddit_retry_hint_is_the_reset_seconds() -> None:
    assert reddit_retry_hint(_response(429, None, {"x-ratelimit-reset": "12"})) == 12


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = time.time()
    later = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=90), usegmt=True)

    assert parse_retry_after("120") == 120
    assert 88 <= (parse_retry_after(later, now=now) or 0) <= 90
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0  # in the past: retry now
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


def test_counts_accept_the_platforms_number_encodings() -> None:
    assert to_count("1234", "f") == 1234
    assert to_count(2.6, "f") == 3
    assert to_count("3.0", "f") == 3
    assert to_count(None, "f") is None
    assert to_count("-", "f") is None
    for bad in ("12abc", -1, True, [1]):
        with pytest.raises(FetchError):
            to_count(bad, "f")


X_DOC_KEYS = {
    "consumer_key": "xvz1evFS4wEEPTGEFPHBog",
    "consumer_secret": "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
    "access_token": "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
    "access_token_secret": "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
}


def test_oauth1_signature_matches_the_documented_example() -> None:
    # The worked example from X's "Creating a signature" documentation: a query parameter and a form body,
    # signed by the very auth object the adapter sends its calls with.
    prepared = requests.Request(
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        params={"include_entities": "true"},
        data={"status": "Hello Ladies + Gentlemen, a signed OAuth request!"},
        auth=oauth1(X_DOC_KEYS, nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", timestamp="1318622958"),
    ).prepare()
    header = _text(prepared.headers["Authorization"])
    assert header.startswith("OAuth ")
    assert 'oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D"' in header
    assert 'oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog"' in header


def _text(value: str | bytes) -> str:
    # requests-oauthlib leaves the header as bytes when it signed a form body; http.client sends either.
    return value.decode("ascii") if isinstance(value, bytes) else value


def _oauth1_verifies(url: str, query: str, authorization: str, consumer_secret: str) -> bool:
    """oauthlib's server-side check of an HMAC-SHA1 ``Authorization`` header for a GET of ``url``."""
    from oauthlib.common import Request as OAuthRequest
    from oauthlib.oauth1.rfc5849 import signature

    headers = {"Authorization": authorization}
    # verify_hmac_sha1 reads the request's dynamic attributes (params, signature), which the stubs do not declare.
    request: Any = OAuthRequest(url, http_method="GET", headers=headers)
    request.params = signature.collect_parameters(uri_query=query, headers=headers)
    every = dict(signature.collect_parameters(headers=headers, exclude_oauth_signature=False))
    request.signature = every["oauth_signature"]
    return signature.verify_hmac_sha1(request, consumer_secret, X_DOC_KEYS["access_token_secret"])


def test_oauth1_signs_query_parameters_verifiably_with_fresh_nonces() -> None:
    # What the adapter sends (a GET with a query, no body), checked by oauthlib's server-side verification.
    query = "count=1000&job_ids=1%2C2"
    url = f"https://ads-api.x.com/12/stats/jobs/accounts/18ce54d4x5t?{query}"
    first, second = (
        _text(requests.Request("GET", url, auth=oauth1(X_DOC_KEYS)).prepare().headers["Authorization"])
        for _ in range(2)
    )
    assert _oauth1_verifies(url, query, first, X_DOC_KEYS["consumer_secret"])
    assert _oauth1_verifies(url, query, second, X_DOC_KEYS["consumer_secret"])
    # Not vacuous: another secret, or another query, does not verify.
    assert not _oauth1_verifies(url, query, first, "another-secret")
    other_query = query.replace("1000", "999")
    assert not _oauth1_verifies(url.replace(query, other_query), other_query, first, X_DOC_KEYS["consumer_secret"])
    nonce = [h.split('oauth_nonce="')[1].split('"')[0] for h in (first, second)]
    assert nonce[0] != nonce[1]


def test_youtube_id_outside_the_video_alphabet_is_not_sent(make_adapter: AdapterFactory, sandbox_client) -> None:
    with pytest.raises(NotFound):
        make_adapter("youtube").fetch_metrics("x' OR video.id != '")
    assert sandbox_client.requests_served("youtube") == 0


def test_one_pooled_session_per_process() -> None:
    session = http.get_session()
    assert http.get_session() is session
    assert session.get_adapter("https://graph.facebook.com")._pool_maxsize == http.POOL_MAXSIZE  # type: ignore[attr-defined]


# --- registry ------------------------------------------------------------------------------------------


def test_unknown_platform_is_refused() -> None:
    with pytest.raises(UnknownPlatform):
        build_adapter("myspace", AdapterConfig(base_url="http://127.0.0.1"))


def test_get_adapter_builds_from_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import django.conf

    fake_settings = SimpleNamespace(
        PLATFORM_API={"meta": {"base_url": "http://127.0.0.1:8100/meta", "credentials": {"access_token": "t"}}},
        BACKOFF_POLICY=SimpleNamespace(connect_timeout_seconds=1.5, read_timeout_seconds=4.0),
    )
    monkeypatch.setattr(django.conf, "settings", fake_settings)
    reset_adapters()
    try:
        adapter = get_adapter("meta")

        assert get_adapter("meta") is adapter
        assert adapter.config == AdapterConfig(
            base_url="http://127.0.0.1:8100/meta",
            credentials={"access_token": "t"},
            connect_timeout=1.5,
            read_timeout=4.0,
        )
        with pytest.raises(UnknownPlatform):
            get_adapter("myspace")
    finally:
        reset_adapters()
