"""``POST /api/v1/affiliates/me/chat-link-code``: the one-time code that links a chat account."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from chat import services
from chat.parsing import LINK_USAGE
from reconciliation.api.schema import errors
from reconciliation.api.views import AffiliateView


class ChatLinkCodeOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Shown once; type it in chat as `/link <code>`.")
    expires_at = serializers.DateTimeField()
    instructions = serializers.CharField()


class ChatLinkCodeView(AffiliateView):
    """Affiliates: a code to link your Discord or Slack account."""

    throttle_scopes = {"POST": "submission"}

    @extend_schema(
        operation_id="affiliate_chat_link_code",
        summary="A one-time code to link your Discord or Slack account",
        description=(
            f"Valid {int(services.LINK_CODE_TTL.total_seconds() // 60)} minutes, single use; a new code ends "
            "the earlier unused ones. Send `/link <code>` to the app in Discord or Slack: that chat account "
            "then submits claims (`/claim`) as you."
        ),
        request=None,
        responses={
            201: OpenApiResponse(
                ChatLinkCodeOutput,
                description="A new code.",
                examples=[
                    OpenApiExample(
                        "code",
                        value={
                            "code": "K7QM-3XPA",
                            "expires_at": "2026-11-29T21:45:00Z",
                            "instructions": "Send /link K7QM-3XPA to the app in Discord or Slack within 15 minutes.",
                        },
                        status_codes=["201"],
                    )
                ],
            ),
            **errors(),
        },
        tags=["affiliates"],
    )
    def post(self, request: Request) -> Response:
        issued = services.link_code_issue(affiliate=self.affiliate, now=timezone.now())
        minutes = int(services.LINK_CODE_TTL.total_seconds() // 60)
        body = {
            "code": issued.code,
            "expires_at": issued.expires_at,
            "instructions": f"Send {LINK_USAGE.replace('<code>', issued.code)} to the app in Discord or Slack "
            f"within {minutes} minutes.",
        }
        return Response(ChatLinkCodeOutput(body).data, status=status.HTTP_201_CREATED)
