"""Bearer API keys: 401 for no or bad credentials, 403 for genuine keys that may not be used any more."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.api.authentication import APIKeyAuthentication, Principal
from reconciliation.models import AffiliateAPIKey, ClientAPIKey
from reconciliation.services.accounts import AccountError, client_key_create
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db

ME = "/api/v1/affiliates/me"


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error", "request_id"}
    return body["error"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer    ",
        "Bearer not-a-key",
        "Bearer abc.def",
        "Bearer a.b c",
        "Basic dXNlcjpwYXNz",
        "Api-Key abc.def",
        "Bearer " + "x" * 300 + ".y",
    ],
)
def test_missing_or_bad_credentials_are_401_with_www_authenticate(api: APIClient, world: World, header) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = api.get(ME, **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert _error(response)["code"] in {
        "not_authenticated",
        "authentication_failed",
        "invalid_api_key",
        "invalid_authorization_header",
    }


def test_right_prefix_wrong_secret_is_401(api: APIClient, world: World) -> None:
    prefix = world.owner_key.split(".")[0]
    response = api.get(ME, **bearer(f"{prefix}.{'0' * 32}"))
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"


def test_non_ascii_key_is_401(api: APIClient, world: World) -> None:
    response = api.get(ME, HTTP_AUTHORIZATION="Bearer \u00e9\u00e9.\u00e9")
    assert response.status_code == 401


def test_revoked_key_is_403(api: APIClient, world: World) -> None:
    AffiliateAPIKey.objects.filter(affiliate=world.owner).update(revoked=True)
    response = api.get(ME, **bearer(world.owner_key))
    assert response.status_code == 403
    assert _error(response)["code"] == "api_key_revoked"


def test_expired_key_is_403(api: APIClient, world: World) -> None:
    AffiliateAPIKey.objects.filter(affiliate=world.owner).update(expiry_date=timezone.now() - dt.timedelta(seconds=1))
    response = api.get(ME, **bearer(world.owner_key))
    assert response.status_code == 403
    assert _error(response)["code"] == "api_key_expired"


def test_key_with_future_expiry_works(api: APIClient, world: World) -> None:
    AffiliateAPIKey.objects.filter(affiliate=world.owner).update(expiry_date=timezone.now() + dt.timedelta(days=1))
    assert api.get(ME, **bearer(world.owner_key)).status_code == 200


def test_inactive_affiliate_is_403_even_for_submissions(api: APIClient, world: World) -> None:
    world.owner.is_active = False
    world.owner.save()
    response = api.post("/api/v1/submissions/", submission(world.campaign), format="json", **bearer(world.owner_key))
    assert response.status_code == 403
    assert _error(response)["code"] == "affiliate_inactive"


def test_inactive_client_is_403(api: APIClient, world: World) -> None:
    world.client.is_active = False
    world.client.save()
    response = api.get("/api/v1/campaigns/", **bearer(world.client_key))
    assert response.status_code == 403
    assert _error(response)["code"] == "client_inactive"


def test_client_key_on_affiliate_endpoint_is_wrong_kind(api: APIClient, world: World) -> None:
    response = api.get(ME, **bearer(world.client_key))
    assert response.status_code == 403
    assert _error(response) == {"code": "wrong_key_kind", "message": "This endpoint needs an affiliate API key."}


def test_affiliate_key_on_client_endpoint_is_wrong_kind(api: APIClient, world: World) -> None:
    response = api.get("/api/v1/campaigns/", **bearer(world.owner_key))
    assert response.status_code == 403
    assert _error(response)["code"] == "wrong_key_kind"


def test_the_database_refuses_a_client_key_with_the_staff_flag(world: World) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ClientAPIKey.objects.create_key(name="client staff", client=world.client, is_staff=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ClientAPIKey.objects.create_key(name="nobody's", client=None, is_staff=False)


def test_the_key_service_says_why_before_the_database_does(world: World) -> None:
    with pytest.raises(AccountError, match="staff key belongs to no client"):
        client_key_create(client=world.client, name="client staff", is_staff=True)


def test_the_admin_form_refuses_the_mix_with_a_message(world: World) -> None:
    key = ClientAPIKey(name="client staff", client=world.client, is_staff=True)
    with pytest.raises(ValidationError, match="A staff key belongs to no client"):
        key.full_clean()


def test_a_key_that_names_a_client_is_never_staff(world: World) -> None:
    # A row as an older schema allowed it (the constraint now refuses to store one).
    row = ClientAPIKey(name="legacy", client=world.client, is_staff=True, prefix="legacy00")
    principal = APIKeyAuthentication._principal(row)
    assert (principal.kind, principal.client, principal.is_staff) == ("client", world.client, False)


def test_a_client_key_cannot_run_staff_operations_or_read_other_tenants(api: APIClient, world: World) -> None:
    response = api.post(
        "/api/v1/reconciliation/run", {"campaign_id": world.campaign.pk}, format="json", **bearer(world.client_key)
    )
    assert response.status_code == 403
    assert api.get(f"/api/v1/campaigns/{world.other_campaign.pk}", **bearer(world.client_key)).status_code == 404


def test_the_staff_key_has_no_client_and_may_run(api: APIClient, world: World) -> None:
    assert ClientAPIKey.objects.get(prefix=world.staff_key.split(".")[0]).client is None
    response = api.post(
        "/api/v1/reconciliation/run", {"campaign_id": world.campaign.pk}, format="json", **bearer(world.staff_key)
    )
    assert response.status_code == 202


# --- 401: which header to send ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authentication credentials were not provided. Use 'Authorization: Bearer <key>'."),
        ({"HTTP_AUTHORIZATION": "Token abc.def"}, "Use 'Authorization: Bearer <key>'; got scheme 'Token'."),
        ({"HTTP_AUTHORIZATION": "Api-Key abc.def"}, "Use 'Authorization: Bearer <key>'; got scheme 'Api-Key'."),
        ({"HTTP_AUTHORIZATION": "token abc.def"}, "Use 'Authorization: Bearer <key>'; got scheme 'token'."),
        ({"HTTP_X_API_KEY": "abc.def"}, "Use 'Authorization: Bearer <key>'; got an 'X-API-Key' header."),
        ({"HTTP_API_KEY": "abc.def"}, "Use 'Authorization: Bearer <key>'; got an 'Api-Key' header."),
        (
            {"HTTP_AUTHORIZATION": "abc12345.secretsecret"},
            "Use 'Authorization: Bearer <key>'; got an Authorization header without the 'Bearer' scheme.",
        ),
    ],
)
def test_a_401_says_which_header_to_send_and_what_came_instead(
    api: APIClient, world: World, headers: dict[str, Any], message: str
) -> None:
    response = api.get(ME, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    error = _error(response)
    assert error == {"code": "not_authenticated", "message": message}
    assert "secretsecret" not in response.content.decode()  # a bare key is never echoed back


def test_a_bearer_header_without_a_key_says_what_to_send(api: APIClient, world: World) -> None:
    error = _error(api.get(ME, HTTP_AUTHORIZATION="Bearer"))
    assert error["code"] == "invalid_authorization_header"
    assert "Authorization: Bearer <key>" in error["message"]


def test_staff_session_may_run_and_read_campaigns(api: APIClient, world: World, staff_user) -> None:
    api.force_login(staff_user)
    assert api.post("/api/v1/reconciliation/run", {"status": "PENDING"}, format="json").status_code == 202
    assert api.get(f"/api/v1/campaigns/{world.other_campaign.pk}").status_code == 200


def test_staff_session_cannot_use_affiliate_endpoints(api: APIClient, world: World, staff_user) -> None:
    api.force_login(staff_user)
    response = api.get(ME)
    assert response.status_code == 401  # affiliate endpoints accept API keys only


def test_non_staff_session_is_refused_staff_run(api: APIClient, world: World, django_user_model) -> None:
    user = django_user_model.objects.create_user("someone", "s@example.com", "pw-someone-1")
    api.force_login(user)
    response = api.post("/api/v1/reconciliation/run", {"status": "PENDING"}, format="json")
    assert response.status_code == 403
    assert _error(response)["code"] == "staff_only"


def test_staff_session_post_needs_csrf(world: World, staff_user) -> None:
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(staff_user)
    response = api.post("/api/v1/reconciliation/run", {"status": "PENDING"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in _error(response)["message"]


def test_principal_identifies_the_caller_and_key(api: APIClient, world: World) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from reconciliation.api.authentication import APIKeyAuthentication

    request = Request(APIRequestFactory().get(ME, **bearer(world.owner_key)))
    result = APIKeyAuthentication().authenticate(request)
    assert result is not None
    principal, key_row = result
    assert isinstance(principal, Principal)
    assert principal.kind == "affiliate" and principal.affiliate == world.owner
    assert principal.is_authenticated and key_row.affiliate_id == world.owner.pk
