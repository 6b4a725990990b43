"""The process-wide Redis client: one per URL, even when a fresh process's threads all ask at once."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from reconcile_project import redis as app_redis


def test_threads_asking_at_once_share_one_client_and_none_is_closed_under_another(monkeypatch) -> None:
    # Building a client takes a while on a busy machine (the GIL passes to the other threads meanwhile).
    build = redis.Redis.from_url

    def slow_build(*args: Any, **kwargs: Any) -> redis.Redis:
        time.sleep(0.01)
        return build(*args, **kwargs)

    monkeypatch.setattr(redis.Redis, "from_url", slow_build)
    # A URL nobody has asked for yet, as in a fresh process (the suite's own client is left alone).
    url = f"redis://127.0.0.1:6379/13?client_name=first-use-{uuid.uuid4().hex}"
    start = threading.Barrier(32)

    def first_use(_: int) -> redis.Redis:
        start.wait()
        return app_redis.get_redis(url)

    with ThreadPoolExecutor(max_workers=32) as pool:
        clients = list(pool.map(first_use, range(32)))  # kept alive, so no id is reused
    # A second client would be garbage-collected and close the connection pool another thread is using.
    assert len({id(client) for client in clients}) == 1
    assert app_redis.get_redis(url) is clients[0]
