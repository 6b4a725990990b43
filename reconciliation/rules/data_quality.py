"""Data-quality (suspicion) flags computed at submission (DESIGN §4). Pure: no ORM, no I/O.

Flags are stored on the report as ``suspicion_flags`` (``[flag.as_dict(), ...]``); a HIGH flag raises a
SUSPICIOUS_CLAIM alert. Ratios are compared exactly (fractions against the settings' decimals), so the
boundaries below are the written ones. At most one flag per code, in this order:

=================  ========  ======================================================================
code               severity  condition (settings defaults)
=================  ========  ======================================================================
HIGH_CTR           HIGH      views ≥ min_views_for_ctr (100) and clicks / views > max_ctr (0.35)
HIGH_CVR           MEDIUM    clicks ≥ min_clicks_for_cvr (20) and conversions / clicks > max_cvr (0.60)
FUNNEL_INVERSION   HIGH      views < clicks or clicks < conversions
GROWTH_SPIKE       HIGH      some metric grew by > max_growth_pct (5.0 = 500 %) vs the previous claim
METRIC_DECREASE    MEDIUM    some metric fell by > max_decrease_pct (0.01 = 1 %) vs the previous claim
MISSING_EVIDENCE   LOW       views ≥ evidence_required_views (50 000) and no evidence attached
DUPLICATE_CLAIM    HIGH      the same normalised post is claimed by another affiliate
=================  ========  ======================================================================

Why these severities: HIGH marks what honest reporting cannot produce (more clicks than views, a count
that jumps six-fold between two claims of one post, someone else's post, click-through rates bots make)
and deserves an analyst now. A very high conversion rate or a shrinking cumulative count is more often a
tracking or typing mistake than fraud (MEDIUM, visible on the report). Missing evidence is a process gap,
not a signal about the numbers (LOW).

Growth and decrease are relative to the same post's previous claim ``(cur − prev) / max(prev, 1)`` and
``(prev − cur) / prev``; ``max(prev, 1)`` keeps a first non-zero count after 0 defined (0 → 6 is +600 %),
the same convention as the over-claim side of classification. A decrease from 0 cannot happen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ._exact import above
from .classification import METRICS, Claim

if TYPE_CHECKING:
    from reconcile_project.config import DataQualitySettings


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class FlagCode(StrEnum):
    HIGH_CTR = "HIGH_CTR"
    HIGH_CVR = "HIGH_CVR"
    FUNNEL_INVERSION = "FUNNEL_INVERSION"
    GROWTH_SPIKE = "GROWTH_SPIKE"
    METRIC_DECREASE = "METRIC_DECREASE"
    MISSING_EVIDENCE = "MISSING_EVIDENCE"
    DUPLICATE_CLAIM = "DUPLICATE_CLAIM"


#: Severity of each code (the module docstring says why).
SEVERITY: dict[FlagCode, Severity] = {
    FlagCode.HIGH_CTR: Severity.HIGH,
    FlagCode.HIGH_CVR: Severity.MEDIUM,
    FlagCode.FUNNEL_INVERSION: Severity.HIGH,
    FlagCode.GROWTH_SPIKE: Severity.HIGH,
    FlagCode.METRIC_DECREASE: Severity.MEDIUM,
    FlagCode.MISSING_EVIDENCE: Severity.LOW,
    FlagCode.DUPLICATE_CLAIM: Severity.HIGH,
}


@dataclass(frozen=True, slots=True)
class Flag:
    code: FlagCode
    severity: Severity
    #: For people: what was seen, with the numbers.
    message: str
    #: The measured value that tripped the rule (a ratio, a count, a description), JSON-serialisable.
    value: float | int | str | bool | None

    def as_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "severity": str(self.severity), "message": self.message, "value": self.value}


def _flag(code: FlagCode, message: str, value: float | int | str | bool | None) -> Flag:
    return Flag(code=code, severity=SEVERITY[code], message=message, value=value)


def _pct(ratio: Fraction | float) -> str:
    return f"{float(ratio) * 100:.1f} %"


def suspicion_flags(
    *,
    claim: Claim,
    previous: Claim | None,
    evidence_present: bool,
    duplicate_of_other_affiliate: bool,
    settings: DataQualitySettings,
) -> list[Flag]:
    """Flags for one claim; ``previous`` is the same post's previous claim by this affiliate, if any."""
    flags: list[Flag] = []

    if claim.views > 0 and claim.views >= settings.min_views_for_ctr:
        ctr = Fraction(claim.clicks, claim.views)
        if above(ctr, settings.max_ctr):
            message = f"click-through rate {_pct(ctr)} above {_pct(settings.max_ctr)}"
            flags.append(_flag(FlagCode.HIGH_CTR, message, float(ctr)))

    if claim.clicks > 0 and claim.clicks >= settings.min_clicks_for_cvr:
        cvr = Fraction(claim.conversions, claim.clicks)
        if above(cvr, settings.max_cvr):
            message = f"conversion rate {_pct(cvr)} above {_pct(settings.max_cvr)}"
            flags.append(_flag(FlagCode.HIGH_CVR, message, float(cvr)))

    inversions: list[str] = []
    if claim.views < claim.clicks:
        inversions.append(f"views {claim.views} < clicks {claim.clicks}")
    if claim.clicks < claim.conversions:
        inversions.append(f"clicks {claim.clicks} < conversions {claim.conversions}")
    if inversions:
        described = "; ".join(inversions)
        flags.append(_flag(FlagCode.FUNNEL_INVERSION, f"funnel inverted: {described}", described))

    if previous is not None:
        growth = {m: Fraction(claim.get(m) - previous.get(m), max(previous.get(m), 1)) for m in METRICS}
        spikes = [m for m in METRICS if above(growth[m], settings.max_growth_pct)]
        if spikes:
            worst = max(spikes, key=lambda m: growth[m])
            message = _describe(spikes, previous, claim, growth, "grew") + f" (limit {_pct(settings.max_growth_pct)})"
            flags.append(_flag(FlagCode.GROWTH_SPIKE, message, float(growth[worst])))
        drops = {m: -growth[m] for m in METRICS if claim.get(m) < previous.get(m)}
        decreases = [m for m in METRICS if m in drops and above(drops[m], settings.max_decrease_pct)]
        if decreases:
            worst = max(decreases, key=lambda m: drops[m])
            message = (
                _describe(decreases, previous, claim, drops, "fell")
                + f" (limit {_pct(settings.max_decrease_pct)}); cumulative counts do not fall"
            )
            flags.append(_flag(FlagCode.METRIC_DECREASE, message, float(drops[worst])))

    if claim.views >= settings.evidence_required_views and not evidence_present:
        flags.append(
            _flag(
                FlagCode.MISSING_EVIDENCE,
                f"{claim.views} views claimed without evidence (required from {settings.evidence_required_views})",
                claim.views,
            )
        )

    if duplicate_of_other_affiliate:
        flags.append(_flag(FlagCode.DUPLICATE_CLAIM, "the same post is claimed by another affiliate", True))

    return flags


def _describe(metrics: list[str], previous: Claim, claim: Claim, change: dict[str, Fraction], verb: str) -> str:
    parts = [f"{m} {verb} {previous.get(m)} → {claim.get(m)} ({_pct(change[m])})" for m in metrics]
    return "; ".join(parts) + " since the previous claim"


def has_high(flags: Iterable[Flag | dict[str, Any]]) -> bool:
    """Whether any flag is HIGH (raises SUSPICIOUS_CLAIM). Accepts stored ``as_dict()`` forms too."""
    for flag in flags:
        severity = flag["severity"] if isinstance(flag, dict) else flag.severity
        if severity == Severity.HIGH:
            return True
    return False
