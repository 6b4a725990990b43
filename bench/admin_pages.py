"""Admin benchmark: the analysts' pages with 100,000 alerts and 20,000 affiliates.

    .venv/bin/python bench/admin_pages.py [--repeat 15] [--warmup 2] [--rebuild]

Builds (once; reused while it holds the asked numbers, ``--rebuild`` to start over) a data set in PostgreSQL
database ``reconcile_bench_admin`` (created and migrated here, or ``BENCH_DATABASE_URL``): 20,000 affiliates,
one campaign on three platforms, two posts and reports per affiliate with their logs, an attempt for most
reports with a platform snapshot and a trust-ledger row, and 100,000 alerts spread over the six types, four
severities, three statuses (about 30 % open), the platforms and the last 30 days, each alert with one
history row. Rows are made by ``INSERT ... SELECT generate_series`` in PostgreSQL: no Python loop.

Then, logged in through Django's test client as a staff user of the ``risk_analyst`` group
(``setup_roles``), each page is fetched ``--warmup`` times, then ``--repeat`` times: the alert changelist
(default view: open alerts, most severe and newest first), the same filtered to critical over-claims, one
open alert's decision page and the risk dashboard. Prints JSON only: p50/p95 milliseconds, the number
of SQL queries per page (``CaptureQueriesContext``) and the median time spent in them. Target: each page
under 300 ms p50, with a bounded number of queries.

Measured (2-core machine, load average about 1.5), median of 3 runs of 15: alert changelist 119 ms p50
(130 ms p95, 10 queries, 87 ms of it in SQL: the top-50 sort of the 30,000 open alerts by the computed
severity rank); filtered to critical over-claims 63 ms (10 queries); decision page 29 ms (16 queries);
risk dashboard 67 ms (11 queries). Building the data: 7 s. With every alert open (an UPDATE on the built
data), the changelist takes 165 ms p50 and the dashboard 88 ms: the sort grows with the open alerts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchdb import bench_environment  # noqa: E402

ENV = bench_environment(
    database="reconcile_bench_admin", redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
)
# WhiteNoise warns that ``collectstatic`` has not run; the bench serves no static file. JSON only on stdout.
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

import datetime as dt  # noqa: E402

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client as HttpClient  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from alerts.models import Alert  # noqa: E402
from platforms.models import Platform  # noqa: E402
from reconciliation.models import Affiliate, Campaign, Client  # noqa: E402

CAMPAIGN = "bench admin"
PLATFORMS = ("reddit", "youtube", "instagram")
POSTS_PER_AFFILIATE = 2
TARGET_P50_MS = 300


def build(affiliates: int, alerts: int, rebuild: bool) -> None:
    call_command("migrate", verbosity=0)
    if not rebuild and Affiliate.objects.count() == affiliates and Alert.objects.count() == alerts:
        return
    # The bench database is disposable: empty it whole (evidence rows are never deleted one by one).
    call_command("flush", interactive=False, verbosity=0)
    now = timezone.now()
    t0 = now - dt.timedelta(days=30)
    client = Client.objects.create(name="bench client")
    campaign = Campaign.objects.create(client=client, name=CAMPAIGN, start_date=t0.date())
    platforms = [Platform.objects.get_or_create(slug=s, defaults={"name": s})[0] for s in PLATFORMS]
    campaign.platforms.set(platforms)
    params: dict[str, Any] = {
        "campaign": campaign.pk,
        "platforms": [p.pk for p in platforms],
        "affiliates": affiliates,
        "per_affiliate": POSTS_PER_AFFILIATE,
        "alerts": alerts,
        "types": Alert.Type.values,
        "severities": Alert.Severity.values,
        "t0": t0,
        "now": now,
    }
    conclusive = "('MATCHED','DISCREPANCY_LOW','DISCREPANCY_MEDIUM','DISCREPANCY_HIGH','AFFILIATE_OVERCLAIMED')"
    statements = [
        """INSERT INTO reconciliation_affiliate (name, email, trust_score, total_submissions, accurate_submissions,
               is_active, created_at, submission_rate)
           SELECT 'Affiliate ' || g, 'bench' || g || '@example.com', ((g * 37) %% 1000) / 1000.0, 10, g %% 11,
                  g %% 50 <> 0, %(t0)s, ''
           FROM generate_series(0, %(affiliates)s - 1) g""",
        """INSERT INTO reconciliation_post (campaign_id, affiliate_id, platform_id, url, platform_post_id, title,
               created_at)
           SELECT %(campaign)s, a.id, (%(platforms)s::bigint[])[1 + (a.id + k) %% cardinality(%(platforms)s::bigint[])],
                  'https://www.reddit.com/r/bench/comments/a' || a.id || '_' || k || '/', 'a' || a.id || '_' || k, '',
                  %(t0)s::timestamptz + (a.id %% 43200) * interval '1 minute'
           FROM reconciliation_affiliate a CROSS JOIN generate_series(0, %(per_affiliate)s - 1) k""",
        """INSERT INTO reconciliation_affiliatereport (post_id, claimed_views, claimed_clicks, claimed_conversions,
               evidence, suspicion_flags, submission_method, idempotency_key, request_id, submitted_at)
           SELECT p.id, 1000 + (p.id * 7) %% 9000, 50 + p.id %% 400, p.id %% 40, '{}', '[]', 'API', '', '',
                  p.created_at
           FROM reconciliation_post p""",
        """INSERT INTO reconciliation_reconciliationlog (report_id, status, missing_fields, missing_reason,
               attempt_count, budget_attempts, deferral_count, error_code, error_message, terminal, updated_at)
           SELECT r.id, s.status, '[]', '', 0, 0, 0, '', '', s.status <> 'PENDING', r.submitted_at
           FROM reconciliation_affiliatereport r
           CROSS JOIN LATERAL (SELECT (ARRAY['MATCHED','MATCHED','MATCHED','MATCHED','DISCREPANCY_LOW',
               'DISCREPANCY_MEDIUM','DISCREPANCY_HIGH','AFFILIATE_OVERCLAIMED','MISSING_PLATFORM_DATA','PENDING'])
               [1 + r.id %% 10] AS status) s""",
        """INSERT INTO reconciliation_reconciliationattempt (report_id, number, started_at, finished_at, outcome,
               status, missing_reason, duration_ms, worker, is_recheck)
           SELECT l.report_id, 1, r.submitted_at + interval '1 minute', r.submitted_at + interval '1 minute',
                  CASE WHEN l.status = 'MISSING_PLATFORM_DATA' THEN 'MISSING' ELSE 'SUCCESS' END, l.status,
                  CASE WHEN l.status = 'MISSING_PLATFORM_DATA' THEN 'not_found' ELSE '' END, 100, 'bench', false
           FROM reconciliation_reconciliationlog l
           JOIN reconciliation_affiliatereport r ON r.id = l.report_id
           WHERE l.status <> 'PENDING'""",
        """INSERT INTO reconciliation_platformreport (post_id, attempt_id, platform_id, views, clicks, conversions,
               raw, fetched_at)
           SELECT r.post_id, a.id, p.platform_id, r.claimed_views * 80 / 100, r.claimed_clicks,
                  r.claimed_conversions, '{}', a.finished_at
           FROM reconciliation_reconciliationattempt a
           JOIN reconciliation_affiliatereport r ON r.id = a.report_id
           JOIN reconciliation_post p ON p.id = r.post_id
           WHERE a.status IN """
        + conclusive,
        """INSERT INTO reconciliation_trustevent (affiliate_id, report_id, attempt_id, event, delta, effective_delta,
               score_after, created_at)
           SELECT p.affiliate_id, r.id, a.id, a.status, -0.05, -0.05, ((r.id * 13) %% 1000) / 1000.0, a.finished_at
           FROM reconciliation_reconciliationattempt a
           JOIN reconciliation_affiliatereport r ON r.id = a.report_id
           JOIN reconciliation_post p ON p.id = r.post_id
           WHERE a.status IN """
        + conclusive,
        """UPDATE reconciliation_reconciliationlog l SET attempt_count = 1
           WHERE EXISTS (SELECT 1 FROM reconciliation_reconciliationattempt a WHERE a.report_id = l.report_id)""",
        # Alert g: report g / 6 (in id order) with the g-th type of six, so (report, type) stays unique.
        """INSERT INTO alerts_alert (alert_type, category, severity, status, title, message, threshold_breached,
               affiliate_id, platform_id, report_id, occurrence_count, last_occurred_at, resolution_notes,
               decision_note, decided_by, created_at)
           SELECT t.type,
                  CASE WHEN t.type IN ('OVERCLAIM','SUSPICIOUS_CLAIM','LOW_TRUST') THEN 'FRAUD'
                       WHEN t.type = 'PLATFORM_OUTAGE' THEN 'SYSTEM_HEALTH' ELSE 'DATA_QUALITY' END,
                  (%(severities)s::text[])[1 + (g * 7 / 6) %% 4],
                  (ARRAY['OPEN','OPEN','OPEN','ACKNOWLEDGED','RESOLVED','RESOLVED','RESOLVED','RESOLVED',
                         'RESOLVED','RESOLVED'])[1 + (g / 6 * 3 + g) %% 10],
                  t.type || ' on report ' || r.id, '', '{"views": {"claimed": 1000, "platform": 800}}',
                  r.affiliate_id, r.platform_id, r.id, 1 + g %% 3, c.at, '', '', '', c.at
           FROM generate_series(0, %(alerts)s - 1) g
           CROSS JOIN LATERAL (SELECT (%(types)s::text[])[1 + g %% 6] AS type) t
           CROSS JOIN LATERAL (SELECT %(now)s::timestamptz - (g %% 30) * interval '1 day'
                                      - ((g * 7919) %% 86400) * interval '1 second' AS at) c
           JOIN (SELECT r.id, p.affiliate_id, p.platform_id, row_number() OVER (ORDER BY r.id) - 1 AS n
                 FROM reconciliation_affiliatereport r JOIN reconciliation_post p ON p.id = r.post_id) r
             ON r.n = g / 6""",
        """INSERT INTO alerts_historicalalert (id, alert_type, category, severity, status, title, message,
               threshold_breached, affiliate_id, platform_id, report_id, occurrence_count, last_occurred_at,
               resolution_notes, decision_note, decided_by, created_at, history_date, history_type)
           SELECT id, alert_type, category, severity, status, title, message, threshold_breached, affiliate_id,
                  platform_id, report_id, occurrence_count, last_occurred_at, resolution_notes, decision_note,
                  decided_by, created_at, created_at, '+'
           FROM alerts_alert""",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql, params)
        cursor.execute("ANALYZE")


def analyst() -> HttpClient:
    call_command("setup_roles", verbosity=0, stdout=io.StringIO())
    user, _ = get_user_model().objects.get_or_create(username="bench-analyst", defaults={"is_staff": True})
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="risk_analyst"))
    http = HttpClient()
    http.force_login(user)
    return http


def measure(http: HttpClient, url: str, repeat: int, warmup: int) -> dict:
    for _ in range(warmup):
        response = http.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times: list[float] = []
    queries: list[int] = []
    sql_ms: list[float] = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = http.get(url)
            _ = response.content
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries.append(len(captured.captured_queries))
        sql_ms.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
    times.sort()
    return {
        "url": url,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 1),
        "queries": max(queries),
        # Of p50_ms, the time spent waiting for PostgreSQL (the rest: Python, templates, middleware).
        "sql_p50_ms": round(statistics.median(sql_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--affiliates", type=int, default=20_000)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    t = time.perf_counter()
    build(args.affiliates, args.alerts, args.rebuild)
    build_s = time.perf_counter() - t
    http = analyst()
    changelist = reverse("admin:alerts_alert_changelist")
    alert = Alert.objects.filter(status=Alert.Status.OPEN, alert_type=Alert.Type.OVERCLAIM).order_by("-id").first()
    assert alert is not None
    pages = {
        "alert_changelist": changelist,
        "alert_changelist_filtered": changelist + "?severity__exact=CRITICAL&alert_type__exact=OVERCLAIM",
        "alert_decision": reverse("admin:alerts_alert_change", args=[alert.pk]),
        "risk_dashboard": reverse("risk-dashboard"),
    }
    # The plain static storage: no ``collectstatic`` manifest is needed to render the admin's templates.
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    storages = {**settings.STORAGES, "staticfiles": plain}
    with override_settings(STORAGES=storages):
        results = {name: measure(http, url, args.repeat, args.warmup) for name, url in pages.items()}
    print(
        json.dumps(
            {
                "affiliates": Affiliate.objects.count(),
                "alerts": Alert.objects.count(),
                "open_alerts": Alert.objects.filter(status=Alert.Status.OPEN).count(),
                "build_seconds": round(build_s, 1),
                "repeat": args.repeat,
                "pages": results,
                "targets": {
                    "p50_ms": TARGET_P50_MS,
                    "met": all(r["p50_ms"] < TARGET_P50_MS for r in results.values()),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
