"""Model instances from hand-written SQL, for the few reads every submission makes.

Building a query's SQL is where the ORM spends its time on this path: measured on the 2-core machine,
about 0.3 ms of CPU to compile a one-table filter and 0.6–1 ms for a ``select_related`` lookup, against
0.03 ms to send the same SQL and read the row. The submission path reads a handful of rows per request,
so its reads are written once here; the column lists come from the models' metadata (a field added to a
model is read too) and the values are converted as the ORM converts them (``from_db_value``: JSON), so
the instances are the ones a queryset would return.

PostgreSQL only; callers keep the ORM form for the embedded SQLite of ``make run``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


Layout = tuple[tuple[str, ...], tuple[str, ...], tuple[Callable[..., Any] | None, ...]]


@functools.cache
def _layout(model: type[models.Model]) -> Layout:
    """(attribute names, quoted columns, ``from_db_value`` or None) of every concrete field, once per model."""
    fields = model._meta.concrete_fields
    attnames = tuple(field.attname for field in fields)
    columns = tuple(connection.ops.quote_name(str(field.column)) for field in fields)
    converters = tuple(getattr(field, "from_db_value", None) for field in fields)
    return attnames, columns, converters


def select_list(model: type[models.Model], alias: str) -> str:
    """``alias."col", alias."col2", ...``: every concrete column of ``model``, in :func:`instance` order."""
    return ", ".join(f"{alias}.{column}" for column in _layout(model)[1])


def width(model: type[models.Model]) -> int:
    """How many columns :func:`select_list` selects."""
    return len(_layout(model)[0])


def instance(model: type[M], values: Sequence[Any]) -> M:
    """The instance the ORM would build from these column values (in :func:`select_list` order)."""
    attnames, _, converters = _layout(model)
    converted = [
        value if convert is None or value is None else convert(value, None, connection)
        for value, convert in zip(values, converters, strict=True)
    ]
    return model.from_db(connection.alias, list(attnames), converted)


def split(row: Sequence[Any], *models_: type[models.Model]) -> tuple[list[Any], Sequence[Any]]:
    """One instance per model from a row selecting their :func:`select_list` in turn, and what follows."""
    out: list[Any] = []
    offset = 0
    for model in models_:
        n = width(model)
        out.append(instance(model, row[offset : offset + n]))
        offset += n
    return out, row[offset:]
