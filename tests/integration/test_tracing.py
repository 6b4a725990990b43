"""One trace from a submission to its verdict: the HTTP request, the publish, the task in a worker, the
platform call, PostgreSQL and Redis (reconcile_project/tracing.py).

The web side is Django's test client and the worker a real Celery worker consuming from the test run's
Redis broker in a thread of this process, so the SDK's in-memory exporter sees both sides; the trace
context travels only in the published message's headers.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id
from rest_framework.test import APIClient

from reconcile_project import tracing
from reconcile_project.observability import _formatter
from reconciliation.models import ReconciliationLog
from tests import factories
from tests.api.conftest import affiliate_with_key, submission
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration]

RUN = "run/reconciliation.tasks.reconcile_report"
PUBLISH = "apply_async/reconciliation.tasks.reconcile_report"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(exporter, set_global=False)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()
    assert not tracing.tracing_enabled()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(_formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)


def _attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def _close_worker_connections(**kwargs: Any) -> None:
    from django.db import connections

    connections.close_all()


def _parent_chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        ancestor = by_id[parent.span_id]
        names.append(ancestor.name)
        parent = ancestor.parent
    return names


def test_one_trace_spans_web_worker_and_platform_for_a_submission(
    spans: InMemorySpanExporter, json_log: io.StringIO, sandbox_client: Any, transactional_db: None, clean_redis: None
) -> None:
    from reconcile_project.celery import app

    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    affiliate, key = affiliate_with_key()
    campaign = factories.campaign(platforms=("reddit",))
    sandbox_client.set_post("reddit", "p1", views=1000, clicks=50, conversions=5)

    # The worker thread's database connection is closed after each task, so the test database can be flushed.
    signals.task_postrun.connect(_close_worker_connections, weak=False)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, queues=["reconcile", "reconcile_priority"], shutdown_timeout=30
        ):
            response = APIClient().post(
                "/api/v1/submissions/",
                submission(campaign),
                format="json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
                HTTP_X_REQUEST_ID="trace-me-1",
            )
            assert response.status_code == 201, response.content
            report_id = response.json()["report_id"]
            wait_until(
                lambda: any(s.name == RUN for s in spans.get_finished_spans()), timeout=60, what="the task's span"
            )
    finally:
        signals.task_postrun.disconnect(_close_worker_connections)
        # The embedded worker started this process's busy-time heartbeat (worker_ready); a worker process
        # stops it on shutdown, which this thread never signals. Later tests count the live workers.
        from reconcile_project.metrics import _stop_utilization

        _stop_utilization()
    assert ReconciliationLog.objects.get(report_id=report_id).status == "MATCHED"

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    server = next(s for s in finished if s.kind == SpanKind.SERVER and _attrs(s).get("app.report_id"))
    trace_id = server.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]

    assert _attrs(server)["app.request_id"] == "trace-me-1"
    assert _attrs(server)["app.report_id"] == report_id
    assert _attrs(server).get("http.status_code", _attrs(server).get("http.response.status_code")) == 201

    publish = next(s for s in in_trace if s.name == PUBLISH)
    assert publish.kind == SpanKind.PRODUCER and server.name in _parent_chain(publish, by_id)

    # The worker's span continues the trace from the message's headers: publish is its parent.
    run = next(s for s in in_trace if s.name == RUN)
    assert run.kind == SpanKind.CONSUMER and run.parent is not None and run.parent.span_id == publish.context.span_id
    assert _attrs(run)["app.report_id"] == report_id
    assert _attrs(run)["app.request_id"] == "trace-me-1"

    # The platform call, from inside the task.
    platform = [
        s
        for s in in_trace
        if s.kind == SpanKind.CLIENT
        and str(_attrs(s).get("url.full", _attrs(s).get("http.url", ""))).startswith(settings.SANDBOX_URL)
    ]
    assert platform and all(RUN in _parent_chain(s, by_id) for s in platform)

    # PostgreSQL and Redis, by their instrumentations, in the worker's part of the trace.
    worker_side = [s for s in in_trace if RUN in _parent_chain(s, by_id)]
    assert any(_attrs(s).get("db.system", _attrs(s).get("db.system.name")) == "postgresql" for s in worker_side)
    assert any(_attrs(s).get("db.system", _attrs(s).get("db.system.name")) == "redis" for s in in_trace)

    # The task's log lines carry the trace id.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.startswith("{")]
    completed = [
        line for line in lines if line["message"] == "Reconciliation completed" and line.get("report_id") == report_id
    ]
    assert completed and completed[0]["trace_id"] == format_trace_id(trace_id)


def test_tracing_is_off_without_the_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.exporter_from_environment() is None
    assert tracing.exporter_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "otlp"
    assert tracing.exporter_from_environment({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert (
        tracing.exporter_from_environment(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}
        )
        is None
    )
    off = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}
    assert tracing.exporter_from_environment(off) is None
    with pytest.raises(ImproperlyConfigured, match="OTEL_TRACES_EXPORTER"):
        tracing.exporter_from_environment({"OTEL_TRACES_EXPORTER": "jaeger"})
    with pytest.raises(ImproperlyConfigured, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        grpc = {**off, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        tracing.exporter_from_environment(grpc)
