"""Every adapter's batch form against the sandbox over HTTP, and fetch_batch through breaker and limiter."""

from __future__ import annotations

import pytest

from platforms.adapters.base import PlatformMetrics
from platforms.errors import NotFound
from platforms.fetcher import fetch_batch
from platforms.ratelimit import RateLimiter
from platforms.registry import ADAPTERS
from platforms.sandbox import SandboxClient
from tests.platforms.conftest import AdapterFactory

SLUGS = sorted(ADAPTERS)
#: What each platform reports of (views, clicks, conversions) when the truth is (5000, 250, 25).
EXPECTED = {slug: (5000, 250, 25) for slug in SLUGS} | {"instagram": (5000, None, None)}


@pytest.mark.parametrize("slug", SLUGS)
def test_a_batch_answers_each_post_and_leaves_an_omitted_one_not_found_only(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient
) -> None:
    known = [f"17000000000000000{i:02d}" for i in range(4)]
    for index, post_id in enumerate(known):
        sandbox_client.set_post(slug, post_id, views=5000 + index, clicks=250, conversions=25)
    unknown, silent = "1700000000000000098", "1700000000000000099"
    sandbox_client.set_post(slug, unknown, exists=False)
    sandbox_client.set_post(slug, silent, empty=True)
    adapter = make_adapter(slug)

    answers = adapter.fetch_batch([*known, unknown, silent])

    for index, post_id in enumerate(known):
        answer = answers[post_id]
        assert isinstance(answer, PlatformMetrics), (post_id, answer)
        views, clicks, conversions = EXPECTED[slug]
        assert (answer.views, answer.clicks, answer.conversions) == (views + index, clicks, conversions)
    assert isinstance(answers[unknown], NotFound)
    assert isinstance(answers[silent], NotFound)


@pytest.mark.parametrize("slug", SLUGS)
def test_a_batch_of_posts_is_one_platform_request(
    slug: str, make_adapter: AdapterFactory, sandbox_client: SandboxClient, client
) -> None:
    ids = [f"17000000000000001{i:02d}" for i in range(10)]
    for post_id in ids:
        sandbox_client.set_post(slug, post_id, views=5000, clicks=250, conversions=25)
    adapter = make_adapter(slug)
    before = sandbox_client.stats()["platforms"].get(slug, {}).get("total", 0)

    outcomes = fetch_batch(
        platform=slug,
        post_ids=ids,
        adapter=adapter,
        limiter=RateLimiter(client, key_prefix="test-batch-rl:"),
        quota_rps=1000.0,
    )

    assert set(outcomes) == set(ids) and all(o.ok and o.attempts == 1 for o in outcomes.values())
    # X's one fetch is its lookup, the job list, one job for the ten tweets and its result file (the job is
    # done at once in the sandbox): still one fetch for all of them.
    calls = {"x": 4}.get(slug, 1)
    assert sandbox_client.stats()["platforms"][slug]["total"] - before == calls


def test_x_reuses_a_running_job_for_its_tweet_in_a_batch_and_answers_the_others(
    make_adapter: AdapterFactory, sandbox_client: SandboxClient, sandbox
) -> None:
    first, others = "1700000000000000201", ["1700000000000000202", "1700000000000000203"]
    for post_id in (first, *others):
        sandbox_client.set_post("x", post_id, views=5000, clicks=250, conversions=25, age_days=10)
    adapter = make_adapter("x")
    sandbox_client.set_fault("x", job_seconds=3_600)
    assert adapter.fetch_metrics(first).views is None  # its job is still running
    (running,) = sandbox.state.jobs("x")
    sandbox_client.clear_fault("x")
    sandbox_client.set_fault("x", job_seconds=3_600)  # jobs created from now on run for an hour too

    answers = adapter.fetch_batch([first, *others])

    # The first tweet's job is reused (and still running: every metric absent, never a partial sum); the
    # two others share one new job, which is running as well.
    assert running.id in {job.id for job in sandbox.state.jobs("x")} and len(sandbox.state.jobs("x")) == 2
    assert all(isinstance(a, PlatformMetrics) and a.views is None for a in answers.values())
    sandbox_client.clear_fault("x")
    done = adapter.fetch_batch([first, *others])
    assert [(a.views, a.clicks, a.conversions) for a in done.values() if isinstance(a, PlatformMetrics)] == [
        (5000, 250, 25)
    ] * 3
    assert len(sandbox.state.jobs("x")) == 2
