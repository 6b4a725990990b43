"""Start-up refuses bad settings with a message that names the variable."""

from __future__ import annotations

import json
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


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "x" * 20 + "a-real-production-secret-key-of-length-50+",
    "ALLOWED_HOSTS": "reconcile.example.com",
    "METRICS_TOKEN": "a-long-random-metrics-token-0123456789",
}
SANDBOX_WARNING = "Platforms use the sandbox in production"


def real_platforms(**overrides: str) -> dict[str, str]:
    """Every platform's base URL and credentials, as a production deployment sets them."""
    from django.conf import settings

    env = {}
    for slug, keys in settings.PLATFORM_CREDENTIAL_KEYS.items():
        env[f"PLATFORM_{slug.upper()}_BASE_URL"] = f"https://api.{slug}.example.com"
        for key in keys:
            env[f"PLATFORM_{slug.upper()}_{key.upper()}"] = f"real-{slug}-{key}"
    return {**env, **overrides}


def test_deploy_check_passes_with_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, **real_platforms())
    assert result.returncode == 0, result.stdout + result.stderr
    assert SANDBOX_WARNING not in result.stderr


def test_production_refuses_every_platform_without_a_real_api() -> None:
    result = manage("check", "--deploy", **PRODUCTION)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    from django.conf import settings

    for slug in settings.PLATFORM_SLUGS:
        assert f"platform '{slug}' has no real API configured: PLATFORM_{slug.upper()}_BASE_URL" in output
    assert "PLATFORM_X_CONSUMER_SECRET" in output and "PLATFORMS_USE_SANDBOX=true" in output


def test_production_names_the_one_platform_left_on_the_sandbox() -> None:
    from django.conf import settings

    env = real_platforms(PLATFORM_META_BASE_URL=f"{settings.SANDBOX_URL}/meta", PLATFORM_REDDIT_ACCESS_TOKEN="")
    result = manage("check", **PRODUCTION, **env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "platform 'meta' has no real API configured: PLATFORM_META_BASE_URL is unset" in output
    assert "platform 'reddit' has no real API configured: PLATFORM_REDDIT_ACCESS_TOKEN is unset" in output
    assert "'youtube'" not in output


def test_production_on_the_sandbox_needs_the_flag_and_warns_at_every_start() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", PLATFORMS_USE_SANDBOX="true", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if SANDBOX_WARNING in line]
    assert len(warnings) == 1
    assert json.loads(warnings[0])["level"] == "WARNING"
    assert json.loads(warnings[0])["platforms"] == ["reddit", "instagram", "tiktok", "youtube", "x", "meta"]


def test_production_requires_a_metrics_token() -> None:
    result = manage("check", **{**PRODUCTION, "METRICS_TOKEN": ""}, **real_platforms())
    assert result.returncode != 0
    assert "METRICS_TOKEN: required when DJANGO_ENV=production" in result.stdout + result.stderr


def test_development_uses_the_sandbox_without_the_flag_and_quietly() -> None:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.PLATFORM_API['meta']['base_url'])",
        DJANGO_ENV="development",
        LOG_FILE="",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/meta") and SANDBOX_WARNING not in result.stderr
    assert manage("check", DJANGO_ENV="development", LOG_FILE="").returncode == 0


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
    ("RECONCILE_BATCH", "RECONCILE_BATCH__FILL_WAIT_SECONDS"),
    ("NOTIFICATIONS", "NOTIFICATIONS__INITIAL_DELAY_SECONDS"),
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
