"""Start-up refuses bad settings with a message that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reconcile_project.settings", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RECONCILIATION_SETTINGS__LOW_MAX", "0.5", "RECONCILIATION_SETTINGS.low_max"),
        ("RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT", "0.15", "RECONCILIATION_SETTINGS.base_tolerance_pct"),
        ("TRUST_SCORING__PERFECT_MATCH", "-0.01", "TRUST_SCORING.perfect_match"),
        ("TRUST_SCORING__OVERCLAIM", "0.1", "TRUST_SCORING.overclaim"),
        ("RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT", "1.5", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT"),
        ("RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT", "-0.1", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT"),
        ("RETRY_POLICY__MAX_ATTEMPTS", "five", "RETRY_POLICY__MAX_ATTEMPTS"),
        ("CIRCUIT_BREAKER__FAILURE_THRESHOLD", "0", "CIRCUIT_BREAKER__FAILURE_THRESHOLD"),
        ("DEBUG", "maybe", "DEBUG"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("REDIS_URL", "http://nope", "REDIS_URL"),
    ],
)
def test_bad_setting_makes_check_fail_naming_it(variable: str, value: str, message: str) -> None:
    result = manage("check", **{variable: value})
    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_default_settings_pass_check() -> None:
    result = manage("check")
    assert result.returncode == 0, result.stderr


def test_production_requires_secret_key() -> None:
    result = manage("check", DJANGO_ENV="production", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_deploy_check_passes_with_production_settings() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        SECRET_KEY="x" * 20 + "a-real-production-secret-key-of-length-50+",
        ALLOWED_HOSTS="reconcile.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_migrations_are_complete() -> None:
    result = manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_is_off_unless_asked_for() -> None:
    from django.conf import settings

    assert os.environ.get("DEBUG") or settings.DEBUG is False


# One float field per settings group: inf and nan are refused (a NaN passes every ge/le bound, and an
# infinite threshold or delay ends up in an alert's JSON or a date computation), naming the variable.
NON_FINITE_CASES = [
    ("RECONCILIATION_SETTINGS", "RECONCILIATION_SETTINGS__OVERCLAIM_CRITICAL_PCT"),
    ("RETRY_POLICY", "RETRY_POLICY__WINDOW_HOURS"),
    ("TRUST_SCORING", "TRUST_SCORING__OVERCLAIM"),
    ("ALERTING_SETTINGS", "ALERTING_SETTINGS__REPEAT_WINDOW_HOURS"),
    ("DATA_QUALITY_SETTINGS", "DATA_QUALITY_SETTINGS__MAX_GROWTH_PCT"),
    ("CIRCUIT_BREAKER", "CIRCUIT_BREAKER__OPEN_COOLDOWN_SECONDS"),
    ("BACKOFF_POLICY", "BACKOFF_POLICY__MAX_DELAY_SECONDS"),
    ("RATE_LIMIT_SETTINGS", "RATE_LIMIT_SETTINGS__PLATFORM_DEFAULT_RPS"),
]


def test_every_settings_group_is_covered_by_the_non_finite_cases() -> None:
    from reconcile_project.config import GROUPS

    assert {group for group, _ in NON_FINITE_CASES} == set(GROUPS)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
@pytest.mark.parametrize(("group", "variable"), NON_FINITE_CASES)
def test_a_non_finite_number_is_refused_in_every_group_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, group: str, variable: str, value: str
) -> None:
    from reconcile_project.config import GROUPS, load_group

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        load_group(group, GROUPS[group][1])


def test_a_non_finite_setting_makes_check_fail_naming_it() -> None:
    result = manage("check", RETRY_POLICY__WINDOW_HOURS="inf")
    assert result.returncode != 0
    assert "RETRY_POLICY__WINDOW_HOURS" in result.stderr + result.stdout
