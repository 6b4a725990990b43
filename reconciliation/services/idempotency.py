"""``Idempotency-Key`` for POST/PUT: a replay returns the original response, exactly once.

No well-kept library does this for DRF, and the rule is small: one row per (key owner, key) with a hash
of the request and the stored response, unique in the database.

How concurrency is handled (PostgreSQL):

- The whole request — the key row *and* the work it guards (the report) — runs in one transaction, so a
  crash can never leave a report without its stored response, or a key that says "in flight" forever.
- Before looking at the row, the transaction takes a transaction-scoped advisory lock on the key
  (``pg_try_advisory_xact_lock``). A second request with the same key while the first is still running
  does not get the lock and is answered 409 at once, instead of queueing behind the first. Once the
  first commits, the lock is released *after* its rows became visible, so the next request sees the
  completed row and replays it.

On other databases (SQLite in development) there is no advisory lock; writes are serialised by the
database anyway, so a concurrent duplicate waits and then replays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from reconciliation.models import IdempotencyKey

#: How long a key is remembered; after that the same key starts a new request.
IDEMPOTENCY_TTL = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyError(Exception):
    """Base of the two ways an Idempotency-Key refuses a request."""


class IdempotencyInFlight(IdempotencyError):
    """Another request with this key is still being processed (409)."""


class IdempotencyMismatch(IdempotencyError):
    """The key was used before with a different request (422)."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any
    replayed: bool


def request_fingerprint(*, method: str, path: str, data: Any) -> str:
    """sha256 of the method, path and canonical JSON body (key order and whitespace do not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.sha256()
    for part in (method.upper(), path, canonical):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _lock_id(owner_kind: str, owner_id: str, key: str) -> int:
    raw = hashlib.blake2b(f"{owner_kind}\x00{owner_id}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(raw.digest(), "big", signed=True)


def _try_lock(owner_kind: str, owner_id: str, key: str) -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_id(owner_kind, owner_id, key)])
        return bool(cursor.fetchone()[0])


def idempotent_call(
    *,
    owner_kind: str,
    owner_id: str,
    key: str,
    request_hash: str,
    now: dt.datetime,
    produce: Callable[[], tuple[int, Any]],
) -> StoredResponse:
    """Run ``produce`` once per (owner, key) and remember its (status, JSON body).

    ``produce`` runs inside this function's transaction. A response below 500 is stored and replayed
    for 24 h; an exception propagates and rolls everything back (the key is forgotten, the client may
    retry). Raises :class:`IdempotencyInFlight` or :class:`IdempotencyMismatch`.
    """
    with transaction.atomic():
        if not _try_lock(owner_kind, owner_id, key):
            raise IdempotencyInFlight(key)
        row = IdempotencyKey.objects.filter(owner_kind=owner_kind, owner_id=owner_id, key=key).first()
        if row is not None and row.created_at <= now - IDEMPOTENCY_TTL:
            row.delete()
            row = None
        if row is not None:
            if row.request_hash != request_hash:
                raise IdempotencyMismatch(key)
            if row.completed:
                return StoredResponse(status=int(row.response_status or 200), body=row.response_body, replayed=True)
        status, body = produce()
        if status >= 500:
            # Not reached through normal errors (they raise); never remember a server error.
            transaction.set_rollback(True)
            return StoredResponse(status=status, body=body, replayed=False)
        if row is None:
            row = IdempotencyKey(owner_kind=owner_kind, owner_id=owner_id, key=key)
        row.request_hash = request_hash
        row.response_status = status
        row.response_body = body
        row.completed = True
        row.created_at = now
        row.save()
        return StoredResponse(status=status, body=body, replayed=False)


def idempotency_purge(*, now: dt.datetime) -> int:
    """Delete keys older than the TTL (expired keys are also ignored on use); returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=now - IDEMPOTENCY_TTL).delete()
    return deleted
