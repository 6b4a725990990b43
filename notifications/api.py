"""``/api/v1/webhooks/``: an advertiser's event subscriptions (client API keys only).

``POST`` subscribes a URL to events of the client's own campaigns and answers the signing secret, the only
time it is shown. ``GET`` lists the active subscriptions (never a secret). ``DELETE /webhooks/<id>`` ends
one; its deliveries stay as evidence.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from notifications import http, services
from notifications.models import SUBSCRIPTION_EVENTS, WebhookSubscription
from reconciliation.api.authentication import APIKeyAuthentication, Principal
from reconciliation.api.filters import MAX_ID
from reconciliation.api.schema import errors
from reconciliation.api.views import ApiView
from reconciliation.models import Client


class IsClient(BasePermission):
    message = "This endpoint needs a client API key."
    code = "wrong_key_kind"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return isinstance(user, Principal) and user.kind == "client" and user.client is not None


class SubscriptionInput(serializers.Serializer):
    url = serializers.URLField(max_length=2048, help_text="Where events are POSTed (https).")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=[str(e) for e in SUBSCRIPTION_EVENTS]),
        min_length=1,
        max_length=len(SUBSCRIPTION_EVENTS),
        help_text="Events of your campaigns to receive.",
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class SubscriptionOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "description", "created_at"]


class SubscriptionCreatedOutput(SubscriptionOutput):
    secret = serializers.CharField(
        help_text="Signs every payload (X-Reconcile-Signature). Shown only now: store it.", read_only=True
    )

    class Meta(SubscriptionOutput.Meta):
        fields = [*SubscriptionOutput.Meta.fields, "secret"]


class WebhookView(ApiView):
    authentication_classes = [APIKeyAuthentication]
    permission_classes = [IsClient]

    @property
    def client(self) -> Client:
        principal = self.request.user
        assert isinstance(principal, Principal) and principal.client is not None
        return principal.client


class WebhookListView(WebhookView):
    throttle_scopes = {"GET": "query", "POST": "query"}

    @extend_schema(
        operation_id="webhooks_list",
        summary="Your webhook subscriptions",
        responses={200: SubscriptionOutput(many=True), **errors()},
        tags=["advertisers"],
    )
    def get(self, request: Request) -> Response:
        rows = WebhookSubscription.objects.filter(client=self.client, is_active=True)
        return Response(SubscriptionOutput(rows, many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Subscribe a URL to events of your campaigns (the signing secret is shown once)",
        description=(
            "Events: `report.reconciled` (a first verdict, and a re-check that changes it), `alert.created`, "
            "`alert.resolved`. Each POST carries `X-Reconcile-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
            "'<t>.<body>' with the secret>`; see the README for the payload schema and a verification example."
        ),
        request=SubscriptionInput,
        responses={201: SubscriptionCreatedOutput, **errors(400)},
        tags=["advertisers"],
    )
    def post(self, request: Request) -> Response:
        data = SubscriptionInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            subscription = services.subscription_create(client=self.client, **data.validated_data)
        except http.Refused as exc:
            raise ValidationError({"url": [str(exc)]}) from None
        except services.SubscriptionLimit as exc:
            raise ValidationError({"url": [str(exc)]}) from None
        return Response(SubscriptionCreatedOutput(subscription).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(WebhookView):
    throttle_scopes = {"DELETE": "query"}

    @extend_schema(
        operation_id="webhooks_delete",
        summary="End a webhook subscription (its delivery log is kept)",
        responses={204: None, **errors(404)},
        tags=["advertisers"],
    )
    def delete(self, request: Request, webhook_id: int) -> Response:
        subscription = (
            WebhookSubscription.objects.filter(pk=webhook_id, client=self.client, is_active=True).first()
            if webhook_id <= MAX_ID
            else None
        )
        if subscription is None:
            raise NotFound()
        services.subscription_deactivate(subscription)
        return Response(status=status.HTTP_204_NO_CONTENT)
