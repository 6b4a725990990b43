"""Bulk import benchmark: rows/s from a CSV file to committed claims, through the submission service.

    .venv/bin/python bench/bulk_import.py [--rows 100000] [--repeat 3] [--format csv|jsonl]

Each run generates ``--rows`` valid rows (distinct posts of one campaign, alternating reddit and youtube,
evidence on every tenth row, a fresh affiliate per run so nothing is "already imported") and imports them
with :func:`reconciliation.services.bulk.claims_import`, as ``manage.py import_claims`` does: parsing and
shape checks, the rules of a single submission, posts, claims and outbox rows written 500 per
transaction. The clock covers all of it; a run counts only the claims found committed afterwards. Claims
are left to the sweeper (an import this size is not dispatched row by row), so no broker is needed.

PostgreSQL database ``reconcile_bench_bulk`` (created, migrated and emptied here, or ``BENCH_DATABASE_URL``).
Prints JSON only: each run's rows/s, their median, and the target (at least 2,000 rows/s).
Measured on the 2-core development machine with other work running (load average 4-6): CSV median
2,950 rows/s, JSON lines 2,920. Profiled: bulk_create's per-value preparation was half the time before
the batch inserts became one INSERT over arrays each (services/submissions.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchdb import bench_environment  # noqa: E402

# Redis db 10: 14 and 15 belong to the test suite.
ENV = bench_environment(database="reconcile_bench_bulk", redis_url="redis://127.0.0.1:6379/10")

TARGET_ROWS_PER_S = 2000

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from platforms.models import Platform  # noqa: E402
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Client  # noqa: E402
from reconciliation.services.bulk import Format, claims_import  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def setup() -> Campaign:
    call_command("migrate", verbosity=0)
    # Disposable database: empty it whole (evidence rows refuse deletes one by one).
    call_command("flush", interactive=False, verbosity=0)
    platforms = [
        Platform.objects.update_or_create(slug=slug, defaults={"name": name})[0]
        for slug, name in (("reddit", "Reddit"), ("youtube", "YouTube"))
    ]
    client, _ = Client.objects.get_or_create(name="Bench client")
    campaign = Campaign.objects.create(client=client, name="Bench", start_date=timezone.localdate())
    campaign.platforms.set(platforms)
    return campaign


def base36(n: int, width: int) -> str:
    out = ""
    while n:
        n, digit = divmod(n, 36)
        out = ALPHABET[digit] + out
    return out.rjust(width, "0")


def generate(campaign_id: int, rows: int, run: int, fmt: Format) -> bytes:
    lines = []
    if fmt == "csv":
        lines.append("campaign_id,platform,post_url,claimed_views,claimed_clicks,claimed_conversions,evidence")
    for i in range(rows):
        post = base36(run * 10_000_000 + i, 11)
        if i % 2:
            platform, url = "youtube", f"https://www.youtube.com/watch?v={post}"
        else:
            platform, url = "reddit", f"https://www.reddit.com/r/bench/comments/{post}/title/?utm_source=share"
        views, clicks, conversions = 1000 + i % 5000, 40 + i % 100, i % 10
        evidence = {"screenshot_url": f"https://img.example.com/{post}.png"} if i % 10 == 0 else None
        if fmt == "csv":
            cell = '"' + json.dumps(evidence).replace('"', '""') + '"' if evidence else ""
            lines.append(f"{campaign_id},{platform},{url},{views},{clicks},{conversions},{cell}")
        else:
            record = {
                "campaign_id": campaign_id,
                "platform": platform,
                "post_url": url,
                "claimed_views": views,
                "claimed_clicks": clicks,
                "claimed_conversions": conversions,
            }
            if evidence:
                record["evidence"] = evidence
            lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def run_once(campaign: Campaign, rows: int, run: int, fmt: Format) -> dict[str, float]:
    affiliate = Affiliate.objects.create(name=f"Bench agency {run}", email=f"agency{run}@example.com")
    data = generate(campaign.pk, rows, run, fmt)
    started = time.perf_counter()
    result = claims_import(data=data, fmt=fmt, affiliate=affiliate, staff=False, now=timezone.now(), dispatch=False)
    elapsed = time.perf_counter() - started
    committed = AffiliateReport.objects.filter(
        post__affiliate=affiliate, submission_method=AffiliateReport.Method.BULK, log__isnull=False
    ).count()
    if committed != rows or result.rejected:
        raise SystemExit(f"run {run}: {committed} committed of {rows}, first rejections {result.rejected[:3]}")
    return {"seconds": round(elapsed, 2), "rows_per_s": round(committed / elapsed, 1), "bytes": len(data)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = parser.parse_args()
    campaign = setup()
    runs = [run_once(campaign, args.rows, run, args.format) for run in range(1, args.repeat + 1)]
    median = statistics.median(r["rows_per_s"] for r in runs)
    print(
        json.dumps(
            {
                "benchmark": "bulk_import",
                "rows": args.rows,
                "format": args.format,
                "runs": runs,
                "median_rows_per_s": median,
                "targets": {"rows_per_s": TARGET_ROWS_PER_S, "met": median >= TARGET_ROWS_PER_S},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
