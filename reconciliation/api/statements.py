"""``GET /api/v1/campaigns/{id}/statement``: a campaign's statement, as JSON or a streamed CSV.

One thin view (parse the period, call the selector, render) with its serializers and the CSV writer.
The CSV is written a chunk of lines at a time into a StreamingHttpResponse, fed by a server-side cursor,
so a campaign of millions of claims never sits in memory.

Spreadsheet-formula injection: a text cell that starts with ``= + - @``, a tab or a carriage return is
written with a leading ``'`` so that a spreadsheet shows it as text instead of evaluating it. Numbers
(ints, decimals) are written as numbers and never prefixed: ``-3`` is a number, not a formula, and
finance needs it to stay one. Only the values of numeric columns are numbers; every text column
(names, URLs) is escaped whatever it contains.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import dateparse, timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from reconcile_project.csvsafe import escape_text
from reconciliation import selectors, statements
from reconciliation.api.schema import errors
from reconciliation.api.views import ClientView, _checked_id
from reconciliation.models import Campaign
from reconciliation.statements import CLAIM_COLUMNS, METRICS, STATUSES, Period

#: The longest period one statement covers (a year, leap day included): bounded work per request.
MAX_PERIOD_DAYS = 366
#: CSV lines written per chunk sent to the client.
LINES_PER_CHUNK = 1000

#: A text cell a spreadsheet will not evaluate (see the module docstring).
text_cell = escape_text


def cell(value: Any) -> Any:
    """One CSV cell: numbers as numbers, dates ISO 8601, None empty, text escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal | float):
        return value
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    return text_cell(str(value))


class CSVRenderer(BaseRenderer):
    """Selects the CSV form (``?format=csv`` or ``Accept: text/csv``); the view streams the body itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else str(data).encode()


# --- period ---------------------------------------------------------------------------------------


def _parse_bound(name: str, text: str) -> dt.date | dt.datetime:
    try:
        parsed: dt.date | dt.datetime | None = (
            dateparse.parse_date(text) if len(text) == 10 else dateparse.parse_datetime(text)
        )
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationError({name: ["Not an ISO 8601 date (2026-01-31) or date-time (2026-01-31T12:00:00Z)."]})
    return parsed


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    try:
        aware = value if timezone.is_aware(value) else timezone.make_aware(value)
        return aware.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise ValidationError({name: ["Date and time out of range."]}) from None


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


#: The last instant a period can end at (an inclusive ``to`` of 9999-12-31 ends here).
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def parse_period(query: Any, campaign: Campaign, now: dt.datetime) -> Period:
    """``from``/``to`` as a half-open period; a date ``to`` includes that whole day.

    Defaults: from the campaign's start date to now. Refused (400): a bad value, ``from`` after ``to``,
    a period longer than MAX_PERIOD_DAYS.
    """
    raw_from, raw_to = query.get("from"), query.get("to")
    if raw_from is None:
        start = _start_of(campaign.start_date)
    else:
        parsed = _parse_bound("from", raw_from)
        start = _aware(parsed, "from") if isinstance(parsed, dt.datetime) else _start_of(parsed)
    if raw_to is None:
        # Defaults only: a campaign that starts in the future has an empty statement, not an error.
        end = max(now, start) if raw_from is None else now
    else:
        parsed = _parse_bound("to", raw_to)
        if isinstance(parsed, dt.datetime):
            end = _aware(parsed, "to")
            end = end + dt.timedelta(microseconds=1) if end < _LATEST else end  # inclusive
        elif parsed < dt.date.max:
            end = _start_of(parsed + dt.timedelta(days=1))  # the whole day
        else:
            end = _LATEST
    if start > end or (start == end and raw_to is not None):
        raise ValidationError({"from" if raw_to is None else "to": ["`to` must not be before `from`."]})
    if end - start > dt.timedelta(days=MAX_PERIOD_DAYS):
        field = "from" if raw_from is None else "to"
        raise ValidationError(
            {field: [f"The period is longer than {MAX_PERIOD_DAYS} days; ask for one year or less at a time."]}
        )
    return Period(start=start, end=end)


# --- serializers (the JSON form) ------------------------------------------------------------------


class MetricsOutput(serializers.Serializer):
    views = serializers.IntegerField()
    clicks = serializers.IntegerField()
    conversions = serializers.IntegerField()


class StatusMixOutput(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {s: serializers.IntegerField() for s in STATUSES}


class StatementTotalsOutput(serializers.Serializer):
    claims = serializers.IntegerField()
    verified_claims = serializers.IntegerField(help_text="Claims with a conclusive verdict.")
    verification_rate = serializers.FloatField(allow_null=True, help_text="verified_claims / claims (null: none).")
    claimed = MetricsOutput(help_text="Sum of the claims.")
    verified = MetricsOutput(help_text="Sum of the platform's numbers of each claim's latest conclusive verdict.")
    statuses = StatusMixOutput(help_text="Claims per current reconciliation status.")
    open_alerts = serializers.IntegerField(help_text="OPEN alerts raised on these claims.")


class StatementRowOutput(StatementTotalsOutput):
    affiliate_id = serializers.IntegerField()
    affiliate_name = serializers.CharField()
    platform = serializers.CharField()
    trust_at_period_end = serializers.DecimalField(
        max_digits=5,
        decimal_places=4,
        coerce_to_string=False,
        help_text="The affiliate's score after its last trust ledger row before the period's end (else initial).",
    )


class StatementDayOutput(serializers.Serializer):
    date = serializers.DateField()
    claims = serializers.IntegerField()
    verified_claims = serializers.IntegerField()
    claimed = MetricsOutput()
    verified = MetricsOutput()


class StatementPeriodOutput(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Claims submitted at or after this instant.")
    end = serializers.DateTimeField(help_text="...and before this one (exclusive).")


class StatementOutput(serializers.Serializer):
    campaign_id = serializers.IntegerField()
    campaign_name = serializers.CharField()
    period = StatementPeriodOutput()
    rows = StatementRowOutput(many=True, help_text="Per affiliate and platform; by affiliate name, then platform.")
    total = StatementTotalsOutput()
    daily = StatementDayOutput(many=True, help_text="Days (UTC) with at least one claim, oldest first.")


def _row_dict(row: statements.StatementRow) -> dict[str, Any]:
    return {
        "affiliate_id": row.affiliate_id,
        "affiliate_name": row.affiliate_name,
        "platform": row.platform,
        "claims": row.claims,
        "verified_claims": row.verified_claims,
        "verification_rate": row.verification_rate,
        "claimed": row.claimed,
        "verified": row.verified,
        "statuses": row.statuses,
        "trust_at_period_end": row.trust_at_period_end,
        "open_alerts": row.open_alerts,
    }


# --- CSV ------------------------------------------------------------------------------------------

SUMMARY_COLUMNS: tuple[str, ...] = (
    "affiliate_id",
    "affiliate_name",
    "platform",
    "claims",
    "verified_claims",
    "verification_rate",
    *(f"{side}_{m}" for m in METRICS for side in ("claimed", "verified")),
    *(f"status_{s}" for s in STATUSES),
    "trust_at_period_end",
    "open_alerts",
)


def summary_lines(statement: statements.Statement) -> Iterator[tuple]:
    for row in statement.rows:
        yield (
            row.affiliate_id,
            text_cell(row.affiliate_name),
            text_cell(row.platform),
            row.claims,
            row.verified_claims,
            cell(row.verification_rate),
            *(n for m in METRICS for n in (row.claimed[m], row.verified[m])),
            *(row.statuses[s] for s in STATUSES),
            row.trust_at_period_end,
            row.open_alerts,
        )


def claim_lines(rows: Iterable[tuple]) -> Iterator[tuple]:
    """CLAIM_COLUMNS lines with the text columns escaped (the others are ints, a bool, a datetime)."""
    for claim_id, submitted_at, affiliate_id, name, platform, url, status, verified, *numbers in rows:
        yield (
            claim_id,
            submitted_at.isoformat(),
            affiliate_id,
            text_cell(name),
            text_cell(platform),
            text_cell(url),
            status,
            "true" if verified else "false",
            *("" if n is None else n for n in numbers),
        )


def csv_chunks(header: Iterable[str], lines: Iterable[tuple], per_chunk: int = LINES_PER_CHUNK) -> Iterator[bytes]:
    """RFC 4180 (CRLF, quoted as needed by Python's csv module), UTF-8, a chunk of lines at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    pending = 1
    for line in lines:
        writer.writerow(line)
        pending += 1
        if pending >= per_chunk:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending or buffer.tell():
        yield buffer.getvalue().encode()


# --- view -----------------------------------------------------------------------------------------

_CSV_DESCRIPTION = (
    "CSV (RFC 4180, UTF-8, header row, CRLF, ISO 8601 dates), sent as an attachment "
    "(`Content-Disposition: attachment; filename=...`) and streamed. `detail=summary`: one line per "
    "affiliate and platform: " + ", ".join(f"`{c}`" for c in SUMMARY_COLUMNS) + ". `detail=claims`: one line "
    "per claim, oldest first: " + ", ".join(f"`{c}`" for c in CLAIM_COLUMNS) + " (verified numbers empty "
    "when the claim has no conclusive verdict). A text cell starting with `=`, `+`, `-`, `@`, a tab or a "
    "carriage return is prefixed with `'`; numbers are never prefixed."
)


class CampaignStatementView(ClientView):
    """Advertisers: what was claimed and what the platforms verified over a period, for finance."""

    throttle_scopes = {"GET": "query"}
    renderer_classes = [JSONRenderer, CSVRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        if not force:
            fmt = request.query_params.get("format")
            if fmt is not None and fmt not in ("json", "csv"):
                raise ValidationError({"format": ["One of: json, csv."]})
        return super().perform_content_negotiation(request, force)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Errors are JSON (the envelope) even when the CSV form was asked for.
        if isinstance(response, Response) and isinstance(getattr(request, "accepted_renderer", None), CSVRenderer):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="campaign_statement",
        summary="A campaign's statement: claimed vs verified per affiliate and platform, totals, daily series",
        description=(
            "Claims submitted in the period (`from` inclusive, `to` inclusive; a date `to` includes that whole "
            f"day; at most {MAX_PERIOD_DAYS} days; default: the campaign's start date to now). *Verified* "
            "numbers are the platform's numbers of each claim's latest conclusive verdict (a re-check that "
            "changed the verdict counts with its own snapshot); a claim without a conclusive verdict counts as "
            "claimed, not verified. `trust_at_period_end` is the affiliate's score after its last trust ledger "
            "row before the period's end; `open_alerts` counts OPEN alerts raised on the period's claims. "
            "`?format=csv` (or `Accept: text/csv`) streams the same rows as CSV; `detail=claims` streams one "
            "line per claim instead (the JSON form ignores `detail`)."
        ),
        parameters=[
            OpenApiParameter(
                "from",
                OpenApiTypes.STR,
                description="Start: an ISO 8601 date (that day's start, UTC) or date-time (naive: UTC).",
                examples=[OpenApiExample("date", value="2026-01-01")],
            ),
            OpenApiParameter(
                "to",
                OpenApiTypes.STR,
                description="End, inclusive: a date (the whole day) or a date-time. Not before `from`.",
                examples=[OpenApiExample("date", value="2026-01-31")],
            ),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Default json."),
            OpenApiParameter(
                "detail",
                OpenApiTypes.STR,
                enum=["summary", "claims"],
                description="CSV only: per affiliate and platform (summary, the default) or per claim.",
            ),
        ],
        responses={
            (200, "application/json"): StatementOutput,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=_CSV_DESCRIPTION),
            **{(code, "application/json"): response for code, response in errors(400, 404).items()},
        },
        tags=["advertisers"],
    )
    def get(self, request: Request, campaign_id: int) -> Any:
        campaign = selectors.campaign_get(client=self.scoped_client(), campaign_id=_checked_id(campaign_id))
        if campaign is None:
            raise NotFound()
        detail = request.query_params.get("detail", "summary")
        if detail not in ("summary", "claims"):
            raise ValidationError({"detail": ["One of: summary, claims."]})
        period = parse_period(request.query_params, campaign, timezone.now())
        if isinstance(request.accepted_renderer, CSVRenderer):
            return self._csv(campaign, period, detail)
        statement = statements.campaign_statement(campaign=campaign, period=period)
        body = {
            "campaign_id": campaign.pk,
            "campaign_name": campaign.name,
            "period": {"start": period.start, "end": period.end},
            "rows": [_row_dict(r) for r in statement.rows],
            "total": statement.total,
            "daily": statement.daily,
        }
        return Response(StatementOutput(body).data)

    def _csv(self, campaign: Campaign, period: Period, detail: str) -> StreamingHttpResponse:
        if detail == "claims":
            header: tuple[str, ...] = CLAIM_COLUMNS
            lines = claim_lines(statements.statement_claims(campaign=campaign, period=period))
        else:
            header = SUMMARY_COLUMNS
            lines = summary_lines(statements.campaign_statement(campaign=campaign, period=period))
        last_day = (period.end - dt.timedelta(microseconds=1)).date()
        filename = f"campaign-{campaign.pk}-statement-{period.start.date()}-{last_day}-{detail}.csv"
        response = StreamingHttpResponse(csv_chunks(header, lines), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
