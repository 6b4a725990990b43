"""The platform sandbox: a local HTTP server that speaks every platform's reporting API (DESIGN §6).

``python -m platforms.sandbox --port 8100`` runs it without Django; ``manage.py run_platform_sandbox`` with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from platforms.sandbox.client import UNSET, SandboxClient
from platforms.sandbox.dialects import SANDBOX_CREDENTIALS, sandbox_credentials

if TYPE_CHECKING:
    from platforms.sandbox.server import SandboxServer

__all__ = ["SANDBOX_CREDENTIALS", "UNSET", "SandboxClient", "SandboxServer", "sandbox_credentials"]


def __getattr__(name: str) -> Any:
    # Lazy so that ``python -m platforms.sandbox.server`` does not import the module twice.
    if name == "SandboxServer":
        from platforms.sandbox.server import SandboxServer

        return SandboxServer
    raise AttributeError(name)
