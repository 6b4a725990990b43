"""Exact arithmetic for rule boundaries.

Every boundary in DESIGN §4 is inclusive ("exactly 5 % is MATCHED, exactly 20 % over is an over-claim").
Binary floats cannot honour that: ``(1.2 - 1) / 1 >= 0.2`` and ``1 + 0.1 * 3`` both land a hair off. So the
rules compute with :class:`fractions.Fraction` on integer counts and compare against the *decimal* value an
operator wrote in a setting. Floats are produced only at the very end, for storage and display.
"""

from __future__ import annotations

import math
from fractions import Fraction


def exact(value: float | int) -> Fraction:
    """The decimal number a setting was written as, exactly.

    Settings arrive as floats, and ``0.2`` is really 0.2000000000000000111... Going through ``repr`` recovers
    the shortest decimal that round-trips to the same float, which is what the operator typed, so a rule
    compares 6/5 - 1 against 1/5 rather than against binary noise.
    """
    if isinstance(value, int):  # bool included: True is 1, which is what it means as a number
        return Fraction(value)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return Fraction(repr(float(value)))


def at_least(value: Fraction, threshold: float) -> bool:
    """``value >= threshold`` exactly; an infinite threshold is never reached (a way to switch a rule off)."""
    if math.isinf(threshold):
        return threshold < 0
    return value >= exact(threshold)


def at_most(value: Fraction, threshold: float) -> bool:
    """``value <= threshold`` exactly; an infinite threshold always holds."""
    if math.isinf(threshold):
        return threshold > 0
    return value <= exact(threshold)


def above(value: Fraction, threshold: float) -> bool:
    """``value > threshold`` exactly."""
    return not at_most(value, threshold)


def to_float(value: Fraction) -> float:
    """``float(value)``, saturating to ±inf instead of raising for values beyond float range."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
