"""A small client for the sandbox's control API, for tests, drills and the demo."""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import quote

import requests


class _Unset(enum.Enum):
    UNSET = "UNSET"


#: "Leave this field as it is" (None means "the platform omits it").
UNSET = _Unset.UNSET


class SandboxClient:
    def __init__(self, url: str, *, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def set_post(
        self,
        platform: str,
        post_id: str,
        *,
        views: int | None | _Unset = UNSET,
        clicks: int | None | _Unset = UNSET,
        conversions: int | None | _Unset = UNSET,
        exists: bool | _Unset = UNSET,
        empty: bool | _Unset = UNSET,
        age_days: float | _Unset = UNSET,
    ) -> dict[str, Any]:
        """Pin a post's metrics (None: the platform omits the field) or, ``exists=False``, make it unknown;
        ``empty=True``: known, but its report has no rows yet; ``age_days``: created that long ago."""
        fields = {
            "views": views,
            "clicks": clicks,
            "conversions": conversions,
            "exists": exists,
            "empty": empty,
            "age_days": age_days,
        }
        body = {k: v for k, v in fields.items() if v is not UNSET}
        return self._call("PUT", f"posts/{platform}/{quote(post_id, safe='')}", body)

    def get_post(self, platform: str, post_id: str) -> dict[str, Any]:
        return self._call("GET", f"posts/{platform}/{quote(post_id, safe='')}")

    def set_fault(
        self,
        platform: str,
        *,
        error_rate: float = 0.0,
        latency_ms: float = 0,
        status: int | None = None,
        rate_limit_retry_after: float | None = None,
        outage: bool = False,
        timeout: bool | float = False,
        malformed: bool = False,
        partial: bool = False,
        job_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Replace ``platform``'s fault; ``timeout`` is True (hold 30 s) or the seconds to hold a call."""
        body = {
            "error_rate": error_rate,
            "latency_ms": latency_ms,
            "status": status,
            "rate_limit_retry_after": rate_limit_retry_after,
            "outage": outage,
            "timeout": timeout,
            "malformed": malformed,
            "partial": partial,
            "job_seconds": job_seconds,
        }
        return self._call("PUT", f"faults/{platform}", body)

    def clear_fault(self, platform: str) -> None:
        self._call("DELETE", f"faults/{platform}")

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def reset(self) -> None:
        self._call("POST", "reset")

    def stats(self) -> dict[str, Any]:
        """``{"total": n, "platforms": {slug: {"total": n, "by_status": {"200": n, "timeout": n}}}}``."""
        return self._call("GET", "stats")

    def requests_served(self, platform: str | None = None) -> int:
        stats = self.stats()
        if platform is None:
            return int(stats["total"])
        return int(stats["platforms"].get(platform, {}).get("total", 0))

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._session.request(method, f"{self.url}/_control/{path}", json=body, timeout=self.timeout)
        if response.status_code >= 400:
            raise requests.HTTPError(
                f"sandbox {method} /_control/{path}: HTTP {response.status_code}: {response.text[:300]}",
                response=response,
            )
        return response.json()
