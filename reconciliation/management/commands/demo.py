"""Submit a mixed batch of claims through the REST API against the running stack and show what happened.

Needs the stack of ``make run`` (API on :8000, workers, beat, sandbox on :8100) and ``seed_demo``'s keys.
Each scenario pins the platform's truth for a fresh post in the sandbox (control API), submits a claim
as an affiliate, then the command waits for the workers and prints outcomes, alerts and trust movements.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from alerts.models import Alert
from notifications.models import Delivery, Destination, WebhookSubscription
from reconciliation.management.commands.seed_demo import keys_path
from reconciliation.models import Affiliate, Campaign, ReconciliationLog


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _url(platform: str) -> tuple[str, str]:
    """A fresh post URL and the platform post id the sandbox will be asked about."""
    if platform == "youtube":
        vid = _rand(string.ascii_letters + string.digits, 11)
        return f"https://www.youtube.com/watch?v={vid}&utm_source=demo", vid
    if platform == "reddit":
        rid = _rand(string.ascii_lowercase + string.digits, 7)
        return f"https://old.reddit.com/r/outdoors/comments/{rid}/new_tent_review/", rid
    if platform == "instagram":
        code = _rand(string.ascii_letters + string.digits, 11)
        return f"https://www.instagram.com/p/{code}/?igsh=demo", code
    if platform == "tiktok":
        tid = _rand(string.digits, 19).lstrip("0") or "1"
        return f"https://www.tiktok.com/@acmefan/video/{tid}", tid
    if platform == "x":
        xid = _rand(string.digits, 19).lstrip("0") or "1"
        return f"https://twitter.com/acmefan/status/{xid}?s=20", xid
    pid = _rand(string.digits, 15).lstrip("0") or "1"
    return f"https://www.facebook.com/acmeoutdoor/posts/{pid}", pid


@dataclass
class Scenario:
    label: str
    affiliate: str
    platform: str
    claim: tuple[int, int, int]
    truth: dict[str, Any]


SCENARIOS = [
    Scenario(
        "exact match",
        "alice@example.com",
        "youtube",
        (12000, 480, 24),
        {"views": 12000, "clicks": 480, "conversions": 24},
    ),
    Scenario(
        "within tolerance",
        "alice@example.com",
        "tiktok",
        (9600, 200, 10),
        {"views": 10000, "clicks": 200, "conversions": 10},
    ),
    Scenario(
        "low discrepancy",
        "bob@example.com",
        "reddit",
        (3240, 150, 12),
        {"views": 3000, "clicks": 150, "conversions": 12},
    ),
    Scenario(
        "medium discrepancy",
        "bob@example.com",
        "meta",
        (8500, 300, 30),
        {"views": 10000, "clicks": 300, "conversions": 30},
    ),
    Scenario(
        "high discrepancy", "bob@example.com", "x", (6000, 100, 5), {"views": 9000, "clicks": 100, "conversions": 5}
    ),
    Scenario(
        "over-claim",
        "carol@example.com",
        "youtube",
        (13000, 400, 20),
        {"views": 10000, "clicks": 400, "conversions": 20},
    ),
    Scenario(
        "gross over-claim",
        "carol@example.com",
        "meta",
        (40000, 900, 60),
        {"views": 20000, "clicks": 500, "conversions": 30},
    ),
    Scenario("partial data", "alice@example.com", "instagram", (7000, 0, 0), {"views": 7000}),
    Scenario("post not found", "carol@example.com", "tiktok", (2000, 50, 2), {"exists": False}),
]


def _describe(record: dict[str, Any]) -> str:
    body = record.get("body") or {}
    if record["name"] == "sandbox-slack":
        return str(body.get("text", ""))
    data = body.get("data", {}) if isinstance(body, dict) else {}
    if "alert" in data:
        alert = data["alert"]
        return f"alert {alert['id']} [{alert['severity']}] {alert['type']} x{alert['occurrence_count']}"
    if "report" in data:
        report = data["report"]
        return f"report {report['id']}: {report['previous_status']} -> {report['status']}"
    return str(data)[:80]


class Command(BaseCommand):
    help = "Submit a mixed batch through the REST API of a running stack, wait, and print outcomes, alerts and trust."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--api", default="http://127.0.0.1:8000", help="base URL of the API")
        parser.add_argument("--sandbox", default="http://127.0.0.1:8100", help="base URL of the platform sandbox")
        parser.add_argument("--campaign", type=int, default=None, help="campaign id (default: the demo's first)")
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the workers")

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            keys = json.loads(keys_path().read_text())
        except FileNotFoundError:
            raise CommandError(f"no demo keys at {keys_path()}: run `python manage.py seed_demo` first") from None
        campaign = (
            Campaign.objects.filter(pk=o["campaign"]).first()
            if o["campaign"]
            else (Campaign.objects.filter(name="Spring Launch").first())
        )
        if campaign is None:
            raise CommandError("no demo campaign: run `python manage.py seed_demo` first")
        http = requests.Session()
        scores_before = {a.email: a.trust_score for a in Affiliate.objects.filter(email__in=keys)}

        self._inbox_secrets(http, o["sandbox"])
        submitted: list[tuple[Scenario, int]] = []
        for scenario in SCENARIOS:
            url, post_id = _url(scenario.platform)
            try:
                http.put(f"{o['sandbox']}/_control/posts/{scenario.platform}/{post_id}", json=scenario.truth, timeout=5)
            except requests.RequestException as exc:
                raise CommandError(
                    f"the platform sandbox is not reachable at {o['sandbox']} ({exc}); is `make run` up?"
                )
            views, clicks, conversions = scenario.claim
            body = {
                "campaign_id": campaign.pk,
                "platform": scenario.platform,
                "post_url": url,
                "claimed_views": views,
                "claimed_clicks": clicks,
                "claimed_conversions": conversions,
                "evidence": {"screenshot": "https://example.com/demo.png"},
            }
            try:
                response = http.post(
                    f"{o['api']}/api/v1/submissions/",
                    json=body,
                    headers={"Authorization": f"Bearer {keys[scenario.affiliate]}"},
                    timeout=10,
                )
            except requests.RequestException as exc:
                raise CommandError(f"the API is not reachable at {o['api']} ({exc}); is `make run` up?") from None
            if response.status_code != 201:
                raise CommandError(f"{scenario.label}: the API answered {response.status_code}: {response.text[:500]}")
            submitted.append((scenario, response.json()["report_id"]))
            self.stdout.write(
                f"submitted {scenario.label:<20} as {scenario.affiliate:<18} -> report {submitted[-1][1]}"
            )

        ids = [rid for _, rid in submitted]
        self.stdout.write(f"waiting up to {o['timeout']:.0f}s for the workers ...")
        deadline = time.monotonic() + o["timeout"]
        while time.monotonic() < deadline:
            if not ReconciliationLog.objects.filter(report_id__in=ids, status="PENDING").exists():
                break
            time.sleep(0.5)
        logs = {log.report_id: log for log in ReconciliationLog.objects.filter(report_id__in=ids)}

        self.stdout.write("")
        header = (
            f"{'scenario':<20} {'platform':<10} {'report':>6}  {'status':<26} {'level':<8} "
            f"{'max diff':>8}  {'trust':>7}  reason"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for scenario, rid in submitted:
            log = logs[rid]
            diff = f"{log.max_diff_pct:.1%}" if log.max_diff_pct is not None else "-"
            trust = f"{log.trust_delta:+.2f}" if log.trust_delta is not None else "-"
            self.stdout.write(
                f"{scenario.label:<20} {scenario.platform:<10} {rid:>6}  {log.status:<26} "
                f"{log.discrepancy_level or '-':<8} "
                f"{diff:>8}  {trust:>7}  {log.missing_reason or ''}"
            )
        pending = [rid for rid in ids if logs[rid].status == "PENDING"]

        self.stdout.write("\nAlerts raised:")
        alerts = Alert.objects.filter(report_id__in=ids).order_by("id")
        for alert in alerts:
            self.stdout.write(f"  [{alert.severity}] {alert.alert_type}: {alert.title}")
        if not alerts:
            self.stdout.write("  none")

        self.stdout.write("\nTrust movements:")
        for affiliate in Affiliate.objects.filter(email__in=scores_before).order_by("email"):
            before = scores_before[affiliate.email]
            self.stdout.write(
                f"  {affiliate.email:<20} {before:.4f} -> {affiliate.trust_score:.4f} "
                f"({affiliate.trust_score - before:+.4f})"
            )
        self._print_notifications(o["sandbox"], alerts, ids, deadline)
        if pending:
            raise CommandError(
                f"{len(pending)} report(s) still PENDING after {o['timeout']:.0f}s: are the workers running? "
                "(`celery -A reconcile_project inspect ping`)"
            )

    @staticmethod
    def _inbox_secrets(http: requests.Session, sandbox: str) -> None:
        """Give the sandbox's inbox the demo receivers' secrets, so it shows whether each signature verifies."""
        prefix = f"{sandbox}/_webhooks/"
        targets: list[Destination | WebhookSubscription] = [
            *Destination.objects.filter(url__startswith=prefix),
            *WebhookSubscription.objects.filter(url__startswith=prefix, is_active=True),
        ]
        for target in targets:
            try:
                http.put(
                    f"{sandbox}/_control/webhooks/{target.url[len(prefix) :]}",
                    json={"secret": target.secret},
                    timeout=5,
                )
            except requests.RequestException:
                return  # reported when the submissions reach the sandbox

    def _print_notifications(self, sandbox: str, alerts: Any, report_ids: list[int], deadline: float) -> None:
        """What the sandbox's webhook inbox received about this run's alerts and reports."""
        alert_ids = {a.pk for a in alerts}

        def ours(record: dict[str, Any]) -> bool:
            data = (record.get("body") or {}).get("data", {}) if isinstance(record.get("body"), dict) else {}
            if "alert" in data:
                return data["alert"]["id"] in alert_ids
            if "report" in data:
                return data["report"]["id"] in report_ids
            text = json.dumps(record.get("body"))
            return any(f"report {rid}" in text for rid in report_ids)

        expected = Delivery.objects.filter(Q(alert_id__in=alert_ids) | Q(report_id__in=report_ids))
        received: list[dict[str, Any]] = []
        while True:
            try:
                answer = requests.get(f"{sandbox}/_control/webhooks", timeout=5).json()
            except (requests.RequestException, ValueError) as exc:
                self.stdout.write(f"\nNotifications: the sandbox's inbox is not reachable ({exc})")
                return
            received = [r for r in answer["received"] if ours(r) and 200 <= r["status"] < 300]
            webhooks = expected.exclude(destination__kind="EMAIL")
            if len(received) >= webhooks.count() or time.monotonic() > deadline + 15:
                break
            time.sleep(0.5)
        self.stdout.write(f"\nNotifications received by the sandbox ({sandbox}/_control/webhooks):")
        for record in received:
            verified = {True: "signed ok", False: "BAD SIGNATURE", None: "unsigned check"}[record["verified"]]
            self.stdout.write(
                f"  {record['name']:<14} {record['event_type'] or '-':<18} {verified:<14} {_describe(record)}"
            )
        if not received:
            self.stdout.write("  none (is the notifier process running? `celery -A reconcile_project inspect ping`)")
        mails = expected.filter(destination__kind="EMAIL")
        if mails.exists():
            self.stdout.write(f"  + {mails.count()} e-mail notification(s) (printed by the notifier's console backend)")
        failed = expected.filter(status=Delivery.Status.FAILED).count()
        if failed:
            self.stdout.write(f"  {failed} notification(s) FAILED: see the admin's delivery log")
