"""Typed rule settings (DESIGN §4), read from the environment.

Each group is a frozen pydantic model. A group's fields can be overridden from the environment as
``<GROUP>__<FIELD>`` (``RETRY_POLICY__MAX_ATTEMPTS=3``) and, per campaign, through the campaign's
``rule_overrides`` JSON (``{"RECONCILIATION_SETTINGS": {"low_max": 0.12}}``).

This module imports nothing from Django so that the pure rules can take these models as inputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseSettings):
    """A settings group: frozen, strict about unknown keys, read from ``<GROUP>__<FIELD>``.

    Field types and ranges are enforced when the group is read; rules between fields are reported by
    :meth:`consistency_errors` (a Django system check at start-up, and campaign override validation).
    ``inf`` and ``nan`` are refused for every float: a bound compares false with NaN (``Field(ge=0)``
    lets it through), and an infinite threshold or delay is not a setting but an accident that ends up
    in an alert's JSON (which PostgreSQL rejects) or a date computation.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=False, allow_inf_nan=False)

    def consistency_errors(self) -> list[tuple[str, str]]:
        """(field, message) for each rule between fields that this group breaks."""
        return []


class ReconciliationSettings(_Group):
    model_config = SettingsConfigDict(env_prefix="RECONCILIATION_SETTINGS__")

    #: A claim within this relative difference of the platform counts as MATCHED.
    base_tolerance_pct: float = Field(0.05, ge=0, le=1)
    #: Upper bounds (inclusive) of the LOW and MEDIUM discrepancy bands.
    low_max: float = Field(0.10, ge=0, le=1)
    medium_max: float = Field(0.20, ge=0, le=1)
    #: Over-claim thresholds on the over side (C > P): HIGH and CRITICAL.
    overclaim_threshold_pct: float = Field(0.20, ge=0)
    overclaim_critical_pct: float = Field(0.50, ge=0)
    #: Growth allowance on the under-claim side only: G = 1 + growth_per_hour_pct * min(h, cap).
    growth_per_hour_pct: float = Field(0.10, ge=0)
    growth_cap_hours: float = Field(24, ge=0)
    #: Absolute floors: differences within these count as zero.
    abs_tolerance_views: int = Field(10, ge=0)
    abs_tolerance_clicks: int = Field(2, ge=0)
    abs_tolerance_conversions: int = Field(1, ge=0)
    #: Default re-check cadence for campaigns that do not set their own.
    recheck_interval_hours: float = Field(6, gt=0)
    recheck_window_days: float = Field(7, ge=0)

    def consistency_errors(self) -> list[tuple[str, str]]:
        errors = []
        if self.base_tolerance_pct > self.low_max:
            errors.append(("base_tolerance_pct", f"{self.base_tolerance_pct} exceeds low_max {self.low_max}"))
        if self.low_max > self.medium_max:
            errors.append(("low_max", f"{self.low_max} exceeds medium_max {self.medium_max}"))
        if self.overclaim_threshold_pct > self.overclaim_critical_pct:
            errors.append(
                (
                    "overclaim_threshold_pct",
                    f"{self.overclaim_threshold_pct} exceeds overclaim_critical_pct {self.overclaim_critical_pct}",
                )
            )
        return errors

    def abs_tolerance(self, metric: str) -> int:
        return int(getattr(self, f"abs_tolerance_{metric}"))


class RetryPolicy(_Group):
    model_config = SettingsConfigDict(env_prefix="RETRY_POLICY__")

    #: MISSING after a real fetch failure: initial_delay_minutes * 2^(n-1), ±jitter_pct.
    initial_delay_minutes: float = Field(30, gt=0)
    max_attempts: int = Field(5, ge=1)
    window_hours: float = Field(24, gt=0)
    jitter_pct: float = Field(0.10, ge=0, lt=1)
    #: INCOMPLETE gets exactly one more attempt after this delay.
    incomplete_retry_minutes: float = Field(15, gt=0)
    #: How long a claimed attempt is exclusively ours; an expired lease is re-dispatched.
    lease_seconds: int = Field(120, ge=5)
    #: Deferral when the call never reached the platform and no better hint is known.
    deferral_default_seconds: int = Field(60, ge=1)
    #: A deferral waits the cooldown plus up to this fraction more (uniform), so the reports deferred by one
    #: outage come back spread out rather than in one sweep.
    deferral_jitter_pct: float = Field(0.25, ge=0, le=1)


class TrustScoring(_Group):
    model_config = SettingsConfigDict(env_prefix="TRUST_SCORING__")

    initial_score: float = Field(0.50, ge=0, le=1)
    perfect_match: float = 0.01
    minor_discrepancy: float = -0.01
    medium_discrepancy: float = -0.03
    high_discrepancy: float = -0.05
    overclaim: float = -0.10
    #: Bucket lower bounds: >= high_trust, >= normal, >= low_trust, else critical.
    high_trust_min: float = Field(0.75, ge=0, le=1)
    normal_min: float = Field(0.50, ge=0, le=1)
    low_trust_min: float = Field(0.25, ge=0, le=1)

    def consistency_errors(self) -> list[tuple[str, str]]:
        errors = []
        if self.perfect_match < 0:
            errors.append(("perfect_match", f"the PERFECT_MATCH delta must not be negative, got {self.perfect_match}"))
        for name in ("minor_discrepancy", "medium_discrepancy", "high_discrepancy", "overclaim"):
            if getattr(self, name) > 0:
                errors.append((name, f"the {name.upper()} delta must not be positive, got {getattr(self, name)}"))
        if not self.low_trust_min <= self.normal_min <= self.high_trust_min:
            errors.append(("normal_min", "bucket bounds must satisfy low_trust_min <= normal_min <= high_trust_min"))
        return errors

    def delta(self, event: str) -> float:
        """Nominal delta of a trust event name (PERFECT_MATCH, OVERCLAIM, ...)."""
        return float(getattr(self, event.lower()))


class AlertingSettings(_Group):
    model_config = SettingsConfigDict(env_prefix="ALERTING_SETTINGS__")

    platform_down_escalation_minutes: float = Field(120, gt=0)
    #: An OPEN breaker whose last failure is older than its cooldown plus this grace is idle (nobody has
    #: called the platform since), not down: the outage watcher ends the outage there.
    platform_idle_grace_minutes: float = Field(5, gt=0)
    repeat_window_hours: float = Field(6, ge=0)
    #: Storm guard: beyond this many alerts of one type per affiliate/platform per window, fold.
    storm_threshold: int = Field(20, ge=1)
    storm_window_minutes: float = Field(60, gt=0)


class CircuitBreakerSettings(_Group):
    model_config = SettingsConfigDict(env_prefix="CIRCUIT_BREAKER__")

    failure_threshold: int = Field(5, ge=1)
    open_cooldown_seconds: float = Field(60, gt=0)
    half_open_probe_count: int = Field(3, ge=1)
    #: Calls to one platform in flight at once, across all workers. A breaker hears of a failure only
    #: when the call returns: when a platform starts timing out, at most this many calls are stuck on it
    #: before the first timeout is counted (without a cap, every worker thread sends one). It also caps a
    #: platform at max_in_flight / latency calls per second: 16 keeps 160/s at 100 ms and 53/s at 300 ms,
    #: above the default quota (50/s), while a timing-out platform gets at most 5 + 16 - 1 calls.
    max_in_flight: int = Field(16, ge=1)
    #: How long an in-flight slot stays taken if its worker never hands it back (killed mid-call). At
    #: least the longest adapter call: connect + read timeout, times the HTTP calls of one fetch (X
    #: makes several).
    in_flight_lease_seconds: float = Field(60, gt=0)
    #: A call that succeeds but takes longer than this counts as a failure (Resilience4j's
    #: slowCallDurationThreshold): a platform slowing towards its timeouts trips the breaker early.
    slow_call_seconds: float = Field(8.0, gt=0)


class BackoffPolicy(_Group):
    """Retries inside one attempt (transient errors), bounded by the attempt's time budget."""

    model_config = SettingsConfigDict(env_prefix="BACKOFF_POLICY__")

    max_retries: int = Field(2, ge=0)
    base_delay_seconds: float = Field(0.2, ge=0)
    max_delay_seconds: float = Field(5.0, ge=0)
    jitter_pct: float = Field(0.25, ge=0, le=1)
    #: Total wall-clock budget of one fetch, sleeps included.
    attempt_budget_seconds: float = Field(30.0, gt=0)
    connect_timeout_seconds: float = Field(3.05, gt=0)
    read_timeout_seconds: float = Field(10.0, gt=0)


class DataQualitySettings(_Group):
    model_config = SettingsConfigDict(env_prefix="DATA_QUALITY_SETTINGS__")

    max_ctr: float = Field(0.35, ge=0, le=1)
    min_views_for_ctr: int = Field(100, ge=0)
    max_cvr: float = Field(0.60, ge=0, le=1)
    min_clicks_for_cvr: int = Field(20, ge=0)
    max_growth_pct: float = Field(5.0, ge=0)
    max_decrease_pct: float = Field(0.01, ge=0, le=1)
    evidence_required_views: int = Field(50_000, ge=0)


class RateLimitSettings(_Group):
    model_config = SettingsConfigDict(env_prefix="RATE_LIMIT_SETTINGS__")

    submission: str = "100/hour"
    query: str = "100/minute"
    staff_run: str = "10/minute"
    #: Default per-platform quota (requests/second across all workers) when a Platform sets none.
    platform_default_rps: float = Field(50.0, gt=0)


class BatchSettings(_Group):
    """How the sweeper groups due reports into per-platform batches (``reconciliation.tasks.reconcile_batch``)."""

    model_config = SettingsConfigDict(env_prefix="RECONCILE_BATCH__")

    #: Reports per batch: one platform request (split further by the adapter's own limit) and one apply
    #: transaction. 1 turns batching off (every report its own task, as before).
    size: int = Field(20, ge=1, le=100)
    #: The wait for a batch to fill. A fresh claim with no other sent within this long is sent at once (a
    #: batch of one, so low-load latency does not grow); the ones that follow it within the window are left
    #: to the sweeper, which then runs this often and sends them in batches. 0: every fresh claim at once.
    fill_wait_seconds: float = Field(0.25, ge=0, le=60)


class NotificationSettings(_Group):
    """Delivery of notifications and event webhooks (README "Notifications and webhooks")."""

    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS__")

    #: Tries per delivery, the first included; then it is FAILED (visible in the admin, redeliverable).
    max_attempts: int = Field(8, ge=1)
    #: Wait after try n: initial_delay_seconds * backoff_multiplier^(n-1), capped, ±jitter_pct. The
    #: defaults wait about 1 min, 3 min, 10 min, 33 min, 1.7 h, 5.6 h and 18 h: 8 tries over about 26 h.
    initial_delay_seconds: float = Field(60, gt=0)
    backoff_multiplier: float = Field(3.2, ge=1)
    max_delay_seconds: float = Field(86400, gt=0)
    jitter_pct: float = Field(0.2, ge=0, lt=1)
    connect_timeout_seconds: float = Field(3.0, gt=0)
    read_timeout_seconds: float = Field(5.0, gt=0)
    #: At most this much of a receiver's answer is read (and the first 500 characters kept).
    max_response_bytes: int = Field(65536, ge=0)
    #: How long a claimed delivery is exclusively one sender's; longer than a send (connect + read).
    lease_seconds: int = Field(60, ge=5)
    #: Loopback and private (RFC 1918, unique-local) receivers are refused unless this is on (on by
    #: default outside production). Link-local and cloud metadata addresses are always refused.
    allow_private_addresses: bool = False
    #: Plain http:// receivers are refused unless this is on (on by default outside production).
    allow_http: bool = False
    #: Each destination's breaker (the platform breaker, keyed per destination).
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_cooldown_seconds: float = Field(60, gt=0)
    #: The beat sweeper re-publishes due deliveries this often; and how many per round.
    sweep_interval_seconds: float = Field(5.0, gt=0)
    sweep_batch: int = Field(1000, ge=1)
    #: Links in notifications (the alert's admin page) start with this.
    public_base_url: str = "http://127.0.0.1:8000"
    #: Subscriptions one client may have at once.
    max_subscriptions_per_client: int = Field(20, ge=1)

    def consistency_errors(self) -> list[tuple[str, str]]:
        errors = []
        if self.lease_seconds <= self.connect_timeout_seconds + self.read_timeout_seconds:
            errors.append(("lease_seconds", "must exceed connect_timeout_seconds + read_timeout_seconds"))
        return errors


class RuleSet(BaseModel):
    """All groups the engine needs, as one frozen value (global defaults or a campaign's)."""

    model_config = ConfigDict(frozen=True)

    reconciliation: ReconciliationSettings
    retry: RetryPolicy
    trust: TrustScoring
    alerting: AlertingSettings
    data_quality: DataQualitySettings

    @functools.cached_property
    def fingerprint(self) -> str:
        """A stable hash of every value of the rule set (sha256 hex): equal rule sets, equal fingerprints.

        Recorded on each verdict so that a claim says which rules decided it. The hash is of canonical JSON
        (groups and fields sorted by name) with numbers normalised, so the spelling of a value does not
        matter: ``24``, ``24.0`` and ``"24"`` of a float field are one value, ``0.1`` is written as
        ``0.1``. Field names are part of the hash: a new setting makes a new rule set.
        """
        canonical = {name: _canonical(getattr(self, name).model_dump()) for name in type(self).model_fields}
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def short_fingerprint(self) -> str:
        return short_fingerprint(self.fingerprint)


#: How many hex digits of a fingerprint people are shown (48 bits: no collision among a few thousand sets).
SHORT_FINGERPRINT = 12


def short_fingerprint(fingerprint: str) -> str:
    """The first digits of a fingerprint, as shown in the admin, the API and the commands."""
    return fingerprint[:SHORT_FINGERPRINT]


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return repr(number)
        # One spelling per number: an integral value as an integer, otherwise the shortest repr.
        return int(number) if number.is_integer() and abs(number) < 2**53 else repr(number)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


#: Env/setting group name -> (RuleSet attribute or None, model class).
GROUPS: dict[str, tuple[str | None, type[_Group]]] = {
    "RECONCILIATION_SETTINGS": ("reconciliation", ReconciliationSettings),
    "RETRY_POLICY": ("retry", RetryPolicy),
    "TRUST_SCORING": ("trust", TrustScoring),
    "ALERTING_SETTINGS": ("alerting", AlertingSettings),
    "DATA_QUALITY_SETTINGS": ("data_quality", DataQualitySettings),
    "CIRCUIT_BREAKER": (None, CircuitBreakerSettings),
    "BACKOFF_POLICY": (None, BackoffPolicy),
    "RATE_LIMIT_SETTINGS": (None, RateLimitSettings),
    "RECONCILE_BATCH": (None, BatchSettings),
    "NOTIFICATIONS": (None, NotificationSettings),
}

#: Groups a campaign may override.
OVERRIDABLE = {name for name, (attr, _) in GROUPS.items() if attr is not None}


class RuleOverrideError(ValueError):
    """A campaign's rule overrides do not validate; ``errors`` maps a dotted setting to a message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


G = TypeVar("G", bound=_Group)


def load_group(name: str, cls: type[G]) -> G:
    """Read one group from the environment; raise ValueError naming the variable on a bad value."""
    try:
        return cls()
    except ValidationError as exc:
        raise ValueError(_describe(name, exc, env=True)) from None


def load_groups() -> dict[str, _Group]:
    """Read every group from the environment; raise ValueError naming the variable on a bad value."""
    groups: dict[str, _Group] = {}
    for name, (_, cls) in GROUPS.items():
        try:
            groups[name] = cls()
        except ValidationError as exc:
            raise ValueError(_describe(name, exc, env=True)) from None
    return groups


def _describe(group: str, exc: ValidationError, *, env: bool) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        field = "__".join(loc).upper() if env else ".".join(loc)
        where = f"{group}__{field}" if env and field else f"{group}.{field}" if field else group
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def build_ruleset(groups: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> RuleSet:
    """The global groups with a campaign's overrides applied; raises RuleOverrideError."""
    overrides = overrides or {}
    errors: dict[str, str] = {}
    if not isinstance(overrides, Mapping):
        raise RuleOverrideError({"rule_overrides": "must be an object of setting groups"})
    values: dict[str, Any] = {}
    for key in overrides:
        if key not in OVERRIDABLE:
            errors[str(key)] = f"unknown or not overridable group (choose from {sorted(OVERRIDABLE)})"
    for name in sorted(OVERRIDABLE):
        attr, cls = GROUPS[name]
        assert attr is not None
        base: _Group = groups[name]
        patch = overrides.get(name) or {}
        if not isinstance(patch, Mapping):
            errors[name] = "must be an object"
            continue
        try:
            merged = {**base.model_dump(), **patch}
            # Validate without re-reading the environment: init kwargs win over env in pydantic-settings.
            group = cls.model_validate(merged)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(x) for x in err.get("loc", ()))
                errors[f"{name}.{loc}" if loc else name] = err["msg"]
            continue
        for field_name, message in group.consistency_errors():
            errors[f"{name}.{field_name}"] = message
        values[attr] = group
    if errors:
        raise RuleOverrideError(errors)
    return RuleSet(**values)
