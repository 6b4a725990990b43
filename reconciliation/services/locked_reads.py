"""The row-locking reads of the attempt protocol, in SQL.

Every attempt locks its log row twice: the claim reads it with its report, post, platform and campaign,
the apply re-reads it (and locks the affiliate when the trust score moves). Through the ORM, compiling
the claim's five-table ``select_related`` costs more Python than every other statement of the attempt
together (about 3 ms against 0.7 ms for the same query as SQL, measured on the development machine),
and on a worker the GIL makes that CPU the limit.

The SQL is built from the models' own table and column names, and each value passes through the
converters the ORM itself applies to that field (SQLite's naive datetimes come back aware, JSON comes
back decoded, booleans as ``bool``), so a row reads exactly as the ORM would have returned it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.expressions import Col

from platforms.models import Platform
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Post, ReconciliationLog

Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


def _field(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field


def _column(model: type[Model], name: str) -> str:
    return str(_field(model, name).column)


class LockedRead:
    """``SELECT <columns> FROM <joins> WHERE <key> = %s FOR UPDATE OF <first table>``, one row as a dict.

    ``columns`` are (key in the result, table alias, model, field name); the first alias is the table
    whose row is locked. The lock clause follows the database: ``FOR UPDATE OF`` on PostgreSQL, nothing
    on SQLite (whose IMMEDIATE transactions already hold the database's write lock).
    """

    def __init__(
        self,
        columns: Sequence[tuple[str, str, type[Model], str]],
        joins: Sequence[tuple[str, type[Model], str, str, str]],
        where: tuple[str, str],
    ) -> None:
        self.keys = [key for key, _alias, _model, _name in columns]
        self.fields: list[tuple[str, Field]] = [(alias, _field(model, name)) for _key, alias, model, name in columns]
        self.joins = joins
        self.where = where
        self.lock_alias = columns[0][1]
        self._sql: weakref.WeakKeyDictionary[BaseDatabaseWrapper, tuple[str, list]] = weakref.WeakKeyDictionary()

    def _prepare(self, connection: BaseDatabaseWrapper) -> tuple[str, list[tuple[Col, list[Converter]]]]:
        prepared = self._sql.get(connection)
        if prepared is None:
            qn = connection.ops.quote_name
            select = ", ".join(f"{alias}.{qn(str(field.column))}" for alias, field in self.fields)
            first_alias, first_model, *_ = self.joins[0]
            parts = [f"SELECT {select} FROM {qn(first_model._meta.db_table)} {first_alias}"]
            for alias, model, left_alias, left_field, right_field in self.joins[1:]:
                left = _column(self._model_of(left_alias), left_field)
                right = _column(model, right_field)
                parts.append(
                    f"JOIN {qn(model._meta.db_table)} {alias} ON {alias}.{qn(right)} = {left_alias}.{qn(left)}"
                )
            where_alias, where_field = self.where
            where_column = _column(self._model_of(where_alias), where_field)
            parts.append(f"WHERE {where_alias}.{qn(where_column)} = %s")
            if connection.features.has_select_for_update_of:
                parts.append(f"FOR UPDATE OF {self.lock_alias}")
            elif connection.features.has_select_for_update:
                parts.append("FOR UPDATE")
            converters = []
            for alias, field in self.fields:
                col = Col(alias, field)
                converters.append((col, connection.ops.get_db_converters(col) + field.get_db_converters(connection)))
            prepared = (" ".join(parts), converters)
            self._sql[connection] = prepared
        return prepared

    def _model_of(self, alias: str) -> type[Model]:
        for join_alias, model, *_ in self.joins:
            if join_alias == alias:
                return model
        raise KeyError(alias)

    def fetch(self, key: Any, connection: BaseDatabaseWrapper | None = None) -> dict[str, Any] | None:
        """The locked row for ``key``, or None. Call inside ``transaction.atomic()``."""
        connection = connection or connections[DEFAULT_DB_ALIAS]
        sql, converters = self._prepare(connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [key])
            row = cursor.fetchone()
        if row is None:
            return None
        values = {}
        for name, value, (col, funcs) in zip(self.keys, row, converters, strict=True):
            for func in funcs:
                value = func(value, col, connection)
            values[name] = value
        return values


#: The claim's read: the log row (locked) and what the fetch and the rules need from its report.
CLAIM = LockedRead(
    columns=[
        ("log_id", "l", ReconciliationLog, "id"),
        ("terminal", "l", ReconciliationLog, "terminal"),
        ("next_attempt_at", "l", ReconciliationLog, "next_attempt_at"),
        ("lease_until", "l", ReconciliationLog, "lease_until"),
        ("attempt_count", "l", ReconciliationLog, "attempt_count"),
        ("status", "l", ReconciliationLog, "status"),
        ("claimed_views", "r", AffiliateReport, "claimed_views"),
        ("claimed_clicks", "r", AffiliateReport, "claimed_clicks"),
        ("claimed_conversions", "r", AffiliateReport, "claimed_conversions"),
        ("submitted_at", "r", AffiliateReport, "submitted_at"),
        ("post_id", "p", Post, "id"),
        ("platform_id", "p", Post, "platform"),
        ("platform_post_id", "p", Post, "platform_post_id"),
        ("affiliate_id", "p", Post, "affiliate"),
        ("platform_slug", "pl", Platform, "slug"),
        ("platform_config", "pl", Platform, "config"),
        ("rule_overrides", "c", Campaign, "rule_overrides"),
        ("recheck_interval_hours", "c", Campaign, "recheck_interval_hours"),
        ("recheck_window_days", "c", Campaign, "recheck_window_days"),
    ],
    joins=[
        ("l", ReconciliationLog, "", "", ""),
        ("r", AffiliateReport, "l", "report", "id"),
        ("p", Post, "r", "post", "id"),
        ("pl", Platform, "p", "platform", "id"),
        ("c", Campaign, "p", "campaign", "id"),
    ],
    where=("l", "report"),
)

#: The apply's re-read of the log row (locked): is the lease still ours, and what the outcome builds on.
APPLY = LockedRead(
    columns=[
        ("log_id", "l", ReconciliationLog, "id"),
        ("attempt_count", "l", ReconciliationLog, "attempt_count"),
        ("lease_until", "l", ReconciliationLog, "lease_until"),
        ("budget_attempts", "l", ReconciliationLog, "budget_attempts"),
        ("status", "l", ReconciliationLog, "status"),
        ("trust_delta", "l", ReconciliationLog, "trust_delta"),
    ],
    joins=[("l", ReconciliationLog, "", "", "")],
    where=("l", "report"),
)

#: The affiliate whose trust score an apply moves (locked: concurrent attempts of one affiliate queue here).
AFFILIATE = LockedRead(
    columns=[
        ("affiliate_id", "a", Affiliate, "id"),
        ("trust_score", "a", Affiliate, "trust_score"),
        ("name", "a", Affiliate, "name"),
    ],
    joins=[("a", Affiliate, "", "", "")],
    where=("a", "id"),
)
