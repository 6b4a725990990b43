"""``Platform.config`` is validated where it is written (model, admin) and read safely where it is used."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from platforms.models import Platform, PlatformConfigError, quota_rps_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("config", [{}, {"quota_rps": 50}, {"quota_rps": 0.5}])
def test_a_valid_config_passes_model_validation(config: dict[str, Any]) -> None:
    Platform(slug="reddit", name="Reddit", config=config).full_clean()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"quota_rps": 0}, "above 0"),
        ({"quota_rps": -3}, "above 0"),
        ({"quota_rps": float("inf")}, "finite"),
        ({"quota_rps": float("nan")}, "finite"),
        ({"quota_rps": "50"}, "number"),
        ({"quota_rps": True}, "number"),
        ({"quota_rps": [50]}, "number"),
        ({"quota_rsp": 50}, "Unknown key(s) quota_rsp"),
        ([50], "JSON object"),
        ("quota_rps=50", "JSON object"),
    ],
)
def test_a_bad_config_is_refused_by_the_model_with_a_clear_message(config: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Platform(slug="reddit", name="Reddit", config=config).full_clean()
    assert message in " ".join(caught.value.message_dict["config"])


def test_the_admin_form_refuses_a_zero_quota() -> None:
    platform = Platform.objects.create(slug="reddit", name="Reddit", config={"quota_rps": 50})
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/admin/platforms/platform/{platform.pk}/change/",
        {"slug": "reddit", "name": "Reddit", "api_base_url": "", "is_active": "on", "config": '{"quota_rps": 0}'},
    )
    assert response.status_code == 200  # the form again, with the error; not a redirect after saving
    assert "quota_rps must be a finite number above 0" in response.content.decode()
    platform.refresh_from_db()
    assert platform.config == {"quota_rps": 50}


@pytest.mark.parametrize("stored", [0, -1, "fast", float("nan"), float("inf"), True])
def test_reading_a_bad_stored_quota_raises_a_typed_error(stored: Any) -> None:
    with pytest.raises(PlatformConfigError, match="quota_rps"):
        quota_rps_of({"quota_rps": stored})


def test_an_absent_quota_is_none_and_a_number_is_a_float() -> None:
    assert quota_rps_of(None) is None and quota_rps_of({}) is None
    assert quota_rps_of({"quota_rps": 12}) == 12.0
