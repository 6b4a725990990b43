"""/metrics: every metric with its labels, summed across processes, with scrape-time gauges from Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from reconcile_project import metrics
from tests.processes import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]

#: Sample name -> the label names it must carry (histograms: checked on their _count sample).
EXPECTED = {
    "reconciliation_status_total": {"status"},
    "reconciliation_attempt_duration_seconds_count": set(),
    "queue_depth": {"queue"},
    "worker_idle_ratio": set(),
    "alert_created_total": {"type", "severity"},
    "trust_score_bucket_total": {"bucket"},
    "breaker_state": {"platform", "state"},
    "breaker_transitions_total": {"platform", "state"},
    "platform_fetch_duration_seconds_count": {"platform", "outcome"},
    "http_requests_total": {"method", "route", "status"},
    "http_request_duration_seconds_count": {"method", "route", "status"},
}


def scrape() -> dict[str, list]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    matching = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert matching, f"no {name} sample with {labels}"
    return sum(matching)


def test_the_test_run_uses_multiprocess_mode() -> None:
    from prometheus_client import values

    assert metrics.multiprocess_enabled()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == settings.PROMETHEUS_MULTIPROC_DIR
    assert values.ValueClass.__name__ != "MutexValue"


@pytest.mark.django_db
def test_every_metric_is_exposed_with_its_labels(ops_redis: RedisServer) -> None:
    metrics.RECONCILIATION_STATUS_TOTAL.labels(status="MATCHED").inc()
    metrics.RECONCILIATION_ATTEMPT_DURATION.observe(0.2)
    metrics.ALERT_CREATED_TOTAL.labels(type="OVERCLAIM", severity="HIGH").inc()
    metrics.TRUST_SCORE_BUCKET_TOTAL.labels(bucket="NORMAL").inc()
    metrics.PLATFORM_FETCH_DURATION.labels(platform="reddit", outcome="ok").observe(0.05)
    metrics.install_breaker_hook()
    from platforms.breaker import get_breaker

    breaker = get_breaker()
    for _ in range(settings.CIRCUIT_BREAKER.failure_threshold):
        breaker.record_failure("tiktok", breaker.before_call("tiktok"))
    ops_redis.client(1).rpush("reconcile_priority", "a", "b")
    metrics.WorkerUtilization(hostname="celery@test", capacity=4).publish()
    Client().get("/health")

    samples = scrape()
    for name, labels in EXPECTED.items():
        assert name in samples, name
        assert all(set(s.labels) == labels for s in samples[name]), (name, [s.labels for s in samples[name]])
    assert value(samples, "queue_depth", queue="reconcile_priority") == 2
    assert value(samples, "breaker_state", platform="tiktok", state="OPEN") == 1
    assert value(samples, "breaker_state", platform="tiktok", state="CLOSED") == 0
    assert value(samples, "breaker_state", platform="reddit", state="CLOSED") == 1
    assert value(samples, "breaker_transitions_total", platform="tiktok", state="OPEN") >= 1
    assert value(samples, "worker_idle_ratio") == 1.0
    assert value(samples, "http_requests_total", route="health", status="200") >= 1


def test_counts_from_two_processes_are_summed() -> None:
    label = f"AGG_{uuid.uuid4().hex[:8]}"
    code = (
        "import sys, django; django.setup();"
        "from reconcile_project.metrics import RECONCILIATION_STATUS_TOTAL, PLATFORM_FETCH_DURATION;"
        "RECONCILIATION_STATUS_TOTAL.labels(status=sys.argv[1]).inc(3);"
        "PLATFORM_FETCH_DURATION.labels(platform=sys.argv[1], outcome='ok').observe(0.1)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reconcile_project.settings"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, label], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(REDIS_URL=dead, CELERY_BROKER_URL=dead):
        samples = scrape()
    assert value(samples, "reconciliation_status_total", status=label) == 6
    assert value(samples, "platform_fetch_duration_seconds_count", platform=label) == 2


def test_metrics_still_served_when_redis_is_down() -> None:
    metrics.RECONCILIATION_STATUS_TOTAL.labels(status="MATCHED").inc()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(REDIS_URL=dead, CELERY_BROKER_URL=dead):
        samples = scrape()
    assert "reconciliation_status_total" in samples
    assert "queue_depth" not in samples and "worker_idle_ratio" not in samples


def test_worker_idle_ratio_is_idle_thread_time_over_capacity(ops_redis: RedisServer) -> None:
    now = [100.0]
    busy = metrics.WorkerUtilization(hostname="celery@a", capacity=4, clock=lambda: now[0])
    busy.task_started()
    busy.task_started()
    now[0] += 10  # two of four threads busy for the whole 10 s window
    busy.publish()
    idle = metrics.WorkerUtilization(hostname="celery@b", capacity=4, clock=lambda: now[0])
    now[0] += 0
    idle._window_start -= 10  # a second worker, idle for the same 10 s
    idle.publish()
    result = metrics.worker_utilization()
    assert result["workers"] == 2 and result["threads"] == 8 and result["busy_now"] == 2
    assert result["idle_ratio"] == pytest.approx(1 - 20 / 80)


def test_a_task_running_across_windows_is_split_between_them() -> None:
    now = [0.0]
    tracker = metrics.WorkerUtilization(hostname="celery@c", capacity=2, clock=lambda: now[0])
    now[0] = 2.0
    tracker.task_started()
    now[0] = 5.0
    first = tracker.take_window()
    now[0] = 6.0
    tracker.task_finished()
    now[0] = 10.0
    second = tracker.take_window()
    assert (first["busy_seconds"], first["window_seconds"], first["busy_now"]) == (3.0, 5.0, 1)
    assert (second["busy_seconds"], second["window_seconds"], second["busy_now"]) == (1.0, 5.0, 0)


def test_a_stopped_worker_leaves_the_ratio(ops_redis: RedisServer) -> None:
    tracker = metrics.WorkerUtilization(hostname="celery@gone", capacity=4)
    tracker.publish()
    assert metrics.worker_utilization()["workers"] == 1
    tracker.stop()
    assert metrics.worker_utilization() == {"workers": 0, "threads": 0, "busy_now": 0, "idle_ratio": None}


# --- who may scrape --------------------------------------------------------------------------------

METRICS_TOKEN = "test-metrics-token-abcdef0123"
ELSEWHERE: dict[str, Any] = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.mark.django_db
def test_metrics_answer_the_token_from_anywhere_and_refuse_anonymous_callers(ops_redis: RedisServer) -> None:
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        anonymous = Client().get("/metrics", **ELSEWHERE)
        from_loopback = Client().get("/metrics")
        wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-it", **ELSEWHERE)
        scraper = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}", **ELSEWHERE)
    assert (anonymous.status_code, from_loopback.status_code, wrong.status_code) == (401, 401, 401)
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert scraper.status_code == 200 and scraper["Content-Type"].startswith("text/plain")
    assert b"http_requests_total" in scraper.content


@pytest.mark.django_db
def test_metrics_answer_staff_but_not_a_client_key(ops_redis: RedisServer) -> None:
    from reconciliation.services.accounts import client_key_create
    from tests import factories

    _, staff_key = client_key_create(client=None, name="ops", is_staff=True)
    _, client_key = client_key_create(client=factories.client(), name="reader")
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {staff_key}", **ELSEWHERE).status_code == 200
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {client_key}", **ELSEWHERE).status_code == 403


@pytest.mark.django_db
def test_without_a_token_metrics_are_for_loopback_only_and_never_in_production(ops_redis: RedisServer) -> None:
    with override_settings(METRICS_TOKEN=""):
        assert Client().get("/metrics").status_code == 200
        assert Client().get("/metrics", **ELSEWHERE).status_code == 401
        with override_settings(PRODUCTION=True):
            assert Client().get("/metrics").status_code == 401
