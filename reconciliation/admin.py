"""The analysts' admin. What the engine and the submission service write (claims and their posts, logs,
attempts, platform snapshots, the trust ledger) is evidence: it is shown here, never added, edited or deleted
(DESIGN §9). A correction is a new claim through the API; a re-check is a new attempt.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin

from reconciliation import models
from reconciliation.selectors import affiliate_risk, trust_bucket
from reconciliation.services import affiliates as affiliate_services
from reconciliation.templatetags.risk import badge_html, format_pct


class EvidenceAdminMixin:
    """View-only: no add, change or delete page (they answer 403) and no bulk delete action."""

    model: type[Model]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        # Every column is shown, including those a form leaves out (ids, auto_now stamps).
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class EvidenceAdmin(EvidenceAdminMixin, admin.ModelAdmin):
    pass


@admin.register(models.Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "contact_email", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "contact_email")


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="Recorded with your name.")


class ThrottleForm(ReasonForm):
    submission_rate = forms.CharField(
        required=False,
        help_text="Like 10/hour, below the default; empty lifts the affiliate's own limit.",
    )

    def clean_submission_rate(self) -> str:
        try:
            return affiliate_services.validate_submission_rate(self.cleaned_data["submission_rate"])
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["submission_rate"]) from None


@admin.register(models.Affiliate)
class AffiliateAdmin(admin.ModelAdmin):
    """The affiliate's risk page. Trust moves only through the ledger, and the active flag and submission
    limit only through the recorded decisions below (``reconciliation.services.affiliates``)."""

    list_display = (
        "name",
        "email",
        "trust",
        "total_submissions",
        "accuracy",
        "active",
        "submission_rate",
    )
    list_filter = ("is_active",)
    search_fields = ("name", "email", "chat_user_id")
    readonly_fields = (
        "trust_score",
        "total_submissions",
        "accurate_submissions",
        "is_active",
        "submission_rate",
        "created_at",
    )
    change_form_template = "admin/reconciliation/affiliate/risk.html"
    actions = ("suspend", "reinstate", "throttle", "rerun_open_claims")

    @admin.display(description="trust", ordering="trust_score")
    def trust(self, obj: models.Affiliate) -> str:
        return format_html("{} {}", obj.trust_score, badge_html(trust_bucket(obj.trust_score)))

    @admin.display(description="accuracy")
    def accuracy(self, obj: models.Affiliate) -> str:
        return (
            format_pct(obj.accurate_submissions / obj.total_submissions, signed=False) if obj.total_submissions else "-"
        )

    @admin.display(description="status", ordering="is_active")
    def active(self, obj: models.Affiliate) -> str:
        return badge_html("ACTIVE" if obj.is_active else "SUSPENDED")

    # --- the risk page ---------------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        affiliate = self.get_object(request, object_id)
        if affiliate is not None:
            context["risk"] = affiliate_risk(affiliate=affiliate, now=timezone.now())
            context["can_decide"] = self.has_decide_permission(request)
        return super().change_view(request, object_id, form_url, extra_context=context)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        """Suspending, throttling and re-running need the affiliate's change permission."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/decide/<str:decision>/", wrap(self.decide_view), name="reconciliation_affiliate_decide"),
            path(
                "<int:pk>/keys/<str:key_id>/revoke/",
                wrap(self.revoke_key_view),
                name="reconciliation_affiliate_revoke_key",
            ),
            *super().get_urls(),
        ]

    DECISIONS = {
        "suspend": ("Suspend", ReasonForm),
        "reinstate": ("Reinstate", ReasonForm),
        "throttle": ("Throttle submissions of", ThrottleForm),
        "rerun": ("Re-run reconciliation of the open claims of", None),
    }

    def decide_view(self, request: HttpRequest, pk: int, decision: str) -> HttpResponse:
        """One affiliate's decision, from its page: a form for the reason, then the service."""
        if decision not in self.DECISIONS or not self.has_decide_permission(request):
            raise PermissionDenied
        affiliate = get_object_or_404(models.Affiliate, pk=pk)
        return self._decide(request, decision, [affiliate], back=self._page(affiliate))

    def revoke_key_view(self, request: HttpRequest, pk: int, key_id: str) -> HttpResponse:
        if request.method != "POST" or not self.has_decide_permission(request):
            raise PermissionDenied
        key = get_object_or_404(models.AffiliateAPIKey, pk=key_id, affiliate_id=pk)
        affiliate_services.affiliate_key_revoke(key=key)
        self.message_user(request, f"API key {key.prefix} revoked.")
        return HttpResponseRedirect(reverse("admin:reconciliation_affiliate_change", args=[pk]))

    @staticmethod
    def _page(affiliate: models.Affiliate) -> str:
        return reverse("admin:reconciliation_affiliate_change", args=[affiliate.pk])

    def _decide(
        self, request: HttpRequest, decision: str, affiliates: list[models.Affiliate], *, back: str, action: str = ""
    ) -> HttpResponse:
        """Show the decision's form (GET, or a changelist action's first POST); apply it once confirmed."""
        title, form_class = self.DECISIONS[decision]
        confirmed = request.method == "POST" and "confirm" in request.POST
        form = form_class(request.POST if confirmed else None) if form_class else None
        if confirmed and (form is None or form.is_valid()):
            data = form.cleaned_data if form is not None else {}
            done = 0
            for affiliate in affiliates:
                if decision == "suspend":
                    affiliate_services.affiliate_suspend(affiliate=affiliate, user=request.user, reason=data["reason"])
                elif decision == "reinstate":
                    affiliate_services.affiliate_reinstate(
                        affiliate=affiliate, user=request.user, reason=data["reason"]
                    )
                elif decision == "throttle":
                    affiliate_services.affiliate_throttle(
                        affiliate=affiliate, user=request.user, rate=data["submission_rate"], reason=data["reason"]
                    )
                else:
                    done += len(affiliate_services.affiliate_rerun_open_claims(affiliate=affiliate))
            if decision == "rerun":
                self.message_user(request, f"{done} open claim(s) queued for reconciliation.")
            else:
                self.message_user(request, f"{title} {len(affiliates)} affiliate(s): done.")
            return HttpResponseRedirect(back)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{title} {len(affiliates)} affiliate(s)",
            "decision": decision,
            "affiliates": affiliates,
            "form": form,
            "action": action,
            "back": back,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/reconciliation/affiliate/decide.html", context)

    def _bulk(self, request: HttpRequest, queryset: QuerySet[models.Affiliate], decision: str) -> HttpResponse:
        return self._decide(
            request,
            decision,
            list(queryset.order_by("pk")[:500]),
            back=request.get_full_path(),
            action=decision if decision != "rerun" else "rerun_open_claims",
        )

    @admin.action(description="Suspend selected affiliates (reason required)", permissions=["decide"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[models.Affiliate]) -> HttpResponse:
        return self._bulk(request, queryset, "suspend")

    @admin.action(description="Reinstate selected affiliates (reason required)", permissions=["decide"])
    def reinstate(self, request: HttpRequest, queryset: QuerySet[models.Affiliate]) -> HttpResponse:
        return self._bulk(request, queryset, "reinstate")

    @admin.action(description="Throttle submissions of selected affiliates (reason required)", permissions=["decide"])
    def throttle(self, request: HttpRequest, queryset: QuerySet[models.Affiliate]) -> HttpResponse:
        return self._bulk(request, queryset, "throttle")

    @admin.action(description="Re-run reconciliation of their open claims", permissions=["decide"])
    def rerun_open_claims(self, request: HttpRequest, queryset: QuerySet[models.Affiliate]) -> HttpResponse:
        return self._bulk(request, queryset, "rerun")


@admin.register(models.AffiliateRiskAction)
class AffiliateRiskActionAdmin(EvidenceAdmin):
    list_display = ("created_at", "affiliate", "action", "submission_rate", "user", "reason")
    list_filter = ("action", ("created_at", admin.DateFieldListFilter))
    search_fields = ("affiliate__name", "affiliate__email", "reason")
    list_select_related = ("affiliate", "user")


@admin.register(models.AffiliateAPIKey)
class AffiliateAPIKeyAdmin(APIKeyModelAdmin):
    # The library types these as fixed-length tuples; extending them is the documented way to customise.
    list_display = (*APIKeyModelAdmin.list_display, "affiliate")  # type: ignore[assignment]
    search_fields = (*APIKeyModelAdmin.search_fields, "affiliate__name", "affiliate__email")  # type: ignore[assignment]


@admin.register(models.ClientAPIKey)
class ClientAPIKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "client", "is_staff")  # type: ignore[assignment]
    search_fields = (*APIKeyModelAdmin.search_fields, "client__name")  # type: ignore[assignment]


@admin.register(models.Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "client", "status", "start_date", "end_date", "recheck_interval_hours")
    list_filter = ("status", "platforms")
    search_fields = ("name", "client__name")
    filter_horizontal = ("platforms",)
    list_select_related = ("client",)


@admin.register(models.Post)
class PostAdmin(EvidenceAdmin):
    """A post's URL, affiliate and campaign are part of every claim made about it."""

    list_display = ("id", "platform", "platform_post_id", "affiliate", "campaign", "created_at")
    list_filter = ("platform",)
    search_fields = ("url", "platform_post_id", "affiliate__email")
    list_select_related = ("platform", "affiliate", "campaign__client")


class ReconciliationLogInline(EvidenceAdminMixin, admin.StackedInline):
    model = models.ReconciliationLog
    extra = 0


class AttemptInline(EvidenceAdminMixin, admin.TabularInline):
    model = models.ReconciliationAttempt
    extra = 0
    fields = ("number", "started_at", "finished_at", "outcome", "status", "missing_reason", "duration_ms", "worker")


@admin.register(models.AffiliateReport)
class AffiliateReportAdmin(EvidenceAdmin):
    list_display = (
        "id",
        "post",
        "claimed_views",
        "claimed_clicks",
        "claimed_conversions",
        "submission_method",
        "reconciliation_status",
        "submitted_at",
    )
    list_filter = ("submission_method", "log__status")
    search_fields = ("post__url", "post__affiliate__email", "idempotency_key", "request_id")
    list_select_related = ("post__platform", "log")
    inlines = (ReconciliationLogInline, AttemptInline)

    @admin.display(description="status", ordering="log__status")
    def reconciliation_status(self, obj: models.AffiliateReport) -> str:
        log = getattr(obj, "log", None)
        return log.status if log else "-"


@admin.register(models.ReconciliationLog)
class ReconciliationLogAdmin(EvidenceAdmin):
    list_display = (
        "report",
        "status",
        "discrepancy_level",
        "max_diff_pct",
        "confidence_ratio",
        "missing_reason",
        "attempt_count",
        "next_attempt_at",
        "terminal",
    )
    list_filter = ("status", "discrepancy_level", "missing_reason", "terminal")
    search_fields = ("report__id", "report__post__url")
    list_select_related = ("report",)


@admin.register(models.ReconciliationAttempt)
class ReconciliationAttemptAdmin(EvidenceAdmin):
    list_display = ("report", "number", "outcome", "status", "missing_reason", "duration_ms", "worker", "started_at")
    list_filter = ("outcome", "missing_reason", "is_recheck")
    search_fields = ("report__id", "worker")


@admin.register(models.PlatformReport)
class PlatformReportAdmin(EvidenceAdmin):
    list_display = ("post", "platform", "views", "clicks", "conversions", "fetched_at")
    list_filter = ("platform",)
    list_select_related = ("platform",)


@admin.register(models.TrustEvent)
class TrustEventAdmin(EvidenceAdmin):
    list_display = ("affiliate", "event", "delta", "effective_delta", "score_after", "report", "created_at")
    list_filter = ("event",)
    search_fields = ("affiliate__email", "report__id")
    list_select_related = ("affiliate",)
