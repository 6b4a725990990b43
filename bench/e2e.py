"""End-to-end benchmark: claims submitted through the API while the workers reconcile them, as a user runs it.

    .venv/bin/python bench/e2e.py [--claims 2000] [--concurrency 16] [--latency 0] [--rate 0] [--repeat 3]

Starts the Procfile's processes on loopback — gunicorn (2 workers x 4 threads, access log on stdout), two
Celery workers (12 threads each) on ``reconcile_priority,reconcile``, the maintenance worker, beat and the
platform sandbox — against a fresh PostgreSQL database (``reconcile_bench_e2e``, dropped and re-created;
``--database`` to name another on the same server) and a private redis-server on a free port. Settings as in
production: ``DJANGO_ENV=production``, ``DEBUG`` off, JSON logs at INFO to stderr (collected in a
temporary directory), no log file. Two settings differ from a default deployment, both printed in the
JSON: the submission rate limit is raised (the throttle still runs on every request, it just never
refuses), and the reddit platform's quota (``Platform.config["quota_rps"]``, default 50/s across all
workers) is ``--quota-rps``, so that the platform's quota is not what the run measures.

Before the clock starts (untimed): the sandbox's truth for every post (equal to the claim: the common
MATCHED case), ``--affiliates`` affiliates with an API key each, and a warm-up of 64 claims through the
whole path. Each run then submits ``--claims`` distinct claims through ``POST /api/v1/submissions/`` from
``--concurrency`` threads, each with its own keep-alive connection (``--rate``: paced at that many claims/s
instead of as fast as the API answers), and polls the database until every claim has a verdict (its log
row is no longer PENDING).

Printed (JSON on stdout; progress on stderr), per run and as medians with [min, max] over ``--repeat`` runs:

* ``claims_per_s``: claims / (last verdict - first submission sent);
* ``submit_ms`` p50/p95/p99: the API's answer, as the client sees it;
* ``submit_to_verdict_s`` p50/p95: from sending the request to the end of the attempt that decided it;
* ``cpu_ms_per_claim`` for each process group, from ``/proc/<pid>/stat`` (user + system time of every
  process of the group's tree, sampled every 0.5 s so that a process that exits mid-run still counts;
  threads are inside their process): ``web`` (gunicorn master and workers), ``workers`` (both reconcile
  workers), ``maintenance``, ``beat``, ``sandbox``, ``postgres`` (the backends serving the bench database,
  recognised by their command line; the bench's own polling connection is left out) and ``postgres_all``
  (every PostgreSQL process, including the WAL writer and checkpointer, and any other database's activity
  on the same server: an upper bound), ``redis`` (the private server) and ``load_generator`` (this
  process). ``system`` is web + workers + maintenance + beat + postgres + redis: the deployment's own
  CPU; the sandbox stands in for the platforms and the load generator for the users.

The acceptance targets of the issue are printed beside the figures (``targets``): at 0 ms platform latency
at least 125 claims/s and at most 16 ms of system CPU per claim, at most 6 ms of web CPU per claim; at
100 ms at least 110 claims/s; paced at 40 claims/s a submit-to-verdict p95 of at most 1 s. Each applies
only to the run that matches it (the others say ``null``).

Bounded in time (``--timeout`` per run for the verdicts); every process it starts is stopped (SIGTERM to
its process group, SIGKILL after 15 s) on success, error, Ctrl-C or SIGTERM.

No figures are quoted here: the README's "Performance" section has the measured ones, with the date, the
machine and the command.
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(sys.executable).parent
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PLATFORM = "reddit"
WARMUP_CLAIMS = 64

#: The issue's acceptance figures.
TARGET_RATE_0MS = 125.0
TARGET_RATE_100MS = 110.0
TARGET_SYSTEM_CPU_MS = 16.0
TARGET_WEB_CPU_MS = 6.0
TARGET_PACED_RATE = 40.0
TARGET_PACED_P95_S = 1.0


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True


def wait_until(check: Callable[[], bool], what: str, timeout: float, procs: Iterable[Proc] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def percentile(values: list[float], pct: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- processes ------------------------------------------------------------------------------------


class Proc:
    """A started process (its own session, so a Ctrl-C in the terminal reaches the bench only)."""

    def __init__(self, name: str, group: str, cmd: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.group = group
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=10)
        self._log.close()


def stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.popen.poll() is None:
            try:
                os.killpg(proc.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in reversed(procs):
        proc.stop()


# --- CPU accounting from /proc --------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, user + system clock ticks) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class CpuSampler:
    """Per group, the CPU its processes spent since :meth:`start`, sampled so exited processes still count.

    A group is a set of root pids (their whole tree) or a predicate over every process (PostgreSQL's
    backends are the postmaster's children, not ours). A process first seen after the start counts from
    zero; one that exits keeps its last sample (at most one interval of its CPU is lost).
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.trees: dict[str, list[int]] = {}
        self.matchers: dict[str, Callable[[int, bytes], bool]] = {}
        self._base: dict[tuple[str, int], int] = {}
        self._last: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> dict[tuple[str, int], int]:
        stats: dict[int, tuple[int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _stat(int(entry))
                if stat is not None:
                    stats[int(entry)] = stat
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        out: dict[tuple[str, int], int] = {}
        for group, roots in self.trees.items():
            todo = [pid for pid in roots if pid in stats]
            while todo:
                pid = todo.pop()
                out[(group, pid)] = stats[pid][1]
                todo.extend(children.get(pid, ()))
        for group, match in self.matchers.items():
            for pid, (_, ticks) in stats.items():
                if match(pid, _cmdline(pid)):
                    out[(group, pid)] = ticks
        return out

    def start(self) -> None:
        sample = self._sample()
        with self._lock:
            self._base = dict(sample)
            self._last = dict(sample)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._merge(self._sample())

    def _merge(self, sample: dict[tuple[str, int], int]) -> None:
        with self._lock:
            self._last.update(sample)

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._merge(self._sample())
        totals: dict[str, float] = {group: 0.0 for group in (*self.trees, *self.matchers)}
        with self._lock:
            for key, ticks in self._last.items():
                totals[key[0]] += (ticks - self._base.get(key, 0)) / CLK_TCK
        return totals


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# --- the stack ------------------------------------------------------------------------------------


def fresh_database(name: str) -> str:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


SEED = """
import json, sys, datetime as dt
from django.utils import timezone
from platforms.models import Platform
from reconciliation.services.accounts import affiliate_create, campaign_create, client_create
import os
n, quota = int(os.environ["E2E_AFFILIATES"]), float(os.environ["E2E_QUOTA_RPS"])
Platform.objects.update_or_create(slug="reddit", defaults={"name": "Reddit", "config": {"quota_rps": quota}})
client = client_create(name="E2E client")
campaign = campaign_create(client=client, name="E2E campaign", platform_slugs=["reddit"],
                           start_date=timezone.localdate() - dt.timedelta(days=1))
keys = [affiliate_create(name=f"E2E affiliate {i}", email=f"e2e{i}@example.com")[1] for i in range(n)]
print(json.dumps({"campaign_id": campaign.pk, "keys": keys}))
"""


class Stack:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.redis: Proc | None = None
        self.web_port = free_port()
        self.sandbox_port = free_port()
        self.redis_port = free_port()
        self.env: dict[str, str] = {}

    def start(self, name: str, group: str, cmd: list[str]) -> Proc:
        proc = Proc(name, group, cmd, self.env, self.workdir)
        self.procs.append(proc)
        return proc

    def up(self) -> dict[str, Any]:
        args = self.args
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise SystemExit("redis-server is needed (a private one is started for the broker and the cache)")
        self.env = {**os.environ}
        self.redis = self.start(
            "redis", "redis",
            [redis_bin, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
        )  # fmt: skip
        database_url = fresh_database(args.database)
        (self.workdir / "prometheus").mkdir()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
            "DJANGO_ENV": "production",
            "DEBUG": "false",
            "SECRET_KEY": "e2e-bench-only-secret-key-not-for-production-0123456789abcdef",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Plain HTTP on loopback: no TLS proxy in front of gunicorn here.
            "SECURE_SSL_REDIRECT": "false",
            "METRICS_TOKEN": "e2e-bench-metrics-token-0123456789abcdef",
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/1",
            "PLATFORMS_USE_SANDBOX": "true",
            "SANDBOX_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "RATE_LIMIT_SETTINGS__SUBMISSION": "100000000/hour",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "LOG_FILE": "",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus"),
            "VAR_DIR": str(self.workdir / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "CACHE_URL"):
            self.env.pop(key, None)
        wait_until(lambda: port_open(self.redis_port), "redis-server", 10, [self.redis])
        log(f"migrating {args.database} ...")
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=self.env, check=True)
        seeded = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", SEED], cwd=ROOT, capture_output=True, text=True,
            env={**self.env, "E2E_AFFILIATES": str(args.affiliates), "E2E_QUOTA_RPS": str(args.quota_rps)},
        )  # fmt: skip
        if seeded.returncode != 0:
            raise RuntimeError(f"seeding failed:\n{seeded.stderr[-2000:]}")
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])

        celery = str(BIN / "celery")
        # The Procfile's commands, on this run's ports, socket and schedule file.
        sandbox = self.start(
            "sandbox", "sandbox",
            [PYTHON, "manage.py", "run_platform_sandbox", "--host", "127.0.0.1", "--port", str(self.sandbox_port)],
        )  # fmt: skip
        web = self.start(
            "web", "web",
            [str(BIN / "gunicorn"), "reconcile_project.wsgi:application", "--bind", f"127.0.0.1:{self.web_port}",
             "--workers", "2", "--threads", "4", "--access-logfile", "-", "--graceful-timeout", "10",
             "--control-socket", str(self.workdir / "gunicorn.ctl")],
        )  # fmt: skip
        for i in (1, 2):
            self.start(
                f"worker{i}", "workers",
                [celery, "-A", "reconcile_project", "worker", "-n", f"worker{i}@%h", "-Q",
                 "reconcile_priority,reconcile", "--pool", "threads", "--concurrency", "12", "--loglevel", "INFO"],
            )  # fmt: skip
        self.start(
            "maintenance", "maintenance",
            [celery, "-A", "reconcile_project", "worker", "-n", "maintenance@%h", "-Q", "maintenance",
             "--pool", "threads", "--concurrency", "2", "--loglevel", "INFO"],
        )  # fmt: skip
        self.start(
            "beat", "beat",
            [celery, "-A", "reconcile_project", "beat", "--loglevel", "INFO", "--schedule",
             str(self.workdir / "celerybeat-schedule")],
        )  # fmt: skip
        wait_until(lambda: _sandbox(self).health() is not None, "the sandbox", 60, [sandbox])
        wait_until(lambda: port_open(self.web_port), "gunicorn", 60, [web])
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        # Each worker publishes a heartbeat (ops:worker:<name>:<pid>) once it is ready.
        wait_until(
            lambda: len(list(client.scan_iter(match="ops:worker:*"))) >= 3, "the three Celery workers", 120, self.procs
        )
        client.close()
        sb = _sandbox(self)
        sb.reset()
        if args.latency:
            sb.set_fault(PLATFORM, latency_ms=args.latency)
        return seed

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    def down(self) -> None:
        stop_all(self.procs)

    def sampler(self, bench_db: str, poll_backend: int) -> CpuSampler:
        sampler = CpuSampler()
        groups: dict[str, list[int]] = {}
        for proc in self.procs:
            groups.setdefault(proc.group, []).append(proc.popen.pid)
        sampler.trees = groups
        needle = f" {bench_db} ".encode()

        def bench_backend(pid: int, cmdline: bytes) -> bool:
            return cmdline.startswith(b"postgres: ") and needle in cmdline and pid != poll_backend

        def any_postgres(pid: int, cmdline: bytes) -> bool:
            return cmdline.startswith(b"postgres: ") or b"/bin/postgres" in cmdline.split(b"\0", 1)[0]

        sampler.matchers = {"postgres": bench_backend, "postgres_all": any_postgres}
        return sampler


def _sandbox(stack: Stack) -> Any:
    from platforms.sandbox.client import SandboxClient

    return SandboxClient(f"http://127.0.0.1:{stack.sandbox_port}", timeout=10)


# --- load -----------------------------------------------------------------------------------------


def post_id(run: int, n: int) -> str:
    # Reddit post ids are base-36; distinct per run and claim.
    return f"e{run:x}z{n:x}"


def claim_views(n: int) -> int:
    return 1000 + n


def submit_all(
    port: int, seed: dict[str, Any], run: int, claims: int, concurrency: int, rate: float, timeout: float
) -> tuple[list[tuple[int, float]], list[float], list[str], float]:
    """Submit ``claims`` claims; ([(report id, wall time sent)], latencies, errors, monotonic start)."""
    keys = seed["keys"]
    campaign_id = seed["campaign_id"]
    sent: list[tuple[int, float]] = []
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(claims))
    started = time.monotonic()
    deadline = started + timeout

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            if rate:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            key = keys[n % len(keys)]
            body = json.dumps(
                {
                    "campaign_id": campaign_id,
                    "platform": PLATFORM,
                    "post_url": f"https://www.reddit.com/r/bench/comments/{post_id(run, n)}/",
                    "claimed_views": claim_views(n),
                    "claimed_clicks": 40,
                    "claimed_conversions": 3,
                }
            )
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            wall = time.time()
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/submissions/", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status: int | str = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status, payload = type(exc).__name__, b""
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                if status == 201:
                    sent.append((json.loads(payload)["report_id"], wall))
                else:
                    errors.append(f"{status}: {payload[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=worker, name=f"submit-{i}") for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent, latencies, errors, started


def wait_verdicts(conn: Any, ids: list[int], timeout: float, stack: Stack) -> int:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = conn.execute(
            "SELECT count(*) FROM reconciliation_reconciliationlog WHERE report_id = ANY(%s) AND status <> 'PENDING'",
            (ids,),
        ).fetchone()[0]
        if done >= len(ids):
            return done
        stack.check_alive()
        time.sleep(0.25)
    return done


def verdict_times(conn: Any, ids: list[int]) -> dict[int, float]:
    """Report id -> wall time its verdict was recorded (the end of the attempt that decided it)."""
    rows = conn.execute(
        """
        SELECT l.report_id, coalesce(
            (SELECT min(a.finished_at) FROM reconciliation_reconciliationattempt a
             WHERE a.report_id = l.report_id AND a.finished_at IS NOT NULL), l.updated_at)
        FROM reconciliation_reconciliationlog l WHERE l.report_id = ANY(%s) AND l.status <> 'PENDING'
        """,
        (ids,),
    ).fetchall()
    return {rid: at.timestamp() for rid, at in rows}


def run_once(stack: Stack, seed: dict[str, Any], conn: Any, poll_backend: int, run: int) -> dict[str, Any]:
    args = stack.args
    sampler = stack.sampler(args.database, poll_backend)
    cpu_before = own_cpu_seconds()
    sampler.start()
    wall_start = time.time()
    sent, latencies, errors, _ = submit_all(
        stack.web_port, seed, run, args.claims, args.concurrency, args.rate, args.timeout
    )
    submit_seconds = time.time() - wall_start
    ids = [rid for rid, _ in sent]
    done = wait_verdicts(conn, ids, args.timeout, stack)
    cpu = sampler.stop()
    cpu["load_generator"] = own_cpu_seconds() - cpu_before
    times = verdict_times(conn, ids)
    first_sent = min((at for _, at in sent), default=wall_start)
    last_verdict = max(times.values(), default=time.time())
    to_verdict = [times[rid] - at for rid, at in sent if rid in times]
    n = max(1, len(ids))
    per_claim = {group: round(seconds * 1000 / n, 2) for group, seconds in sorted(cpu.items())}
    per_claim["system"] = round(
        sum(per_claim.get(g, 0.0) for g in ("web", "workers", "maintenance", "beat", "postgres", "redis")), 2
    )
    return {
        "claims": args.claims,
        "accepted": len(ids),
        "verdicts": done,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "seconds": round(last_verdict - first_sent, 3),
        "claims_per_s": round(done / max(last_verdict - first_sent, 1e-9), 1),
        "submits_per_s": round(len(latencies) / max(submit_seconds, 1e-9), 1),
        "submit_ms": {f"p{p}": round((percentile(latencies, p) or 0) * 1000, 2) for p in (50, 95, 99)},
        "submit_to_verdict_s": {f"p{p}": round(percentile(to_verdict, p) or 0, 3) for p in (50, 95)},
        "cpu_ms_per_claim": per_claim,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}

    out: dict[str, Any] = {
        "claims_per_s": stat([r["claims_per_s"] for r in runs]),
        "submits_per_s": stat([r["submits_per_s"] for r in runs]),
        "submit_ms": {p: stat([r["submit_ms"][p] for r in runs]) for p in ("p50", "p95", "p99")},
        "submit_to_verdict_s": {p: stat([r["submit_to_verdict_s"][p] for r in runs]) for p in ("p50", "p95")},
        "cpu_ms_per_claim": {
            group: stat([r["cpu_ms_per_claim"][group] for r in runs]) for group in runs[0]["cpu_ms_per_claim"]
        },
        "errors": sum(r["errors"] for r in runs),
    }
    return out


def targets(args: argparse.Namespace, summary: dict[str, Any]) -> dict[str, Any]:
    rate = summary["claims_per_s"]["median"]
    system = summary["cpu_ms_per_claim"]["system"]["median"]
    web = summary["cpu_ms_per_claim"]["web"]["median"]
    p95 = summary["submit_to_verdict_s"]["p95"]["median"]
    unpaced = not args.rate
    out: dict[str, Any] = {
        "claims_per_s_at_0ms_min": TARGET_RATE_0MS,
        "claims_per_s_at_0ms_met": rate >= TARGET_RATE_0MS if unpaced and args.latency == 0 else None,
        "system_cpu_ms_per_claim_max": TARGET_SYSTEM_CPU_MS,
        "system_cpu_met": system <= TARGET_SYSTEM_CPU_MS if unpaced and args.latency == 0 else None,
        "web_cpu_ms_per_claim_max": TARGET_WEB_CPU_MS,
        "web_cpu_met": web <= TARGET_WEB_CPU_MS,
        "claims_per_s_at_100ms_min": TARGET_RATE_100MS,
        "claims_per_s_at_100ms_met": rate >= TARGET_RATE_100MS if unpaced and args.latency == 100 else None,
        "paced_p95_s_max": TARGET_PACED_P95_S,
        "paced_p95_met": p95 <= TARGET_PACED_P95_S if args.rate == TARGET_PACED_RATE else None,
        # Below ~90 % of --rate the machine could not keep the pace: the latencies are a saturated run's.
        "paced_rate_kept": summary["submits_per_s"]["median"] >= 0.9 * args.rate if args.rate else None,
        "errors_met": summary["errors"] == 0,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=2000, help="claims per run")
    parser.add_argument("--concurrency", type=int, default=16, help="submitting threads (keep-alive each)")
    parser.add_argument("--latency", type=float, default=0, help="sandbox latency per platform call, ms")
    parser.add_argument("--rate", type=float, default=0, help="paced submission, claims/s (0: as fast as answered)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians with [min, max] are printed")
    parser.add_argument("--affiliates", type=int, default=50, help="affiliates (an API key each)")
    parser.add_argument("--quota-rps", type=float, default=100000, help="the reddit platform's quota_rps")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run: submitting; verdicts")
    parser.add_argument("--database", default="reconcile_bench_e2e", help="PostgreSQL database (dropped, re-created)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path on stderr)")
    args = parser.parse_args()
    if not args.database.startswith("reconcile_bench"):
        parser.error("--database must start with reconcile_bench (it is dropped)")

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    stack = Stack(args, workdir)
    sys.path.insert(0, str(ROOT))
    try:
        log(f"starting the stack in {workdir}")
        seed = stack.up()
        import psycopg

        runs_post_ids = [(0, n) for n in range(WARMUP_CLAIMS)]
        runs_post_ids += [(run, n) for run in range(1, args.repeat + 1) for n in range(args.claims)]
        sandbox = _sandbox(stack)
        log(f"setting the sandbox's truth for {len(runs_post_ids)} posts (untimed) ...")
        for run, n in runs_post_ids:
            sandbox.set_post(PLATFORM, post_id(run, n), views=claim_views(n), clicks=40, conversions=3)
        sandbox.close()
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            poll_backend = conn.info.backend_pid
            log(f"warm-up: {WARMUP_CLAIMS} claims")
            sent, _, errors, _ = submit_all(stack.web_port, seed, 0, WARMUP_CLAIMS, args.concurrency, 0, args.timeout)
            if errors:
                web = next(p for p in stack.procs if p.name == "web")
                raise RuntimeError(f"warm-up submissions failed: {errors[:3]}\n{web.tail()}")
            wait_verdicts(conn, [rid for rid, _ in sent], args.timeout, stack)
            runs = []
            for run in range(1, args.repeat + 1):
                result = run_once(stack, seed, conn, poll_backend, run)
                log(f"run {run}: {json.dumps(result)}")
                runs.append(result)
        summary = summarise(runs)
        report = {
            "benchmark": "e2e: submit through the API, reconcile through the workers (bench/e2e.py)",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_at_end": os.getloadavg()},
            "config": {
                "claims": args.claims,
                "concurrency": args.concurrency,
                "sandbox_latency_ms": args.latency,
                "paced_rate_per_s": args.rate or None,
                "repeat": args.repeat,
                "affiliates": args.affiliates,
                "reddit_quota_rps": args.quota_rps,
                "processes": "gunicorn 2x4 gthread; 2 Celery workers x 12 threads; maintenance x 2; beat; sandbox",
                "settings": "DJANGO_ENV=production, DEBUG off, LOG_LEVEL=INFO JSON to stderr, no LOG_FILE, "
                "RATE_LIMIT_SETTINGS__SUBMISSION=100000000/hour",
                "postgres_cpu": "backends serving the bench database (bench's polling connection excluded); "
                "postgres_all: every PostgreSQL process on the server",
            },
            "median": summary,
            "targets": targets(args, summary),
            "runs": runs,
        }
        print(json.dumps(report, indent=2))
    except KeyboardInterrupt:
        log("interrupted: stopping every process")
        raise SystemExit(130) from None
    finally:
        stack.down()
        if args.keep_logs:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
