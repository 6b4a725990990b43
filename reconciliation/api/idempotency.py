"""The ``Idempotency-Key`` header at the edge: validate it, fingerprint the request, replay or run.

The bookkeeping (one row per key, the advisory lock, the 24 h window) is the service
:mod:`reconciliation.services.idempotency`; this module turns a view's work into the (status, JSON
body) that service stores, and the stored pair back into a response.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from reconciliation.api.authentication import credential_of
from reconciliation.api.exceptions import api_exception_handler
from reconciliation.services.idempotency import MAX_KEY_LENGTH, idempotent_call, request_fingerprint

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Visible ASCII, 1 to 255 characters (a UUID is the usual choice).
KEY_PATTERN = rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$"
_KEY_RE = re.compile(KEY_PATTERN)


def idempotency_key(request: Request) -> str | None:
    """The request's key, validated; None when the header is absent."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY_RE.match(key):
        raise ValidationError({HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (e.g. a UUID)."]})
    return key


def _as_json(data: Any) -> Any:
    # What the client receives, exactly: stored and replayed byte-for-byte equivalent.
    return json.loads(JSONRenderer().render(data))


def run_idempotent(
    request: Request, view: Any, *, key: str | None, now: dt.datetime, produce: Callable[[], Response]
) -> Response:
    """``produce()`` once per (credential, key); a replay answers the stored response."""
    if key is None:
        return produce()
    owner = credential_of(request)
    assert owner is not None, "idempotent endpoints require authentication"
    request_hash = request_fingerprint(method=request.method or "", path=request.path, data=request.data)

    def call() -> tuple[int, Any]:
        try:
            response = produce()
        except Exception as exc:
            # Client errors are part of the outcome and are replayed too; anything else propagates and
            # rolls back the transaction, so the key is forgotten and the client may retry.
            handled = api_exception_handler(exc, view.get_exception_handler_context())
            if handled is None or handled.status_code >= 500:
                raise
            response = handled
        return response.status_code, _as_json(response.data)

    stored = idempotent_call(
        owner_kind=owner[0], owner_id=owner[1], key=key, request_hash=request_hash, now=now, produce=call
    )
    response = Response(stored.body, status=stored.status)
    if stored.replayed:
        response[REPLAYED_HEADER] = "true"
    return response
