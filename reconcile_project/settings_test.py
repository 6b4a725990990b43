"""Settings for the test suite: the normal settings, with the environment pointed at test services.

pytest-django imports the settings module before any conftest runs, so the environment is set here:
- PostgreSQL from TEST_DATABASE_URL (pytest-django creates and drops its ``test_*`` database);
- Redis databases of their own (TEST_REDIS_URL, default db 14; the broker takes the next one), so a test
  run never touches the queues or breakers of a stack started with ``make run``;
- the platform sandbox on a free loopback port, so every adapter's base URL points at it;
- fresh claims sent at once, never left to fill a batch.
Subprocesses the tests start (workers, beat, gunicorn) inherit this environment.
"""

import os
import socket


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


os.environ.setdefault("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/reconcile")
os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
os.environ["DJANGO_ENV"] = "test"
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("SANDBOX_URL", f"http://127.0.0.1:{_free_port()}")
# Every fresh claim is sent at once (no fill wait): a test that submits expects its message, and the
# workers it starts run without beat. The batching of fresh claims has tests of its own.
os.environ.setdefault("RECONCILE_BATCH__FILL_WAIT_SECONDS", "0")

from reconcile_project.settings import *  # noqa: E402,F403
