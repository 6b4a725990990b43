"""Where each platform adapter points: the real API or the platform sandbox.

Pure functions over the values the settings build (no Django import), shared by the settings (the start-up
warning), the system check (production refuses platforms without a real API) and ``/health/detailed``
(which mode the deployment runs in).

A platform is *on the sandbox* when its base URL is under ``SANDBOX_URL`` or a credential still has the
sandbox's placeholder value; it is *unconfigured* when its base URL or a credential is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SANDBOX_CREDENTIAL_PREFIX = "sandbox-"


def sandbox_credential(key: str) -> str:
    """The placeholder the sandbox accepts for credential ``key`` (``sandbox-token``, ``sandbox-account_id``)."""
    return f"{SANDBOX_CREDENTIAL_PREFIX}token" if key.endswith("token") else f"{SANDBOX_CREDENTIAL_PREFIX}{key}"


def env_name(slug: str, key: str) -> str:
    """The environment variable that sets ``key`` (``base_url`` or a credential) of platform ``slug``."""
    return f"PLATFORM_{slug.upper()}_{key.upper()}"


def _on_sandbox_url(base_url: str, sandbox_url: str) -> bool:
    base, sandbox = base_url.rstrip("/"), sandbox_url.rstrip("/")
    return bool(sandbox) and (base == sandbox or base.startswith(sandbox + "/"))


def not_real(slug: str, entry: Mapping[str, Any], *, sandbox_url: str) -> list[str]:
    """The variables of platform ``slug`` that are empty or still point at the sandbox (empty: all real)."""
    names = []
    base_url = str(entry.get("base_url") or "")
    if not base_url or _on_sandbox_url(base_url, sandbox_url):
        names.append(env_name(slug, "base_url"))
    for key, value in (entry.get("credentials") or {}).items():
        if not value or str(value).startswith(SANDBOX_CREDENTIAL_PREFIX):
            names.append(env_name(slug, key))
    return names


def sandbox_platforms(platform_api: Mapping[str, Mapping[str, Any]], *, sandbox_url: str) -> list[str]:
    """Platforms that would call the sandbox or send it its placeholder credentials."""
    return [
        slug
        for slug, entry in platform_api.items()
        if _on_sandbox_url(str(entry.get("base_url") or ""), sandbox_url)
        or any(str(v).startswith(SANDBOX_CREDENTIAL_PREFIX) for v in (entry.get("credentials") or {}).values())
    ]


def platforms_mode(
    platform_api: Mapping[str, Mapping[str, Any]], *, sandbox_url: str, use_sandbox: bool
) -> dict[str, Any]:
    """``/health/detailed``'s ``platforms`` block: ``live`` only when no platform touches the sandbox."""
    on_sandbox = sandbox_platforms(platform_api, sandbox_url=sandbox_url)
    block: dict[str, Any] = {
        "mode": "sandbox" if on_sandbox else "live",
        "use_sandbox": use_sandbox,
        "sandbox": on_sandbox,
    }
    if on_sandbox:
        block["sandbox_url"] = sandbox_url
    return block
