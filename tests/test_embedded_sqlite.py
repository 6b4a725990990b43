"""`make run` uses an embedded SQLite database: the paths that have a PostgreSQL-only fast form (bulk import's
array inserts, DISTINCT ON reads in the statement and the growth rule) must work there too.

Runs the real commands in a subprocess against a throw-away SQLite file (the suite's own database is
PostgreSQL), then reads the campaign statement through the WSGI app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STATEMENT = """
import json, os, django
django.setup()
from django.test import Client
keys = json.load(open(os.path.join(os.environ["VAR_DIR"], "demo_keys.json")))
client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION="Bearer " + keys["staff"])
body = client.get("/api/v1/campaigns/1/statement").json()
csv = b"".join(client.get("/api/v1/campaigns/1/statement?format=csv&detail=claims").streaming_content)
print(json.dumps({"claims": body["total"]["claims"], "csv_lines": len(csv.decode().splitlines())}))
"""

DECIDE = """
import django
django.setup()
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import AffiliateReport
from reconciliation.services.attempts import attempt_run
# The imported claims, observed at 100 %, 93 % (a 7.5 % over-claim: LOW) and 60 % of the claimed views.
for report, share in zip(AffiliateReport.objects.filter(submission_method="BULK").order_by("pk"), (100, 93, 60)):
    views = report.claimed_views * share // 100
    metrics = PlatformMetrics(views, report.claimed_clicks, report.claimed_conversions, raw={})
    outcome = FetchOutcome(metrics=metrics, missing_fields=[], attempts=1, duration_seconds=0.01)
    attempt_run(report_id=report.pk, worker="sqlite", fetcher=lambda _c, o=outcome: o)
"""


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout


def test_bulk_import_export_and_statement_work_on_the_embedded_sqlite(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "DJANGO_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "VAR_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
        # Nothing here may reach a queue a worker elsewhere consumes: a broker nobody listens on.
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    manage = [sys.executable, "manage.py"]
    run([*manage, "migrate", "--noinput", "-v0"], env)
    run([*manage, "seed_demo"], env)
    first = run([*manage, "import_claims", "docs/examples/claims.csv", "--affiliate", "1"], env)
    again = run([*manage, "import_claims", "docs/examples/claims.csv", "--affiliate", "1"], env)
    assert "3 claims created" in first and "0 claims created, 3 already imported" in again
    run([*manage, "export_affiliate_data", "1", "--output", str(tmp_path / "a1.zip")], env)
    assert (tmp_path / "a1.zip").stat().st_size > 0
    figures = json.loads(run([sys.executable, "-c", STATEMENT], env).strip().splitlines()[-1])
    assert figures["claims"] >= 3 and figures["csv_lines"] == figures["claims"] + 1

    # Rule changes: the simulation and re-reconciliation by rule set read the same SQLite database.
    run([sys.executable, "-c", DECIDE], env)
    current = json.loads(run([*manage, "simulate_rules", "--json"], env))
    assert current["claims"] == figures["claims"] and current["identity"] is True
    assert current["reevaluated"] >= 3
    looser = json.loads(
        run([*manage, "simulate_rules", "--json", "--set", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT=0.1"], env)
    )
    assert any(cell["from"] == "DISCREPANCY_LOW" and cell["to"] == "MATCHED" for cell in looser["matrix"])
    dry = run([*manage, "rereconcile", "--ruleset-other-than", "CURRENT", "--dry-run", "--no-progress"], env)
    assert "dry run: 0 report(s) would be re-reconciled" in dry
