"""One JSON shape for every log line, request-id binding, and no secrets in the logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import Client

from reconcile_project import observability
from reconcile_project.observability import (
    bind_request_id,
    clear_request_id,
    get_logger,
    get_request_id,
    log_business_event,
    log_performance,
)

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_FIELDS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "module",
    "function",
    "line",
    "process_id",
    "thread_id",
    "request_id",
)
SECRET = "sk_live_" + "9f8e7d6c5b4a"


def test_a_stdlib_line_carries_every_listed_field_and_its_extras(json_logs) -> None:
    with bind_request_id("fields-1"):
        logging.getLogger("app.jobs.worker").warning("Processing reconciliation job", extra={"report_id": 42})
    (line,) = json_logs.find("Processing reconciliation job", request_id="fields-1")
    for field in REQUIRED_FIELDS:
        assert field in line, field
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    assert (line["level"], line["logger"], line["report_id"]) == ("WARNING", "app.jobs.worker", 42)
    assert line["module"] == "test_logging"
    assert line["function"] == "test_a_stdlib_line_carries_every_listed_field_and_its_extras"
    assert line["process_id"] == os.getpid() and line["thread_id"] == threading.get_ident()
    assert isinstance(line["line"], int)
    assert "event" not in line


def test_a_structlog_line_has_the_same_shape(json_logs) -> None:
    with bind_request_id("fields-2"):
        get_logger("app.test").info("Reconciliation completed", report_id=7, status="MATCHED")
    (line,) = json_logs.find("Reconciliation completed", request_id="fields-2")
    for field in REQUIRED_FIELDS:
        assert field in line, field
    assert (line["level"], line["logger"], line["status"]) == ("INFO", "app.test", "MATCHED")
    assert line["function"] == "test_a_structlog_line_has_the_same_shape"


def test_an_extra_named_like_a_line_key_does_not_replace_it(json_logs) -> None:
    logging.getLogger("app.audit").info(
        "Business event: reconciliation_completed", extra={"event": "reconciliation_completed", "level": "x"}
    )
    (line,) = json_logs.find("Business event: reconciliation_completed")
    assert line["event_type"] == "reconciliation_completed"
    assert line["level"] == "INFO" and line["extra_level"] == "x"


def test_no_request_id_key_when_none_is_bound(json_logs) -> None:
    logging.getLogger("app.test").info("unbound line")
    (line,) = json_logs.find("unbound line")
    assert "request_id" not in line


def test_exceptions_are_rendered_as_a_traceback_string(json_logs) -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("reconciliation.worker").exception("Reconciliation job failed", extra={"report_id": 3})
    (line,) = json_logs.find("Reconciliation job failed")
    assert line["level"] == "ERROR"
    assert "Traceback" in line["exception"] and "ValueError: bad value" in line["exception"]


def test_log_performance_shape(json_logs) -> None:
    log_performance("platform_fetch", 12.3456, platform="reddit", outcome="ok")
    (line,) = json_logs.find("Performance: platform_fetch")
    assert line["logger"] == "app.performance"
    assert line["duration_ms"] == 12.35 and line["platform"] == "reddit" and line["operation"] == "platform_fetch"
    assert line["function"] == "test_log_performance_shape"


def test_helpers_accept_context_named_like_record_attributes(json_logs) -> None:
    log_performance("submit_new_post", 1.0, name="x", module="y")
    (line,) = json_logs.find("Performance: submit_new_post")
    assert (line["extra_name"], line["extra_module"], line["module"]) == ("x", "y", "test_logging")


def test_log_business_event_shape(json_logs) -> None:
    log_business_event("affiliate_submission", report_id=9, affiliate_id=2)
    (line,) = json_logs.find("Business event: affiliate_submission")
    assert line["logger"] == "app.audit"
    assert (line["event_type"], line["report_id"], line["affiliate_id"]) == ("affiliate_submission", 9, 2)


def test_secrets_are_redacted_in_extras_kwargs_nested_values_and_text(json_logs) -> None:
    logging.getLogger("app.test").info(
        "calling platform with Authorization: Bearer " + SECRET,
        extra={
            "api_key": SECRET,
            "Authorization": "Api-Key " + SECRET,
            "evidence": {"screenshot": SECRET},
            "headers": {"X-API-Key": SECRET, "accept": "json"},
            "credentials": [SECRET],
            "platform_access_token": SECRET,
        },
    )
    get_logger("app.test").info("structlog", password=SECRET, client_secret=SECRET, token=SECRET, key=SECRET)
    assert SECRET not in json_logs.text
    first = json_logs.records[0]
    assert first["api_key"] == "[REDACTED]" and first["evidence"] == "[REDACTED]"
    assert first["headers"] == {"X-API-Key": "[REDACTED]", "accept": "json"}
    assert first["message"] == "calling platform with Authorization: Bearer [REDACTED]"


@pytest.mark.urls("tests.ops.urls")
def test_an_authorization_header_never_reaches_the_logs_even_on_a_500(json_logs) -> None:
    client = Client(raise_request_exception=False)
    client.get("/ops-test/items/1", HTTP_AUTHORIZATION=f"Bearer {SECRET}", HTTP_X_API_KEY=SECRET)
    client.get("/ops-test/boom", HTTP_AUTHORIZATION=f"Api-Key {SECRET}")
    assert "Request completed" in json_logs.text
    assert SECRET not in json_logs.text


def test_request_ids_are_isolated_between_threads() -> None:
    seen: dict[str, str | None] = {}
    ready = threading.Barrier(2)

    def work(name: str) -> None:
        with bind_request_id(name):
            ready.wait()
            seen[name] = get_request_id()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("thread-a", "thread-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"thread-a": "thread-a", "thread-b": "thread-b"}
    assert get_request_id() is None


def test_bind_request_id_restores_the_previous_value() -> None:
    with bind_request_id("outer"):
        with bind_request_id("inner"):
            assert get_request_id() == "inner"
        assert get_request_id() == "outer"
    assert get_request_id() is None


def test_celery_publish_adds_the_bound_request_id_unless_the_sender_set_one() -> None:
    headers: dict[str, str] = {}
    with bind_request_id("from-context"):
        observability._on_before_task_publish(headers=headers)
        explicit = {"request_id": "explicit"}
        observability._on_before_task_publish(headers=explicit)
    assert headers == {"request_id": "from-context"} and explicit == {"request_id": "explicit"}
    untouched: dict[str, str] = {}
    observability._on_before_task_publish(headers=untouched)
    assert untouched == {}


@pytest.mark.parametrize(
    "request_",
    [
        SimpleNamespace(request_id="rid-attr", headers=None),  # Celery 5.x: custom headers are attributes
        SimpleNamespace(headers={"request_id": "rid-attr"}),  # ... and collected in request.headers
    ],
)
def test_task_prerun_binds_the_request_id_and_postrun_clears_it(request_) -> None:
    observability._on_task_prerun(task=SimpleNamespace(request=request_))
    try:
        assert get_request_id() == "rid-attr"
    finally:
        observability._on_task_postrun()
    assert get_request_id() is None
    clear_request_id()


def test_the_configured_process_writes_json_lines_to_log_file(tmp_path: Path) -> None:
    """The real configuration, from settings, in a fresh process: console JSON on stderr and the file."""
    log_file = tmp_path / "logs" / "app.log"
    code = (
        "import django, logging; django.setup();"
        "from reconcile_project.observability import bind_request_id;"
        "ctx = bind_request_id('sub-1');"
        "logging.getLogger('app.jobs.worker').info('Reconciliation worker started', extra={'api_key': 'zz-secret'})"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "LOG_FORMAT": "json",
        "LOG_FILE": str(log_file),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    file_lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    console_lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    for lines in (file_lines, console_lines):
        (line,) = [entry for entry in lines if entry["message"] == "Reconciliation worker started"]
        for field in REQUIRED_FIELDS:
            assert field in line, field
        assert line["request_id"] == "sub-1" and line["api_key"] == "[REDACTED]"
        assert not any(key.startswith("_") for key in line)
    assert "zz-secret" not in log_file.read_text() + result.stderr
    # Rendered once and written twice: the very same line (same timestamp) on the console and in the file.
    (file_text,) = [t for t in log_file.read_text().splitlines() if "Reconciliation worker started" in t]
    assert file_text in result.stderr.splitlines()


def test_the_file_is_json_even_when_the_console_is_not(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    code = "import django, logging; django.setup(); logging.getLogger('x').warning('console line')"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "LOG_FORMAT": "console",
        "LOG_FILE": str(log_file),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "console line" in result.stderr and not result.stderr.lstrip().startswith("{")
    assert json.loads(log_file.read_text().splitlines()[-1])["message"] == "console line"


def test_the_rotating_file_handler_is_multiprocess_safe_and_sized_as_documented(tmp_path: Path) -> None:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    handler = observability._file_handler(str(tmp_path / "a.log"))
    try:
        assert isinstance(handler, ConcurrentRotatingFileHandler)
        assert handler.maxBytes == 10 * 1024 * 1024 and handler.backupCount == 5
    finally:
        handler.close()


def test_two_processes_writing_one_log_file_lose_and_mangle_no_line(tmp_path: Path) -> None:
    log_file = tmp_path / "shared.log"
    code = (
        "import django, logging, sys; django.setup();"
        "log = logging.getLogger('app.test');"
        "[log.info('line', extra={'writer': sys.argv[1], 'n': n, 'pad': 'x' * 200}) for n in range(400)]"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "LOG_FORMAT": "json",
        "LOG_FILE": str(log_file),
        "LOG_LEVEL": "INFO",
    }
    procs = [
        subprocess.Popen([sys.executable, "-c", code, name], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    written = {(line["writer"], line["n"]) for line in lines if line["message"] == "line"}
    assert written == {(w, n) for w in ("a", "b") for n in range(400)}
