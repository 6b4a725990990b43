"""The chat settings: a malformed Discord key or application id stops start-up, naming the variable."""

from __future__ import annotations

from typing import Any

import pytest

from chat.checks import check_chat_settings
from tests.test_settings import manage


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DISCORD_PUBLIC_KEY", "not-hex"),
        ("DISCORD_PUBLIC_KEY", "ab" * 31),
        ("DISCORD_APPLICATION_ID", "my-app"),
    ],
)
def test_a_malformed_discord_setting_is_an_error_naming_it(settings: Any, variable: str, value: str) -> None:
    setattr(settings, variable, value)
    errors = check_chat_settings()
    assert len(errors) == 1 and errors[0].msg.startswith(f"{variable}: ")


def test_unset_or_well_formed_settings_pass(settings: Any) -> None:
    settings.DISCORD_PUBLIC_KEY = ""
    settings.DISCORD_APPLICATION_ID = ""
    assert check_chat_settings() == []
    settings.DISCORD_PUBLIC_KEY = "ab" * 32
    settings.DISCORD_APPLICATION_ID = "1000000000000000001"
    assert check_chat_settings() == []


def test_start_up_refuses_a_malformed_public_key() -> None:
    result = manage("check", DISCORD_PUBLIC_KEY="0123")
    assert result.returncode != 0
    assert "DISCORD_PUBLIC_KEY: expected the application's public key" in result.stdout + result.stderr
