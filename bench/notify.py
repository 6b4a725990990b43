"""Notification benchmark: 10,000 alerts, each delivered as a signed webhook to a local receiver.

    .venv/bin/python bench/notify.py [--alerts 10000] [--raisers 4] [--workers 1] [--concurrency 8]
                                     [--paced 600] [--paced-rate 20]

Each alert is raised in its own transaction (``alert_raise``, which writes the delivery row, the outbox,
in that transaction and publishes it on commit) by ``--raisers`` threads as fast as they can; Celery
workers on the ``notifications`` queue (threads pool, as the ``notifier`` process of ``make run``) claim,
sign and POST each one to the platform sandbox's webhook inbox, which timestamps what it receives. Then a
paced run raises ``--paced`` alerts at ``--paced-rate``/s, below capacity. Printed (JSON only):

* ``burst.deliveries_per_second``: alerts / (last receipt − first commit) for the 10,000-alert burst;
* ``burst.delay_ms``: p50/p95/max from an alert's commit to its receipt at the receiver during the burst
  (alerts queue while the burst lasts, so this is the delay under load);
* ``paced.delay_ms``: the same delay when the workers keep up (the delay of an alert on a normal day);
* ``worker_cpu_seconds`` and ``deliveries_per_worker_cpu_second``: the workers' CPU (``/proc``), a figure
  less sensitive to a busy machine than wall-clock throughput;
* ``exactly_once``: every event id received once and every delivery row DELIVERED.

Everything runs on loopback: PostgreSQL database ``reconcile_bench_notify`` (created and migrated here, or
``BENCH_DATABASE_URL``), a private redis-server on a free port (app Redis db 0, broker db 1), the sandbox
as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REDIS_PORT = free_port()
SANDBOX_PORT = free_port()
from bench.benchdb import bench_environment  # noqa: E402

ENV = bench_environment(
    database="reconcile_bench_notify",
    redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
    SANDBOX_URL=f"http://127.0.0.1:{SANDBOX_PORT}",
)

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from alerts.models import Alert  # noqa: E402
from alerts.services import alert_raise  # noqa: E402
from notifications.models import Delivery, DeliveryAttempt, Destination  # noqa: E402
from reconcile_project.config import AlertingSettings  # noqa: E402

CELERY = str(Path(sys.executable).with_name("celery"))
SANDBOX = f"http://127.0.0.1:{SANDBOX_PORT}"


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children so far (threads are counted in the process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def raise_alerts(n: int, threads: int, rate: float | None) -> dict[int, float]:
    """Raise ``n`` alerts from ``threads`` threads (at ``rate``/s in all when given); alert id -> commit time."""
    import threading

    from django.db import connection

    settings = AlertingSettings.model_validate({})
    committed: dict[int, float] = {}
    lock = threading.Lock()
    counter = iter(range(n))
    started = time.monotonic()

    def raiser() -> None:
        try:
            for k in counter:
                if rate:
                    time.sleep(max(0.0, started + k / rate - time.monotonic()))
                with transaction.atomic():
                    raised = alert_raise(
                        alert_type=Alert.Type.MISSING_DATA,
                        severity=Alert.Severity.MEDIUM,
                        title=f"bench alert {k}",
                        settings=settings,
                    )
                at = time.time()  # after the commit (and its publish)
                with lock:
                    committed[raised.alert.pk] = at
        finally:
            connection.close()

    pool = [threading.Thread(target=raiser) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return committed


def summarise(committed: dict[int, float], received: list[dict]) -> dict[str, object]:
    delays: list[float] = []
    event_ids: set[str] = set()
    last_receipt, verified = 0.0, 0
    for record in received:
        alert_id = record["body"]["data"]["alert"]["id"]
        if alert_id in committed and record["status"] == 200:
            delays.append((record["received_at"] - committed[alert_id]) * 1000)
            event_ids.add(record["event_id"])
            last_receipt = max(last_receipt, record["received_at"])
            verified += bool(record["verified"])
    first_commit, last_commit = min(committed.values()), max(committed.values())
    return {
        "alerts": len(committed),
        "received_once": len(event_ids) == len(delays) == len(committed),
        "signatures_verified": verified,
        "raise_per_second": round(len(committed) / max(last_commit - first_commit, 1e-9), 1),
        "deliveries_per_second": round(len(delays) / (last_receipt - first_commit), 1),
        "delay_ms": {
            "p50": round(statistics.median(delays), 1),
            "p95": round(percentile(delays, 0.95), 1),
            "max": round(max(delays), 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker process")
    parser.add_argument("--raisers", type=int, default=4, help="threads raising the burst's alerts")
    parser.add_argument("--paced", type=int, default=600, help="alerts of the paced run (0: none)")
    parser.add_argument("--paced-rate", type=float, default=20.0, help="alerts per second of the paced run")
    parser.add_argument(
        "--drain",
        action="store_true",
        help="raise the burst before the workers start, then time how fast they empty the queue "
        "(deliveries/s of the workers alone, not bounded by how fast alerts are raised)",
    )
    args = parser.parse_args()

    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise SystemExit("redis-server is not on PATH")
    procs = [
        start(
            [redis_binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            ENV | dict(os.environ),
        ),
        start(
            [sys.executable, "-m", "platforms.sandbox.server", "--host", "127.0.0.1", "--port", str(SANDBOX_PORT)],
            dict(os.environ),
        ),
    ]
    try:
        call_command("migrate", verbosity=0, interactive=False)
        with transaction.atomic():
            Delivery.objects.filter(destination__name="bench").update(status="DELIVERED")
            Destination.objects.filter(name="bench").update(is_active=False, name=f"bench-old-{time.time():.0f}")
            destination = Destination.objects.create(
                name="bench", kind=Destination.Kind.WEBHOOK, url=f"{SANDBOX}/_webhooks/bench"
            )
            # Other destinations of this database must not share the run.
            Destination.objects.exclude(pk=destination.pk).update(is_active=False)
        wait_for(lambda: requests.get(f"{SANDBOX}/_control/health", timeout=1).ok, 30, "the sandbox")
        requests.put(f"{SANDBOX}/_control/webhooks/bench", json={"secret": destination.secret}, timeout=5)

        worker_env = dict(os.environ) | {"PYTHONUNBUFFERED": "1"}
        drained: dict[int, float] = {}
        if args.drain:
            drained = raise_alerts(args.alerts, args.raisers, None)
        workers_started = time.time()
        workers = [
            start(
                [
                    CELERY,
                    "-A",
                    "reconcile_project",
                    "worker",
                    "-Q",
                    "notifications",
                    "--pool",
                    "threads",
                    "-c",
                    str(args.concurrency),
                    "-n",
                    f"bench-notify-{n}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                worker_env,
            )
            for n in range(args.workers)
        ]
        procs += workers
        from reconcile_project.celery import app

        wait_for(lambda: len(app.control.ping(timeout=0.5) or []) >= args.workers, 60, "the notification workers")

        received_before = 0  # the inbox keeps the burst's receipts while the paced run adds its own

        def count() -> int:
            return int(requests.get(f"{SANDBOX}/_control/webhooks/bench/count", timeout=5).json()["count"])

        def run(n: int, threads: int, rate: float | None) -> dict[str, object]:
            nonlocal received_before
            committed = raise_alerts(n, threads, rate)
            wait_for(lambda: count() >= received_before + n, 1200, f"{n} receipts")
            received = requests.get(f"{SANDBOX}/_control/webhooks/bench", timeout=120).json()["received"]
            received_before += n
            return summarise(committed, received)

        cpu_before = sum(cpu_seconds(w.pid) for w in workers)
        if args.drain:
            wait_for(lambda: count() >= args.alerts, 1200, f"{args.alerts} receipts")
            received = requests.get(f"{SANDBOX}/_control/webhooks/bench", timeout=120).json()["received"]
            received_before = args.alerts
            burst = summarise(drained, received)
            first, last = min(r["received_at"] for r in received), max(r["received_at"] for r in received)
            # The delay of a queued alert includes the wait for the workers: only the rate means something.
            burst = {
                "alerts": burst["alerts"],
                "received_once": burst["received_once"],
                "signatures_verified": burst["signatures_verified"],
                "mode": "drain: raised first, then the workers started",
                "deliveries_per_second": round((args.alerts - 1) / (last - first), 1),
                "workers_start_to_last_receipt_seconds": round(last - workers_started, 1),
            }
        else:
            burst = run(args.alerts, args.raisers, None)
        cpu_used = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
        burst["worker_cpu_seconds"] = round(cpu_used, 2)
        burst["deliveries_per_worker_cpu_second"] = round(args.alerts / cpu_used, 1) if cpu_used else None
        paced = run(args.paced, 1, args.paced_rate) if args.paced else None
        rows = Delivery.objects.filter(destination=destination)
        total = args.alerts + args.paced
        result = {
            "workers": args.workers,
            "threads_per_worker": args.concurrency,
            "burst": burst,
            "paced": paced,
            "exactly_once": rows.filter(status="DELIVERED").count() == total
            and DeliveryAttempt.objects.filter(delivery__destination=destination).count() == total,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result, indent=2))
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
