"""The bulk import service, ``manage.py import_claims`` and the admin upload page."""

from __future__ import annotations

import datetime as dt
import io
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import Client as WebClient
from django.utils import timezone

from reconciliation import rules
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Post, ReconciliationLog
from reconciliation.services import submissions
from reconciliation.services.submissions import BulkRow, reports_submit_batch
from tests import factories

pytestmark = pytest.mark.django_db

HEADER = "campaign_id,platform,post_url,claimed_views,claimed_clicks,claimed_conversions"


def reddit(n: int | str) -> str:
    return f"https://www.reddit.com/r/python/comments/s{n}/title/"


def row(campaign: Campaign, n: int | str, *, line: int = 2, views: int = 1000, **fields: Any) -> BulkRow:
    claims = rules.Claim(views=views, clicks=fields.pop("clicks", 50), conversions=fields.pop("conversions", 5))
    return BulkRow(line=line, campaign_id=campaign.pk, post_url=reddit(n), claims=claims, platform="reddit", **fields)


def counts() -> tuple[int, int, int]:
    return Post.objects.count(), AffiliateReport.objects.count(), ReconciliationLog.objects.count()


@pytest.fixture
def campaign() -> Campaign:
    return factories.campaign(platforms=("reddit", "youtube"))


@pytest.fixture
def affiliate() -> Affiliate:
    return factories.affiliate()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- service --------------------------------------------------------------------------------------


def test_rows_are_written_in_batches_with_the_bulk_method_and_due_logs(
    campaign: Campaign, affiliate: Affiliate
) -> None:
    now = timezone.now()
    rows = [row(campaign, n, line=n + 2) for n in range(5)]
    result = reports_submit_batch(affiliate=affiliate, rows=rows, now=now, batch_size=2, dispatch=False)
    assert (result.created, result.rejected, result.dispatched) == (5, [], False)
    reports = AffiliateReport.objects.filter(pk__in=result.report_ids)
    assert {r.submission_method for r in reports} == {AffiliateReport.Method.BULK}
    assert ReconciliationLog.objects.filter(report__in=reports, next_attempt_at=now, dispatched_at=None).count() == 5
    affiliate.refresh_from_db()
    assert affiliate.total_submissions == 5


def test_the_growth_rule_compares_with_the_posts_previous_claim_in_the_database_and_in_the_file(
    campaign: Campaign, affiliate: Affiliate
) -> None:
    platform = factories.platform("reddit")
    known = factories.post(campaign=campaign, affiliate=affiliate, platform=platform, platform_post_id="sknown")
    factories.report(post=known, claimed_views=1000)
    rows = [
        row(campaign, "known", line=2, views=10_000),  # +900 % on the stored claim
        row(campaign, "new", line=3, views=1000),
        row(campaign, "new", line=4, views=9000),  # +800 % on line 3, in the next batch
        row(campaign, "new", line=5, views=9000, clicks=10),  # clicks fell on line 4
    ]
    result = reports_submit_batch(affiliate=affiliate, rows=rows, now=timezone.now(), batch_size=2, dispatch=False)
    flags = {
        r.pk: {f["code"] for f in r.suspicion_flags} for r in AffiliateReport.objects.filter(pk__in=result.report_ids)
    }
    codes = [flags[pk] for pk in result.report_ids]
    assert "GROWTH_SPIKE" in codes[0]
    assert "GROWTH_SPIKE" not in codes[1]
    assert "GROWTH_SPIKE" in codes[2]
    assert "METRIC_DECREASE" in codes[3]
    assert Post.objects.filter(affiliate=affiliate, platform_post_id="snew").count() == 1


def test_a_submitted_at_in_the_future_is_refused_and_a_past_one_kept(campaign: Campaign, affiliate: Affiliate) -> None:
    now = timezone.now()
    past = now - dt.timedelta(days=2)
    rows = [
        row(campaign, 1, line=2, submitted_at=past),
        row(campaign, 2, line=3, submitted_at=now + dt.timedelta(hours=1)),
    ]
    result = reports_submit_batch(affiliate=affiliate, rows=rows, now=now, dispatch=False)
    assert [(r.line, list(r.fields)) for r in result.rejected] == [(3, ["submitted_at"])]
    assert AffiliateReport.objects.get(pk=result.report_ids[0]).submitted_at == past


def test_an_idempotency_key_identifies_a_row_whatever_its_numbers(campaign: Campaign, affiliate: Affiliate) -> None:
    now = timezone.now()
    first = reports_submit_batch(
        affiliate=affiliate, rows=[row(campaign, 1, idempotency_key="k1")], now=now, dispatch=False
    )
    again = reports_submit_batch(
        affiliate=affiliate, rows=[row(campaign, 1, views=5000, idempotency_key="k1")], now=now, dispatch=False
    )
    assert (first.created, again.created, again.already_imported) == (1, 0, 1)


def test_the_import_key_is_unique_in_the_database(campaign: Campaign, affiliate: Affiliate) -> None:
    post = factories.post(campaign=campaign, affiliate=affiliate)
    factories.report(post=post, import_key="a" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.report(post=post, import_key="a" * 64)


def test_a_single_submission_is_unchanged_by_the_import_key(campaign: Campaign, affiliate: Affiliate) -> None:
    result = submissions.report_submit(
        affiliate=affiliate,
        campaign_id=campaign.pk,
        platform="reddit",
        post_url=reddit(1),
        claims=rules.Claim(views=10, clicks=1, conversions=0),
        now=timezone.now(),
    )
    assert result.report.import_key is None and result.report.submission_method == AffiliateReport.Method.API


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_imports_of_one_file_record_each_claim_once() -> None:
    campaign = factories.campaign(platforms=("reddit",))
    affiliate = factories.affiliate()
    rows = [row(campaign, n, line=n + 2) for n in range(20)]
    # Both imports read "not imported yet" before either writes: the unique import key decides.
    both_read = threading.Barrier(2, timeout=10)
    real = submissions._latest_claims
    calls = {"n": 0}

    def latest_then_wait(post_ids: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            both_read.wait()
        return real(post_ids)

    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(reports_submit_batch(affiliate=affiliate, rows=rows, now=timezone.now(), dispatch=False))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    with mock.patch.object(submissions, "_latest_claims", latest_then_wait):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []
    assert sorted((r.created, r.already_imported) for r in results) == [(0, 20), (20, 0)]
    assert AffiliateReport.objects.filter(post__affiliate=affiliate).count() == 20
    assert Post.objects.filter(affiliate=affiliate).count() == 20


# --- manage.py import_claims ----------------------------------------------------------------------


def test_command_imports_a_file_and_prints_a_summary_and_each_bad_line(
    tmp_path: Path, campaign: Campaign, affiliate: Affiliate
) -> None:
    c = campaign.pk
    path = write(
        tmp_path, "claims.csv", f"{HEADER}\n{c},reddit,{reddit(1)},1000,50,5\n{c},reddit,{reddit(2)},10,50,5x\n"
    )
    out = io.StringIO()
    call_command("import_claims", str(path), "--affiliate", str(affiliate.pk), stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "line 3: claimed_conversions:" in text
    assert "2 rows: 1 claims created, 0 already imported, 1 rejected" in text
    assert AffiliateReport.objects.filter(post__affiliate=affiliate, submission_method="BULK").count() == 1
    again = io.StringIO()
    call_command("import_claims", str(path), "--affiliate", affiliate.email, stdout=again, stderr=io.StringIO())
    assert "0 claims created, 1 already imported" in again.getvalue()


def test_command_dry_run_writes_nothing(tmp_path: Path, campaign: Campaign, affiliate: Affiliate) -> None:
    lines = "\n".join(
        f'{{"campaign_id": {campaign.pk}, "post_url": "{reddit(n)}", "claimed_views": 10, '
        f'"claimed_clicks": 1, "claimed_conversions": 0}}'
        for n in range(3)
    )
    path = write(tmp_path, "claims.jsonl", lines)
    before = counts()
    out = io.StringIO()
    call_command(
        "import_claims", str(path), "--affiliate", str(affiliate.pk), "--dry-run", stdout=out, stderr=io.StringIO()
    )
    assert "3 claims would be created (dry run, nothing written)" in out.getvalue()
    assert counts() == before


def test_command_without_an_affiliate_takes_the_column(
    tmp_path: Path, campaign: Campaign, affiliate: Affiliate
) -> None:
    path = write(
        tmp_path,
        "c.csv",
        f"{HEADER},affiliate_id\n{campaign.pk},reddit,{reddit(1)},10,1,0,{affiliate.pk}\n"
        f"{campaign.pk},reddit,{reddit(2)},10,1,0,\n",
    )
    out = io.StringIO()
    call_command("import_claims", str(path), stdout=out, stderr=io.StringIO())
    assert "line 3: affiliate_id: required" in out.getvalue()
    assert AffiliateReport.objects.filter(post__affiliate=affiliate).count() == 1


def test_command_refuses_an_unreadable_file_clearly(tmp_path: Path, affiliate: Affiliate) -> None:
    path = tmp_path / "claims.csv"
    path.write_bytes(f"{HEADER}\n1,reddit,caf\xe9,1,2,3\n".encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8"):
        call_command("import_claims", str(path), "--affiliate", str(affiliate.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="--format"):
        call_command("import_claims", str(tmp_path / "claims.txt"), "--affiliate", str(affiliate.pk))


# --- admin upload page ----------------------------------------------------------------------------


@pytest.fixture
def staff_web(db: None) -> WebClient:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("importer", "importer@example.com", "pw-importer-1", is_staff=True)
    web = WebClient()
    web.force_login(user)
    return web


def test_admin_page_is_linked_from_the_affiliate_changelist(staff_web: WebClient) -> None:
    from django.contrib.auth import get_user_model

    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1")
    staff_web.force_login(superuser)
    page = staff_web.get("/admin/reconciliation/affiliate/")
    assert b"/admin/reconciliation/affiliate/bulk-import/" in page.content


def test_admin_upload_imports_for_the_chosen_affiliate_and_shows_the_rejected_rows(
    staff_web: WebClient, campaign: Campaign, affiliate: Affiliate
) -> None:
    body = f"{HEADER}\n{campaign.pk},reddit,{reddit(1)},1000,50,5\n{campaign.pk},reddit,not a url,1000,50,5\n"
    upload = SimpleUploadedFile("claims.csv", body.encode(), content_type="text/csv")
    page = staff_web.post("/admin/reconciliation/affiliate/bulk-import/", {"affiliate": affiliate.pk, "file": upload})
    assert page.status_code == 200
    assert page.context["result"].created == 1
    assert page.context["rejected"] == [{"line": 3, "field": "post_url", "message": mock.ANY}]
    assert b"bulk-rejected" in page.content
    assert AffiliateReport.objects.filter(post__affiliate=affiliate, submission_method="BULK").count() == 1


def test_admin_upload_dry_run_and_a_bad_file(staff_web: WebClient, campaign: Campaign, affiliate: Affiliate) -> None:
    body = f"{HEADER}\n{campaign.pk},reddit,{reddit(1)},1000,50,5\n"
    before = counts()
    dry = staff_web.post(
        "/admin/reconciliation/affiliate/bulk-import/",
        {"affiliate": affiliate.pk, "file": SimpleUploadedFile("c.csv", body.encode()), "dry_run": "on"},
    )
    assert dry.context["result"].created == 1 and counts() == before
    bad = staff_web.post(
        "/admin/reconciliation/affiliate/bulk-import/",
        {"affiliate": affiliate.pk, "file": SimpleUploadedFile("c.csv", b"\xff\xfe\x00garbage")},
    )
    assert bad.context["result"] is None
    assert "not UTF-8" in str(bad.context["form"].errors["file"])


def test_admin_upload_page_is_for_staff_only(campaign: Campaign, affiliate: Affiliate) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("someone", "someone@example.com", "pw-someone-1", is_staff=False)
    web = WebClient()
    web.force_login(user)
    body = f"{HEADER}\n{campaign.pk},reddit,{reddit(1)},1000,50,5\n"
    response = web.post(
        "/admin/reconciliation/affiliate/bulk-import/",
        {"affiliate": affiliate.pk, "file": SimpleUploadedFile("c.csv", body.encode())},
    )
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not AffiliateReport.objects.exists()


def test_an_imported_claims_outbox_row_is_the_one_a_single_submission_writes(
    campaign: Campaign, affiliate: Affiliate
) -> None:
    from reconciliation.services.sweeper import due_logs

    now = timezone.now()
    single = submissions.report_submit(
        affiliate=affiliate,
        campaign_id=campaign.pk,
        platform="reddit",
        post_url=reddit("single"),
        claims=rules.Claim(views=10, clicks=1, conversions=0),
        now=now,
    )
    imported = reports_submit_batch(affiliate=affiliate, rows=[row(campaign, 1)], now=now, dispatch=False)
    # The single submission's row is marked dispatched in its own transaction (its message goes on commit);
    # the import was asked not to dispatch, so the sweeper finds it due.
    skip = {"id", "report", "updated_at", "dispatched_at"}
    columns = [f.attname for f in ReconciliationLog._meta.concrete_fields if f.name not in skip]
    expected = ReconciliationLog.objects.filter(report=single.report).values(*columns).get()
    got = ReconciliationLog.objects.filter(report_id=imported.report_ids[0]).values(*columns, "updated_at").get()
    assert got.pop("updated_at") is not None
    assert got == expected
    assert ReconciliationLog.objects.get(report=single.report).dispatched_at is not None
    assert set(due_logs(now).values_list("report_id", flat=True)) == {imported.report_ids[0]}


def test_a_low_trust_affiliates_import_goes_to_the_priority_queue(
    campaign: Campaign, django_capture_on_commit_callbacks: Any
) -> None:
    from reconciliation.services import dispatch

    low = factories.affiliate(trust_score="0.3000")
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as sent:
        with django_capture_on_commit_callbacks(execute=True):
            result = reports_submit_batch(affiliate=low, rows=[row(campaign, 1)], now=timezone.now())
    assert result.dispatched
    sent.assert_called_once_with(result.report_ids[0], priority=True, request_id=None)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_command_shows_a_progress_bar_on_a_terminal_only(
    tmp_path: Path, campaign: Campaign, affiliate: Affiliate
) -> None:
    body = "".join(f"{campaign.pk},reddit,{reddit(n)},10,1,0\n" for n in range(3))
    path = write(tmp_path, "claims.csv", f"{HEADER}\n{body}")
    terminal, pipe = Terminal(), io.StringIO()
    call_command(
        "import_claims", str(path), "--affiliate", str(affiliate.pk), "--dry-run", stdout=io.StringIO(), stderr=terminal
    )
    call_command(
        "import_claims", str(path), "--affiliate", str(affiliate.pk), "--dry-run", stdout=io.StringIO(), stderr=pipe
    )
    assert "Importing" in terminal.getvalue() and "3/3" in terminal.getvalue()
    assert pipe.getvalue() == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BULK_IMPORT_MAX_BYTES", "0"), ("BULK_IMPORT_MAX_ROWS", "-5"), ("BULK_IMPORT_MAX_ROWS", "lots")],
)
def test_a_bad_bulk_import_limit_stops_start_up_naming_it(variable: str, value: str) -> None:
    from tests.test_settings import manage

    result = manage("check", **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr + result.stdout
