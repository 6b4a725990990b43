"""Benchmark of the compliance export: rows/s and peak memory for affiliates of growing size.

Run: ``.venv/bin/python bench/export.py [--claims 20000,100000]``. Prints one JSON document on stdout
(progress on stderr). Uses a database of its own: ``BENCH_DATABASE_URL`` if set, else
``reconcile_bench_export`` on the local PostgreSQL (``postgres://postgres@127.0.0.1:5432``), dropped and
recreated, then migrated. Talks only to 127.0.0.1.

For each size, one affiliate gets that many posts, each with one claim, its reconciliation log, one
attempt and one platform snapshot (five rows per claim), written with ``bulk_create`` and then
``ANALYZE``d (fresh tables without statistics get nested-loop plans that are 10x slower: not what a
production database sees). The export runs in a **fresh child process** per size into a temporary file,
so its peak RSS (``ru_maxrss``) is the export's own and not the seeding's: flat memory means the same
peak for every size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "reconcile_bench_export"

SEED = """
import datetime as dt, sys
from django.db import connection
from django.utils import timezone
from platforms.models import Platform
from reconciliation.models import (Affiliate, AffiliateReport, Campaign, Client, PlatformReport, Post,
    ReconciliationAttempt, ReconciliationLog)
n = int(sys.argv[1])
now = timezone.now()
platform, _ = Platform.objects.get_or_create(slug="reddit", defaults={"name": "Reddit"})
affiliate = Affiliate.objects.create(name=f"Bench {n}", email=f"bench{n}@example.com")
client = Client.objects.create(name=f"Bench {n}")
campaign = Campaign.objects.create(client=client, name="bench", start_date=dt.date(2026, 1, 1))
for start in range(0, n, 10_000):
    posts = Post.objects.bulk_create([
        Post(campaign=campaign, affiliate=affiliate, platform=platform, url=f"https://reddit.com/comments/b{n}x{i}",
             platform_post_id=f"b{n}x{i}", title="=cmd|' /C calc'!A0")
        for i in range(start, min(n, start + 10_000))])
    reports = AffiliateReport.objects.bulk_create([
        AffiliateReport(post=p, claimed_views=1000, claimed_clicks=10, claimed_conversions=1,
                        evidence={"screenshot_url": "https://img.example.com/x.png"}, submitted_at=now)
        for p in posts])
    ReconciliationLog.objects.bulk_create([ReconciliationLog(report=r, status="MATCHED") for r in reports])
    attempts = ReconciliationAttempt.objects.bulk_create([
        ReconciliationAttempt(report=r, number=1, started_at=now, finished_at=now, outcome="SUCCESS", status="MATCHED")
        for r in reports])
    PlatformReport.objects.bulk_create([
        PlatformReport(post=r.post, attempt=a, platform=platform, views=1000, clicks=10, conversions=1,
                       raw={"sandbox": True}, fetched_at=now)
        for r, a in zip(reports, attempts)])
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
print(affiliate.pk)
"""

EXPORT = """
import json, resource, sys, tempfile, time
from django.utils import timezone
from reconciliation.models import Affiliate
from reconciliation.services.exports import affiliate_export
affiliate = Affiliate.objects.get(pk=int(sys.argv[1]))
with tempfile.TemporaryFile() as out:
    started = time.perf_counter()
    result = affiliate_export(affiliate=affiliate, out=out, now=timezone.now(), actor="bench")
    seconds = time.perf_counter() - started
    size = out.tell()
rows = sum(result.counts.values())
peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
                  "zip_mb": round(size / 1e6, 1), "peak_rss_mb": peak_mb}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_database_url() -> str:
    """BENCH_DATABASE_URL as given, or a freshly recreated ``reconcile_bench_export`` on the local server."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    import psycopg

    with psycopg.connect(DEFAULT_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return DEFAULT_ADMIN_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}"


def django_run(code: str, *args: str, env: dict[str, str]) -> str:
    script = "import django; django.setup()\n" + code
    done = subprocess.run([PYTHON, "-c", script, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", default="20000,100000", help="comma-separated affiliate sizes (claims)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.claims.split(",")]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "DATABASE_URL": bench_database_url(),
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": "",
        "PYTHONPATH": str(ROOT),
    }
    log("migrating ...")
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    results: list[dict[str, Any]] = []
    for n in sizes:
        log(f"seeding an affiliate with {n} claims ...")
        affiliate_id = django_run(SEED, str(n), env=env)
        log("exporting ...")
        results.append({"claims": n, **json.loads(django_run(EXPORT, affiliate_id, env=env))})
        log(json.dumps(results[-1]))
    print(json.dumps({"benchmark": "affiliate_export", "results": results}, indent=2))


if __name__ == "__main__":
    main()
