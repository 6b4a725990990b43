"""The API under real concurrency: gunicorn (3 workers × 4 threads) against the test database.

- 50 simultaneous POSTs with one Idempotency-Key create exactly one report;
- 2,000 distinct submissions (plus re-sends of some) from 16 concurrent clients leave every affiliate's
  ``total_submissions`` equal to the posts accepted for it (the predecessor lost 922 of 2,000 increments
  by adding one in Python);
- with the broker's Redis stopped a submission still answers 201 and its outbox row stays due; once
  Redis is back the sweeper (``manage.py dispatch_due``) sends it.

The broker is a private redis-server on a free port, so nothing here reaches a queue a worker elsewhere
might consume.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from reconciliation.models import Affiliate, AffiliateReport, IdempotencyKey, Post, ReconciliationLog
from tests.api.conftest import affiliate_with_key, make_world, submission
from tests.api.live import ROOT, Gunicorn, request
from tests.processes import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, broker: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    with django_db_blocker.unblock():
        database_url = _database_url()
    app = Gunicorn(
        tmp_path_factory.mktemp("gunicorn"),
        database_url=database_url,
        env={
            "CELERY_BROKER_URL": broker.url(),
            "REDIS_URL": settings.REDIS_URL,
            "RATE_LIMIT_SETTINGS__SUBMISSION": "1000000/hour",
            "RATE_LIMIT_SETTINGS__QUERY": "1000000/hour",
        },
    )
    app.start()
    yield app
    app.stop()
    time.sleep(0.2)  # let the workers' connections go before the test database is flushed or dropped


def _auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def test_fifty_concurrent_posts_with_one_idempotency_key_create_one_report(
    transactional_db: None, server: Gunicorn
) -> None:
    world = make_world()
    body: dict[str, Any] = submission(world.campaign, "idem")
    headers = _auth(world.owner_key, **{"Idempotency-Key": "same-key-50"})
    start = threading.Barrier(50)

    def one(_: int) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.connect()
        start.wait()
        status, payload, _headers = request(server.port, "POST", "/api/v1/submissions/", body, headers, conn=conn)
        conn.close()
        return status, payload

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))

    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 409}, (statuses, server.output()[-3000:])
    assert statuses[201] >= 1
    report_ids = {payload["report_id"] for status, payload in results if status == 201}
    assert len(report_ids) == 1  # every 201 is the same report: the original or its replay
    assert all(p["error"]["code"] == "idempotency_key_in_flight" for s, p in results if s == 409)
    assert AffiliateReport.objects.count() == 1
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 1
    assert IdempotencyKey.objects.get().completed


def test_twenty_concurrent_submissions_of_one_post_accept_exactly_one(transactional_db: None, server: Gunicorn) -> None:
    world = make_world()
    body: dict[str, Any] = submission(world.campaign, "race")
    start = threading.Barrier(20)

    def one(_: int) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.connect()
        start.wait()
        status, payload, _headers = request(
            server.port, "POST", "/api/v1/submissions/", body, _auth(world.owner_key), conn=conn
        )
        conn.close()
        return status, payload

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 19}, (statuses, server.output()[-3000:])
    post_id = next(p["post_id"] for s, p in results if s == 201)
    assert all(p["error"]["existing_post_id"] == post_id for s, p in results if s == 409)
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 1


def test_2000_concurrent_submissions_keep_every_counter_exact(transactional_db: None, server: Gunicorn) -> None:
    world = make_world()
    affiliates = [affiliate_with_key() for _ in range(4)]
    clients, per_client, resend_every = 16, 125, 10

    def client(index: int) -> Counter[tuple[int, int]]:
        affiliate, key = affiliates[index % len(affiliates)]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        seen: Counter[tuple[int, int]] = Counter()
        for n in range(per_client):
            body = submission(world.campaign, f"c{index}n{n}")
            status, _, _ = request(server.port, "POST", "/api/v1/submissions/", body, _auth(key), conn=conn)
            seen[(affiliate.pk, status)] += 1
            if n % resend_every == 0:  # the same post again: a 409 that must not count
                status, _, _ = request(server.port, "POST", "/api/v1/submissions/", body, _auth(key), conn=conn)
                seen[(affiliate.pk, status)] += 1
        conn.close()
        return seen

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        totals = sum(pool.map(client, range(clients)), Counter())
    elapsed = time.monotonic() - started

    assert {status for _, status in totals} == {201, 409}, (totals, server.output()[-3000:])
    assert sum(n for (_, status), n in totals.items() if status == 201) == clients * per_client
    for affiliate, _ in affiliates:
        accepted = totals[(affiliate.pk, 201)]
        affiliate.refresh_from_db()
        assert affiliate.total_submissions == accepted == Post.objects.filter(affiliate=affiliate).count()
    assert ReconciliationLog.objects.filter(status="PENDING").count() == clients * per_client
    assert elapsed < 60, f"{elapsed:.1f}s"


def test_broker_down_still_accepts_and_the_sweeper_sends_later(
    transactional_db: None, server: Gunicorn, broker: RedisServer
) -> None:
    world = make_world()
    broker.stop()
    try:
        started = time.monotonic()
        status, payload, _ = request(
            server.port, "POST", "/api/v1/submissions/", submission(world.campaign, "down"), _auth(world.owner_key)
        )
        took = time.monotonic() - started
    finally:
        broker.start()

    assert status == 201, payload
    assert took < 5, f"a dead broker must not hang the request ({took:.1f}s)"
    log = ReconciliationLog.objects.get(report_id=payload["report_id"])
    assert log.status == "PENDING" and not log.terminal
    assert log.next_attempt_at is not None and log.next_attempt_at <= timezone.now()  # the outbox row is due
    assert log.dispatched_at is None

    # Redis is back: the sweeper finds the row and sends it.
    env = {**server.env, "CELERY_BROKER_URL": broker.url()}
    done = subprocess.run(
        [sys.executable, str(Path(ROOT) / "manage.py"), "dispatch_due"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dispatched 1 report(s)" in done.stdout, done.stdout
    log.refresh_from_db()
    assert log.dispatched_at is not None
    assert redis.Redis.from_url(broker.url()).llen("reconcile") == 1
