"""The breaker's settings group: in-flight cap, lease and slow-call threshold, checked at start-up."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reconcile_project.checks import check_in_flight_lease_covers_a_call
from reconcile_project.config import BackoffPolicy, CircuitBreakerSettings


def test_defaults_cap_calls_in_flight_and_count_slow_calls() -> None:
    defaults = CircuitBreakerSettings.model_validate({})
    assert (defaults.max_in_flight, defaults.in_flight_lease_seconds, defaults.slow_call_seconds) == (16, 60, 8.0)


@pytest.mark.parametrize(
    "field, value", [("max_in_flight", 0), ("in_flight_lease_seconds", 0), ("slow_call_seconds", -1)]
)
def test_out_of_range_values_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        CircuitBreakerSettings.model_validate({field: value})


def test_a_lease_shorter_than_one_call_refuses_to_start(settings: Any) -> None:
    settings.BACKOFF_POLICY = BackoffPolicy.model_validate({"connect_timeout_seconds": 3, "read_timeout_seconds": 10})
    settings.CIRCUIT_BREAKER = CircuitBreakerSettings.model_validate({"in_flight_lease_seconds": 12})
    [error] = check_in_flight_lease_covers_a_call()
    assert error.id == "reconcile.E020" and "in_flight_lease_seconds" in error.msg

    settings.CIRCUIT_BREAKER = CircuitBreakerSettings.model_validate({"in_flight_lease_seconds": 13})
    assert check_in_flight_lease_covers_a_call() == []
