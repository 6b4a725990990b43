"""The sandbox's webhook inbox: receives notifications, shows what it received, answers as scripted.

``POST /_webhooks/<name>`` records the request and answers 200 ``{"ok": true}`` unless a script for
``<name>`` says otherwise. Control API:

``GET    /_control/webhooks[/<name>]``  ``{"count": n, "received": [...]}``, oldest first: name, received_at
         (epoch seconds), answered status, event id and type, delivery id, signature verdict
         (``verified``: true/false, or null when no secret was given for the name) and the JSON body.
``GET    /_control/webhooks/<name>/count``  ``{"name", "count"}`` without the bodies.
``PUT    /_control/webhooks/<name>``  ``{"secret", "status", "times", "location", "delay_ms"}``: verify
         signatures with ``secret``; answer the next ``times`` requests (absent: every request) with
         ``status`` (and a ``Location`` header), after ``delay_ms``.
``DELETE /_control/webhooks``  forgets everything received and every script.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from notifications.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify

#: Oldest entries are dropped beyond this (a benchmark sends 10,000).
MAX_RECORDS = 50_000


@dataclass
class Script:
    secret: str = ""
    status: int = 200
    times: int | None = None
    location: str = ""
    delay_ms: float = 0.0
    answered: int = field(default=0)


class WebhookInbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self._scripts: dict[str, Script] = {}

    def receive(self, name: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], float]:
        """Record one request; (status, extra headers, delay in seconds) to answer with."""
        received_at = time.time()
        with self._lock:
            script = self._scripts.get(name)
            status, extra, delay = 200, {}, 0.0
            if script is not None:
                delay = script.delay_ms / 1000
                if script.times is None or script.answered < script.times:
                    script.answered += 1
                    status = script.status
                    if script.location:
                        extra["Location"] = script.location
            secret = script.secret if script is not None else ""
        try:
            parsed: Any = json.loads(body.decode("utf-8"))
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        signature = headers.get(SIGNATURE_HEADER, "")
        record = {
            "name": name,
            "received_at": received_at,
            "status": status,
            "event_id": parsed.get("id") if isinstance(parsed, dict) else None,
            "event_type": headers.get(EVENT_HEADER),
            "delivery": headers.get(DELIVERY_HEADER),
            "verified": verify(secret, body, signature) if secret else None,
            "body": parsed,
        }
        with self._lock:
            self._records.append(record)
        return status, extra, delay

    def script(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        allowed = {"secret", "status", "times", "location", "delay_ms"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} (choose from {sorted(allowed)})")
        script = Script(**options)
        with self._lock:
            self._scripts[name] = script
        return {"name": name, "status": script.status, "times": script.times, "has_secret": bool(script.secret)}

    def received(self, name: str | None = None) -> dict[str, Any]:
        with self._lock:
            records = [r for r in self._records if name is None or r["name"] == name]
        return {"count": len(records), "received": records}

    def count(self, name: str) -> int:
        with self._lock:
            return sum(1 for r in self._records if r["name"] == name)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._scripts.clear()
