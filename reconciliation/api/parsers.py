"""JSON in, JSON out, with a body cap.

DRF's JSONParser reads the request stream directly, which bypasses Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` check (that one guards ``request.body`` and form parsing only), so the
cap is enforced here: by the declared Content-Length first, then by what is actually read.
Deeply nested JSON makes the decoder raise RecursionError, which DRF does not catch; it is a 400 here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import NotAcceptable, ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]

from reconciliation.api.errors import PayloadTooLarge

#: Used when DATA_UPLOAD_MAX_MEMORY_SIZE is None (no cap configured): still never read unbounded bodies.
FALLBACK_LIMIT = 64 * 1024


def body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or FALLBACK_LIMIT


class CappedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        limit = body_limit()
        request = parser_context.get("request")
        declared = 0
        if request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
        if declared > limit:
            raise PayloadTooLarge(f"Request body too large (at most {limit} bytes).")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body too large (at most {limit} bytes).")
        encoding = get_encoding(parser_context)
        try:
            text = raw.decode(encoding)
            return json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """When ``Accept`` asks for nothing the view can render, answer in its first format (JSON) rather
    than 406: there is one representation, and an error must never become a 406 about the error's format."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: str | None = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            first = list(renderers)[0]
            return first, first.media_type
