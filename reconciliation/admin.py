"""The analysts' admin. What the engine and the submission service write (claims and their posts, logs,
attempts, platform snapshots, the trust ledger) is evidence: it is shown here, never added, edited or deleted
(DESIGN §9). A correction is a new claim through the API; a re-check is a new attempt.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin
from simple_history.admin import SimpleHistoryAdmin

from reconcile_project.config import RuleOverrideError, short_fingerprint
from reconciliation import models
from reconciliation.selectors import affiliate_risk, trust_bucket
from reconciliation.services import affiliates as affiliate_services
from reconciliation.services import bulk
from reconciliation.services.canary import canary_agreement
from reconciliation.services.simulation import Selection, simulation_run
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


class DecideByChangePermission:
    """Recorded decisions (admin actions that go through a service) need the model's change permission,
    even where the page itself is view-only."""

    opts: Any

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")


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
class AffiliateAdmin(DecideByChangePermission, SimpleHistoryAdmin):  # history: who changed the active flag, when
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

    def get_readonly_fields(self, request: HttpRequest, obj: models.Affiliate | None = None) -> Any:
        # An analyst's change permission is for the recorded decisions below, not for editing the profile.
        if request.user.is_superuser:
            return self.readonly_fields
        return [field.name for field in self.model._meta.fields]

    change_list_template = "admin/reconciliation/affiliate/change_list.html"
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

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            # Before the model's own URLs: "<object_id>/" would otherwise take "bulk-import/".
            path("bulk-import/", wrap(self.bulk_import_view), name="reconciliation_affiliate_bulk_import"),
            path("<int:pk>/decide/<str:decision>/", wrap(self.decide_view), name="reconciliation_affiliate_decide"),
            path(
                "<int:pk>/keys/<str:key_id>/revoke/",
                wrap(self.revoke_key_view),
                name="reconciliation_affiliate_revoke_key",
            ),
            *super().get_urls(),
        ]

    def bulk_import_view(self, request: HttpRequest) -> HttpResponse:
        """Choose an affiliate, upload a file: the claims are imported as through the bulk API."""
        form = BulkImportForm(request.POST or None, request.FILES or None)
        result = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                fmt = bulk.format_of(filename=upload.name or "") or bulk.format_of(
                    content_type=upload.content_type or ""
                )
                if fmt is None:
                    raise bulk.BulkFileError("Give the file a .csv, .jsonl or .ndjson name.")
                if upload.size > settings.BULK_IMPORT_MAX_BYTES:
                    raise bulk.BulkFileTooLarge(
                        f"The file is {upload.size} bytes; at most {settings.BULK_IMPORT_MAX_BYTES} may be imported."
                    )
                result = bulk.claims_import(
                    data=upload.read(),
                    fmt=fmt,
                    affiliate=form.cleaned_data["affiliate"],
                    staff=False,
                    now=timezone.now(),
                    dry_run=form.cleaned_data["dry_run"],
                    max_bytes=settings.BULK_IMPORT_MAX_BYTES,
                    max_rows=settings.BULK_IMPORT_MAX_ROWS,
                )
            except bulk.BulkFileError as exc:
                form.add_error("file", str(exc))
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import claims",
            "form": form,
            "result": result,
            "rejected": [
                {"line": row.line, "field": name, "message": " ".join(messages)}
                for row in (result.rejected if result else [])
                for name, messages in row.fields.items()
            ],
            "columns": bulk.COLUMNS,
            "required": bulk.REQUIRED_COLUMNS,
            "max_bytes": settings.BULK_IMPORT_MAX_BYTES,
            "max_rows": settings.BULK_IMPORT_MAX_ROWS,
        }
        return TemplateResponse(request, "admin/reconciliation/bulk_import.html", context)

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
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
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


class BulkImportForm(forms.Form):
    affiliate = forms.ModelChoiceField(queryset=models.Affiliate.objects.filter(is_active=True).order_by("name"))
    file = forms.FileField(help_text="CSV or JSON lines, UTF-8.")
    dry_run = forms.BooleanField(required=False, help_text="Check every row and show the result; write nothing.")


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


#: The newest claims of a campaign the admin's preview of new overrides re-classifies (keeps the page quick;
#: ``simulate_rules --campaign`` covers every claim).
PREVIEW_CLAIMS = 100_000


class CampaignForm(forms.ModelForm):
    """New ``rule_overrides`` are saved only once their simulation was shown: the first save re-displays the
    page with the transition matrix and what else would change; saving the same overrides again applies
    them (the page carries the fingerprint that was reviewed)."""

    reviewed_fingerprint = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = models.Campaign
        fields = (
            "client",
            "name",
            "platforms",
            "start_date",
            "end_date",
            "status",
            "rule_overrides",
            "shadow_rule_overrides",
            "recheck_interval_hours",
            "recheck_window_days",
        )

    simulation: dict[str, Any] | None = None
    simulation_grid: dict[str, Any] | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None or "rule_overrides" not in cleaned or self.has_error("rule_overrides"):
            return cleaned
        proposed = cleaned["rule_overrides"] or {}
        if proposed == (self.instance.rule_overrides or {}):
            return cleaned
        try:
            fingerprint = models.campaign_ruleset(proposed).fingerprint
        except RuleOverrideError:
            return cleaned  # the model's own validation names the problem
        if cleaned.get("reviewed_fingerprint") == fingerprint:
            return cleaned
        self.simulation = simulation_run(
            selection=Selection(campaign_id=self.instance.pk, limit=PREVIEW_CLAIMS), overrides=proposed, examples=10
        )
        self.simulation_grid = matrix_grid(self.simulation)
        # Shown again with the page: the next save of these same overrides is the confirmed one.
        data: Any = self.data.copy() if isinstance(self.data, QueryDict) else dict(self.data)
        data[self.add_prefix("reviewed_fingerprint")] = fingerprint
        self.data = data
        raise ValidationError(
            "Review what these rule overrides would change (below), then save again to apply them.",
            code="review_simulation",
        )


def matrix_grid(result: dict[str, Any]) -> dict[str, Any]:
    """The transition matrix as a table: a row per old status, a column per new status seen."""
    cells = {(c["from"], c["to"]): c for c in result["matrix"]}
    olds = [s for s in result["statuses"] if any(k[0] == s for k in cells)]
    news = [s for s in result["statuses"] if any(k[1] == s for k in cells)]
    rows = [
        {
            "status": old,
            "cells": [{"cell": cells.get((old, new)), "changed": old != new and (old, new) in cells} for new in news],
        }
        for old in olds
    ]
    return {"columns": news, "rows": rows}


@admin.register(models.Campaign)
class CampaignAdmin(SimpleHistoryAdmin):  # History: who changed the rule overrides, when
    form = CampaignForm
    change_form_template = "admin/reconciliation/campaign/change_form.html"
    list_display = ("name", "client", "status", "start_date", "end_date", "recheck_interval_hours", "rule_set")
    list_filter = ("status", "platforms")
    search_fields = ("name", "client__name")
    filter_horizontal = ("platforms",)
    list_select_related = ("client",)
    readonly_fields = ("rule_set", "canary")

    @admin.display(description="rule set")
    def rule_set(self, obj: models.Campaign) -> str:
        """The fingerprint of the campaign's current rule set (what its new verdicts record)."""
        try:
            ruleset = obj.ruleset()
        except RuleOverrideError:
            return "invalid overrides (the global rules apply)"
        return format_html('<code title="{}">{}</code>', ruleset.fingerprint, ruleset.short_fingerprint)

    @admin.display(description="canary agreement")
    def canary(self, obj: models.Campaign) -> str:
        agreement = canary_agreement(obj) if obj.pk else None
        if agreement is None:
            return "no shadow rules"
        if not agreement["attempts"]:
            return format_html("shadow rules <code>{}</code>: no attempt decided yet", agreement["short_fingerprint"])
        disagreements = "; ".join(f"{d['live']} → {d['shadow']}: {d['attempts']}" for d in agreement["disagreements"])
        return format_html(
            "shadow rules <code>{}</code>: {} of {} attempts agree ({} %){}",
            agreement["short_fingerprint"],
            agreement["agree"],
            agreement["attempts"],
            agreement["agreement_pct"],
            f" — disagreements (live → shadow): {disagreements}" if disagreements else "",
        )


class BoundedChoiceFilter(admin.SimpleListFilter):
    """Filter by a related row's id, offering a bounded list of choices (a table of 20,000 affiliates would not
    fit a filter sidebar); any id works from a link, e.g. ``?affiliate=12`` from an affiliate's page."""

    #: The lookup path from the listed model to the related row's id.
    path: str
    model: type[Model]
    order_by: tuple[str, ...] = ("-id",)
    choices_shown = 15

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        rows = list(self.model._default_manager.order_by(*self.order_by)[: self.choices_shown])
        selected = self.value()
        if selected and selected.isdigit() and all(str(r.pk) != selected for r in rows):
            rows += list(self.model._default_manager.filter(pk=int(selected)))
        return [(str(r.pk), str(getattr(r, "name", r))) for r in rows]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{self.path: int(value)})
        return queryset


def affiliate_filter(path: str) -> type[BoundedChoiceFilter]:
    """By affiliate; the choices shown are the lowest-trust ones (those an analyst looks for)."""
    return type(
        "AffiliateFilter",
        (BoundedChoiceFilter,),
        {
            "title": "affiliate (lowest trust)",
            "parameter_name": "affiliate",
            "path": path,
            "model": models.Affiliate,
            "order_by": ("trust_score", "id"),
        },
    )


def campaign_filter(path: str) -> type[BoundedChoiceFilter]:
    return type(
        "CampaignFilter",
        (BoundedChoiceFilter,),
        {
            "title": "campaign (latest)",
            "parameter_name": "campaign",
            "path": path,
            "model": models.Campaign,
            "order_by": ("-created_at", "-id"),
        },
    )


def fingerprint_html(fingerprint: str) -> str:
    """A rule-set fingerprint as people read it: its first digits, the whole on hover."""
    if not fingerprint:
        return "-"
    return format_html('<code title="{}">{}</code>', fingerprint, short_fingerprint(fingerprint))


def admin_link(obj: Model | None, text: Any = None) -> str:
    """A link to ``obj``'s admin page, labelled ``text`` (default: ``str(obj)``); ``-`` for none."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj if text is None else text)


@admin.register(models.Post)
class PostAdmin(EvidenceAdmin):
    """A post's URL, affiliate and campaign are part of every claim made about it."""

    list_display = ("post", "platform", "affiliate_link", "campaign_link", "created_at")
    list_filter = (
        "platform",
        affiliate_filter("affiliate_id"),
        campaign_filter("campaign_id"),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("url", "platform_post_id", "affiliate__email", "affiliate__name")
    list_select_related = ("platform", "affiliate", "campaign")

    @admin.display(description="post", ordering="url")
    def post(self, obj: models.Post) -> str:
        return format_html("{}<br><small>{}</small>", obj.url, obj.platform_post_id)

    @admin.display(description="affiliate", ordering="affiliate__name")
    def affiliate_link(self, obj: models.Post) -> str:
        return admin_link(obj.affiliate, obj.affiliate.name)

    @admin.display(description="campaign", ordering="campaign__name")
    def campaign_link(self, obj: models.Post) -> str:
        return admin_link(obj.campaign, obj.campaign.name)


class ReconciliationLogInline(EvidenceAdminMixin, admin.StackedInline):
    model = models.ReconciliationLog
    extra = 0


class AttemptInline(EvidenceAdminMixin, admin.TabularInline):
    model = models.ReconciliationAttempt
    extra = 0
    fields = (
        "number",
        "started_at",
        "finished_at",
        "outcome",
        "status",
        "missing_reason",
        "duration_ms",
        "worker",
        "ruleset_fingerprint",
    )


class ClaimColumns:
    """Columns shared by the lists whose rows belong to a claim (``report_of`` gives the row's report)."""

    @staticmethod
    def report_of(obj: Any) -> models.AffiliateReport:
        return obj if isinstance(obj, models.AffiliateReport) else obj.report

    @admin.display(description="claim")
    def claim(self, obj: Any) -> str:
        report = self.report_of(obj)
        return admin_link(report, f"#{report.pk}")

    @admin.display(description="post")
    def post_link(self, obj: Any) -> str:
        post = self.report_of(obj).post
        return format_html("{} · {}", admin_link(post, post.platform.name), post.url)

    @admin.display(description="affiliate")
    def affiliate_link(self, obj: Any) -> str:
        affiliate = self.report_of(obj).post.affiliate
        return admin_link(affiliate, affiliate.name)

    @admin.display(description="campaign")
    def campaign_link(self, obj: Any) -> str:
        campaign = self.report_of(obj).post.campaign
        return admin_link(campaign, campaign.name)


@admin.register(models.AffiliateReport)
class AffiliateReportAdmin(ClaimColumns, EvidenceAdmin):
    list_display = (
        "claim",
        "post_link",
        "affiliate_link",
        "campaign_link",
        "claimed",
        "submission_method",
        "reconciliation_status",
        "max_diff",
        "submitted_at",
    )
    list_filter = (
        "log__status",
        ("post__platform", admin.RelatedOnlyFieldListFilter),
        affiliate_filter("post__affiliate_id"),
        campaign_filter("post__campaign_id"),
        ("submitted_at", admin.DateFieldListFilter),
        "submission_method",
    )
    search_fields = ("post__url", "post__affiliate__email", "post__affiliate__name", "idempotency_key", "request_id")
    list_select_related = ("post__platform", "post__affiliate", "post__campaign", "log")
    inlines = (ReconciliationLogInline, AttemptInline)
    actions = ("rerun",)

    @admin.display(description="claimed views / clicks / conv.")
    def claimed(self, obj: models.AffiliateReport) -> str:
        return f"{obj.claimed_views} / {obj.claimed_clicks} / {obj.claimed_conversions}"

    @admin.display(description="status", ordering="log__status")
    def reconciliation_status(self, obj: models.AffiliateReport) -> str:
        log = getattr(obj, "log", None)
        return badge_html(log.status if log else None)

    @admin.display(description="max diff", ordering="log__max_diff_pct")
    def max_diff(self, obj: models.AffiliateReport) -> str:
        log = getattr(obj, "log", None)
        return format_pct(log.max_diff_pct if log else None)

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        # A re-run writes no evidence (it makes the reports due; the attempt is new evidence), but it is an
        # ops decision: the permission to change reconciliation logs.
        return request.user.has_perm("reconciliation.change_reconciliationlog")

    @admin.action(description="Re-run reconciliation for selected reports", permissions=["rerun"])
    def rerun(self, request: HttpRequest, queryset: QuerySet[models.AffiliateReport]) -> None:
        ids = list(queryset.values_list("pk", flat=True)[:10_000])
        reopened = affiliate_services.reports_rerun(report_ids=ids)
        skipped = len(ids) - len(reopened)
        self.message_user(
            request,
            f"{len(reopened)} report(s) queued for reconciliation"
            + (f"; {skipped} skipped (an attempt is running)" if skipped else "")
            + ".",
        )


@admin.register(models.ReconciliationLog)
class ReconciliationLogAdmin(ClaimColumns, EvidenceAdmin):
    list_display = (
        "claim",
        "affiliate_link",
        "campaign_link",
        "status_badge",
        "level",
        "max_diff",
        "confidence",
        "missing_reason",
        "attempt_count",
        "next_attempt_at",
        "terminal",
        "rule_set",
    )
    list_filter = (
        "status",
        "discrepancy_level",
        "missing_reason",
        "terminal",
        ("report__post__platform", admin.RelatedOnlyFieldListFilter),
        affiliate_filter("report__post__affiliate_id"),
        campaign_filter("report__post__campaign_id"),
        ("report__submitted_at", admin.DateFieldListFilter),
    )
    search_fields = ("report__id", "report__post__url")
    list_select_related = ("report__post__platform", "report__post__affiliate", "report__post__campaign")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: models.ReconciliationLog) -> str:
        return badge_html(obj.status)

    @admin.display(description="level", ordering="discrepancy_level")
    def level(self, obj: models.ReconciliationLog) -> str:
        return badge_html(obj.discrepancy_level)

    @admin.display(description="max diff", ordering="max_diff_pct")
    def max_diff(self, obj: models.ReconciliationLog) -> str:
        return format_pct(obj.max_diff_pct)

    @admin.display(description="confidence", ordering="confidence_ratio")
    def confidence(self, obj: models.ReconciliationLog) -> str:
        return format_pct(obj.confidence_ratio, signed=False)

    @admin.display(description="rule set", ordering="ruleset_fingerprint")
    def rule_set(self, obj: models.ReconciliationLog) -> str:
        return fingerprint_html(obj.ruleset_fingerprint)


@admin.register(models.ReconciliationAttempt)
class ReconciliationAttemptAdmin(ClaimColumns, EvidenceAdmin):
    list_display = (
        "claim",
        "number",
        "outcome_badge",
        "status_badge",
        "missing_reason",
        "duration_ms",
        "started_at",
        "rule_set",
    )
    list_filter = (
        "outcome",
        "missing_reason",
        "is_recheck",
        ("report__post__platform", admin.RelatedOnlyFieldListFilter),
        affiliate_filter("report__post__affiliate_id"),
        ("started_at", admin.DateFieldListFilter),
    )
    search_fields = ("report__id", "worker")
    list_select_related = ("report",)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: models.ReconciliationAttempt) -> str:
        return badge_html(obj.outcome)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: models.ReconciliationAttempt) -> str:
        return badge_html(obj.status)

    @admin.display(description="rule set", ordering="ruleset_fingerprint")
    def rule_set(self, obj: models.ReconciliationAttempt) -> str:
        return fingerprint_html(obj.ruleset_fingerprint)


@admin.register(models.ShadowVerdict)
class ShadowVerdictAdmin(ClaimColumns, EvidenceAdmin):
    """The canary's verdicts beside the live ones (evidence: view-only)."""

    list_display = ("created_at", "claim", "campaign_link", "live", "shadow", "agrees", "shadow_rules")
    list_filter = ("agrees", "status", "live_status", campaign_filter("campaign_id"))
    search_fields = ("report__id",)
    list_select_related = ("report__post__campaign",)

    @admin.display(description="live verdict", ordering="live_status")
    def live(self, obj: models.ShadowVerdict) -> str:
        return format_html("{} {}", badge_html(obj.live_status), badge_html(obj.live_level))

    @admin.display(description="shadow verdict", ordering="status")
    def shadow(self, obj: models.ShadowVerdict) -> str:
        return format_html("{} {}", badge_html(obj.status), badge_html(obj.level))

    @admin.display(description="shadow rule set", ordering="fingerprint")
    def shadow_rules(self, obj: models.ShadowVerdict) -> str:
        return fingerprint_html(obj.fingerprint)


@admin.register(models.PlatformReport)
class PlatformReportAdmin(EvidenceAdmin):
    list_display = ("post", "platform", "views", "clicks", "conversions", "fetched_at")
    list_filter = ("platform", ("fetched_at", admin.DateFieldListFilter))
    list_select_related = ("platform", "post__platform")


@admin.register(models.TrustEvent)
class TrustEventAdmin(ClaimColumns, EvidenceAdmin):
    list_display = ("created_at", "affiliate_link", "event_badge", "delta", "effective_delta", "score_after", "claim")
    list_filter = (
        "event",
        affiliate_filter("affiliate_id"),
        ("report__post__platform", admin.RelatedOnlyFieldListFilter),
        campaign_filter("report__post__campaign_id"),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("affiliate__email", "affiliate__name", "report__id")
    list_select_related = ("affiliate", "report")

    @admin.display(description="affiliate", ordering="affiliate__name")
    def affiliate_link(self, obj: models.TrustEvent) -> str:
        return admin_link(obj.affiliate, obj.affiliate.name)

    @admin.display(description="event", ordering="event")
    def event_badge(self, obj: models.TrustEvent) -> str:
        return badge_html(obj.event)
