from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests import factories

pytestmark = pytest.mark.django_db


def test_campaign_overrides_apply_on_top_of_global_rules() -> None:
    campaign = factories.campaign(rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 0.12}})
    rules = campaign.ruleset()
    assert rules.reconciliation.low_max == 0.12
    assert rules.reconciliation.medium_max == 0.20


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"RECONCILIATION_SETTINGS": {"low_max": 0.5}}, "RECONCILIATION_SETTINGS.low_max"),
        ({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 1.5}}, "RECONCILIATION_SETTINGS.base_tolerance_pct"),
        ({"TRUST_SCORING": {"perfect_match": -0.01}}, "TRUST_SCORING.perfect_match"),
        ({"RETRY_POLICY": {"max_attempts": 0}}, "RETRY_POLICY.max_attempts"),
        ({"RETRY_POLICY": {"no_such_setting": 1}}, "RETRY_POLICY.no_such_setting"),
        ({"CIRCUIT_BREAKER": {"failure_threshold": 2}}, "CIRCUIT_BREAKER"),
    ],
)
def test_invalid_overrides_are_refused_naming_the_setting(overrides: dict, named: str) -> None:
    campaign = factories.campaign()
    campaign.rule_overrides = overrides
    with pytest.raises(ValidationError) as exc:
        campaign.full_clean()
    assert named in str(exc.value)


def test_effective_recheck_defaults_to_global_rules() -> None:
    assert factories.campaign().effective_recheck() == (6.0, 7.0)
    assert factories.campaign(recheck_interval_hours=2, recheck_window_days=0).effective_recheck() == (2.0, 0.0)
