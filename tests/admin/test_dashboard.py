"""The risk dashboard: figures equal to what the database (and Redis) hold, in a bounded number of queries."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from alerts.models import Alert
from platforms.breaker import get_breaker
from reconcile_project.redis import get_redis
from reconciliation.models import Affiliate, AffiliateReport, ReconciliationLog
from tests import factories
from tests.admin.conftest import failed, ok, run

pytestmark = pytest.mark.django_db

URL = "/admin/risk/"


@pytest.fixture
def open_reddit_breaker() -> Iterator[None]:
    breaker = get_breaker()
    for _ in range(settings.CIRCUIT_BREAKER.failure_threshold):
        breaker.record_failure("reddit", breaker.before_call("reddit"))
    yield
    breaker.reset("reddit")


def section(html: str, name: str) -> str:
    return html.split(f'id="{name}"')[1].split("</table>")[0]


def test_open_alerts_by_type_and_severity(browser: Client) -> None:
    for severity in ("CRITICAL", "CRITICAL", "HIGH"):
        factories.alert(alert_type=Alert.Type.OVERCLAIM, severity=severity)
    factories.alert(alert_type=Alert.Type.LOW_TRUST, severity="MEDIUM")
    factories.alert(alert_type=Alert.Type.OVERCLAIM, severity="CRITICAL", status=Alert.Status.RESOLVED)
    html = browser.get(URL).content.decode()
    table = section(html, "open-alerts")
    assert 'id="open-total">4<' in html
    overclaim = table.split('data-type="OVERCLAIM"')[1].split("</tr>")[0]
    # LOW, MEDIUM, HIGH, CRITICAL, total
    assert re.findall(r'<td class="num">(\d+)</td>', overclaim) == ["0", "0", "1", "2", "3"]
    low_trust = table.split('data-type="LOW_TRUST"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">(\d+)</td>', low_trust) == ["0", "1", "0", "0", "1"]


def test_alerts_created_per_day_over_thirty_days(browser: Client) -> None:
    now = timezone.now()
    old = factories.alert()
    Alert.objects.filter(pk=old.pk).update(created_at=now - dt.timedelta(days=3))
    for _ in range(2):
        factories.alert()
    gone = factories.alert()
    Alert.objects.filter(pk=gone.pk).update(created_at=now - dt.timedelta(days=45))
    html = browser.get(URL).content.decode()
    table = html.split("Alerts created per day as a table")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>([\d-]+)</td><td>(\d+)</td></tr>", table)
    assert len(rows) == 30 and sum(int(n) for _, n in rows) == 3
    days = dict(rows)
    today = timezone.localdate(now) if settings.USE_TZ else now.date()
    assert days[f"{today:%m-%d}"] == "2" and days[f"{today - dt.timedelta(days=3):%m-%d}"] == "1"
    assert html.count("<rect") >= 30  # one bar per day


def test_riskiest_affiliates_status_distribution_and_missing_rate(browser: Client, open_reddit_breaker: None) -> None:
    risky = factories.affiliate(trust_score=factories.score("0.1000"))
    for _ in range(3):
        report = factories.report(post=factories.post(affiliate=risky), claimed_views=1000)
        run(report, ok(views=400), report.submitted_at + dt.timedelta(minutes=1))
    matched = factories.report(claimed_views=1000)
    run(matched, ok(views=1000), matched.submitted_at + dt.timedelta(minutes=1))
    missing = factories.report(post=factories.post(platform=factories.platform("youtube")))
    for minutes in (1, 5, 30, 120, 600, 3000, 9000):
        run(missing, failed("not_found"), missing.submitted_at + dt.timedelta(minutes=minutes))
    old = factories.report(submitted_at=timezone.now() - dt.timedelta(days=3))
    assert ReconciliationLog.objects.get(report=old).status == "PENDING"

    html = browser.get(URL).content.decode()
    lowest = section(html, "lowest-trust")
    shown = re.findall(r"/admin/reconciliation/affiliate/(\d+)/change/", lowest)
    expected = [str(pk) for pk in Affiliate.objects.order_by("trust_score", "id").values_list("pk", flat=True)[:10]]
    assert shown == expected and shown[0] == str(risky.pk)
    over = section(html, "most-overclaims")
    risky.refresh_from_db()
    assert f'{risky.name}</a></td><td class="num">3</td>' in over

    def counts(name: str) -> dict[str, int]:
        table = html.split(f"Claims by status, {name} as a table")[1].split("</table>")[0]
        return {k: int(v) for k, v in re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td></tr>", table)}

    week = AffiliateReport.objects.filter(submitted_at__gte=timezone.now() - dt.timedelta(days=7))
    expected_7d: dict[str, int] = {}
    for status in week.values_list("log__status", flat=True):
        expected_7d[status] = expected_7d.get(status, 0) + 1
    assert counts("last 7 days") == expected_7d
    expected_24h = dict(expected_7d)
    expected_24h["PENDING"] -= 1
    assert counts("last 24 h") == {k: v for k, v in expected_24h.items() if v}
    assert counts("last 24 h")["AFFILIATE_OVERCLAIMED"] == 3

    health = section(html, "platform-health")
    youtube = health.split('data-platform="youtube"')[1].split("</tr>")[0]
    assert ReconciliationLog.objects.get(report=missing).status == "MISSING_PLATFORM_DATA"
    assert re.findall(r'<td class="num">([^<]+)</td>', youtube) == ["1", "1", "100 %"]
    reddit = health.split('data-platform="reddit"')[1].split("</tr>")[0]
    assert ">OPEN<" in reddit and "0 %" in reddit


def test_queue_depth_from_the_broker(browser: Client) -> None:
    broker = get_redis(settings.CELERY_BROKER_URL)
    broker.delete("reconcile", "maintenance")
    broker.rpush("reconcile", "a", "b", "c")
    try:
        html = browser.get(URL).content.decode()
    finally:
        broker.delete("reconcile")
    queue = section(html, "queue-depth").split('data-queue="reconcile"')[1].split("</tr>")[0]
    assert '<td class="num">3</td>' in queue


def test_labels_are_escaped_in_charts_and_tables(browser: Client) -> None:
    evil = factories.affiliate(name="<script>x</script>", trust_score=factories.score("0.0100"))
    report = factories.report(post=factories.post(affiliate=evil), claimed_views=1000)
    run(report, ok(views=100), report.submitted_at + dt.timedelta(minutes=1))
    html = browser.get(URL).content.decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_analysts_land_on_the_dashboard_and_view_site_points_at_it(admin_user: Any) -> None:
    analyst = type(admin_user).objects.create_user("ann", "ann@example.com", "pw-ann-1", is_staff=True)
    analyst.groups.add(Group.objects.get_or_create(name="risk_analyst")[0])
    client = Client()
    client.force_login(analyst)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == URL
    assert client.get("/admin/?models").status_code == 200
    boss = Client()
    boss.force_login(admin_user)
    index = boss.get("/admin/")
    assert index.status_code == 200 and f'href="{URL}"' in index.content.decode()  # "View site"
    assert Client().get(URL).status_code == 302  # the admin's login first


def test_queries_are_bounded(browser: Client, django_assert_max_num_queries: Any) -> None:
    for i in range(30):
        report = factories.report(
            claimed_views=1000, post=factories.post(platform=factories.platform(("reddit", "youtube", "tiktok")[i % 3]))
        )
        run(report, ok(views=400 + 30 * i), report.submitted_at + dt.timedelta(minutes=1))
    with django_assert_max_num_queries(15):
        assert browser.get(URL).status_code == 200


def test_the_dashboard_still_renders_when_the_broker_does_not_answer(
    browser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    def broker_down() -> dict[str, int]:
        raise RedisConnectionError("broker down")

    monkeypatch.setattr("reconciliation.dashboard.queue_depths", broker_down)
    response = browser.get("/admin/risk/")
    assert response.status_code == 200
    section = response.content.decode().split('id="queue-depth"')[1]
    assert "Unknown: the broker did not answer." in section and "data-queue=" not in section
