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
    """``SELECT <columns> FROM <table> JOIN ... WHERE <key> = %s FOR UPDATE OF <table>``: one row, as a dict.

    ``table`` is (alias, model): its row is the one locked. ``joins`` are (alias, model, left alias, left
    field, field): ``JOIN model alias ON alias.field = left_alias.left_field``. ``columns`` are (key in the
    result, alias, field name). ``where`` is (alias, field name) compared with the key. The lock clause
    follows the database: ``FOR UPDATE OF`` on PostgreSQL, nothing on SQLite (whose IMMEDIATE
    transactions already hold the database's write lock).
    """

    def __init__(
        self,
        *,
        table: tuple[str, type[Model]],
        joins: Sequence[tuple[str, type[Model], str, str, str]] = (),
        columns: Sequence[tuple[str, str, str]],
        where: tuple[str, str],
    ) -> None:
        self.table = table
        self.joins = joins
        self.models: dict[str, type[Model]] = {table[0]: table[1], **{alias: model for alias, model, *_ in joins}}
        self.keys = [key for key, _alias, _name in columns]
        self.fields = [(alias, _field(self.models[alias], name)) for _key, alias, name in columns]
        self.where = where
        self._prepared: weakref.WeakKeyDictionary[BaseDatabaseWrapper, tuple[str, list]] = weakref.WeakKeyDictionary()

    def _prepare(self, connection: BaseDatabaseWrapper) -> tuple[str, list[tuple[Col, list[Converter]]]]:
        prepared = self._prepared.get(connection)
        if prepared is None:
            qn = connection.ops.quote_name
            alias, model = self.table
            select = ", ".join(f"{a}.{qn(str(field.column))}" for a, field in self.fields)
            parts = [f"SELECT {select} FROM {qn(model._meta.db_table)} {alias}"]
            for join_alias, join_model, left_alias, left_field, right_field in self.joins:
                left = _column(self.models[left_alias], left_field)
                right = _column(join_model, right_field)
                parts.append(
                    f"JOIN {qn(join_model._meta.db_table)} {join_alias}"
                    f" ON {join_alias}.{qn(right)} = {left_alias}.{qn(left)}"
                )
            where_alias, where_field = self.where
            parts.append(f"WHERE {where_alias}.{qn(_column(self.models[where_alias], where_field))} = %s")
            if connection.features.has_select_for_update_of:
                parts.append(f"FOR UPDATE OF {alias}")
            elif connection.features.has_select_for_update:
                parts.append("FOR UPDATE")
            converters = []
            for a, field in self.fields:
                col = Col(a, field)
                converters.append((col, connection.ops.get_db_converters(col) + field.get_db_converters(connection)))
            prepared = (" ".join(parts), converters)
            self._prepared[connection] = prepared
        return prepared

    def fetch_many(
        self, keys: Sequence[Any], *, skip_locked: bool = False, connection: BaseDatabaseWrapper | None = None
    ) -> list[dict[str, Any]]:
        """The rows for ``keys``, locked in the table's primary-key order (two batches that share rows queue
        instead of deadlocking); with ``skip_locked`` rows another transaction holds are left out."""
        if not keys:
            return []
        connection = connection or connections[DEFAULT_DB_ALIAS]
        sql, converters = self._prepare(connection)
        alias, model = self.table
        head, lock = sql, ""
        for clause in (" FOR UPDATE OF ", " FOR UPDATE"):
            if clause in sql:
                head, lock = sql[: sql.index(clause)], sql[sql.index(clause) :]
                break
        placeholders = ", ".join(["%s"] * len(keys))
        head = head[: head.rindex(" = %s")] + f" IN ({placeholders})"
        head += f" ORDER BY {alias}.{connection.ops.quote_name(str(model._meta.pk.column))}"
        if lock and skip_locked and connection.features.has_select_for_update_skip_locked:
            lock += " SKIP LOCKED"
        with connection.cursor() as cursor:
            cursor.execute(head + lock, list(keys))
            rows = cursor.fetchall()
        return [self._convert(row, converters, connection) for row in rows]

    def _convert(self, row: Sequence[Any], converters: list, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        values = {}
        for name, value, (col, funcs) in zip(self.keys, row, converters, strict=True):
            for func in funcs:
                value = func(value, col, connection)
            values[name] = value
        return values

    def fetch(self, key: Any, connection: BaseDatabaseWrapper | None = None) -> dict[str, Any] | None:
        """The locked row for ``key``, or None. Call inside ``transaction.atomic()``."""
        connection = connection or connections[DEFAULT_DB_ALIAS]
        sql, converters = self._prepare(connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [key])
            row = cursor.fetchone()
        if row is None:
            return None
        return self._convert(row, converters, connection)


#: The claim's read: the log row (locked) and what the fetch and the rules need from its report.
CLAIM = LockedRead(
    table=("l", ReconciliationLog),
    joins=[
        ("r", AffiliateReport, "l", "report", "id"),
        ("p", Post, "r", "post", "id"),
        ("pl", Platform, "p", "platform", "id"),
        ("c", Campaign, "p", "campaign", "id"),
    ],
    columns=[
        ("log_id", "l", "id"),
        ("report_id", "l", "report"),
        ("terminal", "l", "terminal"),
        ("next_attempt_at", "l", "next_attempt_at"),
        ("lease_until", "l", "lease_until"),
        ("attempt_count", "l", "attempt_count"),
        ("budget_attempts", "l", "budget_attempts"),
        ("status", "l", "status"),
        ("claimed_views", "r", "claimed_views"),
        ("claimed_clicks", "r", "claimed_clicks"),
        ("claimed_conversions", "r", "claimed_conversions"),
        ("submitted_at", "r", "submitted_at"),
        ("post_id", "p", "id"),
        ("platform_id", "p", "platform"),
        ("platform_post_id", "p", "platform_post_id"),
        ("affiliate_id", "p", "affiliate"),
        ("platform_slug", "pl", "slug"),
        ("platform_config", "pl", "config"),
        ("campaign_id", "c", "id"),
        ("rule_overrides", "c", "rule_overrides"),
        ("shadow_rule_overrides", "c", "shadow_rule_overrides"),
        ("recheck_interval_hours", "c", "recheck_interval_hours"),
        ("recheck_window_days", "c", "recheck_window_days"),
    ],
    where=("l", "report"),
)

#: The apply's re-read of the log row (locked): is the lease still ours, and what the outcome builds on.
APPLY = LockedRead(
    table=("l", ReconciliationLog),
    columns=[
        ("log_id", "l", "id"),
        ("report_id", "l", "report"),
        ("attempt_count", "l", "attempt_count"),
        ("lease_until", "l", "lease_until"),
        ("budget_attempts", "l", "budget_attempts"),
        ("status", "l", "status"),
        ("discrepancy_level", "l", "discrepancy_level"),
        ("trust_delta", "l", "trust_delta"),
    ],
    where=("l", "report"),
)

#: The affiliate whose trust score an apply moves (locked: concurrent attempts of one affiliate queue here).
AFFILIATE = LockedRead(
    table=("a", Affiliate),
    columns=[("affiliate_id", "a", "id"), ("trust_score", "a", "trust_score"), ("name", "a", "name")],
    where=("a", "id"),
)
