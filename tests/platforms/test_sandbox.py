"""The platform sandbox itself: determinism, the control API, stats, reset, wire shapes, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from platforms.adapters.base import AdapterConfig
from platforms.errors import AuthError, FetchError, NotFound, RateLimited, Timeout
from platforms.registry import ADAPTERS, build_adapter
from platforms.sandbox import SandboxClient, SandboxServer, sandbox_credentials
from platforms.sandbox.state import SandboxState, seeded_metrics
from tests.platforms.conftest import AdapterFactory

SLUGS = sorted(ADAPTERS)
per_platform = pytest.mark.parametrize("slug", SLUGS)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# --- deterministic data ---------------------------------------------------------------------------------


def test_same_post_gets_the_same_metrics_on_every_server() -> None:
    with SandboxServer() as one, SandboxServer() as two:
        assert one.client.get_post("tiktok", "42") == two.client.get_post("tiktok", "42")


def test_metrics_differ_between_posts_and_platforms() -> None:
    assert seeded_metrics("tiktok", "42") != seeded_metrics("tiktok", "43")
    assert seeded_metrics("tiktok", "42") != seeded_metrics("reddit", "42")


def test_generated_metrics_are_plausible_funnels() -> None:
    for post_id in map(str, range(200)):
        metrics = seeded_metrics("meta", post_id)
        assert metrics.views is not None and metrics.clicks is not None and metrics.conversions is not None
        assert 1_000 <= metrics.views < 100_000
        assert 0 <= metrics.conversions <= metrics.clicks <= metrics.views * 0.06


def test_generated_metrics_grow_with_hours_since_first_seen() -> None:
    now = [1_000_000.0]
    state = SandboxState(("meta",), clock=lambda: now[0])
    first = state.post("meta", "7").metrics
    now[0] += 59 * 60
    same_hour = state.post("meta", "7").metrics
    now[0] += 10 * 3600
    later = state.post("meta", "7").metrics

    assert same_hour == first
    assert later.views is not None and first.views is not None and later.views > first.views


def test_pinned_metrics_do_not_grow() -> None:
    now = [1_000_000.0]
    state = SandboxState(("meta",), clock=lambda: now[0])
    state.set_post("meta", "7", {"views": 100, "clicks": 10, "conversions": 1})
    now[0] += 100 * 3600

    assert (state.post("meta", "7").metrics.views, state.post("meta", "7").metrics.clicks) == (100, 10)


# --- control API --------------------------------------------------------------------------------------


def test_set_post_merges_fields(sandbox_client: SandboxClient) -> None:
    sandbox_client.set_post("reddit", "abc", views=100)
    post = sandbox_client.set_post("reddit", "abc", clicks=7)

    assert (post["views"], post["clicks"], post["exists"]) == (100, 7, True)
    assert post["conversions"] == seeded_metrics("reddit", "abc").conversions
    assert sorted(post["overridden"]) == ["clicks", "views"]


def test_set_post_null_means_the_platform_omits_the_field(sandbox_client: SandboxClient) -> None:
    post = sandbox_client.set_post("youtube", "dQw4w9WgXcQ", conversions=None)

    assert post["conversions"] is None and post["views"] is not None


@pytest.mark.parametrize(
    "body, status",
    [
        ({"views": -1}, 400),
        ({"views": "12"}, 400),
        ({"views": True}, 400),
        ({"likes": 3}, 400),
        ({"exists": "no"}, 400),
    ],
)
def test_set_post_rejects_bad_values(sandbox: SandboxServer, body: dict[str, Any], status: int) -> None:
    response = requests.put(f"{sandbox.url}/_control/posts/meta/1", json=body, timeout=5)

    assert response.status_code == status and "error" in response.json()


def test_control_api_refuses_unknown_platforms(sandbox: SandboxServer) -> None:
    assert requests.put(f"{sandbox.url}/_control/posts/myspace/1", json={}, timeout=5).status_code == 404
    assert requests.put(f"{sandbox.url}/_control/faults/myspace", json={}, timeout=5).status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"error_rate": 1.5}, {"status": 700}, {"status": "500"}, {"outage": "yes"}, {"latency_ms": -1}, {"flaky": 1}],
)
def test_set_fault_rejects_bad_values(sandbox: SandboxServer, body: dict[str, Any]) -> None:
    assert requests.put(f"{sandbox.url}/_control/faults/x", json=body, timeout=5).status_code == 400


def test_set_fault_replaces_and_clear_fault_removes(sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault("meta", outage=True, latency_ms=5)
    fault = sandbox_client.set_fault("meta", partial=True)

    assert (fault["outage"], fault["partial"], fault["latency_ms"]) == (False, True, 0)
    assert set(sandbox_client.faults()) == {"meta"}
    sandbox_client.clear_fault("meta")
    assert sandbox_client.faults() == {}


def test_timeout_true_holds_for_the_default(sandbox_client: SandboxClient) -> None:
    assert sandbox_client.set_fault("x", timeout=True)["timeout"] == 30
    assert sandbox_client.set_fault("x", timeout=0.5)["timeout"] == 0.5


def test_clearing_a_fault_restores_service(make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    adapter = make_adapter("reddit")
    sandbox_client.set_fault("reddit", outage=True)
    with pytest.raises(FetchError):
        adapter.fetch_metrics("abc")

    sandbox_client.clear_fault("reddit")

    assert adapter.fetch_metrics("abc").views is not None


def test_stats_count_requests_per_platform_and_status(
    make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    for _ in range(2):
        make_adapter("meta").fetch_metrics("1")
    with pytest.raises(AuthError):
        make_adapter("reddit", token="invalid").fetch_metrics("abc")
    sandbox_client.set_fault("youtube", timeout=2)
    with pytest.raises(Timeout):
        make_adapter("youtube", read_timeout=0.2).fetch_metrics("dQw4w9WgXcQ")

    stats = sandbox_client.stats()

    assert stats["total"] == 4
    assert stats["platforms"]["meta"] == {"total": 2, "by_status": {"200": 2}}
    assert stats["platforms"]["reddit"]["by_status"] == {"401": 1}
    assert stats["platforms"]["youtube"]["by_status"] == {"timeout": 1}
    assert sandbox_client.requests_served("meta") == 2


def test_control_calls_are_not_counted(sandbox_client: SandboxClient) -> None:
    sandbox_client.set_post("meta", "1", views=1)
    sandbox_client.health()

    assert sandbox_client.requests_served() == 0


def test_reset_forgets_posts_faults_and_stats(make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_post("meta", "1", views=5, exists=False)
    sandbox_client.set_fault("tiktok", outage=True)
    with pytest.raises(NotFound):
        make_adapter("meta").fetch_metrics("1")

    sandbox_client.reset()

    assert sandbox_client.get_post("meta", "1")["views"] == seeded_metrics("meta", "1").views
    assert sandbox_client.faults() == {}
    assert sandbox_client.stats() == {"total": 0, "platforms": {}}


def test_error_rate_fails_about_that_fraction(make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault("tiktok", error_rate=0.5)
    adapter = make_adapter("tiktok")
    failures = 0
    for _ in range(200):
        try:
            adapter.fetch_metrics("9")
        except FetchError:
            failures += 1

    assert 60 <= failures <= 140


def test_latency_delays_every_answer(make_adapter: AdapterFactory, sandbox_client: SandboxClient) -> None:
    sandbox_client.set_fault("instagram", latency_ms=150)
    started = time.monotonic()

    make_adapter("instagram").fetch_metrics("17900000000000001")

    assert time.monotonic() - started >= 0.15


# --- wire shapes -------------------------------------------------------------------------------------------


NO_CREDENTIAL_REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "meta": ("GET", "/v21.0/1/insights", {"params": {"fields": "impressions"}}),
    "instagram": ("GET", "/v21.0/1/insights", {"params": {"metric": "views"}}),
    "tiktok": ("GET", "/open_api/v1.3/report/integrated/get/", {}),
    "reddit": ("POST", "/api/v3/ad_accounts/a2_x/reports", {"json": {}}),
    "x": ("GET", "/12/stats/accounts/abc", {}),
    "youtube": ("POST", "/v18/customers/1/googleAds:search", {"json": {}}),
}
EXPECTED_REFUSAL = {
    "meta": (400, lambda b: b["error"]["code"] == 190),
    "instagram": (400, lambda b: b["error"]["code"] == 190),
    "tiktok": (200, lambda b: b["code"] == 40104),
    "reddit": (401, lambda b: b["error"]["code"] == 401),
    "x": (401, lambda b: b["errors"][0]["code"] == "UNAUTHORIZED_ACCESS"),
    "youtube": (401, lambda b: b["error"]["status"] == "UNAUTHENTICATED"),
}


@per_platform
def test_request_without_credential_gets_the_platforms_refusal(slug: str, sandbox: SandboxServer) -> None:
    method, path, kwargs = NO_CREDENTIAL_REQUESTS[slug]
    response = requests.request(method, sandbox.base_url(slug) + path, timeout=5, **kwargs)

    status, check = EXPECTED_REFUSAL[slug]
    assert response.status_code == status and check(response.json())


#: (HTTP status, what the adapter's error says): each platform throttles in its own way.
EXPECTED_THROTTLE = {
    "meta": (400, "code=80000"),
    "instagram": (400, "code=4 "),
    "tiktok": (200, "code=40100"),
    "reddit": (429, "HTTP 429"),
    "x": (429, "HTTP 429"),
    "youtube": (429, "Resource has been exhausted"),
}


@per_platform
def test_rate_limit_fault_uses_the_platforms_own_signal(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    sandbox_client.set_fault(slug, rate_limit_retry_after=12)

    with pytest.raises(RateLimited) as caught:
        make_adapter(slug).fetch_metrics("1")

    status, marker = EXPECTED_THROTTLE[slug]
    assert sandbox_client.stats()["platforms"][slug]["by_status"] == {str(status): 1}
    assert marker in str(caught.value) and caught.value.retry_after == 12


@per_platform
def test_unknown_route_is_never_a_success(slug: str, sandbox: SandboxServer) -> None:
    headers = {"Authorization": "Bearer t", "Access-Token": "t", "developer-token": "t"}
    response = requests.get(f"{sandbox.base_url(slug)}/nope", headers=headers, timeout=5)

    assert response.status_code != 200 or response.json().get("code") not in (0, None)


def test_unknown_platform_prefix_is_404(sandbox: SandboxServer) -> None:
    assert requests.get(f"{sandbox.url}/myspace/v1/stats", timeout=5).status_code == 404


def test_malformed_fault_sends_invalid_json(sandbox_client: SandboxClient, sandbox: SandboxServer) -> None:
    sandbox_client.set_fault("meta", malformed=True)
    response = requests.get(
        f"{sandbox.base_url('meta')}/v21.0/1/insights",
        params={"fields": "impressions"},
        headers={"Authorization": "Bearer t"},
        timeout=5,
    )

    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_meta_insights_values_are_strings(sandbox_client: SandboxClient, make_adapter: AdapterFactory) -> None:
    sandbox_client.set_post("meta", "1", views=10, clicks=3, conversions=1)

    row = make_adapter("meta").fetch_metrics("1").raw["data"][0]

    assert (row["impressions"], row["clicks"]) == ("10", "3")
    assert {"action_type": "offsite_conversion.fb_pixel_purchase", "value": "1"} in row["actions"]


# --- lifetime, report windows, empty answers and X's report jobs -------------------------------------------


def test_an_old_posts_totals_accrue_over_its_life_and_windows_add_up() -> None:
    now = [1_800_000_000.0]
    state = SandboxState(("reddit",), clock=lambda: now[0])
    state.set_post("reddit", "7", {"views": 1_000, "clicks": 100, "conversions": None, "age_days": 100})
    post = state.post("reddit", "7")
    day = 86_400.0

    assert post.between(now[0] - 200 * day, now[0] + 1) == post.metrics  # a window covering the whole life
    last_week = post.between(now[0] - 7 * day, now[0])
    assert (last_week.views, last_week.clicks, last_week.conversions) == (70, 7, None)
    halves = [post.between(now[0] - 100 * day, now[0] - 37 * day), post.between(now[0] - 37 * day, now[0] + 3600)]
    assert sum(h.views or 0 for h in halves) == 1_000 and sum(h.clicks or 0 for h in halves) == 100


def test_control_api_dates_a_post_and_marks_it_empty(sandbox_client: SandboxClient) -> None:
    post = sandbox_client.set_post("meta", "5", age_days=10, empty=True)

    assert post["empty"] is True and post["created_at"] is not None
    assert sandbox_client.get_post("meta", "6")["created_at"] is None  # undated: its life starts when first seen


@pytest.mark.parametrize("body", [{"age_days": -1}, {"empty": "yes"}, {"age_days": "10"}])
def test_set_post_rejects_bad_age_and_empty(sandbox: SandboxServer, body: dict[str, Any]) -> None:
    assert requests.put(f"{sandbox.url}/_control/posts/meta/1", json=body, timeout=5).status_code == 400


def test_meta_reports_the_requested_date_preset(sandbox_client: SandboxClient, sandbox: SandboxServer) -> None:
    sandbox_client.set_post("meta", "9", views=3_000, age_days=90)

    def impressions(**params: str) -> str:
        response = requests.get(
            f"{sandbox.base_url('meta')}/v21.0/9/insights",
            params={"fields": "impressions", **params},
            headers={"Authorization": "Bearer t"},
            timeout=5,
        )
        return response.json()["data"][0]["impressions"]

    assert impressions(date_preset="maximum") == "3000"
    assert impressions() == "1000"  # Meta's default: the last 30 days


def test_meta_empty_insights_are_an_empty_data_list(sandbox_client: SandboxClient, sandbox: SandboxServer) -> None:
    sandbox_client.set_post("meta", "9", empty=True)
    response = requests.get(
        f"{sandbox.base_url('meta')}/v21.0/9/insights",
        params={"fields": "impressions", "date_preset": "maximum"},
        headers={"Authorization": "Bearer t"},
        timeout=5,
    )

    assert response.status_code == 200 and response.json()["data"] == []


def _x_signed(method: str, url: str, params: dict[str, str]) -> requests.Response:
    from platforms.adapters.x import oauth1

    return requests.request(method, url, params=params, auth=oauth1(sandbox_credentials("x")), timeout=5)


X_JOB = {
    "entity": "PROMOTED_TWEET",
    "entity_ids": "77",
    "start_time": "2026-01-01T00:00:00Z",
    "end_time": "2026-03-01T00:00:00Z",
    "granularity": "TOTAL",
    "placement": "ALL_ON_TWITTER",
    "metric_groups": "ENGAGEMENT",
}


def test_x_job_is_processing_then_success_with_a_gzipped_result_file(
    sandbox_client: SandboxClient, sandbox: SandboxServer
) -> None:
    import gzip

    jobs_url = f"{sandbox.base_url('x')}/12/stats/jobs/accounts/18ce54d4x5t"
    sandbox_client.set_post("x", "77", views=40_000, age_days=1_000)  # live through the job's window
    sandbox_client.set_fault("x", job_seconds=3_600)

    created = _x_signed("POST", jobs_url, X_JOB).json()["data"]

    assert (created["status"], created["url"]) == ("PROCESSING", None)
    assert created["entity_ids"] == ["77"] and created["id_str"] == str(created["id"])
    sandbox_client.clear_fault("x")
    listed = _x_signed("GET", jobs_url, {"job_ids": created["id_str"]}).json()["data"]
    assert [j["status"] for j in listed] == ["SUCCESS"]
    file = requests.get(listed[0]["url"], timeout=5)  # no OAuth: a pre-signed CDN link on X
    body = json.loads(gzip.decompress(file.content))
    assert body["data"][0]["id"] == "77" and body["data"][0]["id_data"][0]["metrics"]["impressions"][0] > 0


@pytest.mark.parametrize(
    "change",
    [{"end_time": "2026-04-02T00:00:00Z"}, {"start_time": "2026-01-01T00:30:00Z"}],
    ids=["91 days", "not whole hours"],
)
def test_x_job_windows_are_at_most_90_days_of_whole_hours(sandbox: SandboxServer, change: dict[str, str]) -> None:
    response = _x_signed("POST", f"{sandbox.base_url('x')}/12/stats/jobs/accounts/18ce54d4x5t", {**X_JOB, **change})

    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "INVALID_PARAMETER"


def test_x_synchronous_stats_cover_at_most_7_days(sandbox: SandboxServer) -> None:
    params = {**X_JOB, "end_time": "2026-01-08T01:00:00Z"}
    response = _x_signed("GET", f"{sandbox.base_url('x')}/12/stats/accounts/18ce54d4x5t", params)

    assert response.status_code == 400


# --- server lifecycle and concurrency ------------------------------------------------------------------


def test_starts_in_under_a_second() -> None:
    started = time.monotonic()
    with SandboxServer() as server:
        assert server.client.health()["ok"] is True
        assert time.monotonic() - started < 1


def test_stop_releases_held_connections_and_refuses_pooled_clients() -> None:
    server = SandboxServer().start()
    adapter = build_adapter(
        "meta",
        AdapterConfig(base_url=server.base_url("meta"), credentials=sandbox_credentials("meta"), read_timeout=5),
    )
    adapter.fetch_metrics("1")  # leaves a keep-alive connection in the pool
    server.client.set_fault("x", timeout=30)
    x_adapter = build_adapter(
        "x", AdapterConfig(base_url=server.base_url("x"), credentials=sandbox_credentials("x"), read_timeout=10)
    )
    outcome: list[BaseException] = []

    def call_held() -> None:
        try:
            x_adapter.fetch_metrics("1")
        except (Timeout, FetchError) as exc:
            outcome.append(exc)

    held = threading.Thread(target=call_held, daemon=True)
    held.start()
    time.sleep(0.2)

    started = time.monotonic()
    server.stop()
    held.join(timeout=5)

    assert time.monotonic() - started < 2 and not held.is_alive()
    assert len(outcome) == 1  # the held call ended with an error, not an answer
    with pytest.raises(FetchError):
        adapter.fetch_metrics("1")


def test_concurrent_calls_and_control_writes_are_consistent(
    sandbox: SandboxServer, sandbox_client: SandboxClient
) -> None:
    threads, calls = 16, 25
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        slug = SLUGS[index % len(SLUGS)]
        post_id = f"{index}00"
        client = SandboxClient(sandbox.url)
        adapter = build_adapter(
            slug, AdapterConfig(base_url=sandbox.base_url(slug), credentials=sandbox_credentials(slug))
        )
        try:
            for call in range(calls):
                client.set_post(slug, post_id, views=call * 10 + index)
                assert adapter.fetch_metrics(post_id).views == call * 10 + index
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)

    assert errors == []
    # One request per fetch, except X's, which asks for the promoted tweet and its report jobs too.
    served = sandbox_client.stats()["platforms"]
    x_threads = sum(1 for index in range(threads) if SLUGS[index % len(SLUGS)] == "x")
    assert sum(p["total"] for slug, p in served.items() if slug != "x") == (threads - x_threads) * calls
    assert served["x"]["total"] >= x_threads * calls


def test_module_entry_point_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "platforms.sandbox", "--port", "0"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        assert requests.get(f"{url}/_control/health", timeout=5).json()["ok"] is True
        process.terminate()
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
