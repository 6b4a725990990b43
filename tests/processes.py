"""Stopping the subprocesses tests start (each in a session of its own, so its children go too)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], *, grace: float = 20.0) -> None:
    """SIGTERM every process group at once, wait up to ``grace`` seconds for each, then SIGKILL it."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
