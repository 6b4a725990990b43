"""Prometheus metrics, correct across every gunicorn and Celery process of a host.

Counters and histograms live in prometheus_client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR``
is set (settings always set it: ``$VAR_DIR/prometheus`` by default, a fresh temporary directory per test
run). Each process writes its own memory-mapped files there and ``GET /metrics`` sums them, so a
counter incremented in a Celery worker shows up in the web process's scrape. The directory must be
emptied when the stack (re)starts (``make run`` does), never while it runs.

Gauges that describe shared state are computed at scrape time instead of being stored per process:

* ``queue_depth{queue}``: LLEN of each Celery queue in the broker database, priority sub-queues included.
* ``breaker_state{platform,state}``: 1 for each platform's current breaker state, 0 for the others.
* ``worker_idle_ratio``: the fraction of worker thread capacity that was idle over each worker's last
  heartbeat window (see :class:`WorkerUtilization`), across all live workers.

Naming the objects exactly as below is a contract: the engine, platform and API code import them.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("app.metrics")

if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and values.ValueClass is values.MutexValue:
    # prometheus_client picks its value class when it is first imported, and the `celery` command imports
    # it (through Flower's CLI plugin) before the Django settings set PROMETHEUS_MULTIPROC_DIR. Metrics
    # read the class when they are constructed, so switching it here puts ours in multiprocess mode.
    values.ValueClass = values.get_value_class()

_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

RECONCILIATION_STATUS_TOTAL = Counter(
    "reconciliation_status_total", "Reconciliation outcomes by resulting status.", ["status"]
)
RECONCILIATION_ATTEMPT_DURATION = Histogram(
    "reconciliation_attempt_duration_seconds",
    "Wall time of one reconciliation attempt (claim, fetch, apply).",
    buckets=_SECONDS_BUCKETS,
)
ALERT_CREATED_TOTAL = Counter("alert_created_total", "Alerts created by type and severity.", ["type", "severity"])
TRUST_SCORE_BUCKET_TOTAL = Counter(
    "trust_score_bucket_total", "Trust score updates by the bucket the affiliate lands in.", ["bucket"]
)
PLATFORM_FETCH_DURATION = Histogram(
    "platform_fetch_duration_seconds",
    "Duration of one platform fetch (retries included) by platform and outcome (ok or the error code).",
    ["platform", "outcome"],
    buckets=_SECONDS_BUCKETS,
)
BREAKER_TRANSITIONS_TOTAL = Counter(
    "breaker_transitions_total", "Circuit breaker transitions by platform and the state entered.", ["platform", "state"]
)
HTTP_REQUESTS_TOTAL = Counter(
    "http_requests_total", "HTTP requests by method, route (URL pattern) and status.", ["method", "route", "status"]
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by method, route (URL pattern) and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
NOTIFICATION_DELIVERIES_TOTAL = Counter(
    "notification_deliveries_total",
    "Notification delivery tries by destination kind (slack, webhook, email, subscription) and outcome "
    "(delivered, retrying, failed, deferred).",
    ["kind", "outcome"],
)
NOTIFICATION_DELIVERY_DURATION = Histogram(
    "notification_delivery_duration_seconds",
    "Time a receiver took to answer one delivery try, by destination kind.",
    ["kind"],
    buckets=_SECONDS_BUCKETS,
)

BREAKER_STATES = ("CLOSED", "OPEN", "HALF_OPEN", "UNKNOWN")
#: Kombu's Redis transport keeps priorities 3, 6 and 9 of a queue in sibling lists ``<queue>\x06\x16<n>``.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = ("", *(f"{_PRIORITY_SEP}{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9)))

WORKER_HEARTBEAT_PREFIX = "ops:worker:"
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_SECONDS", "5"))


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


# --- scrape-time gauges ---------------------------------------------------------------------------


def celery_queue_names() -> list[str]:
    """Every queue this deployment consumes: the configured ones plus the three the engine routes to."""
    names = {"reconcile", "reconcile_priority", "maintenance"}
    try:
        from reconcile_project.celery import app

        names.add(app.conf.task_default_queue or "celery")
        names.update(app.amqp.queues.keys())
    except Exception:  # the queue list must never break a scrape or a health page
        logger.debug("celery queue list unavailable", exc_info=True)
    return sorted(names)


def queue_depths(names: Iterable[str] | None = None) -> dict[str, int]:
    """``{queue: messages waiting}`` from the broker (raises redis errors: callers decide)."""
    from django.conf import settings

    from reconcile_project.redis import get_redis

    queues = list(names) if names is not None else celery_queue_names()
    client = get_redis(settings.CELERY_BROKER_URL)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for suffix in _PRIORITY_STEPS:
            pipe.llen(queue + suffix)
    counts = pipe.execute()
    step = len(_PRIORITY_STEPS)
    return {queue: int(sum(counts[i * step : (i + 1) * step])) for i, queue in enumerate(queues)}


def breaker_states() -> dict[str, str] | None:
    """``{platform: state}`` for every configured platform, or None when the breaker module is absent."""
    from django.conf import settings

    try:
        from platforms.breaker import get_breaker
    except ImportError:
        return None
    snapshot = get_breaker().snapshot(list(settings.PLATFORM_SLUGS))
    return {platform: str(info.get("state", "UNKNOWN")) for platform, info in snapshot.items()}


def worker_utilization() -> dict[str, Any]:
    """Aggregate the live workers' heartbeats (see :class:`WorkerUtilization`).

    ``idle_ratio`` = 1 - busy thread-seconds / (threads x window seconds), summed over every worker
    whose heartbeat has not expired; None when no worker is alive.
    """
    from reconcile_project.redis import get_redis

    client = get_redis()
    keys = list(client.scan_iter(match=f"{WORKER_HEARTBEAT_PREFIX}*", count=200))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    rows = pipe.execute() if keys else []
    capacity = busy_now = 0
    capacity_seconds = busy_seconds = 0.0
    workers = 0
    for row in rows:
        if not row:
            continue
        workers += 1
        threads = int(row.get("capacity", 0))
        window = float(row.get("window_seconds", 0))
        capacity += threads
        busy_now += int(row.get("busy_now", 0))
        capacity_seconds += threads * window
        busy_seconds += float(row.get("busy_seconds", 0))
    if capacity_seconds > 0:
        ratio: float | None = max(0.0, min(1.0, 1.0 - busy_seconds / capacity_seconds))
    elif capacity > 0:
        # Every worker just started (no full window yet): use the instantaneous count.
        ratio = max(0.0, min(1.0, 1.0 - busy_now / capacity))
    else:
        ratio = None
    return {"workers": workers, "threads": capacity, "busy_now": busy_now, "idle_ratio": ratio}


class ScrapeCollector(Collector):
    """Shared-state gauges, computed when Prometheus scrapes; each one is skipped if its source is down."""

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "queue_depth", "Messages waiting in each Celery queue (broker LLEN).", labels=["queue"]
        )
        try:
            for queue, count in queue_depths().items():
                depth.add_metric([queue], count)
        except Exception as exc:
            logger.warning("metrics: queue depth unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        yield depth

        breaker = GaugeMetricFamily(
            "breaker_state", "1 for the current circuit breaker state of each platform.", labels=["platform", "state"]
        )
        try:
            for platform, current in (breaker_states() or {}).items():
                for state in BREAKER_STATES:
                    breaker.add_metric([platform, state], 1.0 if state == current else 0.0)
        except Exception as exc:
            logger.warning("metrics: breaker state unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        yield breaker

        idle = GaugeMetricFamily(
            "worker_idle_ratio",
            "Fraction of Celery worker thread capacity idle over the last heartbeat window (all live workers).",
        )
        try:
            ratio = worker_utilization()["idle_ratio"]
            if ratio is not None:
                idle.add_metric([], ratio)
        except Exception as exc:
            logger.warning("metrics: worker idle ratio unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        yield idle


class _ProcessRegistryCollector(Collector):
    """This process's own metrics (used when multiprocess mode is off)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class _MultiProcessCollector(Collector):
    """Every process's files in PROMETHEUS_MULTIPROC_DIR, without Flower's own ``flower_*`` metrics.

    Flower loads the Django project (its URL checks import this module, which switches prometheus_client
    to multiprocess mode), so its metrics land in the same directory; they belong on Flower's /metrics.
    """

    def __init__(self) -> None:
        self._inner = multiprocess.MultiProcessCollector(None)

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            if not family.name.startswith("flower_"):
                yield family


def process_registry() -> CollectorRegistry:
    """This host's process metrics only (no scrape-time gauges): what a worker's own endpoint serves."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_enabled():
        registry.register(_MultiProcessCollector())
    else:
        registry.register(_ProcessRegistryCollector())
    return registry


def render_latest() -> bytes:
    """The Prometheus text exposition of every process's metrics plus the scrape-time gauges."""
    registry = process_registry()
    registry.register(ScrapeCollector())
    return generate_latest(registry)


def _render_metrics(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(render_latest(), content_type=CONTENT_TYPE_LATEST)


@functools.cache
def _protected_metrics_view() -> Callable[..., Any]:
    # Built on first use: the access rules import the API's authentication (and so the models), which
    # the processes importing this module for its counters (Celery, before Django is set up) must not.
    from reconcile_project.ops_access import monitoring_or_staff

    return monitoring_or_staff(_render_metrics)


def metrics_view(request: Any) -> Any:
    """``GET /metrics``: ``Authorization: Bearer <METRICS_TOKEN>`` (Prometheus) or staff; see ops_access."""
    return _protected_metrics_view()(request)


# --- worker utilisation ---------------------------------------------------------------------------


class WorkerUtilization:
    """Busy-time accounting for one worker process, published as a Redis heartbeat.

    ``task_started``/``task_finished`` (from Celery's ``task_prerun``/``task_postrun``) integrate the number
    of running tasks over time. Every ``WORKER_HEARTBEAT_SECONDS`` a daemon thread writes the window's
    busy thread-seconds, the window length and the thread capacity to ``ops:worker:<hostname>:<pid>``
    (expiring after three windows, so a killed worker drops out). A process with the thread pool has
    capacity = concurrency; each prefork child has capacity 1.
    """

    def __init__(
        self,
        *,
        hostname: str,
        capacity: int,
        interval: float = WORKER_HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self._clock = clock
        self.capacity = max(1, int(capacity))
        self.interval = interval
        self.key = f"{WORKER_HEARTBEAT_PREFIX}{hostname}:{os.getpid()}"
        self._lock = threading.Lock()
        self._busy = 0
        self._busy_seconds = 0.0
        now = clock()
        self._last_change = now
        self._window_start = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _integrate(self, now: float) -> None:
        self._busy_seconds += self._busy * (now - self._last_change)
        self._last_change = now

    def task_started(self) -> None:
        with self._lock:
            self._integrate(self._clock())
            self._busy += 1

    def task_finished(self) -> None:
        with self._lock:
            self._integrate(self._clock())
            self._busy = max(0, self._busy - 1)

    def take_window(self) -> dict[str, float]:
        """Close the current window: its busy thread-seconds, its length, tasks running now."""
        with self._lock:
            now = self._clock()
            self._integrate(now)
            window = {
                "busy_seconds": min(self._busy_seconds, self.capacity * (now - self._window_start)),
                "window_seconds": now - self._window_start,
                "busy_now": self._busy,
            }
            self._busy_seconds = 0.0
            self._window_start = now
        return window

    def publish(self) -> None:
        from reconcile_project.redis import get_redis

        window = self.take_window()
        client = get_redis()
        pipe = client.pipeline(transaction=False)
        pipe.hset(
            self.key,
            mapping={
                "capacity": self.capacity,
                "busy_seconds": f"{window['busy_seconds']:.4f}",
                "window_seconds": f"{window['window_seconds']:.4f}",
                "busy_now": int(window["busy_now"]),
                "updated_at": f"{time.time():.3f}",
            },
        )
        pipe.expire(self.key, max(3, int(self.interval * 3)))
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish()
            except Exception as exc:  # Redis down: skip a beat, the key expires, the ratio omits us
                logger.debug("worker heartbeat failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    def start(self) -> None:
        try:
            self.publish()
        except Exception:
            logger.debug("first worker heartbeat failed", exc_info=True)
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            from reconcile_project.redis import get_redis

            get_redis().delete(self.key)
        except Exception:
            logger.debug("worker heartbeat cleanup failed", exc_info=True)


_utilization: WorkerUtilization | None = None
_utilization_lock = threading.Lock()


def _start_utilization(hostname: str, capacity: int) -> None:
    global _utilization
    with _utilization_lock:
        if _utilization is not None and _utilization.key.endswith(f":{os.getpid()}"):
            return
        _utilization = WorkerUtilization(hostname=hostname, capacity=capacity)
        _utilization.start()


def _stop_utilization() -> None:
    global _utilization
    with _utilization_lock:
        if _utilization is not None:
            _utilization.stop()
            _utilization = None


def _start_worker_metrics_server() -> None:
    # Where workers do not share PROMETHEUS_MULTIPROC_DIR with a web process (one container per worker),
    # WORKER_METRICS_PORT serves their counters for Prometheus to scrape directly. The shared-state
    # gauges stay on the web's /metrics, so nothing is counted twice.
    port = os.environ.get("WORKER_METRICS_PORT")
    if not port:
        return
    try:
        start_http_server(int(port), addr=os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0"), registry=process_registry())
    except (OSError, ValueError) as exc:
        logger.warning("worker metrics endpoint not started", extra={"port": port, "error": str(exc)})
        return
    logger.info("worker metrics endpoint started", extra={"port": int(port)})


def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    _start_worker_metrics_server()
    pool = getattr(sender, "pool", None)
    if pool is not None and type(pool).__module__.endswith(".prefork"):
        return  # tasks run in the children; each child starts its own (worker_process_init)
    limit = getattr(pool, "limit", None) or 1
    _start_utilization(str(getattr(sender, "hostname", None) or socket.gethostname()), int(limit))


def _on_worker_process_init(sender: Any = None, **kwargs: Any) -> None:
    _start_utilization(str(sender or socket.gethostname()), 1)


def _on_task_prerun(**kwargs: Any) -> None:
    if _utilization is not None:
        _utilization.task_started()


def _on_task_postrun(**kwargs: Any) -> None:
    if _utilization is not None:
        _utilization.task_finished()


def _on_process_exit(**kwargs: Any) -> None:
    _stop_utilization()
    _mark_dead()


def _mark_dead() -> None:
    if multiprocess_enabled():
        try:
            multiprocess.mark_process_dead(os.getpid())
        except Exception:
            logger.debug("mark_process_dead failed", exc_info=True)


def _count_breaker_transition(platform: str, from_state: str, to_state: str) -> None:
    BREAKER_TRANSITIONS_TOTAL.labels(platform=platform, state=to_state).inc()


def install_breaker_hook() -> None:
    """Count every breaker transition this process makes (``breaker_transitions_total``)."""
    try:
        from platforms.breaker import get_breaker
    except ImportError:
        return
    hooks = get_breaker().transition_hooks
    if _count_breaker_transition not in hooks:
        hooks.append(_count_breaker_transition)


def _on_worker_init(**kwargs: Any) -> None:
    install_breaker_hook()


def _on_worker_process_init_breaker(**kwargs: Any) -> None:
    install_breaker_hook()


# Any process that exits normally (gunicorn workers, management commands) cleans its live-gauge files.
atexit.register(_mark_dead)
