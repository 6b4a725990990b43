"""Real processes for integration tests: the platform sandbox over HTTP, Celery workers and beat.

Workers run as subprocesses against the test database (pytest-django's ``test_*`` database, committed
data via ``transactional_db``) and the test run's own Redis databases (see the root conftest).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from tests.processes import stop_groups

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[str]:
    from platforms.sandbox.server import SandboxServer

    parts = urlsplit(settings.SANDBOX_URL)
    server = SandboxServer(host=parts.hostname or "127.0.0.1", port=parts.port or 8100)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def sandbox_client(sandbox: str):
    from platforms.sandbox.server import SandboxClient

    client = SandboxClient(sandbox)
    client.reset()
    yield client
    client.reset()


@pytest.fixture
def clean_redis() -> Iterator[None]:
    """Empty breaker/limiter state and queues before and after a test."""
    urls = (settings.REDIS_URL, settings.CELERY_BROKER_URL)

    def flush() -> None:
        for url in urls:
            redis.Redis.from_url(url).flushdb()

    flush()
    yield
    flush()


def test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Processes:
    """Celery workers and beat as real subprocesses; every one is stopped at teardown."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def worker(
        self,
        name: str,
        *,
        concurrency: int = 4,
        queues: str = "reconcile,reconcile_priority,maintenance",
        pool: str = "threads",
        wait: bool = True,
        **env: str,
    ) -> subprocess.Popen[bytes]:
        cmd = [
            CELERY,
            "-A",
            "reconcile_project",
            "worker",
            "-n",
            f"{name}@%h",
            "-Q",
            queues,
            "--pool",
            pool,
            "-c",
            str(concurrency),
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        proc = self._start(name, cmd, env)
        if wait:
            wait_until(lambda: "ready." in self.output(name), timeout=30, what=f"worker {name} to start")
        return proc

    def beat(self, name: str = "beat", **env: str) -> subprocess.Popen[bytes]:
        schedule = self.tmp / f"{name}-schedule"
        cmd = [CELERY, "-A", "reconcile_project", "beat", "-l", "INFO", "--schedule", str(schedule)]
        return self._start(name, cmd, {"SWEEP_INTERVAL_SECONDS": "0.5", **env})

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = open(self.log(name), "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env(**env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        path = self.log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        procs = list(self.procs.values())
        self.procs.clear()
        stop_groups(procs)


@pytest.fixture
def processes(tmp_path: Path, transactional_db, clean_redis) -> Iterator[Processes]:
    from reconcile_project.celery import app

    # The workers consume from settings.CELERY_BROKER_URL; the test must publish there too.
    assert app.conf.broker_url == settings.CELERY_BROKER_URL, "an earlier test left Celery on another broker"
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
    # Shown by pytest only when the test failed: what the workers and beat said.
    for log in sorted(tmp_path.glob("*.log")):
        print(f"----- {log.name} (last 60 lines) -----")
        print("\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    # Give killed workers a moment to drop their database connections before the test DB is flushed.
    time.sleep(0.2)
