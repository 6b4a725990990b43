"""Cursor pagination, newest first, stable while rows are being inserted.

A cursor is a position in ``(created_at, id)`` order, not an offset, so rows inserted while a client is
paging appear at the front and never shift what the next page returns (no duplicates, no gaps).
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def decode_cursor(self, request: Any) -> Any:
        # DRF answers a bad cursor with 404; it is the client's input, so 400 with the field named.
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None


class NewestReportsFirstPagination(NewestFirstPagination):
    ordering = ("-submitted_at", "-id")
