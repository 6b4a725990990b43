"""Structured logging (structlog over the standard library) and request correlation.

One pipeline for every log line, whoever emits it: a stdlib call such as
``logging.getLogger("platforms.breaker").warning("circuit_opened", extra={"platform": "reddit"})`` and a
structlog call such as ``get_logger(__name__).info("Reconciliation completed", report_id=7)`` both end
in the same :class:`structlog.stdlib.ProcessorFormatter`, so both render the same keys:

    timestamp (ISO 8601 UTC), level, logger, message, module, function, line, process_id, thread_id,
    request_id (when one is bound), trace_id and span_id (while tracing is on, inside a span), and every
    ``extra`` / keyword as its own key.

Handlers: the console (stderr, so that ``manage.py ... --json`` output on stdout stays parseable) in
JSON or a readable format, and, when ``LOG_FILE`` is set, a rotating file (10 MB x 5) that is always
JSON and safe with several processes writing (concurrent-log-handler takes a file lock per write).

Secrets never reach a handler: a redaction processor masks the values of keys such as
``authorization``, ``api_key``, ``token``, ``password`` and ``evidence`` (nested too) and any
``Bearer``/``Api-Key`` credential inside the message.

The request id lives in a :class:`contextvars.ContextVar`, so threads (gunicorn ``--threads``, Celery's
thread pool) and greenlets each see their own. The middleware binds it per request; Celery carries it
in the task message's headers (see :func:`install_celery_hooks`).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import Any, Literal

import structlog
from opentelemetry import trace as otel_trace
from structlog.processors import CallsiteParameter
from structlog.typing import EventDict, Processor, WrappedLogger

REQUEST_ID_HEADER = "X-Request-ID"
#: A client-supplied request id is kept only if it is this short and made of these characters; anything
#: else (log injection, megabyte headers) is replaced by a fresh uuid4.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")

LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5

REDACTED = "[REDACTED]"
#: Keys whose values are never logged (compared lower-cased, ``-`` read as ``_``).
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "http_authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "key",
        "secret",
        "secret_key",
        "password",
        "passwd",
        "token",
        "access_token",
        "refresh_token",
        "developer_token",
        "cookie",
        "set_cookie",
        "sessionid",
        "credentials",
        "evidence",
    }
)
SENSITIVE_SUFFIXES = ("_key", "_secret", "_token", "_password", "_authorization")
#: A credential written into free text ("Authorization: Bearer abc.def", "Api-Key abc.def").
_CREDENTIAL_IN_TEXT = re.compile(r"(?i)\b(bearer|api-key)(\s+)[^\s\"',;]+")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


# --- request id -----------------------------------------------------------------------------------


def get_request_id() -> str | None:
    """The request id bound in this thread/greenlet/task, or None."""
    return _request_id.get()


class bind_request_id:  # noqa: N801 - used like a function: ``bind_request_id(rid)`` or ``with bind_request_id(rid):``
    """Bind ``request_id`` to the current context.

    The binding takes effect on the call; used as a context manager the previous value is restored on
    exit (``with bind_request_id(rid): ...``). Called plainly it stays until :func:`clear_request_id` or
    the next bind (the Celery ``task_prerun``/``task_postrun`` pair uses it that way).
    """

    __slots__ = ("request_id", "_token")

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self._token = _request_id.set(request_id)

    def __enter__(self) -> str | None:
        return self.request_id

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            _request_id.reset(self._token)
        except ValueError:
            # The token belongs to another context (exited from a different thread): just clear.
            _request_id.set(None)


def clear_request_id() -> None:
    _request_id.set(None)


def new_request_id() -> str:
    return str(uuid.uuid4())


def clean_request_id(value: str | None) -> str:
    """The client's ``X-Request-ID`` if it is safe to echo and log, else a new uuid4."""
    if value and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return new_request_id()


# --- processors -----------------------------------------------------------------------------------


def _add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    request_id = _request_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``trace_id`` and ``span_id`` of the current span (reconcile_project/tracing.py), as the collector shows
    them; nothing while tracing is off (no span is ever current then)."""
    context = otel_trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", otel_trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", otel_trace.format_span_id(context.span_id))
    return event_dict


def _add_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None and not event_dict.get("_from_structlog"):
        event_dict["level"] = record.levelname
    else:
        name = "WARNING" if method_name == "warn" else "ERROR" if method_name == "exception" else method_name.upper()
        event_dict["level"] = name
    return event_dict


_RENAMES = (
    ("func_name", "function"),
    ("lineno", "line"),
    ("process", "process_id"),
    ("thread", "thread_id"),
)


_LEADING_KEYS = ("timestamp", "level", "logger", "message", "request_id", "trace_id")


def _rename_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    for old, new in _RENAMES:
        if old in event_dict:
            event_dict[new] = event_dict.pop(old)
    # The runbook's key is ``message`` (structlog calls it ``event``).
    if "event" in event_dict:
        message = event_dict.pop("event")
        if "message" in event_dict:
            # A caller passed message=... as context: keep it rather than lose it.
            event_dict["message_context"] = event_dict["message"]
        event_dict["message"] = message
    # Fixed keys first so a line reads the same way every time (and `head -c` shows what matters).
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


@functools.lru_cache(maxsize=4096)
def _is_sensitive_name(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return k in SENSITIVE_KEYS or k.endswith(SENSITIVE_SUFFIXES)


def _is_sensitive(key: Any) -> bool:
    return isinstance(key, str) and _is_sensitive_name(key)


def _scrub_text(value: str) -> str:
    # Substring tests first: they cost nanoseconds, the regex a microsecond, and nearly no line has either.
    if "earer" in value or "EARER" in value or "pi-" in value or "PI-" in value:
        return _CREDENTIAL_IN_TEXT.sub(r"\1\2" + REDACTED, value)
    return value


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_sensitive(k) else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in value]
    return value


#: Keys whose values the pipeline itself writes (never a caller's data): redaction skips them.
_PIPELINE_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "module",
        "function",
        "line",
        "process_id",
        "thread_id",
        "exc_info",
        "stack_info",
        "trace_id",
        "span_id",
    }
)


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets: values of sensitive keys (at any depth) and credentials written into text."""
    for key in list(event_dict):
        if key in _PIPELINE_KEYS or key.startswith("_"):
            continue
        value = event_dict[key]
        if _is_sensitive(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _scrub_text(value)
        elif isinstance(value, (Mapping, list, tuple)):
            event_dict[key] = _scrub(value)
        elif key == "request" and not isinstance(value, (int, float, bool, type(None))):
            # django.request passes the HttpRequest itself as ``extra``: its repr adds nothing the
            # request lines do not already have, and its META would carry headers.
            event_dict.pop(key)
    return event_dict


#: Attributes every LogRecord has (and those formatters add); anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("n", logging.INFO, "p", 0, "m", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "_reconcile_json",
}
#: Keys of the line itself; an ``extra`` with one of these names is kept under another name instead of
#: overwriting it (``extra={"event": ...}`` would otherwise replace the message).
_PROTECTED_KEYS = frozenset(
    {"event", "message", "timestamp", "level", "logger", "module", "function", "line", "process_id", "thread_id"}
)


def _add_extra(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog's ExtraAdder, minus its one hazard: an ``extra`` key never replaces a key of the line."""
    record = event_dict.get("_record")
    if record is None:
        return event_dict
    for key, value in record.__dict__.items():
        if key in _RECORD_ATTRIBUTES:
            continue
        if key in _PROTECTED_KEYS:
            key = "event_type" if key == "event" else f"extra_{key}"
        event_dict[key] = value
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        _add_trace_context,
        structlog.stdlib.add_logger_name,
        _add_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.CallsiteParameterAdder(
            [
                CallsiteParameter.MODULE,
                CallsiteParameter.FUNC_NAME,
                CallsiteParameter.LINENO,
                CallsiteParameter.PROCESS,
                CallsiteParameter.THREAD,
            ]
        ),
    ]


class _JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """The JSON line of a record is rendered once, however many JSON handlers (stderr, file) write it.

    The line is kept on the record (``_reconcile_json``), so the second handler writes the very same
    line (same timestamp) without running the processors again.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get("_reconcile_json")
        if line is None:
            line = super().format(record)
            record.__dict__["_reconcile_json"] = line
        return line


def _formatter(fmt: Literal["json", "console"]) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor
    if fmt == "json":
        # Tracebacks become a string *before* redaction, so a credential inside one is masked too.
        final: list[Processor] = [structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer(default=repr)
    else:
        final = []
        # Plain tracebacks: the rich formatter prints local variables, which may hold keys or evidence.
        renderer = structlog.dev.ConsoleRenderer(
            event_key="message", colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    formatter_class = _JSONFormatter if fmt == "json" else structlog.stdlib.ProcessorFormatter
    return formatter_class(
        foreign_pre_chain=[*_shared_processors(), _add_extra],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *final,
            _rename_fields,
            redact,
            renderer,
        ],
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _file_handler(log_file: str) -> logging.Handler:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    directory = os.path.dirname(os.path.abspath(log_file))
    os.makedirs(directory, exist_ok=True)
    return ConcurrentRotatingFileHandler(
        log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
    )


#: Libraries that are chatty at INFO without telling ops anything.
_QUIET_LOGGERS = {"kombu": "WARNING", "amqp": "WARNING", "urllib3": "WARNING", "asyncio": "WARNING"}


def configure_logging(*, level: str, fmt: Literal["json", "console"], log_file: str) -> None:
    """Configure stdlib logging and structlog for this process (called from settings).

    Idempotent: calling it again replaces the root handlers (a test can re-point ``LOG_FILE``).
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"fmt: expected json or console, got {fmt!r}")
    level = level.upper()
    console = _StderrHandler()
    console.setFormatter(_formatter(fmt))
    handlers: list[logging.Handler] = [console]
    if log_file:
        file_handler = _file_handler(log_file)
        file_handler.setFormatter(_formatter("json"))
        handlers.append(file_handler)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_reconcile_handler", False):
            root.removeHandler(old)
            old.close()
    for handler in handlers:
        handler._reconcile_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for name, quiet_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet_level)
    # Django's own loggers propagate to the root (no DEFAULT_LOGGING: LOGGING_CONFIG is None).
    logging.getLogger("django").setLevel(level)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    """A structlog logger over the stdlib logger ``name`` (``log.info("message", key=value)``)."""
    return structlog.stdlib.get_logger(name)


_performance_logger = logging.getLogger("app.performance")
_audit_logger = logging.getLogger("app.audit")


def _safe_extra(values: Mapping[str, Any]) -> dict[str, Any]:
    # The stdlib raises KeyError for an ``extra`` named like a LogRecord attribute ("name", "module").
    return {(f"extra_{k}" if k in _RECORD_ATTRIBUTES else k): v for k, v in values.items()}


def log_performance(operation: str, duration_ms: float, **context: Any) -> None:
    """``Performance: <operation>`` on ``app.performance`` with ``duration_ms`` (grep it, jq the number)."""
    if _performance_logger.isEnabledFor(logging.INFO):
        _performance_logger.info(
            f"Performance: {operation}",
            extra=_safe_extra({"operation": operation, "duration_ms": round(float(duration_ms), 2), **context}),
            stacklevel=2,
        )


def log_business_event(event: str, **details: Any) -> None:
    """``Business event: <event>`` on ``app.audit`` (affiliate_submission, reconciliation_completed, ...)."""
    if _audit_logger.isEnabledFor(logging.INFO):
        _audit_logger.info(
            f"Business event: {event}", extra=_safe_extra({"event_type": event, **details}), stacklevel=2
        )


# --- Celery ---------------------------------------------------------------------------------------

_worker_logger = logging.getLogger("app.jobs.worker")
_celery_hooks_installed = False


def _task_request_id(task: Any) -> str | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    # Celery 5.x: custom message headers become attributes of task.request *and* are collected in
    # task.request.headers; read both so a change of either layout keeps working.
    value = getattr(request, "request_id", None)
    if not value:
        headers = getattr(request, "headers", None) or {}
        value = headers.get("request_id") if isinstance(headers, Mapping) else None
    return str(value) if value else None


def _on_before_task_publish(headers: MutableMapping[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None or headers.get("request_id"):
        return
    request_id = _request_id.get()
    if request_id:
        headers["request_id"] = request_id


def _on_task_prerun(task: Any = None, **kwargs: Any) -> None:
    bind_request_id(_task_request_id(task))


def _on_task_postrun(**kwargs: Any) -> None:
    clear_request_id()


def _close_old_connections(task: Any = None, **kwargs: Any) -> None:
    """Before a task: drop this thread's connections that broke in an earlier task or are past CONN_MAX_AGE.

    Not Django's ``close_old_connections()``: that also re-arms the health check, a ``SELECT 1`` round trip
    before every task, which cost a reconciliation more than its own lock read. A connection the server
    dropped in between is found by the task's first statement instead: it raises OperationalError, the
    task is retried (``autoretry_for``), and before the retry this closes the connection that failed.
    """
    if getattr(getattr(task, "request", None), "is_eager", False):
        return  # run inline by the caller, inside the caller's transaction
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.errors_occurred or (conn.close_at is not None and time.monotonic() >= conn.close_at):
            conn.close_if_unusable_or_obsolete()


def _on_setup_logging(**kwargs: Any) -> None:
    # Connecting to this signal tells Celery not to configure logging itself (no root-logger hijack,
    # no stdout redirect): loading the Django settings has already called configure_logging().
    from django.conf import settings

    settings.LOG_LEVEL  # noqa: B018 - forces the settings (and so the logging) to load


def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    pool = getattr(getattr(sender, "pool", None), "limit", None)
    _worker_logger.info("Reconciliation worker started", extra={"hostname": hostname, "concurrency": pool})


def _on_worker_shutting_down(sender: Any = None, sig: Any = None, how: Any = None, **kwargs: Any) -> None:
    _worker_logger.info("Reconciliation worker stop requested", extra={"hostname": sender, "signal": sig, "how": how})


def install_celery_hooks(app: Any = None) -> None:
    """Connect logging, request-id propagation, metrics and exception tracking to Celery's signals.

    Called once from ``reconcile_project/celery.py``; idempotent.
    """
    global _celery_hooks_installed
    if _celery_hooks_installed:
        return
    _celery_hooks_installed = True
    from celery import signals

    signals.setup_logging.connect(_on_setup_logging, weak=False)
    signals.before_task_publish.connect(_on_before_task_publish, weak=False)
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)
    signals.task_prerun.connect(_close_old_connections, weak=False)
    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)

    # Metrics handlers are resolved on first use: importing prometheus_client here, before the settings
    # have set PROMETHEUS_MULTIPROC_DIR, would lock this process into single-process mode.
    for signal_name, handler_name in _METRICS_HANDLERS:
        getattr(signals, signal_name).connect(_lazy_handler("reconcile_project.metrics", handler_name), weak=False)
    signals.task_failure.connect(_lazy_handler("reconcile_project.worker_exceptions", "_on_task_failure"), weak=False)


#: (Celery signal, handler in reconcile_project.metrics)
_METRICS_HANDLERS = (
    ("worker_init", "_on_worker_init"),
    ("worker_ready", "_on_worker_ready"),
    ("worker_process_init", "_on_worker_process_init"),
    ("worker_process_init", "_on_worker_process_init_breaker"),
    ("task_prerun", "_on_task_prerun"),
    ("task_postrun", "_on_task_postrun"),
    ("worker_shutting_down", "_on_process_exit"),
    ("worker_process_shutdown", "_on_process_exit"),
)


def _lazy_handler(module: str, name: str) -> Any:
    def handler(**kwargs: Any) -> None:
        import importlib

        getattr(importlib.import_module(module), name)(**kwargs)

    handler.__name__ = handler.__qualname__ = f"{module}.{name}"
    return handler
