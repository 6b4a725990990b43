"""Platform slug → adapter. Adding a platform is one adapter module plus one line in :data:`ADAPTERS`.

:func:`get_adapter` builds from Django settings and caches per process (the adapter is stateless; the
pooled session lives in ``platforms.adapters.http``). :func:`build_adapter` takes an explicit config, so
tests and the sandbox drills need no settings at all.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from platforms.adapters.base import AdapterConfig, PlatformAdapter

ADAPTERS: dict[str, str] = {
    "reddit": "platforms.adapters.reddit.RedditAdapter",
    "instagram": "platforms.adapters.instagram.InstagramAdapter",
    "tiktok": "platforms.adapters.tiktok.TikTokAdapter",
    "youtube": "platforms.adapters.youtube.YouTubeAdapter",
    "x": "platforms.adapters.x.XAdapter",
    "meta": "platforms.adapters.meta.MetaAdapter",
}


class UnknownPlatform(LookupError):
    """No adapter is registered under this slug."""

    def __init__(self, slug: str):
        super().__init__(f"no adapter registered for platform {slug!r}; known: {', '.join(sorted(ADAPTERS))}")
        self.slug = slug


def adapter_class(slug: str) -> type[PlatformAdapter]:
    try:
        dotted = ADAPTERS[slug]
    except KeyError:
        raise UnknownPlatform(slug) from None
    module_name, _, class_name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, PlatformAdapter)):
        raise TypeError(f"{dotted} is not a PlatformAdapter")
    return cls


def build_adapter(slug: str, config: AdapterConfig) -> PlatformAdapter:
    """An adapter for ``slug`` with an explicit config (tests, drills, tools)."""
    return adapter_class(slug)(config)


@functools.cache
def get_adapter(slug: str) -> PlatformAdapter:
    """The process's adapter for ``slug``, from ``settings.PLATFORM_API[slug]`` and ``settings.BACKOFF_POLICY``."""
    # Imported here so that importing the registry (workers, tests, the sandbox) never needs settings.
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    adapter_class(slug)  # unknown slug: UnknownPlatform, before any settings complaint
    platform_api = getattr(settings, "PLATFORM_API", {}) or {}
    entry = platform_api.get(slug)
    if not isinstance(entry, Mapping) or not entry.get("base_url"):
        raise ImproperlyConfigured(f"settings.PLATFORM_API[{slug!r}] needs a 'base_url'")
    policy = getattr(settings, "BACKOFF_POLICY", None)
    config = AdapterConfig(
        base_url=str(entry["base_url"]),
        credentials=dict(entry.get("credentials") or {}),
        connect_timeout=float(_setting(policy, "connect_timeout_seconds", AdapterConfig.connect_timeout)),
        read_timeout=float(_setting(policy, "read_timeout_seconds", AdapterConfig.read_timeout)),
    )
    return build_adapter(slug, config)


def reset_adapters() -> None:
    """Forget cached adapters (after changing settings in a test)."""
    get_adapter.cache_clear()


def _setting(group: Any, name: str, default: float) -> Any:
    # BACKOFF_POLICY is a pydantic model in settings; accept a plain dict too (override_settings in tests).
    if group is None:
        return default
    if isinstance(group, Mapping):
        return group.get(name, default)
    return getattr(group, name, default)
