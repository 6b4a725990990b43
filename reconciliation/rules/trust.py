"""Trust score arithmetic (DESIGN §4 "Trust"). Pure: no ORM, no I/O.

The score lives in a ``Decimal(5, 4)`` column, so everything here is :class:`~decimal.Decimal` quantised to
four places (``ROUND_HALF_EVEN``). Nominal deltas are quantised too, so a report's ledger sums exactly.

The ledger invariant the engine keeps with :func:`correction_delta`: **for one report, the nominal deltas of
its TrustEvent rows sum to the nominal delta of its latest conclusive status.** A first MATCHED writes +0.01;
a re-check that turns it into AFFILIATE_OVERCLAIMED writes −0.10 − 0.01 = −0.11; a re-check that confirms the
status writes 0; INCOMPLETE/MISSING are not conclusive and write 0 (the last conclusive status stands).

The score itself moves by the *effective* change, clamped to [0, 1]; the ledger row records both. A score of
exactly 0 is a real score: nothing here treats a falsy Decimal as "unset".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from .classification import TrustEvent

if TYPE_CHECKING:
    from reconcile_project.config import TrustScoring

#: The score column's precision.
QUANTUM = Decimal("0.0001")
ZERO = Decimal("0.0000")
ONE = Decimal("1.0000")


class TrustBucket(StrEnum):
    HIGH_TRUST = "high_trust"
    NORMAL = "normal"
    LOW_TRUST = "low_trust"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class TrustChange:
    #: What the event is worth (counts towards the ledger invariant).
    nominal: Decimal
    #: What the score actually moved by after clamping to [0, 1] (``score_after − score``).
    effective: Decimal
    score_after: Decimal


def to_score(value: Decimal | float | int | str) -> Decimal:
    """A Decimal at the column's precision. Floats go through ``str`` so 0.1 means 0.1, not its binary value."""
    if isinstance(value, float):
        value = str(value)
    return Decimal(value).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def initial_score(settings: TrustScoring) -> Decimal:
    """The score a new affiliate starts with."""
    return to_score(settings.initial_score)


def trust_delta_for(event: TrustEvent | str | None, settings: TrustScoring) -> Decimal:
    """Nominal delta of a trust event (``None``, i.e. no event, is 0). Unknown names raise ValueError."""
    if event is None:
        return ZERO
    # Validate through the enum so a typo is an error, not getattr() on some unrelated settings field.
    return to_score(settings.delta(str(TrustEvent(event))))


def apply_trust(*, score: Decimal, nominal: Decimal) -> TrustChange:
    """Move ``score`` by ``nominal``, clamped to [0, 1]."""
    before = to_score(score)
    nominal = to_score(nominal)
    after = min(max(before + nominal, ZERO), ONE)
    return TrustChange(nominal=nominal, effective=after - before, score_after=after)


def correction_delta(
    *, ledger_sum: Decimal, new_status_event: TrustEvent | str | None, settings: TrustScoring
) -> Decimal:
    """The nominal delta that makes the report's ledger sum to its new conclusive status's delta.

    ``new_status_event`` is the trust event of the outcome just classified; ``None`` (INCOMPLETE, MISSING)
    is not conclusive and leaves the ledger, and therefore the score, alone.
    """
    if new_status_event is None:
        return ZERO
    return trust_delta_for(new_status_event, settings) - to_score(ledger_sum)


def _bound(value: float) -> Decimal:
    return Decimal(str(float(value)))


def bucket(score: Decimal, settings: TrustScoring) -> TrustBucket:
    """``≥ high_trust_min`` high_trust, ``≥ normal_min`` normal, ``≥ low_trust_min`` low_trust, else critical.

    Bounds go through ``str`` (not quantised): comparing Decimal("0.1") with the float 0.1 would put a score
    of exactly 0.1 below a bound of 0.1.
    """
    value = to_score(score)
    if value >= _bound(settings.high_trust_min):
        return TrustBucket.HIGH_TRUST
    if value >= _bound(settings.normal_min):
        return TrustBucket.NORMAL
    if value >= _bound(settings.low_trust_min):
        return TrustBucket.LOW_TRUST
    return TrustBucket.CRITICAL


def crossed_into_critical(before: Decimal, after: Decimal, settings: TrustScoring) -> bool:
    """True when this change moved the score into the critical bucket (raise LOW_TRUST once, not every time)."""
    return bucket(before, settings) is not TrustBucket.CRITICAL and bucket(after, settings) is TrustBucket.CRITICAL
