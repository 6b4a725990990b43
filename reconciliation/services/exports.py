"""Compliance export: everything held about one affiliate, as one ZIP of CSV and JSON files.

Layout of the archive (format version :data:`FORMAT_VERSION`), one pair of files per table::

    profile.csv / profile.json                the affiliate row
    api_keys.csv / api_keys.json              prefix, name, dates, revoked (never the hashed secret)
    posts, claims (with evidence), verdicts (reconciliation logs), attempts,
    platform_snapshots, trust_events, alerts, idempotency_keys
    manifest.json                             export time, affiliate id, per file rows + SHA-256
    SHA256SUMS                                the same checksums, for ``sha256sum -c SHA256SUMS``

Each ``<table>.json`` is one JSON array of objects (the same columns as the CSV, with native JSON
types); the CSV has a header row, UTF-8, ISO 8601 datetimes (UTC), JSON-valued columns as compact JSON
text, and cells a spreadsheet would run as a formula (``= + - @``, tab, CR) prefixed with ``'`` unless
they are plain numbers.

Memory stays bounded however big the affiliate: rows are read with ``.iterator()`` (a server-side
cursor) and written straight into the archive; the JSON twin of each table is spooled to a temporary
file while the CSV is written, then copied in, so each table is read once and both files hold the same
rows. Outside a transaction the whole export reads one REPEATABLE READ snapshot, so a claim submitted
mid-export cannot appear in ``attempts`` without its row in ``claims``.

``alerts`` carries each alert's lifecycle fields as they are now; ``alert_history`` and ``profile_history``
hold every recorded earlier state (django-simple-history's audit trail).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any, BinaryIO

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from alerts.models import Alert
from chat.models import ChatIdentity, ChatLinkCode
from reconcile_project.csvsafe import escape_formula
from reconcile_project.observability import log_business_event
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

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
#: Rows fetched per round trip of the server-side cursor.
CHUNK_SIZE = 2000
#: JSON spooled in memory up to this size, then on disk.
SPOOL_BYTES = 4 * 1024 * 1024


Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Table:
    """One exported table: its file stem, its columns (``values()`` lookups) and its rows' query."""

    name: str
    columns: tuple[str, ...]
    rows: Callable[[Affiliate], QuerySet[Any]]
    #: Column → function applied to the raw value (e.g. an API key id to its public prefix).
    convert: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    #: Output column names where they differ from the lookups.
    headers: dict[str, str] = field(default_factory=dict)

    def header(self) -> list[str]:
        return [self.headers.get(c, c) for c in self.columns]


def _key_prefix(key_id: str) -> str:
    # An API key's primary key is "<prefix>.<hashed secret>": only the prefix leaves the database.
    return key_id.partition(".")[0]


def _affiliate_key_ids(affiliate: Affiliate) -> list[str]:
    return list(AffiliateAPIKey.objects.filter(affiliate=affiliate).values_list("pk", flat=True))


TABLES: tuple[Table, ...] = (
    Table(
        "profile",
        (
            "id",
            "name",
            "email",
            "chat_user_id",
            "trust_score",
            "total_submissions",
            "accurate_submissions",
            "is_active",
            "created_at",
        ),
        lambda a: Affiliate.objects.filter(pk=a.pk),
    ),
    Table(
        "api_keys",
        ("prefix", "name", "created", "expiry_date", "revoked"),
        lambda a: AffiliateAPIKey.objects.filter(affiliate=a).order_by("created", "prefix"),
    ),
    Table(
        "posts",
        ("id", "campaign_id", "campaign__name", "platform_id", "url", "platform_post_id", "title", "created_at"),
        lambda a: Post.objects.filter(affiliate=a).order_by("id"),
        headers={"campaign__name": "campaign_name", "platform_id": "platform"},
    ),
    Table(
        "claims",
        (
            "id",
            "post_id",
            "claimed_views",
            "claimed_clicks",
            "claimed_conversions",
            "evidence",
            "suspicion_flags",
            "submission_method",
            "idempotency_key",
            "request_id",
            "submitted_at",
        ),
        lambda a: AffiliateReport.objects.filter(post__affiliate=a).order_by("id"),
    ),
    Table(
        "verdicts",
        (
            "report_id",
            "status",
            "discrepancy_level",
            "views_diff",
            "clicks_diff",
            "conversions_diff",
            "views_diff_pct",
            "clicks_diff_pct",
            "conversions_diff_pct",
            "max_diff_pct",
            "confidence_ratio",
            "missing_fields",
            "missing_reason",
            "attempt_count",
            "budget_attempts",
            "deferral_count",
            "last_deferred_at",
            "last_attempt_at",
            "next_attempt_at",
            "trust_delta",
            "error_code",
            "error_message",
            "terminal",
            "updated_at",
        ),
        lambda a: ReconciliationLog.objects.filter(report__post__affiliate=a).order_by("report_id"),
    ),
    Table(
        "attempts",
        (
            "id",
            "report_id",
            "number",
            "started_at",
            "finished_at",
            "outcome",
            "status",
            "missing_reason",
            "duration_ms",
            "worker",
            "is_recheck",
        ),
        lambda a: ReconciliationAttempt.objects.filter(report__post__affiliate=a).order_by("id"),
    ),
    Table(
        "platform_snapshots",
        ("id", "post_id", "attempt_id", "platform_id", "views", "clicks", "conversions", "raw", "fetched_at"),
        lambda a: PlatformReport.objects.filter(post__affiliate=a).order_by("id"),
        headers={"platform_id": "platform"},
    ),
    Table(
        "trust_events",
        ("id", "report_id", "attempt_id", "event", "delta", "effective_delta", "score_after", "created_at"),
        lambda a: TrustEvent.objects.filter(affiliate=a).order_by("id"),
    ),
    Table(
        "alerts",
        (
            "id",
            "alert_type",
            "category",
            "severity",
            "status",
            "title",
            "message",
            "threshold_breached",
            "report_id",
            "platform_id",
            "escalated_from_id",
            "occurrence_count",
            "created_at",
            "last_occurred_at",
            "acknowledged_by__username",
            "acknowledged_at",
            "resolved_by__username",
            "resolved_at",
            "resolution_notes",
            "assigned_to__username",
            "assigned_at",
            "decision_note",
            "decided_by",
            "decided_at",
        ),
        # The affiliate's own alerts, and any raised about one of its claims.
        lambda a: Alert.objects.filter(Q(affiliate=a) | Q(report__post__affiliate=a)).order_by("id"),
        headers={
            "platform_id": "platform",
            "acknowledged_by__username": "acknowledged_by",
            "resolved_by__username": "resolved_by",
            "assigned_to__username": "assigned_to",
        },
    ),
    Table(
        # Every recorded state of those alerts (the audit trail: who changed what, when, and why).
        "alert_history",
        (
            "history_id",
            "id",
            "history_date",
            "history_type",
            "history_user__username",
            "history_change_reason",
            "status",
            "severity",
            "occurrence_count",
            "assigned_to_id",
            "decision_note",
            "decided_by",
            "decided_at",
        ),
        lambda a: Alert.history.filter(Q(affiliate_id=a.pk) | Q(report__post__affiliate=a)).order_by("history_id"),
        headers={"id": "alert_id", "history_user__username": "changed_by", "history_change_reason": "reason"},
    ),
    Table(
        # Every recorded state of the profile (suspensions, throttles, edits in the admin).
        "profile_history",
        (
            "history_id",
            "history_date",
            "history_type",
            "history_user__username",
            "history_change_reason",
            "name",
            "email",
            "trust_score",
            "is_active",
        ),
        lambda a: Affiliate.history.filter(id=a.pk).order_by("history_id"),
        headers={"history_user__username": "changed_by", "history_change_reason": "reason"},
    ),
    Table(
        "chat_identities",
        ("id", "provider", "team_id", "external_user_id", "linked_via", "linked_at"),
        lambda a: ChatIdentity.objects.filter(affiliate=a).order_by("id"),
    ),
    Table(
        # The codes themselves are stored hashed and are not exported; when each was issued and used is.
        "chat_link_codes",
        ("id", "created_at", "expires_at", "used_at", "used_by_id"),
        lambda a: ChatLinkCode.objects.filter(affiliate=a).order_by("id"),
        headers={"used_by_id": "used_by_chat_identity"},
    ),
    Table(
        "idempotency_keys",
        ("owner_id", "key", "request_hash", "response_status", "response_body", "completed", "created_at"),
        # Scoped to the credential that sent them: the rows of this affiliate's API keys (kept 24 h).
        lambda a: IdempotencyKey.objects.filter(
            owner_kind=IdempotencyKey.OwnerKind.AFFILIATE_KEY, owner_id__in=_affiliate_key_ids(a)
        ).order_by("created_at", "id"),
        convert={"owner_id": _key_prefix},
        headers={"owner_id": "api_key_prefix"},
    ),
)


@dataclass(frozen=True)
class ExportedFile:
    name: str
    rows: int
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ExportResult:
    affiliate_id: int
    exported_at: dt.datetime
    files: tuple[ExportedFile, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {f.name.removesuffix(".csv"): f.rows for f in self.files if f.name.endswith(".csv")}


# --- cell formats ---------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """A database value as JSON: ISO datetimes, exact decimals as strings, JSON columns as they are."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def csv_cell(value: Any) -> str:
    """A database value as one CSV cell, with spreadsheet formulas neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    return escape_formula(text)


# --- writing --------------------------------------------------------------------------------------


class _Digest(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += view.nbytes
        self.target.write(view)
        return view.nbytes


def _rows(table: Table, affiliate: Affiliate) -> Iterator[list[Any]]:
    queryset = table.rows(affiliate).values_list(*table.columns)
    converters = [table.convert.get(c) for c in table.columns]
    for row in queryset.iterator(chunk_size=CHUNK_SIZE):
        yield [f(v) if f is not None else v for f, v in zip(converters, row, strict=True)]


def _write_table(archive: zipfile.ZipFile, table: Table, affiliate: Affiliate) -> tuple[ExportedFile, ExportedFile]:
    header = table.header()
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        json_digest = _Digest(spool)
        # One zip entry may be open for writing at a time: the CSV goes straight in, the JSON after it.
        with archive.open(f"{table.name}.csv", "w", force_zip64=True) as raw_csv:
            csv_digest = _Digest(raw_csv)
            # Buffered: the zip entry compresses 64 KB blocks rather than one call per row.
            buffered = io.BufferedWriter(csv_digest, buffer_size=64 * 1024)
            text = io.TextIOWrapper(buffered, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\r\n")  # RFC 4180
            writer.writerow(header)
            json_digest.write(b"[")
            for row in _rows(table, affiliate):
                writer.writerow([csv_cell(v) for v in row])
                item = json.dumps({h: _json_value(v) for h, v in zip(header, row, strict=True)}, ensure_ascii=False)
                json_digest.write((",\n" if count else "\n").encode() + item.encode("utf-8"))
                count += 1
            json_digest.write(b"\n]\n")
            text.flush()
            text.detach()
            buffered.flush()
            buffered.detach()
        spool.seek(0)
        with archive.open(f"{table.name}.json", "w", force_zip64=True) as raw_json:
            shutil.copyfileobj(spool, raw_json)
    return (
        ExportedFile(f"{table.name}.csv", count, csv_digest.sha256.hexdigest(), csv_digest.size),
        ExportedFile(f"{table.name}.json", count, json_digest.sha256.hexdigest(), json_digest.size),
    )


@contextlib.contextmanager
def _one_snapshot() -> Iterator[None]:
    """Every query of the export sees the same committed state (REPEATABLE READ), when it can.

    Inside a caller's transaction the isolation level is already fixed; the export then reads what that
    transaction sees.
    """
    if connection.in_atomic_block or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def affiliate_export(
    *,
    affiliate: Affiliate,
    out: BinaryIO,
    now: dt.datetime,
    actor: str = "",
    progress: Progress | None = None,
) -> ExportResult:
    """Write the compliance archive of ``affiliate`` to ``out`` (seekable or not) and log the audit line.

    ``actor`` names who asked (a staff key's prefix, a user, ``manage.py``) for the audit log;
    ``progress(table, rows)`` is called after each table.
    """
    files: list[ExportedFile] = []
    with _one_snapshot(), zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for table in TABLES:
            csv_file, json_file = _write_table(archive, table, affiliate)
            files += [csv_file, json_file]
            if progress is not None:
                progress(table.name, csv_file.rows)
        manifest = {
            "format": "affiliate-data-export",
            "format_version": FORMAT_VERSION,
            "exported_at": now.isoformat(),
            "affiliate_id": affiliate.pk,
            "files": [{"name": f.name, "rows": f.rows, "sha256": f.sha256, "bytes": f.bytes} for f in files],
            "notes": [
                "Datetimes are ISO 8601 in UTC; decimals are exact strings in the JSON files.",
                "CSV cells starting with = + - @ (tab, CR) that are not plain numbers are prefixed with '.",
                "alerts: lifecycle fields as they are now; alert_history and profile_history hold every earlier state.",
                "api_keys: prefix and dates only; secrets are stored hashed and never exported.",
            ],
        }
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        sums = "".join(f"{f.sha256}  {f.name}\n" for f in files)
        archive.writestr(CHECKSUMS, sums)
    result = ExportResult(affiliate_id=affiliate.pk, exported_at=now, files=tuple(files))
    log_business_event("affiliate_data_exported", affiliate_id=affiliate.pk, actor=actor, counts=result.counts)
    return result
