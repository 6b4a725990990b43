"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` (README "Signatures").

Header: ``X-Reconcile-Signature: t=<unix seconds>,v1=<hex digest>``. The timestamp is inside the signed
text, so a receiver that rejects old timestamps also rejects replays of a captured request.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Reconcile-Signature"
EVENT_HEADER = "X-Reconcile-Event"
DELIVERY_HEADER = "X-Reconcile-Delivery"
#: Receivers should refuse signatures older than this (the README's example does).
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """The receiving side, as the README describes it (used by the sandbox's inbox)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={parts.get('v1', '')}")
