"""Affiliates, clients, campaigns, posts, claims, reconciliation logs and attempts, and the trust ledger.

Invariants that must hold however many workers run are enforced by the database (checks and unique
constraints), not only by Python: a duplicate can be impossible rather than unlikely.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey
from simple_history.models import HistoricalRecords

from reconcile_project.config import OVERRIDABLE, RuleOverrideError, RuleSet, build_ruleset
from reconcile_project.history import history_user
from reconciliation.rules import Status

INITIAL_TRUST = Decimal("0.5000")
_RULESETS: dict[tuple, RuleSet] = {}


class Client(models.Model):
    """An advertiser: owns campaigns and reads their verified totals."""

    name = models.CharField(max_length=200, unique=True)
    contact_email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Affiliate(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    trust_score = models.DecimalField(max_digits=5, decimal_places=4, default=INITIAL_TRUST)
    total_submissions = models.PositiveIntegerField(default=0)
    accurate_submissions = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    chat_user_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    #: A per-affiliate submission limit below RATE_LIMIT_SETTINGS.submission ("10/hour"), set by an analyst
    #: to throttle a high-risk affiliate (``affiliate_throttle``); empty = the default.
    submission_rate = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    #: Audit trail of saves (the active flag); trust moves by update() and is recorded in the trust ledger.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(trust_score__gte=0) & Q(trust_score__lte=1), name="affiliate_trust_score_0_1"
            ),
            models.CheckConstraint(
                condition=Q(accurate_submissions__lte=models.F("total_submissions")),
                name="affiliate_accurate_le_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class AffiliateRiskAction(models.Model):
    """An analyst's decision about an affiliate (suspend, reinstate, throttle): who, when, why. Append-only."""

    class Action(models.TextChoices):
        SUSPEND = "SUSPEND"
        REINSTATE = "REINSTATE"
        THROTTLE = "THROTTLE"

    affiliate = models.ForeignKey(Affiliate, on_delete=models.PROTECT, related_name="risk_actions")
    action = models.CharField(max_length=10, choices=Action.choices)
    reason = models.TextField()
    #: THROTTLE: the rate set ("" = back to the default).
    submission_rate = models.CharField(max_length=32, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=~Q(reason=""), name="affiliate_risk_action_has_reason")]

    def __str__(self) -> str:
        return f"{self.action} of affiliate {self.affiliate_id} at {self.created_at:%Y-%m-%d %H:%M}"


class AffiliateAPIKey(AbstractAPIKey):
    """Hashed API key of an affiliate (the plaintext is shown once, at creation)."""

    affiliate = models.ForeignKey(Affiliate, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "affiliate API key"
        verbose_name_plural = "affiliate API keys"


class ClientAPIKey(AbstractAPIKey):
    """Hashed API key of an advertiser (``client`` set), or a staff key (``is_staff``, no client).

    Never both: a client's key that were also staff would be a tenant that reads and re-runs every other
    tenant's campaigns. The constraint makes the mix impossible, not just unused.
    """

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys", null=True, blank=True)
    is_staff = models.BooleanField(default=False)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "client API key"
        verbose_name_plural = "client API keys"
        constraints = [
            models.CheckConstraint(
                condition=Q(is_staff=True, client__isnull=True) | Q(is_staff=False, client__isnull=False),
                name="clientkey_staff_xor_client",
                violation_error_message="A staff key belongs to no client; a client's key is not staff.",
            ),
        ]


class Campaign(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        PAUSED = "PAUSED"
        ENDED = "ENDED"

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    platforms = models.ManyToManyField("platforms.Platform", related_name="campaigns")
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    #: Per-campaign rule overrides: {"RECONCILIATION_SETTINGS": {"low_max": 0.12}, ...}.
    rule_overrides = models.JSONField(default=dict, blank=True)
    #: Canary: proposed overrides run in shadow beside the live rules (same shape as rule_overrides; empty:
    #: no canary). Each attempt records the shadow verdict (ShadowVerdict); it moves no trust, raises nothing.
    shadow_rule_overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text="Canary: overrides decided in shadow beside the live rules (no trust, no alerts). Empty: off.",
    )
    recheck_interval_hours = models.FloatField(null=True, blank=True, help_text="Empty: the global default.")
    recheck_window_days = models.FloatField(null=True, blank=True, help_text="Empty: the global default.")
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)  # audit trail: rule overrides, status, dates

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["client", "name"], name="campaign_unique_name_per_client"),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("start_date")),
                name="campaign_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(recheck_interval_hours__isnull=True) | Q(recheck_interval_hours__gt=0),
                name="campaign_recheck_interval_positive",
            ),
            models.CheckConstraint(
                condition=Q(recheck_window_days__isnull=True) | Q(recheck_window_days__gte=0),
                name="campaign_recheck_window_nonnegative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.client})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for field in ("rule_overrides", "shadow_rule_overrides"):
            try:
                campaign_ruleset(getattr(self, field))
            except RuleOverrideError as exc:
                errors[field] = [f"{k}: {v}" for k, v in exc.errors.items()]
        if errors:
            raise ValidationError(errors)

    def ruleset(self) -> RuleSet:
        """The global rule settings with this campaign's overrides applied (raises RuleOverrideError)."""
        return campaign_ruleset(self.rule_overrides)

    def shadow_ruleset(self) -> RuleSet | None:
        """The canary's rule set, or None when the campaign runs none (raises RuleOverrideError)."""
        return campaign_ruleset(self.shadow_rule_overrides) if self.shadow_rule_overrides else None

    def effective_recheck(self) -> tuple[float, float]:
        """(interval hours, window days) of re-checks for this campaign."""
        return campaign_recheck(self.recheck_interval_hours, self.recheck_window_days)


def campaign_ruleset(rule_overrides: dict | None) -> RuleSet:
    """The global rule settings with a campaign's ``rule_overrides`` applied (raises RuleOverrideError)."""
    groups = {name: getattr(settings, name) for name in OVERRIDABLE}
    # Validating the groups costs milliseconds and every attempt needs them: memoise by value.
    key = (tuple(id(g) for g in groups.values()), json.dumps(rule_overrides or {}, sort_keys=True))
    ruleset = _RULESETS.get(key)
    if ruleset is None:
        ruleset = build_ruleset(groups, rule_overrides)
        if len(_RULESETS) > 1024:
            _RULESETS.clear()
        _RULESETS[key] = ruleset
    return ruleset


def campaign_recheck(interval_hours: float | None, window_days: float | None) -> tuple[float, float]:
    """(interval hours, window days) of re-checks: a campaign's own values, else the global defaults."""
    rules = settings.RECONCILIATION_SETTINGS
    interval = interval_hours or rules.recheck_interval_hours
    window = window_days if window_days is not None else rules.recheck_window_days
    return float(interval), float(window)


class Post(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="posts")
    affiliate = models.ForeignKey(Affiliate, on_delete=models.PROTECT, related_name="posts")
    platform = models.ForeignKey("platforms.Platform", on_delete=models.PROTECT, related_name="posts")
    url = models.URLField(max_length=2048, help_text="Normalised post URL.")
    platform_post_id = models.CharField(max_length=128)
    title = models.CharField(max_length=300, blank=True)
    #: When the post was first submitted: the services set it to the first claim's ``submitted_at`` (one
    #: instant for one claim, in the submissions list and the report alike).
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "platform", "platform_post_id", "affiliate"], name="post_unique_per_affiliate"
            )
        ]
        indexes = [
            models.Index(fields=["platform", "platform_post_id"], name="post_platform_post_idx"),
            models.Index(fields=["affiliate", "-created_at"], name="post_affiliate_created_idx"),
        ]

    def __str__(self) -> str:
        # Readable wherever a post is named (the admin's lists and pages select the platform with it).
        return f"{self.platform.name} post {self.url}"


class AffiliateReport(models.Model):
    """One claim about a post at a point in time (a post has a history of claims)."""

    class Method(models.TextChoices):
        API = "API"
        CHAT = "CHAT"
        BULK = "BULK"

    post = models.ForeignKey(Post, on_delete=models.PROTECT, related_name="reports")
    claimed_views = models.BigIntegerField()
    claimed_clicks = models.BigIntegerField()
    claimed_conversions = models.BigIntegerField()
    evidence = models.JSONField(default=dict, blank=True)
    suspicion_flags = models.JSONField(default=list, blank=True)
    submission_method = models.CharField(max_length=5, choices=Method.choices, default=Method.API)
    idempotency_key = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    submitted_at = models.DateTimeField()
    #: Bulk imports only: a hash of the row's identity (affiliate, post, claimed numbers, claim time, or the
    #: file's idempotency_key). Unique, so importing a file twice, even twice at once, adds nothing.
    import_key = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["import_key"], name="report_import_key_unique"),
            models.CheckConstraint(condition=Q(claimed_views__gte=0), name="report_views_nonnegative"),
            models.CheckConstraint(condition=Q(claimed_clicks__gte=0), name="report_clicks_nonnegative"),
            models.CheckConstraint(condition=Q(claimed_conversions__gte=0), name="report_conversions_nonnegative"),
        ]
        indexes = [models.Index(fields=["post", "-submitted_at"], name="report_post_submitted_idx")]

    def __str__(self) -> str:
        return (
            f"report {self.pk} on post {self.post_id}: "
            f"{self.claimed_views}/{self.claimed_clicks}/{self.claimed_conversions}"
        )


#: The statuses of the pure rules (``reconciliation.rules.Status``) as model choices: one list, two views.
ReconciliationStatus = models.TextChoices(  # type: ignore[call-overload]
    "ReconciliationStatus", [(status.name, status.value) for status in Status]
)


class DiscrepancyLevel(models.TextChoices):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class ReconciliationLogQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        # auto_now is applied by save() only; every write of the log is a queryset update, so stamp it here.
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)


class ReconciliationLog(models.Model):
    """The current state of one report's reconciliation; the row is also the work queue's outbox."""

    report = models.OneToOneField(AffiliateReport, on_delete=models.PROTECT, related_name="log")
    status = models.CharField(max_length=32, choices=ReconciliationStatus.choices, default=ReconciliationStatus.PENDING)
    discrepancy_level = models.CharField(max_length=10, choices=DiscrepancyLevel.choices, null=True, blank=True)
    views_diff = models.BigIntegerField(null=True, blank=True)
    clicks_diff = models.BigIntegerField(null=True, blank=True)
    conversions_diff = models.BigIntegerField(null=True, blank=True)
    views_diff_pct = models.FloatField(null=True, blank=True)
    clicks_diff_pct = models.FloatField(null=True, blank=True)
    conversions_diff_pct = models.FloatField(null=True, blank=True)
    max_diff_pct = models.FloatField(null=True, blank=True)
    confidence_ratio = models.FloatField(null=True, blank=True)
    missing_fields = models.JSONField(default=list, blank=True)
    missing_reason = models.CharField(max_length=32, blank=True)
    attempt_count = models.PositiveIntegerField(
        default=0, help_text="Attempt rows (numbered 1..n); a deferral that never reached the platform adds none."
    )
    budget_attempts = models.PositiveIntegerField(default=0, help_text="Attempts that spent the retry budget.")
    #: A deferral (breaker open, rate limited: the platform was never asked) is counted here instead of
    #: writing an attempt row per cooldown — a day-long outage would otherwise write ~1,440 rows per report.
    deferral_count = models.PositiveIntegerField(
        default=0, help_text="Attempts deferred before reaching the platform (breaker open, rate limited)."
    )
    last_deferred_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    trust_delta = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)
    #: The rule set (``RuleSet.fingerprint``) the stored verdict was decided under; empty: none yet.
    ruleset_fingerprint = models.CharField(
        max_length=64, blank=True, default="", help_text="Fingerprint of the rule set that decided the verdict."
    )
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    terminal = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReconciliationLogQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], name="log_next_attempt_idx"),
            models.Index(fields=["status", "last_attempt_at"], name="log_status_last_attempt_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence_ratio__isnull=True) | (Q(confidence_ratio__gte=0) & Q(confidence_ratio__lte=1)),
                name="log_confidence_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"log of report {self.report_id}: {self.status}"


class ReconciliationAttempt(models.Model):
    class Outcome(models.TextChoices):
        RUNNING = "RUNNING"
        SUCCESS = "SUCCESS"
        PARTIAL = "PARTIAL"
        MISSING = "MISSING"
        DEFERRED = "DEFERRED"
        DISCARDED = "DISCARDED"
        ERROR = "ERROR"

    report = models.ForeignKey(AffiliateReport, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RUNNING)
    status = models.CharField(max_length=32, choices=ReconciliationStatus.choices, blank=True)
    missing_reason = models.CharField(max_length=32, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    is_recheck = models.BooleanField(default=False)
    #: The rule set (``RuleSet.fingerprint``) this attempt's outcome was classified under.
    ruleset_fingerprint = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["report", "number"]
        constraints = [models.UniqueConstraint(fields=["report", "number"], name="attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of report {self.report_id}: {self.outcome}"


class PlatformReport(models.Model):
    """What the platform reported for a post at one attempt (None = the platform gave no value)."""

    post = models.ForeignKey(Post, on_delete=models.PROTECT, related_name="platform_reports")
    attempt = models.OneToOneField(
        ReconciliationAttempt, on_delete=models.PROTECT, related_name="platform_report", null=True, blank=True
    )
    platform = models.ForeignKey("platforms.Platform", on_delete=models.PROTECT, related_name="reports")
    views = models.BigIntegerField(null=True, blank=True)
    clicks = models.BigIntegerField(null=True, blank=True)
    conversions = models.BigIntegerField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField()

    class Meta:
        ordering = ["-fetched_at"]
        indexes = [models.Index(fields=["post", "-fetched_at"], name="platformreport_post_idx")]

    def __str__(self) -> str:
        return f"{self.platform_id} snapshot of post {self.post_id} at {self.fetched_at:%Y-%m-%d %H:%M}"


class TrustEvent(models.Model):
    """One movement of an affiliate's trust score; the ledger is unique per attempt."""

    affiliate = models.ForeignKey(Affiliate, on_delete=models.PROTECT, related_name="trust_events")
    report = models.ForeignKey(AffiliateReport, on_delete=models.PROTECT, related_name="trust_events")
    attempt = models.OneToOneField(ReconciliationAttempt, on_delete=models.PROTECT, related_name="trust_event")
    event = models.CharField(max_length=32)
    #: The nominal delta (the invariant sums these) and the clamped change actually applied.
    delta = models.DecimalField(max_digits=6, decimal_places=4)
    effective_delta = models.DecimalField(max_digits=6, decimal_places=4)
    score_after = models.DecimalField(max_digits=5, decimal_places=4)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(score_after__gte=0) & Q(score_after__lte=1), name="trustevent_score_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.delta:+} for affiliate {self.affiliate_id} (report {self.report_id})"


class ShadowVerdict(models.Model):
    """A canary's verdict: what a campaign's shadow rules decided on an attempt the live rules decided.

    Written in the attempt's transaction, beside the live verdict, and nothing else: it moves no trust and
    raises no alert. Append-only evidence, like the attempt it belongs to.
    """

    attempt = models.OneToOneField(ReconciliationAttempt, on_delete=models.PROTECT, related_name="shadow_verdict")
    report = models.ForeignKey(AffiliateReport, on_delete=models.PROTECT, related_name="shadow_verdicts")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="shadow_verdicts")
    live_status = models.CharField(max_length=32, choices=ReconciliationStatus.choices)
    live_level = models.CharField(max_length=10, choices=DiscrepancyLevel.choices, null=True, blank=True)
    live_fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=32, choices=ReconciliationStatus.choices)
    level = models.CharField(max_length=10, choices=DiscrepancyLevel.choices, null=True, blank=True)
    #: The shadow rule set's fingerprint: agreement is judged per proposed rule set.
    fingerprint = models.CharField(max_length=64)
    max_diff_pct = models.FloatField(null=True, blank=True)
    agrees = models.BooleanField(help_text="Same status and level as the live verdict.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["campaign", "fingerprint"], name="shadow_campaign_fp_idx")]

    def __str__(self) -> str:
        return f"shadow {self.status} (live {self.live_status}) on attempt {self.attempt_id}"


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` seen on a POST/PUT, scoped to the credential that sent it (kept 24 h).

    The row is written in the same transaction as the work it guards, so a crash leaves no half-done key:
    either the report and its stored response exist, or neither does and the client may retry.
    """

    class OwnerKind(models.TextChoices):
        AFFILIATE_KEY = "affiliate_key"
        CLIENT_KEY = "client_key"
        USER = "user"

    owner_kind = models.CharField(max_length=16, choices=OwnerKind.choices)
    owner_id = models.CharField(max_length=150, help_text="The API key's id (or the staff user's id).")
    key = models.CharField(max_length=255)
    #: sha256 of the method, path and canonical JSON body: the same key with another body is refused.
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    completed = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner_kind", "owner_id", "key"], name="idempotency_unique_per_owner"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of {self.owner_kind} {self.owner_id}"
