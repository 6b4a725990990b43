"""Request correlation, timing, security headers and request logs/metrics for every response.

Placed right after SecurityMiddleware, so it wraps everything else: the 500 page Django renders for an
uncaught exception, a 404, a CSRF 403 and a gzip-compressed body all pass back through it and get the
headers. (Django's GZipMiddleware, next in the list, compresses bodies of 200 bytes and more when the
client accepts gzip, which covers "gzip above 1 KB".)

Probe noise: successful ``/health``, ``/health/detailed`` and ``/metrics`` requests are counted in the
HTTP metrics but not logged (a scraper every 15 s would otherwise be most of the log); their failures
(status >= 400) are logged like any request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware import gzip

from reconcile_project.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS_TOTAL
from reconcile_project.observability import REQUEST_ID_HEADER, bind_request_id, clean_request_id

logger = logging.getLogger("app.api.requests")

QUIET_PATHS = frozenset({"/health", "/health/", "/health/detailed", "/health/detailed/", "/metrics", "/metrics/"})
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "1; mode=block"),
)
_UNMATCHED_ROUTE = "<unmatched>"


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request (``api/reports/<int:pk>/``), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return _UNMATCHED_ROUTE
    return match.route or match.view_name or _UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        path = request.path
        quiet = path in QUIET_PATHS
        with bind_request_id(request_id):
            if not quiet:
                logger.info(
                    "Request started",
                    extra={
                        "method": request.method,
                        "url": path,
                        "user_agent": request.headers.get("User-Agent", ""),
                        "remote_ip": request.META.get("REMOTE_ADDR", ""),
                    },
                )
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            process_time_ms = round(elapsed * 1000, 2)
            response[REQUEST_ID_HEADER] = request_id
            response["X-Process-Time"] = f"{process_time_ms:.2f}"
            for header, value in SECURITY_HEADERS:
                response[header] = value
            status = response.status_code
            route = route_of(request)
            method = request.method or ""
            HTTP_REQUESTS_TOTAL.labels(method, route, str(status)).inc()
            HTTP_REQUEST_DURATION.labels(method, route, str(status)).observe(elapsed)
            if not quiet or status >= 400:
                logger.log(
                    logging.ERROR if status >= 500 else logging.INFO,
                    "Request completed",
                    extra={
                        "method": request.method,
                        "url": path,
                        "route": route,
                        "status_code": status,
                        "process_time_ms": process_time_ms,
                        "user_agent": request.headers.get("User-Agent", ""),
                        "remote_ip": request.META.get("REMOTE_ADDR", ""),
                    },
                )
        return response


class GZipMiddleware(gzip.GZipMiddleware):
    """Django's, except for bodies that are compressed already (the compliance export's ZIP).

    Gzip would only cost CPU there, drop the ``Content-Length`` a download's progress needs, and a client
    that sends ``Accept-Encoding: gzip`` without decoding would save a gzip of the archive, not the archive.
    """

    COMPRESSED_TYPES = frozenset({"application/zip"})

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.get("Content-Type", "").partition(";")[0].strip() in self.COMPRESSED_TYPES:
            return response
        return super().process_response(request, response)
