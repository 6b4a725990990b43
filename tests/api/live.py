"""Real processes for the API's concurrency tests: a private redis-server and gunicorn on free loopback ports."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.processes import free_port, stop_groups

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def wait_for_port(port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Gunicorn:
    """The WSGI app under gunicorn (gthread), against the test database, on a free port."""

    def __init__(self, workdir: Path, *, database_url: str, env: dict[str, str], workers: int = 3, threads: int = 4):
        self.port = free_port()
        self.workdir = workdir
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
            "DATABASE_URL": database_url,
            "CONN_MAX_AGE": "600",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.cmd = [
            GUNICORN, "reconcile_project.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
            "--timeout", "60", "--graceful-timeout", "5", "--keep-alive", "30",
            # Its own control socket: the default one under the home directory is shared by every gunicorn.
            "--control-socket", str(workdir / "gunicorn.ctl"),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(self.workdir / "gunicorn.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for_port(self.port, timeout=30, proc=self.proc)
        # Import the app in every worker before timing anything: one request per worker thread is plenty.
        for _ in range(6):
            request(self.port, "GET", "/api/v1/affiliates/me")

    def stop(self) -> None:
        if self.proc is not None:
            stop_groups([self.proc], grace=15)
        self.proc = None
        self.log.close()

    def output(self) -> str:
        return (self.workdir / "gunicorn.log").read_text(errors="replace")


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request (on ``conn`` when given, kept alive); returns (status, parsed JSON or None, headers)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    payload = json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        parsed = (
            json.loads(raw) if raw and response.getheader("Content-Type", "").startswith("application/json") else None
        )
        return response.status, parsed, dict(response.getheaders())
    finally:
        if own:
            conn.close()
