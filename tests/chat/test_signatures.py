"""Discord's and Slack's request signatures, checked as each platform specifies (pure: no database)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chat.signatures import MAX_AGE_SECONDS, SignatureRejected, discord_public_key, verify_discord, verify_slack
from tests.chat.conftest import public_hex

NOW = 1_764_450_000
BODY = b'{"type":1}'


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def signed(key: Ed25519PrivateKey, timestamp: str, body: bytes = BODY) -> str:
    return key.sign(timestamp.encode() + body).hex()


def test_discord_signature_over_timestamp_and_body_is_accepted(key: Ed25519PrivateKey) -> None:
    stamp = str(NOW)
    verify_discord(public_key=public_hex(key), signature=signed(key, stamp), timestamp=stamp, body=BODY, now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": BODY + b" "}, "does not match"),
        ({"timestamp": str(NOW - 1)}, "does not match"),
        ({"signature": ""}, "header is missing"),
        ({"signature": "zz"}, "not hex"),
        ({"signature": "00" * 64}, "does not match"),
        ({"timestamp": ""}, "timestamp header is missing"),
        ({"timestamp": " 12"}, "not a number of seconds"),
    ],
)
def test_discord_signature_refused(key: Ed25519PrivateKey, change: dict, reason: str) -> None:
    stamp = str(NOW)
    given = {"signature": signed(key, stamp), "timestamp": stamp, "body": BODY, **change}
    with pytest.raises(SignatureRejected, match=reason):
        verify_discord(public_key=public_hex(key), now=NOW, **given)


def test_discord_signature_by_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    stamp = str(NOW)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify_discord(public_key=public_hex(key), signature=signed(other, stamp), timestamp=stamp, body=BODY, now=NOW)


@pytest.mark.parametrize("offset", [MAX_AGE_SECONDS + 1, -(MAX_AGE_SECONDS + 1), 86_400])
def test_discord_stale_or_future_timestamp_is_refused_even_when_signed(key: Ed25519PrivateKey, offset: int) -> None:
    stamp = str(NOW - offset)
    with pytest.raises(SignatureRejected, match="more than 300 seconds"):
        verify_discord(public_key=public_hex(key), signature=signed(key, stamp), timestamp=stamp, body=BODY, now=NOW)


@pytest.mark.parametrize("offset", [MAX_AGE_SECONDS, -MAX_AGE_SECONDS])
def test_discord_timestamp_at_the_limit_is_accepted(key: Ed25519PrivateKey, offset: int) -> None:
    stamp = str(NOW - offset)
    verify_discord(public_key=public_hex(key), signature=signed(key, stamp), timestamp=stamp, body=BODY, now=NOW)


@pytest.mark.parametrize("bad", ["", "abc", "00" * 31, "00" * 33])
def test_discord_public_key_must_be_32_hex_bytes(bad: str) -> None:
    with pytest.raises(ValueError):
        discord_public_key(bad)


SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
FORM = b"token=x&team_id=T1&user_id=U1&command=%2Fclaim&text=a+b"


def slack_sig(timestamp: str, body: bytes = FORM, secret: str = SECRET) -> str:
    # Computed here from Slack's description, independently of the code under test.
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def test_slack_signature_is_accepted() -> None:
    stamp = str(NOW)
    verify_slack(secret=SECRET, signature=slack_sig(stamp), timestamp=stamp, body=FORM, now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": FORM + b"&x=1"}, "does not match"),
        ({"signature": slack_sig(str(NOW), secret="another-secret")}, "does not match"),
        ({"signature": slack_sig(str(NOW)).removeprefix("v0=")}, "does not match"),
        ({"signature": slack_sig(str(NOW)).replace("v0=", "v1=")}, "does not match"),
        ({"signature": ""}, "header is missing"),
        ({"timestamp": ""}, "timestamp header is missing"),
        ({"timestamp": "soon"}, "not a number of seconds"),
    ],
)
def test_slack_signature_refused(change: dict, reason: str) -> None:
    given = {"signature": slack_sig(str(NOW)), "timestamp": str(NOW), "body": FORM, **change}
    with pytest.raises(SignatureRejected, match=reason):
        verify_slack(secret=SECRET, now=NOW, **given)


@pytest.mark.parametrize("offset", [MAX_AGE_SECONDS + 1, -(MAX_AGE_SECONDS + 1)])
def test_slack_stale_timestamp_is_refused_even_when_signed(offset: int) -> None:
    stamp = str(NOW - offset)
    with pytest.raises(SignatureRejected, match="more than 300 seconds"):
        verify_slack(secret=SECRET, signature=slack_sig(stamp), timestamp=stamp, body=FORM, now=NOW)
