"""The analysts' admin. What the engine and the submission service write (claims and their posts, logs,
attempts, platform snapshots, the trust ledger) is evidence: it is shown here, never added, edited or deleted
(DESIGN §9). A correction is a new claim through the API; a re-check is a new attempt.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from rest_framework_api_key.admin import APIKeyModelAdmin
from simple_history.admin import SimpleHistoryAdmin

from reconciliation import models
from reconciliation.services import bulk


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


@admin.register(models.Affiliate)
class AffiliateAdmin(SimpleHistoryAdmin):  # History: who changed the active flag, when
    list_display = ("name", "email", "trust_score", "total_submissions", "accurate_submissions", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "email", "chat_user_id")
    # The score moves only through the trust ledger; editing it by hand would break the invariant.
    readonly_fields = ("trust_score", "total_submissions", "accurate_submissions", "created_at")
    change_list_template = "admin/reconciliation/affiliate/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        # Before the model's own URLs: "<object_id>/" would otherwise take "bulk-import/".
        view = self.admin_site.admin_view(self.bulk_import_view)  # staff only
        return [path("bulk-import/", view, name="reconciliation_affiliate_bulk_import"), *super().get_urls()]

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


class BulkImportForm(forms.Form):
    affiliate = forms.ModelChoiceField(queryset=models.Affiliate.objects.filter(is_active=True).order_by("name"))
    file = forms.FileField(help_text="CSV or JSON lines, UTF-8.")
    dry_run = forms.BooleanField(required=False, help_text="Check every row and show the result; write nothing.")


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
class CampaignAdmin(SimpleHistoryAdmin):  # History: who changed the rule overrides, when
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
