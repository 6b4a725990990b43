"""JSON that PostgreSQL's jsonb accepts, whatever a computation produced."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as a string ("Infinity", "-Infinity", "NaN").

    Python's json writes them as bare ``Infinity``/``NaN``, which is not JSON: PostgreSQL refuses the whole
    insert, and with it the transaction that holds the verdict. Settings refuse non-finite numbers, but an
    alert's evidence or a platform's raw answer must be storable anyway (an over-claim against a platform
    value of 0 is infinitely large and still worth its alert).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
