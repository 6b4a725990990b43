"""Where notifications go (ops destinations, client subscriptions) and the outbox of deliveries.

A :class:`Delivery` row is written in the same transaction as the event that causes it (an alert raised or
resolved, a verdict written), so an event that commits always has its notification and one that rolls back
never does. Rows are evidence: they are never deleted; a redelivery is a new row pointing at the original.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.db import models
from django.db.models import Q

from alerts.models import Alert


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class Event(models.TextChoices):
    ALERT_CREATED = "alert.created"
    ALERT_RESOLVED = "alert.resolved"
    REPORT_RECONCILED = "report.reconciled"
    #: The admin's "send a test notification" action.
    DESTINATION_TEST = "destination.test"


#: Events an ops destination may route, and those a client may subscribe to.
DESTINATION_EVENTS = [Event.ALERT_CREATED, Event.ALERT_RESOLVED]
SUBSCRIPTION_EVENTS = [Event.REPORT_RECONCILED, Event.ALERT_CREATED, Event.ALERT_RESOLVED]
SEVERITY_ORDER = {s: i for i, s in enumerate(Alert.Severity.values)}


class Destination(models.Model):
    """An ops destination (Slack, a generic HTTPS webhook, e-mail) with its routing rules.

    Empty rule lists mean "every": no alert types listed routes every type, and so on.
    """

    class Kind(models.TextChoices):
        SLACK = "SLACK", "Slack incoming webhook"
        WEBHOOK = "WEBHOOK", "HTTPS webhook (JSON, signed)"
        EMAIL = "EMAIL", "E-mail"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.URLField(max_length=2048, blank=True, help_text="Slack and webhook destinations.")
    recipients = models.TextField(blank=True, help_text="E-mail destinations: addresses, one per line or comma.")
    #: Signs webhook payloads (README "Signatures"); shown in the admin to configure the receiver.
    secret = models.CharField(max_length=100, default=new_secret)
    is_active = models.BooleanField(default=True)
    events = models.JSONField(default=list, blank=True, help_text="Empty: alert.created only.")
    alert_types = models.JSONField(default=list, blank=True, help_text="Empty: every alert type.")
    min_severity = models.CharField(max_length=10, choices=Alert.Severity.choices, default=Alert.Severity.LOW)
    categories = models.JSONField(default=list, blank=True, help_text="Empty: every category.")
    platforms = models.ManyToManyField(
        "platforms.Platform", blank=True, related_name="+", help_text="Empty: every platform (and none)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="EMAIL", recipients__gt="") | (~Q(kind="EMAIL") & Q(url__gt="")),
                name="destination_has_an_address",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def routed_events(self) -> list[str]:
        return list(self.events) or [Event.ALERT_CREATED]

    def matches(self, alert: Alert, event: str, platform_ids: set[int] | None = None) -> bool:
        """Whether ``event`` about ``alert`` goes here. ``platform_ids``: this destination's platforms
        (pass them when checking many alerts; otherwise they are read)."""
        if event not in self.routed_events():
            return False
        if self.alert_types and alert.alert_type not in self.alert_types:
            return False
        if self.categories and alert.category not in self.categories:
            return False
        if SEVERITY_ORDER[alert.severity] < SEVERITY_ORDER[self.min_severity]:
            return False
        if platform_ids is None:
            platform_ids = set(self.platforms.values_list("pk", flat=True))
        return not platform_ids or alert.platform_id in platform_ids

    @property
    def breaker_key(self) -> str:
        return f"destination:{self.pk}"


class WebhookSubscription(models.Model):
    """A client's subscription to events of its own campaigns (``/api/v1/webhooks/``).

    The secret signs every payload; the API shows it once, when the subscription is made. Deleting a
    subscription through the API deactivates it: its deliveries stay as evidence.
    """

    client = models.ForeignKey("reconciliation.Client", on_delete=models.PROTECT, related_name="webhooks")
    url = models.URLField(max_length=2048)
    events = models.JSONField(default=list)
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=new_secret)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["client", "is_active"], name="webhook_client_active_idx")]

    def __str__(self) -> str:
        return f"{self.client} → {self.url}"

    @property
    def breaker_key(self) -> str:
        return f"subscription:{self.pk}"


class Delivery(models.Model):
    """One notification to one destination or subscription: the outbox row and its delivery log."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        DELIVERED = "DELIVERED"
        FAILED = "FAILED"

    #: The payload's ``id``: a receiver deduplicates on it (a redelivery keeps it).
    event_id = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    event_type = models.CharField(max_length=32, choices=Event.choices)
    destination = models.ForeignKey(
        Destination, on_delete=models.PROTECT, related_name="deliveries", null=True, blank=True
    )
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.PROTECT, related_name="deliveries", null=True, blank=True
    )
    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="deliveries", null=True, blank=True)
    report = models.ForeignKey(
        "reconciliation.AffiliateReport", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    #: Facts of the event known only when it happened (a verdict's previous status).
    context = models.JSONField(default=dict, blank=True)
    #: The event as sent, fixed at the first try (an alert folded before then is sent with its count).
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    redelivery_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="redeliveries", null=True, blank=True
    )
    requested_by = models.CharField(max_length=200, blank=True, help_text="Who asked for a redelivery or test.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(destination__isnull=False, subscription__isnull=True)
                | Q(destination__isnull=True, subscription__isnull=False),
                name="delivery_one_target",
            )
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="PENDING"), name="delivery_pending_due_idx"),
            models.Index(fields=["status", "-created_at"], name="delivery_status_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk} → {self.target}"

    @property
    def target(self) -> Any:
        return self.destination if self.destination_id else self.subscription

    @property
    def kind(self) -> str:
        """The metrics' ``kind`` label: slack, webhook, email or subscription."""
        return self.destination.kind.lower() if self.destination is not None else "subscription"


class DeliveryAttempt(models.Model):
    """One try of a delivery: what the receiver answered, how long it took, or why it failed."""

    class Outcome(models.TextChoices):
        DELIVERED = "DELIVERED"
        HTTP_ERROR = "HTTP_ERROR"
        REDIRECT = "REDIRECT"
        NETWORK_ERROR = "NETWORK_ERROR"
        REFUSED = "REFUSED"

    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="tries")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number", "id"]

    def __str__(self) -> str:
        return f"try {self.number} of delivery {self.delivery_id}: {self.outcome}"
