"""Before each Celery task a worker keeps its database connection without a health check round trip."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from reconcile_project.observability import _close_old_connections


def default():  # the wrapper itself, not the thread-local proxy, so its class can be patched
    return connections[DEFAULT_DB_ALIAS]


@pytest.mark.django_db(transaction=True)
def test_a_healthy_connection_is_reused_without_a_health_check_before_each_task() -> None:
    connection = default()
    connection.ensure_connection()
    raw = connection.connection
    with mock.patch.object(type(connection), "is_usable", autospec=True, return_value=True) as usable:
        for _ in range(3):
            _close_old_connections()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
    assert usable.call_count == 0
    assert connection.connection is raw


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_failed_in_the_last_task_is_checked_and_closed_before_the_next() -> None:
    connection = default()
    connection.ensure_connection()
    raw = connection.connection
    connection.errors_occurred = True
    with mock.patch.object(type(connection), "is_usable", autospec=True, return_value=False) as usable:
        _close_old_connections()
    assert usable.call_count == 1
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection is not raw
