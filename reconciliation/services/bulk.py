"""Bulk import of claims: read a CSV or JSON-lines file into rows, then hand them to the submission service.

The three edges (``POST /api/v1/submissions/bulk``, ``manage.py import_claims``, the admin upload page)
call :func:`claims_import`. Each row is first checked for shape by the single submission's input
serializer (same fields, same messages), then by :func:`~reconciliation.services.submissions.reports_submit_batch`,
which applies the rules of a single submission and writes the claims. A file that cannot be read at all
(not UTF-8, malformed CSV, unknown columns, too big, too many rows) raises :class:`BulkFileError`; a row
that is wrong is reported with its line number and field errors, and the other rows are imported.

Columns (CSV header, or JSON-lines keys): ``campaign_id``, ``post_url``, ``claimed_views``,
``claimed_clicks``, ``claimed_conversions`` (required); ``platform`` (slug or alias; else the URL's),
``evidence`` (a JSON object; in CSV, its JSON text), ``title``, ``submitted_at`` (ISO 8601; alias
``claimed_at``), ``idempotency_key`` and ``affiliate_id`` (staff imports) are optional.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from rest_framework import serializers

from reconciliation import rules

# The single submission's field rules, so that a row is refused exactly as a request would be.
from reconciliation.api.serializers import IdField, PlatformField, SafeCharField, SubmissionCreateInput
from reconciliation.models import Affiliate
from reconciliation.services.submissions import (
    BULK_DISPATCH_MAX,
    BulkResult,
    BulkRow,
    RowRejected,
    reports_submit_batch,
)

Format = Literal["csv", "jsonl"]

#: Request ``Content-Type`` → format (parameters such as ``charset`` are ignored; the text must be UTF-8).
CONTENT_TYPES: dict[str, Format] = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

REQUIRED_COLUMNS = ("campaign_id", "post_url", "claimed_views", "claimed_clicks", "claimed_conversions")
OPTIONAL_COLUMNS = ("platform", "evidence", "title", "submitted_at", "idempotency_key", "affiliate_id")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
ALIASES = {"claimed_at": "submitted_at"}
_INTEGER_COLUMNS = frozenset({"campaign_id", "claimed_views", "claimed_clicks", "claimed_conversions", "affiliate_id"})
_INTEGER = re.compile(r"[+-]?[0-9]+")


class BulkFileError(ValueError):
    """The file as a whole cannot be imported (a 400); nothing was written."""


class BulkFileTooLarge(BulkFileError):
    """More bytes than BULK_IMPORT_MAX_BYTES (a 413)."""


class BulkRowInput(SubmissionCreateInput):
    """One row: a single submission's fields, plus what a file adds."""

    platform = PlatformField(required=False)
    submitted_at = serializers.DateTimeField(required=False)
    idempotency_key = SafeCharField(max_length=255, required=False, allow_blank=True, default="")
    affiliate_id = IdField(required=False)


@dataclass
class ParsedFile:
    rows: list[tuple[int | None, BulkRow]] = field(default_factory=list)
    rejected: list[RowRejected] = field(default_factory=list)


def format_of(*, content_type: str = "", filename: str = "") -> Format | None:
    if content_type:
        return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
    for extension, fmt in EXTENSIONS.items():
        if filename.lower().endswith(extension):
            return fmt
    return None


def file_parse(data: bytes, fmt: Format, *, max_bytes: int | None = None, max_rows: int | None = None) -> ParsedFile:
    """The rows of a file, each checked for shape (types, lengths); raises BulkFileError."""
    if max_bytes is not None and len(data) > max_bytes:
        raise BulkFileTooLarge(f"The file is {len(data)} bytes; at most {max_bytes} bytes may be imported at once.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BulkFileError(
            f"The file is not UTF-8 text (invalid byte at offset {exc.start}); save it as UTF-8 and send it again."
        ) from None
    records = list(_csv_records(text) if fmt == "csv" else _jsonl_records(text))
    if max_rows is not None and len(records) > max_rows:
        raise BulkFileError(f"The file has {len(records)} rows; at most {max_rows} rows may be imported at once.")
    parsed = ParsedFile()
    shape = BulkRowInput()  # one instance for all rows: building a serializer's fields is the costly part
    for line, record in records:
        if isinstance(record, RowRejected):
            parsed.rejected.append(record)
            continue
        try:
            data_ = shape.run_validation(record)
        except serializers.ValidationError as exc:
            parsed.rejected.append(RowRejected(line=line, fields=_messages(exc.detail)))
            continue
        parsed.rows.append(
            (
                data_.get("affiliate_id"),
                BulkRow(
                    line=line,
                    campaign_id=data_["campaign_id"],
                    post_url=data_["post_url"],
                    claims=rules.Claim(
                        views=data_["claimed_views"],
                        clicks=data_["claimed_clicks"],
                        conversions=data_["claimed_conversions"],
                    ),
                    platform=data_.get("platform"),
                    evidence=data_["evidence"],
                    title=data_["title"],
                    submitted_at=data_.get("submitted_at"),
                    idempotency_key=data_["idempotency_key"],
                ),
            )
        )
    return parsed


def claims_import(
    *,
    data: bytes,
    fmt: Format,
    affiliate: Affiliate | None,
    staff: bool,
    now: dt.datetime,
    dry_run: bool = False,
    max_bytes: int | None = None,
    max_rows: int | None = None,
    dispatch: bool | None = None,
    request_id: str = "",
    progress: Callable[[int], None] | None = None,
    on_parsed: Callable[[int], None] | None = None,
) -> BulkResult:
    """Import a file's claims for ``affiliate``; ``staff`` callers may name another in an ``affiliate_id``
    column (which then wins over ``affiliate``). Rejected rows are listed, in line order.

    ``on_parsed(rows)`` is called once the file is read, then ``progress(n)`` as rows are done (a
    progress bar). ``dispatch``: see :func:`~reconciliation.services.submissions.reports_submit_batch`.
    """
    parsed = file_parse(data, fmt, max_bytes=max_bytes, max_rows=max_rows)
    if on_parsed is not None:
        on_parsed(len(parsed.rows) + len(parsed.rejected))
    result = BulkResult(rows=len(parsed.rows) + len(parsed.rejected), dry_run=dry_run)
    result.rejected.extend(parsed.rejected)
    if progress is not None and parsed.rejected:
        progress(len(parsed.rejected))
    named = {affiliate_id for affiliate_id, _ in parsed.rows if affiliate_id is not None}
    affiliates = Affiliate.objects.in_bulk(named) if staff else {}
    groups: dict[Affiliate, list[BulkRow]] = defaultdict(list)
    for affiliate_id, row in parsed.rows:
        owner, problem = _owner(affiliate_id, affiliate=affiliate, staff=staff, affiliates=affiliates)
        if owner is None:
            result.rejected.append(RowRejected(line=row.line, fields={"affiliate_id": [problem]}))
            if progress is not None:
                progress(1)
            continue
        groups[owner].append(row)
    if dispatch is None:
        dispatch = len(parsed.rows) <= BULK_DISPATCH_MAX
    for owner, rows in groups.items():
        outcome = reports_submit_batch(
            affiliate=owner,
            rows=rows,
            now=now,
            dry_run=dry_run,
            dispatch=dispatch,
            request_id=request_id,
            progress=progress,
        )
        outcome.rows = 0  # counted above, with the rows refused before the service saw them
        result.merge(outcome)
    result.dispatched = dispatch and not dry_run and result.created > 0
    result.rejected.sort(key=lambda rejected: rejected.line)
    return result


def _owner(
    affiliate_id: int | None, *, affiliate: Affiliate | None, staff: bool, affiliates: dict[Any, Affiliate]
) -> tuple[Affiliate | None, str]:
    if affiliate_id is None:
        if affiliate is None:
            return None, "required: name the affiliate (the affiliate_id parameter or column)"
        return affiliate, ""
    if not staff:
        if affiliate is not None and affiliate_id == affiliate.pk:
            return affiliate, ""
        return None, "an affiliate imports its own claims only (leave the column out)"
    named = affiliates.get(affiliate_id)
    if named is None:
        return None, f"no affiliate with id {affiliate_id}"
    if not named.is_active:
        return None, f"affiliate {affiliate_id} is not active"
    return named, ""


# --- readers --------------------------------------------------------------------------------------

Record = tuple[int, "dict[str, Any] | RowRejected"]


def _csv_records(text: str) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise BulkFileError("The file is empty: expected a header row naming the columns.")
        columns = _columns([cell.strip().lower() for cell in header])
        last = reader.line_num
        for cells in reader:
            line, last = last + 1, reader.line_num  # a quoted cell may span lines: report the first
            if not cells or all(not cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                yield (
                    line,
                    RowRejected(
                        line=line, fields={"non_field_errors": [f"expected {len(columns)} cells, found {len(cells)}"]}
                    ),
                )
                continue
            yield line, _csv_record(line, dict(zip(columns, cells, strict=True)))
    except csv.Error as exc:
        raise BulkFileError(f"Malformed CSV at line {reader.line_num}: {exc}.") from None


def _columns(header: list[str]) -> list[str]:
    columns = [ALIASES.get(name, name) for name in header]
    unknown = [name for name in header if ALIASES.get(name, name) not in COLUMNS]
    if unknown:
        raise BulkFileError(f"Unknown columns: {', '.join(unknown)}. Accepted: {', '.join(COLUMNS)}.")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise BulkFileError(f"Columns given twice: {', '.join(repeated)}.")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise BulkFileError(f"Missing columns: {', '.join(missing)}.")
    return columns


def _csv_record(line: int, cells: dict[str, str]) -> dict[str, Any] | RowRejected:
    """Cells are text: integers and the evidence's JSON are read here, empty optional cells left out."""
    record: dict[str, Any] = {}
    for name, raw in cells.items():
        cell = raw.strip()
        if cell == "":
            continue
        if name in _INTEGER_COLUMNS and _INTEGER.fullmatch(cell):
            record[name] = int(cell)
        elif name == "evidence":
            try:
                record[name] = json.loads(cell, parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                return RowRejected(line=line, fields={"evidence": ["must be a JSON object, written as JSON text"]})
        else:
            record[name] = cell
    return record


def _jsonl_records(text: str) -> Iterator[Record]:
    # Lines end at "\n" only: str.splitlines would also split at U+2028 and other separators, which JSON
    # allows inside strings, and number the lines differently from an editor.
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            yield line, RowRejected(line=line, fields={"non_field_errors": [f"not valid JSON ({exc})"]})
            continue
        if not isinstance(record, dict):
            yield line, RowRejected(line=line, fields={"non_field_errors": ["each line must be a JSON object"]})
            continue
        for alias, name in ALIASES.items():
            if alias in record and name not in record:
                record[name] = record.pop(alias)
        unknown = sorted(set(record) - set(COLUMNS))
        if unknown:
            yield line, RowRejected(line=line, fields={name: ["unknown field"] for name in unknown})
            continue
        yield line, record


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _messages(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            str(name): [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
            for name, messages in detail.items()
        }
    return {"non_field_errors": [str(m) for m in detail] if isinstance(detail, list) else [str(detail)]}
