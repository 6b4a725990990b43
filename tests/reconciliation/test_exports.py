"""The compliance export (reconciliation.services.exports) and its command, on two affiliates with full trails.

Each affiliate gets API keys (one revoked), posts, claims with evidence, attempts run through the real
attempt protocol with a fake fetcher (snapshots, verdicts, trust ledger, alerts), an alert acknowledged and
resolved by an analyst, and an idempotency key of one of its API keys. The archive of one must hold every
row of its own and nothing of the other's.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, ManagementUtility, call_command
from django.db.models import Q
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_acknowledge, alert_resolve
from chat.models import ChatIdentity, ChatLinkCode, Provider
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconcile_project import csvsafe
from reconciliation.models import (
    Affiliate,
    AffiliateAPIKey,
    AffiliateReport,
    IdempotencyKey,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
    TrustEvent,
)
from reconciliation.services import exports
from reconciliation.services.attempts import AttemptResult, attempt_run
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
TABLES = [t.name for t in exports.TABLES]


def fetched(views: int, clicks: int = 100, conversions: int = 10) -> FetchOutcome:
    metrics = PlatformMetrics(views, clicks, conversions, raw={"sandbox": True, "formula": "=2+3"})
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


@dataclass
class Trail:
    affiliate: Affiliate
    keys: list[tuple[AffiliateAPIKey, str]]  # (row, plaintext)
    tag: str


def full_trail(tag: str, analyst: Any) -> Trail:
    """An affiliate with a row in every table the export covers (``tag`` marks its strings)."""
    affiliate = factories.affiliate(name=f"Affiliate {tag}", email=f"{tag}@example.com", chat_user_id=f"chat-{tag}")
    keys = [
        cast(
            tuple[AffiliateAPIKey, str], AffiliateAPIKey.objects.create_key(name=f"key {tag} {n}", affiliate=affiliate)
        )
        for n in (1, 2)
    ]
    revoked = keys[1][0]
    revoked.revoked = True
    revoked.expiry_date = NOW + dt.timedelta(days=30)
    revoked.save()
    campaign = factories.campaign(platforms=("reddit",))
    claims: dict[str, Any] = {"claimed_views": 1000, "claimed_clicks": 100, "claimed_conversions": 10}
    for n, platform_views in enumerate((1000, 400)):  # one claim matches, one over-claims
        post = factories.post(
            affiliate=affiliate, campaign=campaign, platform_post_id=f"{tag}-post-{n}", title=f'=HYPERLINK("{tag}")'
        )
        report = factories.report(
            post=post,
            evidence={"screenshot_url": f"https://img.example.com/{tag}/{n}.png", "note": "+1 trust me"},
            idempotency_key=f"{tag}-claim-{n}",
            **claims,
        )
        outcome, submitted_at = fetched(platform_views), report.submitted_at
        result = attempt_run(
            report_id=report.pk,
            worker="test",
            fetcher=lambda _c, o=outcome: o,  # type: ignore[misc]
            clock=lambda t=submitted_at: t,  # type: ignore[misc]
        )
        assert isinstance(result, AttemptResult), result
    alert = Alert.objects.filter(report__post__affiliate=affiliate).order_by("id").first()
    assert alert is not None, "the over-claim raised no alert"
    alert_acknowledge(alert=alert, user=analyst, now=NOW)
    alert_resolve(alert=alert, user=analyst, note="@SUM(A1) confirmed with the platform", now=NOW)
    IdempotencyKey.objects.create(
        owner_kind=IdempotencyKey.OwnerKind.AFFILIATE_KEY,
        owner_id=str(keys[0][0].pk),
        key=f"{tag}-idempotency",
        request_hash="0" * 64,
        response_status=201,
        response_body={"report_id": 1},
        completed=True,
        created_at=NOW,
    )
    identity = ChatIdentity.objects.create(
        provider=Provider.SLACK, team_id=f"T-{tag}", external_user_id=f"U-{tag}", affiliate=affiliate,
        linked_via=ChatIdentity.LinkedVia.LINK_CODE, linked_at=NOW,
    )  # fmt: skip
    ChatLinkCode.objects.create(
        affiliate=affiliate, code_hash=hashlib.sha256(tag.encode()).hexdigest(), created_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=15), used_at=NOW, used_by=identity,
    )  # fmt: skip
    return Trail(affiliate=affiliate, keys=keys, tag=tag)


@pytest.fixture
def analyst() -> Any:
    return get_user_model().objects.create_user("analyst-x", "analyst@example.com", "pw", is_staff=True)


@pytest.fixture
def trails(analyst: Any) -> tuple[Trail, Trail]:
    return full_trail("alpha", analyst), full_trail("bravo", analyst)


def export(affiliate: Affiliate, **kwargs: Any) -> zipfile.ZipFile:
    out = io.BytesIO()
    exports.affiliate_export(affiliate=affiliate, out=out, now=NOW, **kwargs)
    out.seek(0)
    archive = zipfile.ZipFile(out)
    assert archive.testzip() is None
    return archive


def csv_rows(archive: zipfile.ZipFile, table: str) -> list[dict[str, str]]:
    text = archive.read(f"{table}.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def json_rows(archive: zipfile.ZipFile, table: str) -> list[dict[str, Any]]:
    return json.loads(archive.read(f"{table}.json"))


def expected_ids(affiliate: Affiliate) -> dict[str, set[str]]:
    """Per table, the identifying column's values the export must hold (from the database)."""

    def ids(queryset: Any, column: str = "id") -> set[str]:
        return {str(v) for v in queryset.values_list(column, flat=True)}

    return {
        "profile": {str(affiliate.pk)},
        "api_keys": ids(AffiliateAPIKey.objects.filter(affiliate=affiliate), "prefix"),
        "posts": ids(Post.objects.filter(affiliate=affiliate)),
        "claims": ids(AffiliateReport.objects.filter(post__affiliate=affiliate)),
        "verdicts": ids(ReconciliationLog.objects.filter(report__post__affiliate=affiliate), "report_id"),
        "attempts": ids(ReconciliationAttempt.objects.filter(report__post__affiliate=affiliate)),
        "platform_snapshots": ids(PlatformReport.objects.filter(post__affiliate=affiliate)),
        "trust_events": ids(TrustEvent.objects.filter(affiliate=affiliate)),
        "alerts": ids(Alert.objects.filter(affiliate=affiliate))
        | ids(Alert.objects.filter(report__post__affiliate=affiliate)),
        "alert_history": ids(
            Alert.history.filter(Q(affiliate_id=affiliate.pk) | Q(report__post__affiliate=affiliate)), "history_id"
        ),
        "profile_history": ids(Affiliate.history.filter(id=affiliate.pk), "history_id"),
        "chat_identities": ids(ChatIdentity.objects.filter(affiliate=affiliate)),
        "chat_link_codes": ids(ChatLinkCode.objects.filter(affiliate=affiliate)),
        "idempotency_keys": {f"{affiliate.email.split('@')[0]}-idempotency"},
    }


KEY_COLUMN = {
    "alert_history": "history_id",
    "profile_history": "history_id",
    "api_keys": "prefix",
    "verdicts": "report_id",
    "idempotency_keys": "key",
}


def test_the_archive_holds_every_row_of_the_affiliate_and_none_of_the_other(
    trails: tuple[Trail, Trail], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, bravo = trails
    monkeypatch.setattr(exports, "CHUNK_SIZE", 2)  # several round trips of the server-side cursor
    archive = export(alpha.affiliate)
    mine, theirs = expected_ids(alpha.affiliate), expected_ids(bravo.affiliate)
    for table in TABLES:
        column = KEY_COLUMN.get(table, "id")
        assert mine[table], f"the fixture has no {table} row"
        in_csv = {row[column] for row in csv_rows(archive, table)}
        in_json = {str(row[column]) for row in json_rows(archive, table)}
        assert in_csv == in_json == mine[table], table
        assert not in_csv & theirs[table], table
    # Nothing of the other affiliate anywhere, by its own strings.
    blob = b"".join(archive.read(name) for name in archive.namelist())
    for marker in ("bravo@example.com", "bravo-post-", "chat-bravo", "bravo-claim-", "bravo-idempotency", "key bravo"):
        assert marker.encode() not in blob, marker
    for key, _ in bravo.keys:
        assert key.prefix.encode() not in blob
    # And its own, with the lifecycle of the resolved alert and the evidence of the claims.
    resolved = [row for row in csv_rows(archive, "alerts") if row["status"] == "RESOLVED"]
    assert resolved and resolved[0]["resolved_by"] == "analyst-x" and resolved[0]["acknowledged_by"] == "analyst-x"
    assert resolved[0]["resolved_at"] == NOW.isoformat()
    evidence = [json.loads(row["evidence"]) for row in csv_rows(archive, "claims")]
    assert {e["screenshot_url"] for e in evidence} == {f"https://img.example.com/alpha/{n}.png" for n in (0, 1)}
    assert {row["revoked"] for row in csv_rows(archive, "api_keys")} == {"true", "false"}
    (profile,) = json_rows(archive, "profile")
    assert profile["email"] == "alpha@example.com" and profile["trust_score"] == str(
        Affiliate.objects.get(pk=alpha.affiliate.pk).trust_score
    )


def test_manifest_counts_and_checksums_match_the_files(trails: tuple[Trail, Trail]) -> None:
    alpha, _ = trails
    archive = export(alpha.affiliate)
    manifest = json.loads(archive.read(exports.MANIFEST))
    assert manifest["format_version"] == exports.FORMAT_VERSION
    assert manifest["affiliate_id"] == alpha.affiliate.pk
    assert manifest["exported_at"] == NOW.isoformat()
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(archive.namelist()) - {exports.MANIFEST, exports.CHECKSUMS}
    assert set(listed) == {f"{t}.{ext}" for t in TABLES for ext in ("csv", "json")}
    for name, entry in listed.items():
        data = archive.read(name)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entry["bytes"] == len(data), name
        rows = csv_rows(archive, name[:-4]) if name.endswith(".csv") else json_rows(archive, name[:-5])
        assert entry["rows"] == len(rows), name
    assert listed["posts.csv"]["rows"] == 2 and listed["attempts.json"]["rows"] == 2
    # SHA256SUMS is the same list in sha256sum's format.
    lines = archive.read(exports.CHECKSUMS).decode().splitlines()
    sums = {name: digest for digest, name in (line.split("  ") for line in lines)}
    assert sums == {name: entry["sha256"] for name, entry in listed.items()}


def test_no_key_secret_or_hash_appears_anywhere_in_the_archive(trails: tuple[Trail, Trail]) -> None:
    alpha, _ = trails
    archive = export(alpha.affiliate)
    blob = b"".join(archive.read(name) for name in archive.namelist())
    assert alpha.keys[0][0].prefix.encode() in blob  # the prefix is exported...
    for key, plaintext in alpha.keys:
        secret = plaintext.partition(".")[2]
        # ...never the secret, its hash, or the row id (which embeds the hash).
        for forbidden in (plaintext, secret, key.hashed_key, key.pk, key.hashed_key[:16]):
            assert forbidden.encode() not in blob, forbidden
    # The idempotency key names its API key by prefix, not by the row id its table stores.
    (idem,) = csv_rows(archive, "idempotency_keys")
    assert idem["api_key_prefix"] == alpha.keys[0][0].prefix


def test_formula_cells_are_escaped_in_csv_and_kept_in_json(trails: tuple[Trail, Trail]) -> None:
    alpha, _ = trails
    archive = export(alpha.affiliate)
    posts = csv_rows(archive, "posts")
    assert {row["title"] for row in posts} == {'\'=HYPERLINK("alpha")'}
    assert {row["title"] for row in json_rows(archive, "posts")} == {'=HYPERLINK("alpha")'}
    (resolved,) = [row for row in csv_rows(archive, "alerts") if row["resolution_notes"]]
    assert resolved["resolution_notes"] == "'@SUM(A1) confirmed with the platform"
    # Plain negative numbers stay numbers (the over-claim's trust delta).
    deltas = [row["delta"] for row in csv_rows(archive, "trust_events")]
    assert any(d.startswith("-") for d in deltas) and all(not d.startswith("'") for d in deltas)
    # No cell of any CSV would be evaluated by a spreadsheet.
    for table in TABLES:
        for row in csv_rows(archive, table):
            for value in row.values():
                if value[:1] in ("=", "+", "-", "@"):
                    assert csvsafe.PLAIN_NUMBER.fullmatch(value), (table, value)


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("-0.1100", "-0.1100"),
        ("+12", "+12"),
        ("-1e5", "-1e5"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_escape_formula(text: str, cell: str) -> None:
    assert csvsafe.escape_formula(text) == cell


def test_csv_is_utf8_with_a_header_and_iso_datetimes(trails: tuple[Trail, Trail]) -> None:
    alpha, _ = trails
    Affiliate.objects.filter(pk=alpha.affiliate.pk).update(name='Zoë, "the" creator\nline 2')
    archive = export(alpha.affiliate)
    raw = archive.read("profile.csv")
    assert raw.startswith(b"id,name,email,")
    (profile,) = csv_rows(archive, "profile")
    assert profile["name"] == 'Zoë, "the" creator\nline 2'
    assert dt.datetime.fromisoformat(profile["created_at"]).tzinfo is not None
    for row in csv_rows(archive, "attempts"):
        assert dt.datetime.fromisoformat(row["started_at"]).utcoffset() == dt.timedelta(0)


def test_a_non_seekable_output_gets_a_valid_archive(trails: tuple[Trail, Trail]) -> None:
    alpha, _ = trails

    class Pipe(io.RawIOBase):  # like a socket or stdout: write only, no tell/seek
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += b
            return len(b)

    pipe = Pipe()
    exports.affiliate_export(affiliate=alpha.affiliate, out=pipe, now=NOW)  # type: ignore[arg-type]
    archive = zipfile.ZipFile(io.BytesIO(bytes(pipe.data)))
    assert archive.testzip() is None
    assert len(csv_rows(archive, "claims")) == 2


def test_the_export_is_audited_with_counts_and_no_secret(
    trails: tuple[Trail, Trail], caplog: pytest.LogCaptureFixture
) -> None:
    alpha, _ = trails
    with caplog.at_level(logging.INFO, logger="app.audit"):
        export(alpha.affiliate, actor="staff:AbCd1234")
    (record,) = [r for r in caplog.records if r.getMessage() == "Business event: affiliate_data_exported"]
    assert record.affiliate_id == alpha.affiliate.pk and record.actor == "staff:AbCd1234"  # type: ignore[attr-defined]
    assert record.counts["posts"] == 2 and record.counts["api_keys"] == 2  # type: ignore[attr-defined]
    logged = json.dumps(record.__dict__, default=str)
    for key, plaintext in alpha.keys:
        assert plaintext not in logged and key.hashed_key not in logged


# --- the command ----------------------------------------------------------------------------------


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_affiliate_data", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_writes_a_valid_zip_and_reports_progress(trails: tuple[Trail, Trail], tmp_path: Path) -> None:
    alpha, _ = trails
    target = tmp_path / "alpha.zip"
    out, err = run_command("alpha@example.com", "--output", str(target))
    assert out.strip() == str(target)
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        assert json.loads(archive.read(exports.MANIFEST))["affiliate_id"] == alpha.affiliate.pk
        assert len(csv_rows(archive, "claims")) == 2
    assert target.stat().st_mode & 0o077 == 0  # personal data: owner-only
    assert f"Exporting affiliate {alpha.affiliate.pk}" in err and "claims: 2 rows" in err and "Wrote " in err
    assert [p.name for p in tmp_path.iterdir()] == ["alpha.zip"]  # no partial file left


def test_command_finds_the_affiliate_by_id_or_name_with_a_default_output(
    trails: tuple[Trail, Trail], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, _ = trails
    monkeypatch.chdir(tmp_path)
    out, _ = run_command(str(alpha.affiliate.pk))
    by_id = Path(out.strip())
    assert by_id.name.startswith(f"affiliate-{alpha.affiliate.pk}-") and by_id.suffix == ".zip"
    assert (tmp_path / by_id).exists()
    with pytest.raises(CommandError, match="already exists"):
        run_command("Affiliate alpha", "--output", str(by_id))
    out, _ = run_command("Affiliate alpha", "--output", "by-name.zip")
    with zipfile.ZipFile(tmp_path / "by-name.zip") as archive:
        assert json.loads(archive.read(exports.MANIFEST))["affiliate_id"] == alpha.affiliate.pk


def test_command_refuses_an_unknown_or_ambiguous_affiliate(tmp_path: Path) -> None:
    factories.affiliate(name="Twin")
    factories.affiliate(name="Twin")
    with pytest.raises(CommandError, match="No affiliate with id, e-mail or name 'nobody@example.com'"):
        run_command("nobody@example.com", "--output", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="No affiliate with id, e-mail or name '99999999999999999999'"):
        run_command("99999999999999999999", "--output", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="More than one affiliate is named 'Twin'"):
        run_command("Twin", "--output", str(tmp_path / "x.zip"))
    assert not list(tmp_path.iterdir())


def test_command_exits_non_zero_for_an_unknown_affiliate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(
            ["manage.py", "export_affiliate_data", "987654321", "--output", str(tmp_path / "x.zip")]
        ).execute()
    assert exited.value.code != 0
    assert "No affiliate with id, e-mail or name '987654321'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_affiliate_with_nothing_yet_exports_headers_only() -> None:
    affiliate = factories.affiliate()
    archive = export(affiliate)
    manifest = json.loads(archive.read(exports.MANIFEST))
    rows = {f["name"]: f["rows"] for f in manifest["files"]}
    assert rows["profile.csv"] == 1 and rows["posts.csv"] == 0 and rows["alerts.json"] == 0
    assert archive.read("posts.csv").decode().startswith("id,campaign_id,campaign_name,platform,")
    assert json_rows(archive, "posts") == []
    assert timezone.is_aware(NOW)


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_export_reads_one_snapshot() -> None:
    affiliate = factories.affiliate()
    factories.report(post=factories.post(affiliate=affiliate))
    seen: list[str] = []

    def progress(table: str, rows: int) -> None:
        # Each table is read in the same REPEATABLE READ transaction, so the manifest's counts agree.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            seen.append(cursor.fetchone()[0])

    archive = export(affiliate, progress=progress)
    assert seen == ["repeatable read"] * len(TABLES)
    assert len(csv_rows(archive, "claims")) == 1
