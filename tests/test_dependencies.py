"""The locks (README "Dependencies"): the runtime lock carries no test or lint tool, every pin has hashes,
and the development and image locks keep the runtime lock's versions."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = {"pytest", "pytest-django", "pytest-timeout", "mypy", "ruff", "hypothesis", "schemathesis", "selenium"}
_PIN = re.compile(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^ ;\\]+)")


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def locked(path: str) -> dict[str, str]:
    """``{package: version}`` of a lock, after checking that every pin carries at least one hash."""
    text = (ROOT / path).read_text()
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = _PIN.match(block)
        if match is None:
            continue
        name = _name(match.group(1))
        assert "--hash=sha256:" in block, f"{path}: {name} is pinned without a hash"
        pins[name] = match.group(3)
    assert pins, f"{path}: no pins found"
    return pins


def test_the_runtime_lock_has_hashes_and_no_test_or_lint_tool() -> None:
    runtime = locked("requirements.txt")
    assert not DEV_TOOLS & set(runtime)
    assert {"django", "celery", "psycopg", "psycopg-binary", "requests-oauthlib", "opentelemetry-sdk"} <= set(runtime)
    assert not {"django-structlog", "django-health-check"} & set(runtime)


def test_the_development_lock_is_the_runtime_lock_plus_the_tools() -> None:
    runtime, dev = locked("requirements.txt"), locked("requirements-dev.txt")
    assert DEV_TOOLS <= set(dev)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_image_lock_differs_from_the_runtime_lock_only_in_the_psycopg_implementation() -> None:
    runtime, image = locked("requirements.txt"), locked("requirements/image.txt")
    assert image.pop("psycopg-c") == runtime.pop("psycopg-binary") == runtime["psycopg"]
    assert image == runtime
