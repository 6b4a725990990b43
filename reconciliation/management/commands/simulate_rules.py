from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from reconciliation.models import ReconciliationStatus
from reconciliation.rules import METRICS
from reconciliation.services.simulation import Selection, SimulationError, parse_set_values, simulation_run


def parse_when(option: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{option}: not a date or datetime: {value!r}")
        parsed = dt.datetime.combine(day, dt.time())
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.UTC)


def add_selection_arguments(parser: CommandParser) -> None:
    parser.add_argument("--campaign", type=int, help="campaign id")
    parser.add_argument("--since", help="submitted at or after (YYYY-MM-DD or ISO datetime, UTC if naive)")
    parser.add_argument("--until", help="submitted before (YYYY-MM-DD or ISO datetime, UTC if naive)")
    parser.add_argument("--status", action="append", choices=ReconciliationStatus.values, help="repeatable")
    parser.add_argument("--limit", type=int, help="only the newest N claims of the selection")


def run_simulation(command: BaseCommand, options: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Run a simulation for a command: a progress bar on stderr unless --json or --no-progress."""
    if options.get("limit") is not None and options["limit"] < 1:
        raise CommandError("--limit must be at least 1")
    selection = Selection(
        campaign_id=options.get("campaign"),
        since=parse_when("--since", options.get("since")),
        until=parse_when("--until", options.get("until")),
        statuses=tuple(options.get("status") or ()),
        limit=options.get("limit"),
        ruleset_other_than=kwargs.pop("ruleset_other_than", None),
    )
    bar = tqdm(unit="claim", unit_scale=True, disable=options.get("no_progress", False), file=command.stderr)
    try:

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        shown = not bar.disable
        return simulation_run(
            selection=selection, progress=bar.update if shown else None, total=total if shown else None, **kwargs
        )
    except SimulationError as exc:
        raise CommandError(str(exc)) from None
    finally:
        bar.close()


def _cell(count: int, pct: float) -> str:
    return f"{count} ({pct:g} %)"


def render(result: dict[str, Any]) -> str:
    """The simulation's report for people."""
    lines: list[str] = []
    p = result["proposed"]
    lines.append(
        f"Rule sets: global {p['global_current']} → {p['global_proposed']}; "
        f"{p['campaigns_changed']} campaign rule set(s) would change"
    )
    for c in p["campaign_rulesets"]:
        lines.append(f"  campaign {c['campaign_id']}: {c['current']} → {c['proposed']}")
    lines.append(
        f"Claims: {result['claims']} ({result['reevaluated']} re-classified, "
        f"{result['without_evidence']} without a deciding snapshot keep their verdict); "
        f"{result['changed_status']} would change status ({result['changed_status_pct']:g} %), "
        f"{result['changed_level']} only their level"
    )
    lines.append("")
    lines.append("Transition matrix (old status → new status: claims, % of the old status):")
    for cell in result["matrix"]:
        mark = "  " if cell["from"] == cell["to"] else "* "
        lines.append(f"  {mark}{cell['from']:<26} → {cell['to']:<26} {_cell(cell['claims'], cell['pct_of_from'])}")
    if result["level_changes"]:
        lines.append("Level changes:")
        for c in result["level_changes"]:
            lines.append(f"  {c['from']}/{c['level_from']} → {c['to']}/{c['level_to']}: {c['claims']}")
    lines.append("")
    lines.append("Per-metric diffs, claims per bin (before → after):")
    bins = result["diffs"]["bins"]
    lines.append("  " + " " * 12 + "".join(f"{b:>16}" for b in bins))
    for metric in METRICS:
        before = result["diffs"]["before"][metric]
        after = result["diffs"]["after"][metric]
        lines.append(f"  {metric:<12}" + "".join(f"{f'{x}→{y}':>16}" for x, y in zip(before, after, strict=True)))
    lines.append("")
    t = result["trust"]
    lines.append(
        f"Trust: {t['affiliates_moved']} affiliate(s) would move, {t['affiliates_crossing_buckets']} across a "
        f"bucket boundary ({t['into_critical']} into critical, {t['out_of_critical']} out of it)"
    )
    for c in t["crossings"]:
        lines.append(f"  {c['from']} → {c['to']}: {c['affiliates']}")
    for m in t["largest_moves"][:10]:
        lines.append(
            f"  affiliate {m['affiliate_id']}: {m['score_before']} → {m['score_after']} ({m['change']}), "
            f"{m['bucket_before']} → {m['bucket_after']}"
        )
    a = result["alerts"]
    lines.append(
        "Alerts: would raise "
        + (", ".join(f"{k} {v}" for k, v in sorted(a["would_raise"].items())) or "none")
        + "; no longer raised "
        + (", ".join(f"{k} {v}" for k, v in sorted(a["no_longer_raised"].items())) or "none")
    )
    lines.append(
        "Verdicts decided under: "
        + ", ".join(f"{k or '(unversioned)'} {v}" for k, v in result["decided_under"].items())
    )
    if result["examples"]:
        lines.append("")
        lines.append("Examples of changed claims:")
        for e in result["examples"]:
            c, pl = e["claimed"], e["platform"]
            lines.append(
                f"  report {e['report_id']} (campaign {e['campaign_id']}): claimed {c['views']}/{c['clicks']}/"
                f"{c['conversions']}, platform {pl['views']}/{pl['clicks']}/{pl['conversions']} after "
                f"{e['hours_since_claim']} h: {e['before']['status']} → {e['after']['status']}"
            )
    lines.append("")
    lines.append(
        f"{result['claims']} claims in {result['seconds']} s ({result['claims_per_s']} claims/s); nothing was written"
    )
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "What-if: re-classify stored claims and their platform snapshots under proposed rules and show what "
        "would change (status transitions, diffs, trust, alerts, examples). Writes nothing, calls no platform. "
        "Propose global settings with --set GROUP__FIELD=value (repeatable) and/or a campaign's overrides "
        "with --overrides JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="GROUP__FIELD=value",
            help="a proposed global setting, e.g. RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT=0.08 (repeatable)",
        )
        parser.add_argument(
            "--overrides",
            help="proposed rule_overrides JSON, used instead of each selected campaign's own "
            '(with --campaign: that campaign\'s), e.g. \'{"RECONCILIATION_SETTINGS": {"low_max": 0.12}}\'',
        )
        add_selection_arguments(parser)
        parser.add_argument("--examples", type=int, default=20, help="changed claims to show (default 20)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        overrides = None
        if o["overrides"] is not None:
            try:
                overrides = json.loads(o["overrides"])
            except ValueError as exc:
                raise CommandError(f"--overrides: not JSON: {exc}") from None
            if not isinstance(overrides, dict):
                raise CommandError("--overrides: must be a JSON object of setting groups")
        try:
            set_values = parse_set_values(o["set"])
        except SimulationError as exc:
            raise CommandError(f"--set: {exc}") from None
        if o["json"]:
            o["no_progress"] = True
        result = run_simulation(self, o, set_values=set_values, overrides=overrides, examples=o["examples"])
        self.stdout.write(json.dumps(result, indent=2) if o["json"] else render(result))
