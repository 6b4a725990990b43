"""Cursor pagination, newest first, stable while rows are being inserted.

A cursor is a position in ``(created_at, id)`` order, not an offset, so rows inserted while a client is
paging appear at the front and never shift what the next page returns (no duplicates, no gaps).

Both query parameters are strict and documented as such: a ``limit`` that is not a positive integer
and a cursor the API did not issue are a 400 naming the parameter, never a silent default (DRF
ignores a bad ``limit``; a cursor carrying a malformed position reached the database as a 500). A
``limit`` above the maximum gives the maximum.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def get_page_size(self, request: Any) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # ASCII digits only: int() also takes " 5", "+5", "5_0" and non-ASCII digits.
        if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            raise ValidationError({self.page_size_query_param: ["Must be a positive integer."]})
        return min(int(raw), self.max_page_size)

    def decode_cursor(self, request: Any) -> Any:
        # DRF answers a bad cursor with 404; it is the client's input, so 400 with the field named.
        try:
            if request.query_params.get(self.cursor_query_param) == "":
                raise ValueError("empty cursor")
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                # The position is compared with a timestamp column: anything but an aware timestamp that
                # PostgreSQL can hold (UTC; it refuses offsets past ±15:59) fails in the database.
                position = parse_datetime(str(cursor.position))
                if position is None or position.tzinfo is None:
                    raise ValueError(cursor.position)
                # As str(created_at) writes it, which DRF compares positions with (the stubs say int).
                cursor = cursor._replace(position=str(position.astimezone(dt.UTC)))  # type: ignore[arg-type]
        except (NotFound, ValueError, OverflowError):
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None
        return cursor

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque: the value from a `next` or `previous` link of this listing. "
                "A value the API did not issue is a 400.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page (default {self.page_size}); more than {self.max_page_size} "
                f"gives {self.max_page_size}.",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]


class NewestReportsFirstPagination(NewestFirstPagination):
    ordering = ("-submitted_at", "-id")
