"""Benchmark of ``POST /api/v1/submissions/`` end to end: gunicorn, PostgreSQL, Redis, on loopback.

Run: ``cd /work/main && .venv/bin/python bench/submit.py`` (``--help`` for knobs). Prints one JSON
document on stdout; progress goes to stderr.

What it does:

1. A database of its own: ``BENCH_DATABASE_URL`` if set, else ``reconcile_bench_submit`` on the local
   PostgreSQL (``postgres://postgres@127.0.0.1:5432``), dropped and recreated, then migrated.
2. A private redis-server on a free port for the broker, the cache and the rate limiter, so the
   benchmark never fills a queue a real worker consumes (no worker runs: messages just accumulate).
3. Seeds one affiliate (with an API key) and one ACTIVE campaign on reddit, through the services.
4. Starts gunicorn (gthread; persistent DB connections, ``CONN_MAX_AGE=600``; its own control socket) on
   a free loopback port, production settings (``DJANGO_ENV=production``, INFO logs as JSON to stderr,
   collected in a file), the submission rate limit raised out of the way (the throttle still runs).
5. For each concurrency level (1, 8, 32): N threads, each with its own keep-alive connection, send
   submissions — every one a distinct post URL — until ``--requests`` are done or ``--seconds`` pass.
   Three runs per level; the figures reported are the medians of the runs, with the CPU each request
   cost gunicorn (master and workers), the private Redis and the bench database's PostgreSQL backends,
   read from ``/proc`` (less sensitive than requests/s to other work on the machine, though contention
   for the cores and caches still inflates it).

Targets (printed with the figures): at concurrency 8 at least 200 requests/s and at most 6 ms of gunicorn
CPU per request. The figures measured on the current code, with the date, the machine and the load, are in
the README's "Benchmarks" table; none are quoted here.

Logging overhead (``--compare-log-levels INFO,WARNING``): two gunicorn servers on the same database
and Redis, one logging every request as JSON (INFO: ``Request started``/``completed``, the
``Performance``/``Business event`` lines) and one at WARNING (none of those lines). Runs alternate
between them (A B, B A, A B, ...), so a drift of the shared machine falls on both sides, and the JSON
reports ``p50_overhead`` = p50(on) / p50(off) - 1 from the medians of the same bench run.

Tracing overhead (``--compare-tracing``): the same two-server scheme, one with tracing on
(``OTEL_TRACES_EXPORTER=otlp``, exporting over OTLP/HTTP to a sink the bench runs on loopback, which
answers 200 and counts the exports) and one with tracing off (no ``OTEL_*`` variable: the default). The
JSON's ``tracing_overhead.p50_overhead`` is p50(on) / p50(off) - 1; ``otlp_exports`` shows the spans
really left. Against other code (``--baseline-root DIR``, a checkout with the same schema, e.g. ``git
worktree add /tmp/before <commit>``): this checkout's server and one running DIR's code, interleaved the
same way (``baseline.p50_overhead`` is this / baseline - 1); how tracing off compares with the code before
tracing existed.

Every submission is the full path: auth (one query: the key with its affiliate), throttle (one Redis
round trip), URL parsing, one query for the campaign, its platform and the post's claimants, suspicion
flags, one transaction (one statement writing the post, the claim, its outbox row and the affiliate's
counter), and the after-commit publish to the broker.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "reconcile_bench_submit"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class OTLPSink:
    """A local OTLP/HTTP endpoint that accepts every export (200, empty body) and counts requests and bytes:
    the tracing server exports for real (protobuf over HTTP) without a collector installed."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    sink.requests += 1
                    sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for_requests(self, seconds: float = 6.0) -> dict[str, int]:
        time.sleep(seconds)  # longer than the batch processor's 5 s schedule delay
        with self._lock:
            return {"requests": self.requests, "bytes": self.bytes}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def bench_database_url() -> str:
    """BENCH_DATABASE_URL as given, or a freshly recreated ``reconcile_bench`` on the local server."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    import psycopg

    with psycopg.connect(DEFAULT_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return DEFAULT_ADMIN_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}"


def seed(env: dict[str, str]) -> dict[str, Any]:
    code = """
import datetime as dt, json
from django.utils import timezone
from platforms.models import Platform
from reconciliation.services.accounts import affiliate_create, campaign_create, client_create
Platform.objects.get_or_create(slug="reddit", defaults={"name": "Reddit"})
client = client_create(name="Bench client")
campaign = campaign_create(client=client, name="Bench campaign", platform_slugs=["reddit"],
                           start_date=timezone.localdate() - dt.timedelta(days=1))
affiliate, key = affiliate_create(name="Bench affiliate", email="bench@example.com")
print(json.dumps({"campaign_id": campaign.pk, "affiliate_id": affiliate.pk, "key": key}))
"""
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def submit_loop(
    port: int,
    key: str,
    campaign_id: int,
    url_prefix: str,
    quota: list[int],
    lock: threading.Lock,
    deadline: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    while time.monotonic() < deadline:
        with lock:
            if quota[0] <= 0:
                break
            quota[0] -= 1
            n = quota[1]
            quota[1] += 1
        body = json.dumps(
            {
                "campaign_id": campaign_id,
                "platform": "reddit",
                "post_url": f"https://www.reddit.com/r/bench/comments/{url_prefix}{n:x}/",
                "claimed_views": 1000 + n,
                "claimed_clicks": 40,
                "claimed_conversions": 3,
            }
        )
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/submissions/", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status: int | str = response.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = f"{type(exc).__name__}"
        latencies.append(time.perf_counter() - started)
        if status != 201:
            errors.append(str(status))
    conn.close()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def cpu_sampler(server: subprocess.Popen[bytes], redis_proc: subprocess.Popen[bytes] | None, database: str) -> Any:
    """CPU of the server's process tree, the private Redis and the bench database's backends (bench/e2e.py)."""
    sys.path.insert(0, str(ROOT))
    from bench.e2e import CpuSampler

    sampler = CpuSampler()
    sampler.trees = {"web": [server.pid], **({"redis": [redis_proc.pid]} if redis_proc else {})}
    needle = f" {database} ".encode()
    sampler.matchers = {"postgres": lambda pid, cmdline: cmdline.startswith(b"postgres: ") and needle in cmdline}
    return sampler


def run_level(
    port: int,
    seeded: dict[str, Any],
    concurrency: int,
    requests: int,
    seconds: float,
    tag: str,
    sampler: Any = None,
) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    quota = [requests, 0]
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + seconds
    threads = [
        threading.Thread(
            target=submit_loop,
            args=(port, seeded["key"], seeded["campaign_id"], tag, quota, lock, deadline, latencies, errors),
        )
        for _ in range(concurrency)
    ]
    if sampler is not None:
        sampler.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    cpu = sampler.stop() if sampler is not None else {}
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "cpu_ms_per_request": {group: round(sec * 1000 / max(1, len(latencies)), 2) for group, sec in cpu.items()},
    }


def median_of(runs: list[dict]) -> dict:
    keys = ("requests_per_second", "p50_ms", "p95_ms", "p99_ms")
    out: dict[str, Any] = {key: round(statistics.median(r[key] for r in runs), 2) for key in keys}
    groups = runs[0]["cpu_ms_per_request"] if runs else {}
    out["cpu_ms_per_request"] = {
        group: round(statistics.median(r["cpu_ms_per_request"][group] for r in runs), 2) for group in groups
    }
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels (comma-separated)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per run (upper bound)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time bound per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring (not reported)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    parser.add_argument("--log-level", default="INFO", help="the app's LOG_LEVEL (INFO logs every request)")
    parser.add_argument(
        "--compare-log-levels",
        metavar="ON,OFF",
        help="measure logging overhead: two servers at these LOG_LEVELs (e.g. INFO,WARNING), runs interleaved",
    )
    parser.add_argument("--log-file", action="store_true", help="also write LOG_FILE (the rotating JSON file)")
    parser.add_argument(
        "--baseline-root",
        help="a checkout of other code (same schema) served as a second server against this one, runs interleaved",
    )
    parser.add_argument(
        "--compare-tracing",
        action="store_true",
        help="two servers, tracing on (OTLP/HTTP to a local sink) and off, runs interleaved",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if sum(map(bool, (args.compare_log_levels, args.compare_tracing, args.baseline_root))) > 1:
        parser.error("--compare-log-levels, --compare-tracing and --baseline-root are separate runs")
    # Each server variant: (label, environment on top of the common one); the first is the one reported.
    variants: list[tuple[str, dict[str, str]]] = [(args.log_level.upper(), {"LOG_LEVEL": args.log_level.upper()})]
    if args.compare_log_levels:
        server_levels = [x.strip().upper() for x in args.compare_log_levels.split(",")]
        if len(server_levels) != 2 or server_levels[0] == server_levels[1]:
            parser.error("--compare-log-levels takes two different levels: ON,OFF (e.g. INFO,WARNING)")
        variants = [(level, {"LOG_LEVEL": level}) for level in server_levels]
    sink: OTLPSink | None = None
    if args.compare_tracing:
        sink = OTLPSink()
        variants = [
            ("tracing-on", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}),
            ("tracing-off", {}),
        ]
    roots = {label: ROOT for label, _ in variants}
    if args.baseline_root:
        variants = [("this", {}), ("baseline", {})]
        roots = {"this": ROOT, "baseline": Path(args.baseline_root).resolve()}
    server_levels = [label for label, _ in variants]

    workdir = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    redis_proc = None
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise SystemExit("redis-server is needed (a private one is started for the broker and cache)")
        redis_port = free_port()
        redis_proc = subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for_port(redis_port, redis_proc)

        database_url = bench_database_url()
        (workdir / "prometheus").mkdir()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
            "DJANGO_ENV": "production",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789abcdef",
            "SECURE_SSL_REDIRECT": "false",
            # Production's start-up checks: the platforms are the sandbox's (no worker runs here), and the
            # monitoring endpoints' token.
            "PLATFORMS_USE_SANDBOX": "true",
            "METRICS_TOKEN": "bench-metrics-token-0123456789abcdef",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "CONN_MAX_AGE": "600",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
            "RATE_LIMIT_SETTINGS__SUBMISSION": "100000000/hour",
            "LOG_LEVEL": args.log_level.upper(),
            "LOG_FORMAT": "json",
            "LOG_FILE": "",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
            "PYTHONUNBUFFERED": "1",
        }
        log(f"migrating {database_url.rsplit('/', 1)[-1]} ...")
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        seeded = seed(env)

        for index, (level, overrides) in enumerate(variants):
            server_env = {**env, **overrides}
            if args.log_file:
                server_env["LOG_FILE"] = str(workdir / f"app-{level}.log")
            port = free_port()
            log(
                f"gunicorn {level}: {args.workers} {args.worker_class} workers x {args.threads} threads"
                f" on 127.0.0.1:{port}"
            )
            proc = subprocess.Popen(
                [GUNICORN, "reconcile_project.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
                 "--keep-alive", "30", "--timeout", "60", "--control-socket", str(workdir / f"gunicorn-{level}.ctl")],
                cwd=roots[level], env=server_env, stdout=open(workdir / f"gunicorn-{level}.log", "wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            servers[level] = (proc, port)
            wait_for_port(port, proc)
            run_level(port, seeded, max(levels), args.warmup, 30, f"w{index}")

        # results[level][concurrency] = runs; with two servers the order alternates per repeat.
        runs: dict[str, dict[str, list[dict]]] = {level: {str(c): [] for c in levels} for level in server_levels}
        for c in levels:
            for repeat in range(args.repeats):
                order = server_levels if repeat % 2 == 0 else server_levels[::-1]
                for level in order:
                    proc, port = servers[level]
                    run = run_level(
                        port,
                        seeded,
                        c,
                        args.requests,
                        args.seconds,
                        f"{server_levels.index(level)}c{c}r{repeat}x",
                        cpu_sampler(proc, redis_proc, database_url.rsplit("/", 1)[-1]),
                    )
                    runs[level][str(c)].append(run)
                    log(f"{level} c={c} run {repeat + 1}: {run}")

        def summary(level: str) -> dict[str, Any]:
            return {str(c): {"median": median_of(runs[level][str(c)]), "runs": runs[level][str(c)]} for c in levels}

        results = summary(server_levels[0])
        report: dict[str, Any] = {
            "benchmark": "POST /api/v1/submissions/ (gunicorn + PostgreSQL + Redis, loopback)",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_at_end": os.getloadavg()},
            "server": {
                "workers": args.workers,
                "threads": args.threads,
                "worker_class": args.worker_class,
                "conn_max_age": 600,
                "log_level": args.log_level.upper() if args.compare_tracing else server_levels[0],
                "log_format": "json",
                "log_file": args.log_file,
            },
            "per_run": {"max_requests": args.requests, "max_seconds": args.seconds, "repeats": args.repeats},
            "concurrency": results,
            "targets": {
                "rps_at_c8_min": 200,
                "web_cpu_ms_per_request_max": 6.0,
                "met": bool(
                    "8" in results
                    and results["8"]["median"]["requests_per_second"] >= 200
                    and all(r["median"]["cpu_ms_per_request"].get("web", 0) <= 6.0 for r in results.values())
                    and all(r["median"]["errors"] == 0 for r in results.values())
                ),
            },
        }
        if len(server_levels) == 2:
            on, off = server_levels
            # Give the tracing server's batch processors time to send what they hold, then count it.
            exported = sink.wait_for_requests() if sink is not None else None
            off_results = summary(off)
            overhead = {
                str(c): round(results[str(c)]["median"]["p50_ms"] / off_results[str(c)]["median"]["p50_ms"] - 1, 4)
                for c in levels
            }
            kind = "tracing_overhead" if sink is not None else "baseline" if args.baseline_root else "logging_overhead"
            report[kind] = {
                "on": on,
                "off": off,
                **({"otlp_exports": exported} if exported is not None else {}),
                **({"baseline_root": str(roots["baseline"])} if args.baseline_root else {}),
                "cpu_ms_per_request": {
                    str(c): {
                        on: results[str(c)]["median"]["cpu_ms_per_request"],
                        off: off_results[str(c)]["median"]["cpu_ms_per_request"],
                    }
                    for c in levels
                },
                "off_concurrency": off_results,
                "p50_overhead": overhead,
                "target_max": 0.10,
                "errors": sum(r["median"]["errors"] for r in (*results.values(), *off_results.values())),
                "met": all(value <= 0.10 for value in overhead.values())
                and all(r["median"]["errors"] == 0 for r in (*results.values(), *off_results.values())),
            }
        print(json.dumps(report, indent=2))
    finally:
        for proc, _port in servers.values():
            stop(proc)
        stop(redis_proc)
        if sink is not None:
            sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
