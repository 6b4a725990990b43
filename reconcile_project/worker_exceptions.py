"""The last worker exceptions, shared by every worker process (the runbook's ``LAST_EXCEPTIONS``).

A capped Redis list (newest first, at most :data:`MAX_EXCEPTIONS`) in the application's Redis database,
so ``GET /debug/worker-exceptions`` shows what any worker on any host hit. Recording never raises: a
debugging aid must not turn one failure into two.

Every Celery task that ends in an exception is recorded through the ``task_failure`` signal; code that
catches an exception and carries on (the engine turning a crash into an ``internal_error`` outcome) calls
:func:`record_worker_exception` itself. An exception is recorded at most once, whichever path sees it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from typing import Any

logger = logging.getLogger("app.jobs.worker")

REDIS_KEY = "ops:worker_exceptions"
MAX_EXCEPTIONS = 50
_MAX_MESSAGE = 1000
_RECORDED_FLAG = "_reconcile_recorded"


def record_worker_exception(*, report_id: int | None, exc: BaseException) -> None:
    """Push ``exc`` (with the report it happened on) to the shared list; never raises."""
    try:
        if getattr(exc, _RECORDED_FLAG, False):
            return
        try:
            setattr(exc, _RECORDED_FLAG, True)
        except Exception:  # some built-in exceptions refuse attributes; recording twice is harmless
            pass
        entry = {
            "report_id": report_id,
            "type": type(exc).__name__,
            "message": str(exc)[:_MAX_MESSAGE],
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "worker": f"{socket.gethostname()}:{os.getpid()}",
        }
        from reconcile_project.redis import get_redis

        pipe = get_redis().pipeline(transaction=False)
        pipe.lpush(REDIS_KEY, json.dumps(entry, default=str))
        pipe.ltrim(REDIS_KEY, 0, MAX_EXCEPTIONS - 1)
        pipe.execute()
    except Exception as error:
        logger.warning("Could not record worker exception", extra={"error": f"{type(error).__name__}: {error}"})


def recent_worker_exceptions() -> list[dict[str, Any]]:
    """Newest first: ``{report_id, type, message, time, worker}``. Raises if Redis is unreachable."""
    from reconcile_project.redis import get_redis

    entries = []
    for raw in get_redis().lrange(REDIS_KEY, 0, MAX_EXCEPTIONS - 1):
        try:
            entries.append(json.loads(raw))
        except ValueError:
            continue
    return entries


def _report_id_of(args: Any, kwargs: Any) -> int | None:
    candidate = (kwargs or {}).get("report_id")
    if candidate is None and args:
        candidate = args[0]
    try:
        return int(candidate) if candidate is not None else None
    except (TypeError, ValueError):
        return None


def _on_task_failure(
    sender: Any = None, exception: BaseException | None = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    if exception is None:
        return
    name = getattr(sender, "name", "") or ""
    report_id = _report_id_of(args, kwargs) if name.endswith("reconcile_report") else None
    record_worker_exception(report_id=report_id, exc=exception)
