"""One thin view per operation: parse the input, call one service or selector, render.

Tenant scoping is in the selectors (another affiliate's or client's id is a 404); the wrong kind of
key is a 403 from the permissions; domain errors become HTTP in the exception handler.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar, cast

from django.conf import settings
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from reconcile_project.config import TrustScoring
from reconciliation import rules, selectors
from reconciliation.api import serializers as s
from reconciliation.api.authentication import APIKeyAuthentication, Principal
from reconciliation.api.exceptions import request_id_of
from reconciliation.api.filters import MAX_ID, CampaignReportFilter, SubmissionFilter
from reconciliation.api.idempotency import idempotency_key, run_idempotent
from reconciliation.api.pagination import NewestFirstPagination, NewestReportsFirstPagination
from reconciliation.api.permissions import IsAffiliate, IsClientOrStaff, IsStaff
from reconciliation.api.schema import IDEMPOTENCY_PARAMETER, errors
from reconciliation.api.throttling import KeyedRateThrottle
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Client, Post
from reconciliation.services import submissions
from reconciliation.services.simulation import Selection, SimulationError, parse_set_values, simulation_run

#: How many claims and snapshots the metrics history returns (the latest ones).
HISTORY_LIMIT = 100

SerializerT = TypeVar("SerializerT", bound=Serializer)

_FLAG_EXAMPLE = {
    "code": "MISSING_EVIDENCE",
    "severity": "LOW",
    "message": "60000 views claimed without evidence (required from 50000)",
    "value": 60000,
}


def _validated(serializer_class: type[SerializerT], data: Any) -> SerializerT:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer


def _created(request: Request, result: submissions.SubmissionResult) -> Response:
    # Plain JSON already (the shape of SubmissionCreatedOutput); no serializer pass on the hot path.
    body = {
        "report_id": result.report.pk,
        "post_id": result.post.pk,
        "status": result.report.log.status,
        "state": str(rules.report_state(status=result.report.log.status, terminal=result.report.log.terminal)),
        "status_url": s.report_url(request, result.report.pk),
        "suspicion_flags": result.flags,
    }
    return Response(body, status=status.HTTP_201_CREATED)


def _checked_id(value: int) -> int:
    # The URL converter accepts up to 19 digits; a value past bigint cannot exist.
    if value > MAX_ID:
        raise NotFound()
    return value


class ApiView(APIView):
    """Per-method throttle scopes (a field of RATE_LIMIT_SETTINGS each).

    The throttle runs before the permissions: it also answers the authentication's question "has this
    client address failed too often?" (in the same Redis round trip as the rate limit), which must come
    before a permission's 403 could tell a blocked key-guesser that its key is real. A request a
    permission refuses therefore counts towards its key's rate.
    """

    throttle_scopes: dict[str, str] = {}
    checks_auth_failures_in_throttle = True

    def get_throttles(self) -> list[BaseThrottle]:
        return [KeyedRateThrottle(self.throttle_scopes.get(self.request.method or ""))]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # APIView.initial with the throttle before the permissions (see the class docstring).
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        self.check_throttles(request)
        self.check_permissions(request)


class AffiliateView(ApiView):
    authentication_classes = [APIKeyAuthentication]
    permission_classes = [IsAffiliate]

    @property
    def affiliate(self) -> Affiliate:
        # IsAffiliate guarantees an affiliate principal before any handler runs.
        principal = self.request.user
        assert isinstance(principal, Principal) and principal.affiliate is not None
        return principal.affiliate


class ClientView(ApiView):
    authentication_classes = [APIKeyAuthentication, SessionAuthentication]
    permission_classes = [IsClientOrStaff]

    def scoped_client(self) -> Client | None:
        """The caller's client, or None for staff (who may read every campaign)."""
        user = self.request.user
        if isinstance(user, Principal) and user.kind == "client":
            return user.client
        return None


# --- affiliates -----------------------------------------------------------------------------------


class SubmissionsView(AffiliateView, GenericAPIView):
    """Affiliates: list your posts; submit a new post with its claims."""

    throttle_scopes = {"GET": "query", "POST": "submission"}
    serializer_class = s.SubmissionListItemOutput
    pagination_class = NewestFirstPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = SubmissionFilter

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Post.objects.none()
        return selectors.post_list(affiliate=self.affiliate)

    @extend_schema(
        operation_id="submissions_list",
        summary="Your posts, with their latest claim and its reconciliation status",
        description="Newest first; cursor-paginated (stable while you keep submitting).",
        responses={200: s.SubmissionListItemOutput(many=True), **errors(400)},
        tags=["affiliates"],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset())) or []
        selectors.attach_latest_reports(page)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="submissions_create",
        summary="Submit a post and what it achieved",
        description=(
            "Validates the URL (a single post of a supported platform; tracking parameters are dropped), "
            "that it is a post of `platform`, that the campaign runs on that platform and is ACTIVE "
            "today, and the claims (JSON integers 0 to 10^12). Saves the post and the claim and queues "
            "it for reconciliation; the answer does not wait for the platform. Poll `status_url`."
        ),
        request=s.SubmissionCreateInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: OpenApiResponse(
                s.SubmissionCreatedOutput,
                description="Saved and queued.",
                examples=[
                    OpenApiExample(
                        "created",
                        value={
                            "report_id": 1234,
                            "post_id": 567,
                            "status": "PENDING",
                            "state": "pending",
                            "status_url": "https://api.example.com/api/v1/reports/1234",
                            "suspicion_flags": [_FLAG_EXAMPLE],
                        },
                        status_codes=["201"],
                    )
                ],
            ),
            **errors(400, 409, 413, 422),
        },
        examples=[
            OpenApiExample(
                "a reddit post",
                value={
                    "campaign_id": 7,
                    "platform": "reddit",
                    "post_url": "https://www.reddit.com/r/python/comments/abc123/my_post/?utm_source=share",
                    "claimed_views": 60000,
                    "claimed_clicks": 1200,
                    "claimed_conversions": 40,
                    "evidence": {"screenshot_url": "https://img.example.com/s/1.png"},
                    "title": "My post",
                },
                request_only=True,
            )
        ],
        tags=["affiliates"],
    )
    def post(self, request: Request) -> Response:
        now = timezone.now()
        key = idempotency_key(request)

        def produce() -> Response:
            data = _validated(s.SubmissionCreateInput, request.data)
            result = submissions.report_submit(
                affiliate=self.affiliate,
                campaign_id=data.validated_data["campaign_id"],
                platform=data.validated_data["platform"],
                post_url=data.validated_data["post_url"],
                claims=data.claim(),
                evidence=data.validated_data["evidence"],
                title=data.validated_data["title"],
                idempotency_key=key or "",
                request_id=request_id_of(request),
                now=now,
            )
            return _created(request, result)

        return run_idempotent(request, self, key=key, now=now, produce=produce)


class SubmissionMetricsView(AffiliateView):
    """Affiliates: one post's claims history; send new metrics for it."""

    throttle_scopes = {"GET": "query", "PUT": "submission"}

    @extend_schema(
        operation_id="submission_metrics_history",
        summary="A post's claims and the platform's numbers over time",
        description=f"The latest {HISTORY_LIMIT} claims and platform snapshots, each oldest first.",
        responses={200: s.MetricsHistoryOutput, **errors(404)},
        tags=["affiliates"],
    )
    def get(self, request: Request, post_id: int) -> Response:
        post = selectors.post_get(affiliate=self.affiliate, post_id=_checked_id(post_id))
        if post is None:
            raise NotFound()
        history = selectors.post_history(post=post, limit=HISTORY_LIMIT)
        body = {"post": history.post, "claims": history.claims, "platform_snapshots": history.snapshots}
        return Response(s.MetricsHistoryOutput(body, context={"request": request}).data)

    @extend_schema(
        operation_id="submission_metrics_update",
        summary="Send new metrics for one of your posts",
        description="Adds a claim to the post's history (a new report, reconciled like the first).",
        request=s.MetricsUpdateInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: s.SubmissionCreatedOutput, **errors(400, 404, 409, 413, 422)},
        tags=["affiliates"],
    )
    def put(self, request: Request, post_id: int) -> Response:
        now = timezone.now()
        key = idempotency_key(request)

        def produce() -> Response:
            data = _validated(s.MetricsUpdateInput, request.data)
            result = submissions.report_resubmit(
                affiliate=self.affiliate,
                post_id=_checked_id(post_id),
                claims=data.claim(),
                evidence=data.validated_data["evidence"],
                idempotency_key=key or "",
                request_id=request_id_of(request),
                now=now,
            )
            return _created(request, result)

        return run_idempotent(request, self, key=key, now=now, produce=produce)


class ReportDetailView(AffiliateView):
    """Affiliates: the reconciliation of one claim."""

    throttle_scopes = {"GET": "query"}

    @extend_schema(
        operation_id="report_detail",
        summary="One claim's reconciliation: status, per-metric differences, attempts, trust delta",
        responses={200: s.ReportDetailOutput, **errors(404)},
        tags=["affiliates"],
    )
    def get(self, request: Request, report_id: int) -> Response:
        report = selectors.report_get(affiliate=self.affiliate, report_id=_checked_id(report_id))
        if report is None:
            raise NotFound()
        return Response(s.ReportDetailOutput(report).data)


class AffiliateMeView(AffiliateView):
    """Affiliates: who you are and how much you are trusted."""

    throttle_scopes = {"GET": "query"}

    @extend_schema(
        operation_id="affiliate_me",
        summary="Your profile, trust score and bucket, and submission counters",
        responses={200: s.AffiliateMeOutput, **errors()},
        tags=["affiliates"],
    )
    def get(self, request: Request) -> Response:
        affiliate = self.affiliate
        affiliate.refresh_from_db()
        trust_settings = cast(TrustScoring, settings.TRUST_SCORING)
        body = {
            "id": affiliate.pk,
            "name": affiliate.name,
            "email": affiliate.email,
            "is_active": affiliate.is_active,
            "created_at": affiliate.created_at,
            "trust_score": affiliate.trust_score,
            "trust_bucket": rules.bucket(affiliate.trust_score, trust_settings).value,
            "total_submissions": affiliate.total_submissions,
            "accurate_submissions": affiliate.accurate_submissions,
            **selectors.affiliate_counters(affiliate=affiliate),
        }
        return Response(s.AffiliateMeOutput(body).data)


# --- clients (advertisers) ------------------------------------------------------------------------


class CampaignListView(ClientView, GenericAPIView):
    """Advertisers: your campaigns (staff: every campaign)."""

    throttle_scopes = {"GET": "query"}
    serializer_class = s.CampaignOutput
    pagination_class = NewestFirstPagination

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Campaign.objects.none()
        return selectors.campaign_list(client=self.scoped_client())

    @extend_schema(
        operation_id="campaigns_list",
        summary="Your campaigns",
        responses={200: s.CampaignOutput(many=True), **errors(400)},
        tags=["advertisers"],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class CampaignDetailView(ClientView):
    """Advertisers: one campaign and what was claimed vs what the platforms verified."""

    throttle_scopes = {"GET": "query"}

    @extend_schema(
        operation_id="campaign_detail",
        summary="A campaign with claimed vs verified totals, per platform and per affiliate",
        responses={200: s.CampaignDetailOutput, **errors(404)},
        tags=["advertisers"],
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = selectors.campaign_get(client=self.scoped_client(), campaign_id=_checked_id(campaign_id))
        if campaign is None:
            raise NotFound()
        campaign.totals = selectors.campaign_totals(campaign=campaign)  # type: ignore[attr-defined]
        return Response(s.CampaignDetailOutput(campaign).data)


class CampaignReportsView(ClientView, GenericAPIView):
    """Advertisers: the claims of one of your campaigns."""

    throttle_scopes = {"GET": "query"}
    serializer_class = s.CampaignReportOutput
    pagination_class = NewestReportsFirstPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = CampaignReportFilter

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return AffiliateReport.objects.none()
        campaign = selectors.campaign_get(
            client=self.scoped_client(), campaign_id=_checked_id(self.kwargs["campaign_id"])
        )
        if campaign is None:
            raise NotFound()
        return selectors.campaign_reports(campaign=campaign)

    @extend_schema(
        operation_id="campaign_reports",
        summary="Every claim of one of your campaigns, with its reconciliation status",
        responses={200: s.CampaignReportOutput(many=True), **errors(400, 404)},
        tags=["advertisers"],
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- staff ----------------------------------------------------------------------------------------


class ReconciliationRunView(ApiView):
    """Staff: re-run reconciliation."""

    authentication_classes = [APIKeyAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]
    throttle_scopes = {"POST": "staff_run"}

    @extend_schema(
        operation_id="reconciliation_run",
        summary="Staff: re-run reconciliation for a report, a campaign or every report in a status",
        description=(
            "Makes the selected reports due now (reports with an attempt running are skipped). One report "
            "(`report_id`) is reopened in the request and sent to the workers at once. A campaign or a status "
            "may select any number of reports: the request only counts them (`queued`, at request time) and "
            "queues a maintenance task that reopens them in batches of 500; the sweeper sends them as they "
            "come due (`background: true`, `dispatched: 0`). Reports created after the request are not "
            "included. Staff API key or admin session (with CSRF)."
        ),
        request=s.ReconciliationRunInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            202: OpenApiResponse(
                s.RunQueuedOutput,
                description="Accepted: reopened (one report) or queued for the maintenance task (a selection).",
                examples=[
                    OpenApiExample(
                        "a status, in the background",
                        value={
                            "queued": 12840,
                            "dispatched": 0,
                            "background": True,
                            "filter": {"status": "MISSING_PLATFORM_DATA"},
                        },
                        status_codes=["202"],
                    ),
                    OpenApiExample(
                        "one report",
                        value={"queued": 1, "dispatched": 1, "background": False, "filter": {"report_id": 1234}},
                        status_codes=["202"],
                    ),
                ],
            ),
            **errors(400, 404, 409, 413, 422),
        },
        examples=[OpenApiExample("a campaign", value={"campaign_id": 7}, request_only=True)],
        tags=["staff"],
    )
    def post(self, request: Request) -> Response:
        now = timezone.now()
        key = idempotency_key(request)

        def produce() -> Response:
            data = _validated(s.ReconciliationRunInput, request.data).validated_data
            accepted = submissions.reconciliation_run(
                report_id=data.get("report_id"),
                campaign_id=data.get("campaign_id"),
                status=data.get("status"),
                now=now,
                request_id=request_id_of(request),
            )
            return Response(s.RunQueuedOutput(accepted).data, status=status.HTTP_202_ACCEPTED)

        return run_idempotent(request, self, key=key, now=now, produce=produce)


class RuleSimulationView(ApiView):
    """Staff: what-if simulation of a rule change over stored claims."""

    authentication_classes = [APIKeyAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]
    throttle_scopes = {"POST": "staff_run"}

    @extend_schema(
        operation_id="rules_simulate",
        summary="Staff: simulate proposed rules on stored claims (writes nothing)",
        description=(
            "Re-classifies the selected stored claims and the platform snapshots that decided them under proposed "
            "rules: global settings (`set`) and/or a campaign's overrides (`overrides`), and reports the transition "
            "matrix old status → new status, the per-metric diff distribution before and after, each affiliate's "
            "trust change (bucket crossings), the alerts that would be raised or no longer raised, and examples. "
            "Nothing is written and no platform is called; the same report as `manage.py simulate_rules --json`. "
            "At most `limit` (default 100,000) of the newest claims; the command covers any number. Staff API key "
            "or admin session (with CSRF)."
        ),
        request=s.RuleSimulationInput,
        responses={200: s.RuleSimulationOutput, **errors(400, 404, 413)},
        examples=[
            OpenApiExample(
                "a tolerance change on one campaign",
                value={"campaign_id": 7, "overrides": {"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}}},
                request_only=True,
            ),
            OpenApiExample(
                "a global setting, last week's claims",
                value={
                    "set": {"RECONCILIATION_SETTINGS__OVERCLAIM_THRESHOLD_PCT": 0.25},
                    "since": "2026-01-01T00:00:00Z",
                },
                request_only=True,
            ),
        ],
        tags=["staff"],
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.RuleSimulationInput, request.data).validated_data
        try:
            set_values = parse_set_values(f"{k}={json.dumps(v)}" for k, v in (data.get("set") or {}).items())
            result = simulation_run(
                selection=Selection(
                    campaign_id=data.get("campaign_id"),
                    since=data.get("since"),
                    until=data.get("until"),
                    statuses=tuple(data.get("status") or ()),
                    limit=data["limit"],
                ),
                set_values=set_values,
                overrides=data.get("overrides"),
                examples=data["examples"],
            )
        except SimulationError as exc:
            if "campaign" in exc.errors:
                raise NotFound() from None
            raise ValidationError({key: [message] for key, message in exc.errors.items()}) from None
        return Response(result)
