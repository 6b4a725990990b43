"""Alerts in the admin: the analysts' triage queue. Never added, edited or deleted here (DESIGN §9).

An alert is evidence of what the engine concluded; its state changes only through ``alerts.services``
(the actions below: acknowledge, resolve with a note, re-open, assign), which record who, when and why
in the alert's history, so no field of it is editable on its page.

The changelist opens on the open alerts, most severe first, then newest. Actions apply to the ticked
rows or, with "select all N", to every alert the filters match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from alerts import services
from alerts.models import Alert
from alerts.selectors import alert_decision
from reconciliation.admin import DecideByChangePermission, EvidenceAdminMixin, campaign_filter
from reconciliation.roles import ANALYST_GROUP
from reconciliation.templatetags.risk import badge_html

#: Most severe first: the rank the changelist sorts by (a text column would sort alphabetically).
SEVERITY_RANK = Case(
    *(When(severity=s, then=Value(rank)) for rank, s in enumerate(Alert.Severity.values)),
    default=Value(-1),
    output_field=IntegerField(),
)


class StatusFilter(admin.SimpleListFilter):
    """Open alerts unless another status (or all) is picked: the queue is what still needs a decision."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (Alert.Status.OPEN, "Open (default)"),
            (Alert.Status.ACKNOWLEDGED, "Acknowledged"),
            (Alert.Status.RESOLVED, "Resolved"),
            (self.ALL, "All"),
        ]

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        # No stock "All" entry: no parameter means Open here, and "all" is a lookup of its own.
        current = self.value() or Alert.Status.OPEN
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        value = self.value() or Alert.Status.OPEN
        if value == self.ALL:
            return queryset
        if value not in Alert.Status.values:
            return queryset.none()
        return queryset.filter(status=value)


class AssignedFilter(admin.SimpleListFilter):
    title = "assigned to"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "Assigned to me"), ("nobody", "Unassigned"), ("others", "Assigned to someone else")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        user_id = request.user.pk
        match self.value():
            case "me":
                return queryset.filter(assigned_to_id=user_id)
            case "nobody":
                return queryset.filter(assigned_to__isnull=True)
            case "others":
                return queryset.filter(assigned_to__isnull=False).exclude(assigned_to_id=user_id)
        return queryset


class AffiliateFilter(admin.SimpleListFilter):
    """Typed: an affiliate's id or email (tens of thousands of affiliates do not fit a list of links)."""

    title = "affiliate"
    parameter_name = "affiliate"
    template = "admin/alerts/alert/input_filter.html"
    placeholder = "id or email"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        # Not links but what the typed filter's form needs: the other filters' values, and a "clear" link.
        keep = [(k, v) for k, v in changelist.get_filters_params().items() if k != self.parameter_name]
        yield {
            "value": self.value() or "",
            "keep": [(k, v[-1] if isinstance(v, list) else v) for k, v in keep],
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return queryset.filter(affiliate_id=int(value))
        return queryset.filter(affiliate__email__iexact=value)


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), max_length=2000)

    def __init__(self, *args: Any, required: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["note"].required = required
        self.fields["note"].help_text = (
            "Required: why, for whoever reads this decision later." if required else "Optional."
        )


class AssignForm(NoteForm):
    assignee = forms.ModelChoiceField(queryset=get_user_model().objects.none(), label="Analyst")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, required=False, **kwargs)
        analysts = get_user_model().objects.filter(is_active=True, is_staff=True)
        analysts = analysts.filter(Q(groups__name=ANALYST_GROUP) | Q(is_superuser=True)).distinct()
        field = self.fields["assignee"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = analysts.order_by("username")
        self.order_fields(["assignee", "note"])


@admin.register(Alert)
class AlertAdmin(EvidenceAdminMixin, DecideByChangePermission, SimpleHistoryAdmin):
    # Fits a 1400 px screen beside the filters: labels as badges, the affiliate by name, the title wrapping.
    list_display = (
        "severity_column",
        "type_column",
        "status_column",
        "title_column",
        "affiliate_column",
        "platform",
        "assignee_column",
        "seen_column",
        "created_column",
    )
    list_display_links = ("title_column",)
    list_filter = (
        StatusFilter,
        AssignedFilter,
        "severity",
        "alert_type",
        "category",
        "platform",
        AffiliateFilter,
        campaign_filter("report__post__campaign_id"),
        "created_at",
    )
    search_fields = ("title", "message", "affiliate__name", "affiliate__email", "=report__id")
    list_select_related = ("affiliate", "platform", "assigned_to")
    list_per_page = 50
    actions = ("acknowledge", "resolve", "reopen", "assign_to_me", "assign_to_analyst")
    history_list_display = ["status", "assigned_to", "decision_note"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        # As ModelAdmin.get_queryset, with the rank annotated before the ordering that uses it.
        alerts = self.model._default_manager.get_queryset().annotate(severity_rank=SEVERITY_RANK)
        return alerts.order_by(*self.get_ordering(request))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # An annotation, so not in ``ordering`` (the admin's checks want model fields there).
        return ["-severity_rank", "-created_at", "-id"]

    @admin.display(description="severity", ordering="severity_rank")
    def severity_column(self, obj: Alert) -> str:
        return badge_html(obj.severity)

    @admin.display(description="type", ordering="alert_type")
    def type_column(self, obj: Alert) -> str:
        return obj.get_alert_type_display()

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: Alert) -> str:
        return badge_html(obj.status)

    @admin.display(description="alert", ordering="title")
    def title_column(self, obj: Alert) -> str:
        title = obj.title if len(obj.title) <= 90 else obj.title[:89] + "…"
        return f"#{obj.pk} {title}"

    @admin.display(description="assignee", ordering="assigned_to__username")
    def assignee_column(self, obj: Alert) -> str:
        return obj.assigned_to.get_username() if obj.assigned_to is not None else "-"

    @admin.display(description="seen", ordering="occurrence_count")
    def seen_column(self, obj: Alert) -> str:
        return f"×{obj.occurrence_count}"

    @admin.display(description="created", ordering="created_at")
    def created_column(self, obj: Alert) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M")

    @admin.display(description="affiliate", ordering="affiliate__name")
    def affiliate_column(self, obj: Alert) -> str:
        return obj.affiliate.name if obj.affiliate is not None else "-"

    # --- actions ----------------------------------------------------------------------------------

    @admin.action(description="Acknowledge selected alerts", permissions=["decide"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        n = self._apply(queryset, lambda a: services.alert_acknowledge(alert=a, user=request.user), "status")
        self.message_user(request, f"{n} alert(s) acknowledged.")

    @admin.action(description="Resolve selected alerts (with a note)…", permissions=["decide"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> TemplateResponse | None:
        form = NoteForm(request.POST if "apply" in request.POST else None, required=True)
        if not form.is_valid():
            return self._decision_page(request, queryset, form, "resolve", "Resolve", "Resolve")
        note = form.cleaned_data["note"]
        n = self._apply(queryset, lambda a: services.alert_resolve(alert=a, user=request.user, note=note), "status")
        self.message_user(request, f"{n} alert(s) resolved.")
        return None

    @admin.action(description="Re-open selected alerts…", permissions=["decide"])
    def reopen(self, request: HttpRequest, queryset: QuerySet[Alert]) -> TemplateResponse | None:
        form = NoteForm(request.POST if "apply" in request.POST else None, required=False)
        if not form.is_valid():
            return self._decision_page(request, queryset, form, "reopen", "Re-open", "Re-open")
        note = form.cleaned_data["note"]
        n = self._apply(queryset, lambda a: services.alert_reopen(alert=a, user=request.user, note=note), "status")
        self.message_user(request, f"{n} alert(s) re-opened.")
        return None

    @admin.action(description="Assign selected alerts to me", permissions=["decide"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        user = request.user
        n = self._apply(queryset, lambda a: services.alert_assign(alert=a, assignee=user, user=user), "assigned_to_id")
        self.message_user(request, f"{n} alert(s) assigned to you.")

    @admin.action(description="Assign selected alerts to an analyst…", permissions=["decide"])
    def assign_to_analyst(self, request: HttpRequest, queryset: QuerySet[Alert]) -> TemplateResponse | None:
        form = AssignForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._decision_page(request, queryset, form, "assign_to_analyst", "Assign", "Assign")
        assignee, note = form.cleaned_data["assignee"], form.cleaned_data["note"]
        n = self._apply(
            queryset,
            lambda a: services.alert_assign(alert=a, assignee=assignee, user=request.user, note=note),
            "assigned_to_id",
        )
        self.message_user(request, f"{n} alert(s) assigned to {assignee.get_username()}.")
        return None

    def _decision_page(
        self, request: HttpRequest, queryset: QuerySet[Alert], form: forms.Form, action: str, title: str, submit: str
    ) -> TemplateResponse | None:
        """The action's intermediate page; it posts back to the changelist with the same filters and
        selection (the ticked ids, or "select all" of every filtered alert)."""
        count = queryset.count()
        if not count:  # e.g. ticked rows that another analyst's decision moved out of this filter
            self.message_user(request, "None of the selected alerts matches the current filters.", messages.WARNING)
            return None
        if "apply" in request.POST:
            self.message_user(request, "Please correct the errors below.", messages.ERROR)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{title} alerts",
            "form": form,
            "media": self.media + form.media,
            "action": action,
            "submit_label": submit,
            "count": count,
            "sample": list(queryset.order_by()[:20]),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "form_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/alerts/alert/action_form.html", context)

    @staticmethod
    def _apply(queryset: QuerySet[Alert], decide: Callable[[Alert], Alert], field: str) -> int:
        """Apply ``decide`` (a service; it locks the row) to each selected alert; how many it changed.

        Rows are re-read by id, as the changelist's query may join and be DISTINCT; one transaction,
        so a bulk decision is all or nothing.
        """
        changed = 0
        with transaction.atomic():
            for alert in Alert.objects.filter(pk__in=queryset.values("pk")).order_by("pk").iterator():
                before = getattr(alert, field)
                if getattr(decide(alert), field) != before:
                    changed += 1
        return changed

    # --- The alert's page, made for a decision (alerts/templates/admin/alerts/alert/decision.html) ---------

    change_form_template = "admin/alerts/alert/decision.html"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The stock read-only page, preceded by everything the decision needs (``alert_decision``)."""
        context = dict(extra_context or {})
        if str(object_id).isdigit():
            context["decision"] = alert_decision(alert_id=int(object_id))
        return super().change_view(request, object_id, form_url, extra_context=context)
