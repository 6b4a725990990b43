"""Admin fixtures: the roles as ``setup_roles`` makes them and a logged-in user of each; a staff superuser
for the analysts' pages through Django's test client."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import AffiliateReport
from reconciliation.services.attempts import attempt_run


def staff_in(group: str, username: str) -> Any:
    call_command("setup_roles", stdout=io.StringIO())
    user = get_user_model().objects.create_user(username=username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def analyst(db: None) -> Any:
    return staff_in("risk_analyst", "analyst")


@pytest.fixture
def analyst_client(analyst: Any) -> Client:
    client = Client()
    client.force_login(analyst)
    return client


@pytest.fixture
def ops_client(db: None) -> Client:
    client = Client()
    client.force_login(staff_in("ops", "ops"))
    return client


@pytest.fixture
def superuser_client(db: None) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x"))
    return client


@pytest.fixture
def admin_user(db: None) -> Any:
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-1")


@pytest.fixture
def browser(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def ok(views: int | None = 1000, clicks: int | None = 50, conversions: int | None = 5) -> FetchOutcome:
    metrics = PlatformMetrics(views, clicks, conversions, raw={"sandbox": True})
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


def failed(code: str = "not_found") -> FetchOutcome:
    return FetchOutcome(metrics=None, error_code=code, error_message=code, attempts=1)


def run(report: AffiliateReport, outcome: FetchOutcome, now: dt.datetime) -> Any:
    """One attempt of the real protocol with a fake platform answer (as tests/reconciliation/test_attempts.py)."""
    return attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: now)


@pytest.fixture(autouse=True)
def no_affiliate_limits_carried_over() -> None:
    """A throttled affiliate's submissions are counted per affiliate id, and ids restart with each test
    database: drop the counts an earlier run left in the test Redis."""
    from reconcile_project.redis import get_redis
    from reconciliation.api.throttling import KEY_PREFIX

    client = get_redis()
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}:submission:affiliate:*", count=500))
    if keys:
        client.delete(*keys)
