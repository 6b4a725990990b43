"""Is this request really from Discord / Slack? Each platform's documented signature scheme.

Pure: the time is a parameter. Both refuse a timestamp more than :data:`MAX_AGE_SECONDS` away from
``now`` (either way), so a captured request cannot be replayed later.

- Discord: Ed25519 over ``X-Signature-Timestamp`` + the raw body, with the application's public key
  (hex, from the developer portal); the signature is ``X-Signature-Ed25519`` (hex).
- Slack: ``X-Slack-Signature`` is ``v0=`` + hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw
  body}`` keyed with the app's signing secret, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_AGE_SECONDS = 300


class SignatureRejected(Exception):
    """Not a genuine, fresh request; the reason is for the log and the 401, never a secret."""


def _fresh(timestamp: str, *, now: float) -> None:
    if not timestamp:
        raise SignatureRejected("the timestamp header is missing")
    # ASCII digits only: int() would also take " 12", "1_2" or other scripts' digits.
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise SignatureRejected("the timestamp is not a number of seconds")
    sent = int(timestamp)
    if abs(now - sent) > MAX_AGE_SECONDS:
        raise SignatureRejected(f"the timestamp is more than {MAX_AGE_SECONDS} seconds away from now")


def discord_public_key(hex_key: str) -> Ed25519PublicKey:
    """The application's public key from its hex form; ValueError when it is not one."""
    raw = bytes.fromhex(hex_key.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex characters)")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_discord(*, public_key: str, signature: str, timestamp: str, body: bytes, now: float) -> None:
    """Raises SignatureRejected unless ``signature`` signs ``timestamp + body`` and the time is fresh."""
    if not signature:
        raise SignatureRejected("the X-Signature-Ed25519 header is missing")
    _fresh(timestamp, now=now)
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        raise SignatureRejected("the signature is not hex") from None
    try:
        discord_public_key(public_key).verify(sig, timestamp.encode() + body)
    except InvalidSignature:
        raise SignatureRejected("the signature does not match") from None


def slack_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def verify_slack(*, secret: str, signature: str, timestamp: str, body: bytes, now: float) -> None:
    """Raises SignatureRejected unless ``signature`` is Slack's v0 signature of this body, fresh."""
    if not signature:
        raise SignatureRejected("the X-Slack-Signature header is missing")
    _fresh(timestamp, now=now)
    expected = slack_signature(secret=secret, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureRejected("the signature does not match")
