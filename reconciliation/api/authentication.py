"""``Authorization: Bearer <api key>`` over djangorestframework-api-key's hashed key rows.

The library only offers a *permission* (``HasAPIKey``); throttling, logging and tenant scoping need to
know *who* is calling, so this authentication class resolves the key to a :class:`Principal` (the
affiliate, the client or a staff key) and puts the key row in ``request.auth``.

Outcomes: no ``Bearer`` credential → not authenticated here (401 unless a staff session is accepted);
unknown or malformed key → 401; revoked or expired key, inactive affiliate or client → 403 (the key is
genuine, the caller is just not allowed any more). The wrong kind of key for an endpoint is a 403 from
the permissions.

Why there is no verification cache: keys made by this library version are hashed with a single SHA-512
(measured 1.4 µs per check; PBKDF2 at Django's default iterations would be ~190 ms, and the library
re-hashes such legacy keys to SHA-512 on first use). A request costs one indexed query on the key's
unique prefix, which also sees a revocation immediately; a cache would only add a window in which a
revoked key still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from reconciliation.models import Affiliate, AffiliateAPIKey, Client, ClientAPIKey

PrincipalKind = Literal["affiliate", "client", "staff"]

#: ``<prefix>.<secret>``: 8 + 1 + 32 characters today; anything much longer is not one of our keys.
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, eq=False)
class Principal:
    """Who is calling with an API key. Stands in for ``request.user`` (DRF and Django only read a few attrs)."""

    kind: PrincipalKind
    key: AffiliateAPIKey | ClientAPIKey
    affiliate: Affiliate | None = None
    client: Client | None = None
    is_staff: bool = False

    is_authenticated = True
    is_anonymous = False
    is_active = True

    @property
    def pk(self) -> str:
        return f"{self.kind}:{self.key.prefix}"

    id = pk

    @property
    def username(self) -> str:
        return self.pk

    def get_username(self) -> str:
        return self.pk

    def __str__(self) -> str:
        return f"{self.kind} key {self.key.prefix}"


def credential_of(request: Request) -> tuple[str, str] | None:
    """(owner kind, owner id) of the credential that authenticated ``request``: the throttle and
    Idempotency-Key scope. ``None`` when not authenticated."""
    user: Any = request.user
    if isinstance(user, Principal):
        kind = "affiliate_key" if isinstance(user.key, AffiliateAPIKey) else "client_key"
        return kind, str(user.key.pk)
    if user is not None and getattr(user, "is_authenticated", False):
        return "user", str(user.pk)
    return None


class APIKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Principal, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <api key>'.", code="invalid_authorization_header"
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key") from None
        prefix, dot, secret = key.partition(".")
        if not (prefix and dot and secret) or len(key) > MAX_KEY_LENGTH:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        row = self._find(key, prefix)
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if row.revoked:
            raise exceptions.PermissionDenied("This API key has been revoked.", code="api_key_revoked")
        if row.has_expired:
            raise exceptions.PermissionDenied("This API key has expired.", code="api_key_expired")
        principal = self._principal(row)
        return principal, row

    @staticmethod
    def _find(key: str, prefix: str) -> AffiliateAPIKey | ClientAPIKey | None:
        # Prefixes are unique per table; in the unlikely case both tables share one, the hash decides.
        affiliate_key = AffiliateAPIKey.objects.select_related("affiliate").filter(prefix=prefix).first()
        if affiliate_key is not None and affiliate_key.is_valid(key):
            return affiliate_key
        client_key = ClientAPIKey.objects.select_related("client").filter(prefix=prefix).first()
        if client_key is not None and client_key.is_valid(key):
            return client_key
        return None

    @staticmethod
    def _principal(row: AffiliateAPIKey | ClientAPIKey) -> Principal:
        if isinstance(row, AffiliateAPIKey):
            if not row.affiliate.is_active:
                raise exceptions.PermissionDenied("This affiliate account is inactive.", code="affiliate_inactive")
            return Principal(kind="affiliate", key=row, affiliate=row.affiliate)
        if row.client is not None:
            if not row.client.is_active:
                raise exceptions.PermissionDenied("This client account is inactive.", code="client_inactive")
            return Principal(kind="client", key=row, client=row.client, is_staff=row.is_staff)
        return Principal(kind="staff", key=row, is_staff=True)

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
