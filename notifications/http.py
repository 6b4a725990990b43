"""Outbound HTTP to receivers we do not control: refuse internal addresses, never follow redirects.

* The host is resolved once, every address it resolves to is checked, and the request is sent to the
  checked address (the Host header and, for HTTPS, SNI and certificate checks keep the name): a DNS answer
  that changes between the check and the connection (DNS rebinding) cannot reach another host.
* Loopback and private addresses are refused unless ``allow_private_addresses`` (development, tests);
  link-local (cloud metadata at 169.254.169.254), multicast, reserved and unspecified ones always are.
* Redirects are not followed (a 3xx is a failed try), timeouts are short, and at most
  ``max_response_bytes`` of the answer is read.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from reconcile_project.config import NotificationSettings

USER_AGENT = "reconcile-webhooks/1.0"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Cloud metadata services outside the link-local range (AWS IPv6, Alibaba).
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


class Refused(Exception):
    """The URL may not be called (scheme, address); no request was made."""


class Unresolvable(Refused):
    """The host name does not resolve (perhaps only for now); no request was made."""


@dataclass(frozen=True)
class Response:
    status_code: int
    latency_ms: float
    excerpt: str
    location: str = ""


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``ip`` may not be called, or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES or ip.is_link_local:
        return "a link-local or metadata address"
    if ip.is_loopback:
        return None if allow_private else "a loopback address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return None if allow_private else "a private address"
    return None


def check_url(url: str, config: NotificationSettings) -> tuple[str, int, IPAddress]:
    """(host, port, the checked address to connect to), or :class:`Refused` saying why."""
    parts = urlsplit(url)
    allowed = {"https", "http"} if config.allow_http else {"https"}
    if parts.scheme not in allowed:
        raise Refused(f"the URL must use {' or '.join(sorted(allowed))}, not {parts.scheme or 'nothing'!r}")
    host = parts.hostname
    if not host:
        raise Refused("the URL has no host")
    if parts.username or parts.password:
        raise Refused("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the URL's port is not a number") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve ({exc})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for ip in addresses:
        problem = address_problem(ip, allow_private=config.allow_private_addresses)
        if problem is not None:
            raise Refused(f"{host} resolves to {ip}, {problem}")
    return host, port, addresses[0]


class _PinnedAdapter(HTTPAdapter):
    """Connects to the URL's (already checked) address while TLS still verifies the original name."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            # urllib3 pool keys: SNI and the certificate's name are the URL's host, not the address.
            pool_kwargs = {**pool_kwargs, "server_hostname": self.hostname, "assert_hostname": self.hostname}  # type: ignore[typeddict-unknown-key]
        return host_params, pool_kwargs


_local = threading.local()
#: Keep-alive sessions per thread, one per (scheme, host, port, checked address); least recently used out.
SESSIONS_PER_THREAD = 32


def _session(scheme: str, host: str, port: int, ip: IPAddress) -> requests.Session:
    sessions: OrderedDict[tuple[str, str, int, str], requests.Session] = getattr(_local, "sessions", None) or (
        OrderedDict()
    )
    _local.sessions = sessions
    key = (scheme, host, port, str(ip))
    session = sessions.pop(key, None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment may see (or redirect) the payload
        session.mount(f"{scheme}://", _PinnedAdapter(host))
        while len(sessions) >= SESSIONS_PER_THREAD:
            sessions.popitem(last=False)[1].close()
    sessions[key] = session
    return session


def post(url: str, body: bytes, headers: dict[str, str], config: NotificationSettings) -> Response:
    """POST ``body`` to ``url`` safely. Raises :class:`Refused` (nothing sent) or ``requests.RequestException``."""
    host, port, ip = check_url(url, config)
    parts = urlsplit(url)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    default_port = 443 if parts.scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    # Connections are kept alive per checked address: a host that resolves elsewhere gets a new session.
    session = _session(parts.scheme, host, port, ip)
    started = time.perf_counter()
    try:
        with session.post(
            pinned,
            data=body,
            headers={
                **headers,
                "Host": host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            allow_redirects=False,
            stream=True,
            timeout=(config.connect_timeout_seconds, config.read_timeout_seconds),
        ) as response:
            raw = (
                response.raw.read(config.max_response_bytes, decode_content=False) if config.max_response_bytes else b""
            )
            latency_ms = (time.perf_counter() - started) * 1000
            return Response(
                status_code=response.status_code,
                latency_ms=round(latency_ms, 3),
                excerpt=raw[:500].decode("utf-8", "replace"),
                location=response.headers.get("Location", "")[:500],
            )
    except requests.RequestException:
        _local.sessions.pop((parts.scheme, host, port, str(ip)), None)
        session.close()
        raise
