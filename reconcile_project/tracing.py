"""OpenTelemetry tracing across the pipeline: the HTTP request, the Celery publish and task, the platform
call and the PostgreSQL and Redis calls, by the ecosystem's instrumentation packages.

Off by default: nothing is instrumented and no span is made unless the OpenTelemetry specification's
variables ask for export (README "Tracing"):

- ``OTEL_TRACES_EXPORTER=otlp`` (or ``console``, spans printed on stdout), or an OTLP endpoint
  (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), which implies ``otlp``;
- ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keeps it off whatever else is set.

OTLP goes over HTTP/protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL`` may only be ``http/protobuf``). The SDK
itself reads the rest: ``OTEL_SERVICE_NAME`` (default ``affiliate-reconciliation-platform``),
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_EXPORTER_OTLP_TIMEOUT`` and ``OTEL_BSP_*`` (the batch processor).

:func:`configure_tracing` runs once per process where the work happens: the WSGI/ASGI module (each
gunicorn worker imports it after the fork) and Celery's ``worker_init``/``worker_process_init`` and
``beat_init`` (reconcile_project/celery.py). The trace context rides in the task message's headers (W3C
``traceparent``), so a submission's request, its publish, the task and the platform call are one trace.
Spans carry ``app.request_id`` and ``app.report_id``; log lines carry ``trace_id`` and ``span_id``
(reconcile_project/observability.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

SERVICE_NAME = "affiliate-reconciliation-platform"
ATTR_REQUEST_ID = "app.request_id"
ATTR_REPORT_ID = "app.report_id"
EXPORTERS = ("otlp", "console")
_RECONCILE_TASK = "reconciliation.tasks.reconcile_report"

_lock = threading.Lock()
#: {"provider": TracerProvider, or None when the environment said off}; empty until configure_tracing runs.
_state: dict[str, Any] = {}
#: The instrumentations this module switched on (shutdown_tracing switches them off).
_state_instrumentors: list[Any] = []


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def exporter_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """``otlp``, ``console`` or None (off), from the OTEL_* variables; a bad value is a clear error."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name, "").strip()

    if get("OTEL_SDK_DISABLED").lower() == "true":
        return None
    exporters = [e.strip().lower() for e in get("OTEL_TRACES_EXPORTER").split(",") if e.strip()]
    if exporters == ["none"]:
        return None
    unknown = [e for e in exporters if e not in EXPORTERS]
    if unknown or len(exporters) > 1:
        raise ImproperlyConfigured(
            f"OTEL_TRACES_EXPORTER: expected one of otlp, console or none, got {get('OTEL_TRACES_EXPORTER')!r}"
        )
    if not exporters and not (get("OTEL_EXPORTER_OTLP_ENDPOINT") or get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    exporter = exporters[0] if exporters else "otlp"
    if exporter == "otlp":
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = get(name)
            if protocol and protocol != "http/protobuf":
                raise ImproperlyConfigured(f"{name}: only http/protobuf is installed, got {protocol!r}")
    return exporter


def tracing_enabled() -> bool:
    return bool(_state.get("provider"))


def configure_tracing(exporter: Any = None, *, set_global: bool = True) -> bool:
    """Set up the tracer provider and the instrumentations for this process, once; True when tracing is on.

    Without ``exporter`` the environment decides (:func:`exporter_from_environment`) and spans leave in
    batches. A test passes an exporter (the SDK's ``InMemorySpanExporter``): spans are then exported as
    they end, and ``set_global=False`` leaves the process-wide provider alone.
    """
    with _lock:
        if _state.get("provider") is not None:
            return True
        if _state and exporter is None:
            return False  # the environment said off
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        processor: SpanProcessor
        if exporter is not None:
            processor = SimpleSpanProcessor(exporter)
        else:
            kind = exporter_from_environment()
            if kind is None:
                _state["provider"] = None
                return False
            if kind == "console":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                processor = BatchSpanProcessor(ConsoleSpanExporter())
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                processor = BatchSpanProcessor(OTLPSpanExporter())
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is only the default.
        named = _env("OTEL_SERVICE_NAME") or "service.name=" in _env("OTEL_RESOURCE_ATTRIBUTES")
        resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(processor)
        if set_global:
            trace.set_tracer_provider(provider)
        _instrument(provider)
        _state["provider"] = provider
        return True


def shutdown_tracing() -> None:
    """Remove every instrumentation and flush the provider (tests; a process exit flushes by itself)."""
    with _lock:
        provider = _state.pop("provider", None)
        _state.clear()
        if provider is None:
            return
        for instrumentor in _state_instrumentors:
            instrumentor.uninstrument()
        _state_instrumentors.clear()
        _disconnect_signals()
        provider.shutdown()


def _instrument(provider: Any) -> None:
    from celery import signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    # Before the Celery instrumentation's own handler: the span current at publish time is the caller's
    # (the submission's HTTP request), which gets the report id.
    signals.before_task_publish.connect(_tag_publishing_span, weak=False)
    instrumentors: list[tuple[Any, dict[str, Any]]] = [
        # Inserted first in MIDDLEWARE, so its response hook sees the request id our middleware set.
        (DjangoInstrumentor(), {"response_hook": _tag_request_span}),
        (CeleryInstrumentor(), {}),
        (RequestsInstrumentor(), {}),
        # Django passes its cursor class to psycopg.connect(), which the instrumentation wraps.
        (PsycopgInstrumentor(), {"enable_commenter": False}),
        (RedisInstrumentor(), {}),
    ]
    for instrumentor, options in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider, **options)
            _state_instrumentors.append(instrumentor)
    # After the Celery instrumentation's handler, which has made the task's span current by then.
    signals.task_prerun.connect(_tag_task_span, weak=False)


def _disconnect_signals() -> None:
    from celery import signals

    signals.before_task_publish.disconnect(_tag_publishing_span)
    signals.task_prerun.disconnect(_tag_task_span)


def _set(span: Any, name: str, value: Any) -> None:
    if value is not None and value != "" and span.is_recording():
        span.set_attribute(name, str(value) if not isinstance(value, int) else value)


def _report_id_of(task_name: str | None, args: Any) -> int | None:
    if task_name != _RECONCILE_TASK or not args:
        return None
    try:
        return int(args[0])
    except (TypeError, ValueError):
        return None


def _tag_request_span(span: Any, request: Any, response: Any) -> None:
    from reconcile_project.observability import REQUEST_ID_HEADER

    _set(span, ATTR_REQUEST_ID, response.get(REQUEST_ID_HEADER) if response is not None else None)


def _tag_publishing_span(headers: Mapping[str, Any] | None = None, body: Any = None, **kwargs: Any) -> None:
    from opentelemetry import trace

    from reconcile_project.observability import get_request_id

    span = trace.get_current_span()
    task = (headers or {}).get("task")
    args = body[0] if isinstance(body, (list, tuple)) and body else None
    _set(span, ATTR_REPORT_ID, _report_id_of(task, args))
    _set(span, ATTR_REQUEST_ID, get_request_id())


def _tag_task_span(task: Any = None, args: Any = None, **kwargs: Any) -> None:
    from opentelemetry import trace

    from reconcile_project.observability import get_request_id

    span = trace.get_current_span()
    _set(span, ATTR_REPORT_ID, _report_id_of(getattr(task, "name", None), args))
    _set(span, ATTR_REQUEST_ID, get_request_id())
