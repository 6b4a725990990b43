"""Publishing reconcile messages (reconciliation.services.dispatch.send_reconcile) to the test broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import redis
from kombu.transport import redis as kombu_redis

from reconciliation.services import dispatch


@pytest.fixture
def broker(settings: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(dispatch.QUEUE_DEFAULT)
    yield client
    client.delete(dispatch.QUEUE_DEFAULT)


def test_publishes_go_through_one_kept_redis_client(broker: redis.Redis) -> None:
    tag = uuid.uuid4().hex  # the queue may hold others' messages; ours carry this in their request id
    assert dispatch.send_reconcile(1, request_id=f"{tag}-1")  # the first publish makes the channel
    create = mock.patch.object(
        kombu_redis.Channel, "_create_client", autospec=True, side_effect=kombu_redis.Channel._create_client
    )
    with create as created:
        for report_id in (2, 3, 4):
            assert dispatch.send_reconcile(report_id, request_id=f"{tag}-{report_id}")

    assert created.call_count == 0
    messages = [json.loads(raw) for raw in broker.lrange(dispatch.QUEUE_DEFAULT, 0, -1)]
    messages = [m for m in messages if str(m["headers"].get("request_id", "")).startswith(tag)]
    sent = sorted((m["headers"]["argsrepr"], m["headers"]["request_id"]) for m in messages)
    assert sent == [(f"[{n}]", f"{tag}-{n}") for n in (1, 2, 3, 4)]
    assert {m["headers"]["task"] for m in messages} == {dispatch.RECONCILE_TASK}
