"""docs/RUNBOOK.md and scripts/runbook_check.sh stay in step: every command in the runbook is run by the
check, names only things that exist, and covers every symptom of the troubleshooting table."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
CHECK = ROOT / "scripts" / "runbook_check.sh"
PLACEHOLDERS = {"<request-id>", "<report-id>", "<campaign-id>", "<platform>", "<staff-key>", "<yyyy-mm-dd>"}
SYMPTOMS = (
    "All reconciliations become MISSING",
    "Trust scores plummet globally",
    "Alert flood (overclaim)",
    "Queue depth climbs",
    "High latency on submissions",
    "Circuit breaker flapping",
    "Worker exceptions accumulating",
)


def bash_blocks() -> list[str]:
    commands, inside = [], False
    for line in RUNBOOK.read_text().splitlines():
        stripped = line.strip()
        if stripped == "```bash":
            inside = True
        elif stripped.startswith("```"):
            inside = False
        elif inside and stripped and not stripped.startswith("#"):
            commands.append(stripped)
    return commands


def test_the_check_runs_exactly_the_runbook_commands() -> None:
    listed = subprocess.run([str(CHECK), "--list"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert listed.splitlines() == bash_blocks()
    assert len(bash_blocks()) > 50


def test_every_command_uses_only_placeholders_the_check_fills() -> None:
    for command in bash_blocks():
        assert set(re.findall(r"<[a-z-]+>", command)) <= PLACEHOLDERS, command
    script = CHECK.read_text()
    for placeholder in PLACEHOLDERS:
        assert f"//{placeholder}/" in script, placeholder


def test_commands_named_in_prose_are_in_a_checked_block() -> None:
    """Inline code that looks like a command must be one the check runs (prose may shorten it)."""
    blocks = "\n".join(bash_blocks())
    prose_commands = re.findall(r"`((?:\.venv/bin/|curl |grep |jq |tail )[^`]+)`", RUNBOOK.read_text())
    for command in prose_commands:
        assert command in blocks, command


def test_every_management_command_named_exists() -> None:
    named = set(re.findall(r"manage\.py ([a-z_]+)", RUNBOOK.read_text()))
    procedures = {"queue_status", "breaker_status", "breaker_reset", "dispatch_due", "rereconcile", "reconcile_report"}
    assert procedures <= named
    missing = named - set(get_commands())
    assert not missing, f"the runbook names management commands that do not exist: {missing}"


@pytest.mark.parametrize("subcommand", ["active", "stats", "registered"])
def test_celery_inspect_commands_are_in_the_runbook(subcommand: str) -> None:
    assert f".venv/bin/celery -A reconcile_project inspect {subcommand}" in bash_blocks()


def test_the_troubleshooting_table_covers_every_symptom_with_commands() -> None:
    text = RUNBOOK.read_text()
    for symptom in SYMPTOMS:
        assert f"### {symptom}" in text, symptom
        section = text.split(f"### {symptom}", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        assert "```bash" in section, f"no commands for {symptom}"


def test_the_seed_runbook_greps_still_work_on_the_log_file() -> None:
    commands = "\n".join(bash_blocks())
    for grep in (
        'grep "Reconciliation job failed"',
        'grep "Performance: platform_fetch"',
        'grep "circuit_"',
        'grep "<request-id>"',
        'curl -s -H "Authorization: Bearer <staff-key>" http://127.0.0.1:8000/health/detailed',
        'curl -s -H "Authorization: Bearer <staff-key>" http://127.0.0.1:8000/debug/circuit-breakers',
    ):
        assert grep in commands, grep
