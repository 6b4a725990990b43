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

A staff key belongs to no client (a database constraint on ``ClientAPIKey``): a key that names a client is
that client's, never staff, so a tenant key can never act on other tenants.

Failed authentications (an unknown or malformed key) are counted per client address
(:class:`~reconciliation.api.throttling.FailedAuthThrottle`, ``AUTH_FAILURE_RATE``); past the limit the
address's key attempts answer 429 with ``Retry-After``, whatever the key (a right, revoked or wrong-kind
one too). For the API's views (``checks_auth_failures_in_throttle``) a good key's check is left to the
view's throttle, which asks in the same Redis round trip as the rate limit; elsewhere it is asked here,
before the key is looked up.

A 401 says what to send: ``Authorization: Bearer <key>``, naming the scheme or header that was used
instead (``Token``, ``Api-Key``, ``X-API-Key``) — see :func:`not_authenticated_message`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from django.db import connection
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from reconcile_project import sqlrows
from reconciliation.api.throttling import AUTH_FAILURES_PENDING, FailedAuthThrottle, auth_failures_blocked
from reconciliation.models import Affiliate, AffiliateAPIKey, Client, ClientAPIKey

PrincipalKind = Literal["affiliate", "client", "staff"]

#: ``<prefix>.<secret>``: 8 + 1 + 32 characters today; anything much longer is not one of our keys.
MAX_KEY_LENGTH = 200

EXPECTED = "Use 'Authorization: Bearer <key>'"
#: Other headers clients put API keys in; named in the 401 so the fix is obvious.
OTHER_KEY_HEADERS = ("X-API-Key", "Api-Key", "X-Api-Token")
#: What an authorization scheme looks like (``Token``, ``Api-Key``); anything else is never echoed back,
#: since a client that sent the bare key would otherwise see it in the error and in the logs.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,19}")


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


def not_authenticated_message(request: Request) -> str:
    """The 401 text for a request that sent no usable credentials: what to send, and what was sent instead."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.strip():
        scheme = header.split()[0]
        if scheme.lower() == APIKeyAuthentication.keyword.lower():
            return f"{EXPECTED}; the key is missing."
        if _SCHEME.fullmatch(scheme) and len(header.split()) > 1:
            return f"{EXPECTED}; got scheme '{scheme}'."
        return f"{EXPECTED}; got an Authorization header without the 'Bearer' scheme."
    for name in OTHER_KEY_HEADERS:
        if request.headers.get(name):
            return f"{EXPECTED}; got an '{name}' header."
    return f"Authentication credentials were not provided. {EXPECTED}."


def _affiliate_key(prefix: str) -> AffiliateAPIKey | None:
    """The affiliate key with this prefix, its affiliate loaded: every affiliate request's one query, so in
    SQL written once (reconcile_project.sqlrows) rather than compiled by the ORM each time."""
    if connection.vendor != "postgresql":
        return AffiliateAPIKey.objects.select_related("affiliate").filter(prefix=prefix).first()
    with connection.cursor() as cursor:
        cursor.execute(_affiliate_key_sql(), [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    (key, affiliate), _ = sqlrows.split(row, AffiliateAPIKey, Affiliate)
    key.affiliate = affiliate
    return key


@functools.cache
def _affiliate_key_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT {sqlrows.select_list(AffiliateAPIKey, 'k')}, {sqlrows.select_list(Affiliate, 'a')} "
        f"FROM {quote(AffiliateAPIKey._meta.db_table)} k JOIN {quote(Affiliate._meta.db_table)} a "
        "ON a.id = k.affiliate_id WHERE k.prefix = %s"
    )


class APIKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Principal, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            # No key at all (or several words): a client bug, not a guess, so not counted.
            raise exceptions.AuthenticationFailed(
                f"Invalid Authorization header: {EXPECTED[0].lower()}{EXPECTED[1:]}.",
                code="invalid_authorization_header",
            )
        throttle = FailedAuthThrottle()
        view = (getattr(request, "parser_context", None) or {}).get("view")
        deferred = getattr(view, "checks_auth_failures_in_throttle", False)
        if not deferred:
            self._refuse_if_blocked(throttle, request)
        try:
            row = self._verified(parts[1])
        except exceptions.AuthenticationFailed:
            if deferred:
                self._refuse_if_blocked(throttle, request)
            throttle.record_failure(request)
            raise
        refusal: exceptions.APIException | None = None
        principal: Principal | None = None
        if row.revoked:
            refusal = exceptions.PermissionDenied("This API key has been revoked.", code="api_key_revoked")
        elif row.has_expired:
            refusal = exceptions.PermissionDenied("This API key has expired.", code="api_key_expired")
        else:
            try:
                principal = self._principal(row)
            except exceptions.APIException as exc:
                refusal = exc
        if refusal is not None or principal is None:
            # A blocked address learns nothing about its key, a real but refused one included.
            if deferred:
                self._refuse_if_blocked(throttle, request)
            raise refusal or exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if deferred:
            # The view's throttle asks "is this address blocked?" in its own Redis round trip, before the
            # permissions run (ApiView.initial), instead of a round trip of its own here.
            setattr(getattr(request, "_request", request), AUTH_FAILURES_PENDING, True)
        return principal, row

    @staticmethod
    def _refuse_if_blocked(throttle: FailedAuthThrottle, request: Request) -> None:
        wait = throttle.blocked_for(request)
        if wait is not None:
            raise auth_failures_blocked(wait)

    def _verified(self, credential: bytes) -> AffiliateAPIKey | ClientAPIKey:
        """The key row ``credential`` names; AuthenticationFailed (a counted failure) otherwise."""
        try:
            key = credential.decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key") from None
        prefix, dot, secret = key.partition(".")
        if not (prefix and dot and secret) or len(key) > MAX_KEY_LENGTH:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        row = self._find(key, prefix)
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        return row

    @staticmethod
    def _find(key: str, prefix: str) -> AffiliateAPIKey | ClientAPIKey | None:
        # Prefixes are unique per table; in the unlikely case both tables share one, the hash decides.
        affiliate_key = _affiliate_key(prefix)
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
            # A client's key is that tenant's, whatever its is_staff says (the database refuses the mix):
            # staff rights would let it read and re-run every other client's campaigns.
            return Principal(kind="client", key=row, client=row.client)
        if row.is_staff:
            return Principal(kind="staff", key=row, is_staff=True)
        raise exceptions.PermissionDenied("This API key belongs to no account.", code="api_key_orphaned")

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
