"""The platform sandbox: a real threaded HTTP server speaking every platform's reporting API.

Each platform answers under ``/<slug>`` (so an adapter's ``base_url`` is ``http://127.0.0.1:8100/<slug>``),
with metrics that are deterministic per (platform, post id) unless set through the control API, and with
faults injected per platform. Control API (JSON bodies and answers):

``PUT    /_control/posts/<platform>/<post_id>``  ``{"views", "clicks", "conversions", "exists", "empty",
         "age_days"}`` — merge; a metric set to null is omitted by the platform; ``"exists": false`` makes
         the platform answer "not found" for the post; ``"empty": true`` makes it know the post but report
         no rows for it (the reporting lag of a new post); ``"age_days": n`` dates the post's creation n days
         back: the metrics are its lifetime totals, accrued evenly since then, so a report over a shorter
         window than the post's life shows only that window's share. Answers the post as the platform
         now reports it.
``GET    /_control/posts/<platform>/<post_id>``  the post as the platform reports it (without aging it).
``PUT    /_control/faults/<platform>``  ``{"error_rate", "latency_ms", "status", "rate_limit_retry_after",
         "outage", "timeout", "malformed", "partial", "job_seconds"}`` — replaces the platform's fault (absent
         keys off); ``job_seconds`` keeps asynchronous report jobs (X) PROCESSING that long.
``GET    /_control/faults[/<platform>]``,  ``DELETE /_control/faults/<platform>``
``POST   /_control/reset``  posts, faults, stats and ages forgotten; held connections released.
``GET    /_control/stats``  ``{"total": n, "platforms": {slug: {"total": n, "by_status": {"200": n, "timeout": n}}}}``
``GET    /_control/health``
``/_webhooks/<name>`` and ``/_control/webhooks``: the webhook inbox (platforms/sandbox/inbox.py), which
         receives the notifications of ``make run`` and of the tests and shows what it received.

Fault precedence per request: ``latency_ms`` (delay before any answer), ``timeout`` (hold the connection
that many seconds, or 30 for ``true``, then close it unanswered), ``outage`` (503), bad credential (the
platform's auth refusal), malformed request (the platform's 400), ``status`` (every call answered with that
status in the platform's error envelope), ``rate_limit_retry_after`` (the platform's throttle signal plus
``Retry-After``), ``error_rate`` (that fraction answered 500), unknown post, success. ``malformed`` and
``partial`` shape successes: invalid JSON, or clicks and conversions omitted.

Run it with ``python manage.py run_platform_sandbox`` or ``python -m platforms.sandbox.server``; in tests use
:class:`SandboxServer` (``port=0`` picks a free port) and :class:`SandboxClient`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from platforms.sandbox.client import SandboxClient
from platforms.sandbox.dialects import ACCOUNT, DIALECTS, ApiRequest, Batch, Dialect, Reply
from platforms.sandbox.inbox import WebhookInbox
from platforms.sandbox.state import Fault, SandboxState

__all__ = ["SandboxServer", "SandboxClient", "SandboxApp", "main"]

logger = logging.getLogger("platforms.sandbox")

#: Control bodies are tiny; anything bigger is a mistake, not a request to buffer.
MAX_BODY_BYTES = 1 << 20


@dataclass
class Outcome:
    """What the handler does with a request: wait ``delay``, then answer ``reply`` or (None) hang up."""

    reply: Reply | None
    delay: float = 0.0
    malformed: bool = False


class SandboxApp:
    """The sandbox's behaviour, independent of sockets (the handler only moves bytes)."""

    def __init__(self, dialects: Mapping[str, Dialect] = DIALECTS, *, clock: Callable[[], float] = time.time):
        self.dialects = dict(dialects)
        self.state = SandboxState(tuple(self.dialects), clock=clock)
        self.inbox = WebhookInbox()

    # --- platform APIs -------------------------------------------------------------------------

    def handle_api(self, slug: str, request: ApiRequest) -> Outcome:
        dialect = self.dialects[slug]
        fault = self.state.fault(slug)
        delay = fault.latency_ms / 1000
        if fault.timeout > 0:
            self.state.record(slug, "timeout")
            # Hold past any client read timeout; the handler then closes without a byte of answer.
            return Outcome(reply=None, delay=delay + fault.timeout)
        reply, malformed = self._answer(dialect, request, fault)
        self.state.record(slug, str(reply.status))
        return Outcome(reply=reply, delay=delay, malformed=malformed)

    def _answer(self, dialect: Dialect, request: ApiRequest, fault: Fault) -> tuple[Reply, bool]:
        if fault.outage:
            return dialect.error(503), False
        refusal = dialect.authenticate(request)
        if refusal is not None:
            return refusal, False
        routed: object = dialect.route_batch(request)
        if routed is None:
            routed = dialect.route(request)
        if isinstance(routed, Reply):
            return routed, False
        if fault.status is not None:
            reply = dialect.error(fault.status)
            if fault.rate_limit_retry_after is not None and fault.status in (429, 503):
                reply.headers["Retry-After"] = str(max(0, round(fault.rate_limit_retry_after)))
            return reply, False
        if fault.rate_limit_retry_after is not None:
            return dialect.throttled(fault.rate_limit_retry_after), False
        if self.state.roll(fault.error_rate):
            return dialect.error(500), False
        if routed is ACCOUNT:
            return dialect.account_call(request, self.state), fault.malformed
        if isinstance(routed, Batch):
            posts = {}
            for post_id in routed.post_ids:
                post = self.state.post(dialect.slug, post_id)
                posts[post_id] = (
                    replace(post, metrics=post.metrics.without("clicks", "conversions")) if fault.partial else post
                )
            return dialect.batch(request, posts, self.state), fault.malformed
        assert isinstance(routed, str)
        post = self.state.post(dialect.slug, routed)
        if not post.exists:
            return dialect.not_found(request, routed), False
        if fault.partial:
            post = replace(post, metrics=post.metrics.without("clicks", "conversions"))
        answer = dialect.empty if post.empty else dialect.success
        return answer(request, routed, post, self.state), fault.malformed

    # --- control API ---------------------------------------------------------------------------

    def handle_control(self, method: str, parts: list[str], body: bytes) -> Reply:
        try:
            return self._control(method, parts, body)
        except ValueError as exc:
            return Reply(400, {"error": str(exc)})

    def _control(self, method: str, parts: list[str], body: bytes) -> Reply:
        route, rest = (parts[0] if parts else ""), parts[1:]
        if route == "health" and not rest:
            return self._only(method, "GET") or Reply(200, {"ok": True, "platforms": sorted(self.dialects)})
        if route == "stats" and not rest:
            return self._only(method, "GET") or Reply(200, self.state.stats())
        if route == "reset" and not rest:
            if (wrong := self._only(method, "POST")) is not None:
                return wrong
            self.state.reset()
            self.inbox.reset()
            return Reply(200, {"ok": True})
        if route == "webhooks":
            if method == "DELETE" and not rest:
                self.inbox.reset()
                return Reply(200, {"ok": True})
            if method == "GET" and len(rest) == 2 and rest[1] == "count":
                return Reply(200, {"name": rest[0], "count": self.inbox.count(rest[0])})
            if method == "PUT" and len(rest) == 1:
                return Reply(200, self.inbox.script(rest[0], _json(body)))
            return self._only(method, "GET") or Reply(200, self.inbox.received(rest[0] if rest else None))
        if route == "faults" and not rest:
            return self._only(method, "GET") or Reply(200, self.state.faults())
        if route == "faults" and len(rest) == 1:
            platform = rest[0]
            if (unknown := self._unknown_platform(platform)) is not None:
                return unknown
            if method == "PUT":
                return Reply(200, {"platform": platform, **self.state.set_fault(platform, _json(body)).to_json()})
            if method == "DELETE":
                self.state.clear_fault(platform)
                return Reply(200, {"platform": platform, **self.state.fault(platform).to_json()})
            return self._only(method, "GET") or Reply(
                200, {"platform": platform, **self.state.fault(platform).to_json()}
            )
        if route == "posts" and len(rest) >= 2:
            platform, post_id = rest[0], "/".join(rest[1:])
            if (unknown := self._unknown_platform(platform)) is not None:
                return unknown
            if method == "PUT":
                return Reply(200, self.state.set_post(platform, post_id, _json(body)).to_json(platform, post_id))
            return self._only(method, "GET") or Reply(
                200, self.state.post(platform, post_id, touch=False).to_json(platform, post_id)
            )
        return Reply(404, {"error": f"no control route {method} /_control/{'/'.join(parts)}"})

    def _unknown_platform(self, platform: str) -> Reply | None:
        if platform in self.dialects:
            return None
        return Reply(404, {"error": f"unknown platform {platform!r}", "platforms": sorted(self.dialects)})

    @staticmethod
    def _only(method: str, allowed: str) -> Reply | None:
        return None if method == allowed else Reply(405, {"error": f"use {allowed}"})


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8")) if body.strip() else {}
    except ValueError:
        raise ValueError("body is not valid JSON") from None


# --- HTTP plumbing ---------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The stdlib default backlog of 5 drops bursts of new connections from a worker pool (the retried
    # connect then arrives a second later); a real API front end accepts far more.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp):
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        """Hang up on keep-alive clients too, so a stopped sandbox really refuses calls."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, like the real APIs: the adapters' pooled session reuses connections.
    protocol_version = "HTTP/1.1"
    server_version = "PlatformSandbox/1.0"
    sys_version = ""
    #: Idle keep-alive connections are dropped after this many seconds.
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # http.server writes the headers and the body separately; with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms per call on Linux), which would dominate every test and benchmark.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        app = self.server.app
        try:
            body = self._read_body()
            split = urlsplit(self.path)
            parts = [unquote(p) for p in split.path.split("/")[1:]]
            if parts and parts[0] == "_control":
                self._send(app.handle_control(self.command, [p for p in parts[1:] if p], body))
                return
            if parts and parts[0] == "_webhooks" and len(parts) == 2 and self.command == "POST":
                status, headers, delay = app.inbox.receive(parts[1], self.headers, body)
                if delay > 0:
                    app.state.hold(delay)
                self._send(Reply(status, {"ok": 200 <= status < 300}, headers=headers))
                return
            slug = parts[0] if parts else ""
            if slug not in app.dialects:
                self._send(Reply(404, {"error": f"unknown platform {slug!r}", "platforms": sorted(app.dialects)}))
                return
            request = ApiRequest(
                method=self.command,
                path=split.path[len(slug) + 1 :] or "/",
                query=parse_qs(split.query, keep_blank_values=True),
                headers=self.headers,
                body=body,
            )
            outcome = app.handle_api(slug, request)
            if outcome.delay > 0:
                app.state.hold(outcome.delay)
            if outcome.reply is None:
                self.close_connection = True
                return
            self._send(outcome.reply, malformed=outcome.malformed)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its read timeout fired during our latency): nothing left to answer.
            self.close_connection = True
        except Exception:
            logger.exception("sandbox failed on %s %s", self.command, self.path)
            try:
                self._send(Reply(500, {"error": "sandbox internal error"}))
            except OSError:
                self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: Reply, *, malformed: bool = False) -> None:
        payload = reply.encode(malformed=malformed)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class SandboxServer:
    """The sandbox on a background thread: ``with SandboxServer() as sandbox: ... sandbox.url ...``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, clock: Callable[[], float] = time.time):
        self.host = host
        self.port = port
        self.app = SandboxApp(clock=clock)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> SandboxState:
        return self.app.state

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            raise RuntimeError("sandbox already started")
        httpd = _HTTPServer((self.host, self.port), self.app)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"platform-sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        logger.info("platform sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        self.state.release_all()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("sandbox not started")
        return f"http://{self.host}:{self.port}"

    def base_url(self, slug: str) -> str:
        """The ``base_url`` an adapter for ``slug`` uses against this sandbox."""
        return f"{self.url}/{slug}"

    @property
    def client(self) -> SandboxClient:
        return SandboxClient(self.url)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _print_now(line: str) -> None:
    print(line, flush=True)  # a supervisor reading our pipe must see "listening" before we exit


def serve(host: str, port: int, *, announce: Callable[[str], None] = _print_now) -> None:
    """Run in the foreground until Ctrl-C or SIGTERM (the management command and ``-m`` entry)."""
    stop = threading.Event()
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except ValueError:  # not the main thread (e.g. call_command from a test): Ctrl-C/stop only
        pass
    server = SandboxServer(host, port).start()
    announce(f"Platform sandbox on {server.url} — platforms: {', '.join(sorted(server.app.dialects))}")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        announce("Platform sandbox stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the platform API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
