"""What-if simulation of a rule change on stored verdicts (DESIGN §9 "Simulation"). Pure: no ORM, no I/O.

The service streams one :data:`Row` per claim (its stored verdict and the platform snapshot that decided
it) into :class:`Simulation`, which re-classifies it under a proposed rule set and only counts: the
transition matrix old status → new status, the per-metric diff distribution before and after, each
affiliate's trust change, the alerts that would be raised or no longer raised, and a few examples. Memory
is bounded by the number of statuses, bins, affiliates and examples, never by the number of claims.

**Old** is the verdict as stored (status, level, diffs, the ledger's sum for the report). **New** is what a
re-reconciliation of the same evidence would store, following the attempt protocol:

* a claim without evidence (PENDING, MISSING: no snapshot decided it) keeps its verdict: no rule turns a
  failed fetch into something else;
* a conclusive verdict is never replaced by an inconclusive outcome (a re-check that cannot conclude keeps
  the verdict and its trust);
* the report's ledger is moved to sum to the new conclusive status's delta (``trust.correction_delta``), so
  the affiliate's score moves by ``delta(new) − ledger sum``; an inconclusive new outcome moves nothing;
* an OVERCLAIM or HIGH_DISCREPANCY alert is raised when a conclusive verdict (status, level) changes to one
  of those; a claim stored with one and re-decided as something else no longer carries it; LOW_TRUST is
  raised for each affiliate whose projected score crosses into the critical bucket.

Speed: :func:`classify` computes exactly (fractions), about 30 µs a claim. :class:`FastClassifier` decides
with floats and falls back to :func:`classify` whenever a compared value lies within ``1e-9`` (relative) of
the boundary it is compared with, where float rounding (about ``1e-16``) could flip the comparison. Away
from the boundaries floats and fractions order the values the same way, so the status is the exact one;
the property test in ``tests/reconciliation/test_rules_simulation.py`` checks it on random inputs.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .classification import CONCLUSIVE_STATUSES, METRICS, TRUST_EVENT_BY_STATUS, Claim, Observed, Status, classify
from .trust import TrustBucket, bucket, to_score

if TYPE_CHECKING:
    from reconcile_project.config import ReconciliationSettings, RuleSet, TrustScoring

#: Columns of a streamed row, in order (the service selects them in this order).
ROW_COLUMNS: tuple[str, ...] = (
    "report_id",
    "campaign_id",
    "affiliate_id",
    "claimed_views",
    "claimed_clicks",
    "claimed_conversions",
    "status",  # stored verdict
    "level",
    "views_diff",  # stored relative diffs (None when not measured)
    "clicks_diff",
    "conversions_diff",
    "ledger_units",  # the report's ledger sum in ten-thousandths (the log's trust_delta × 10,000), or None
    "fingerprint",  # the rule set the stored verdict was made under ("" before versioning)
    "platform_views",  # the deciding snapshot (all None when there is none)
    "platform_clicks",
    "platform_conversions",
    "seconds_since_claim",  # snapshot's fetched_at − claim's submitted_at, in seconds (None without snapshot)
)
Row = tuple[Any, ...]

#: Upper bounds (inclusive) of the diff histogram's bins; the last bin is everything above 0.5.
DIFF_BIN_EDGES: tuple[float, ...] = (-0.5, -0.2, -0.1, -0.05, -1e-12, 1e-12, 0.05, 0.1, 0.2, 0.5)
DIFF_BIN_LABELS: tuple[str, ...] = (
    "≤ -50 %",
    "-50 % … -20 %",
    "-20 % … -10 %",
    "-10 % … -5 %",
    "-5 % … 0",
    "0",
    "0 … 5 %",
    "5 % … 10 %",
    "10 % … 20 %",
    "20 % … 50 %",
    "> 50 %",
)

#: Status order of the matrix (the pure rules' order).
STATUSES: tuple[str, ...] = tuple(str(s) for s in Status)
_CONCLUSIVE = frozenset(str(s) for s in CONCLUSIVE_STATUSES)
_OVER = str(Status.AFFILIATE_OVERCLAIMED)
_HIGH = str(Status.DISCREPANCY_HIGH)
_INCOMPLETE = str(Status.INCOMPLETE_PLATFORM_DATA)
_EPS = 1e-9
#: Counts above this are not exact as floats: classified exactly.
_FLOAT_EXACT = 2**50


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    level: str | None
    #: Signed relative diff per metric (None when the platform omitted it), in METRICS order.
    diffs: tuple[float | None, float | None, float | None]


class FastClassifier:
    """:func:`classify` for one ``ReconciliationSettings``, fast on plain ints (see the module docstring)."""

    __slots__ = (
        "settings",
        "rate",
        "cap",
        "floors",
        "base",
        "low",
        "medium",
        "over_high",
        "over_critical",
        "bands",
        "over_margins",
        "exact_calls",
    )

    def __init__(self, settings: ReconciliationSettings) -> None:
        self.settings = settings
        self.rate = float(settings.growth_per_hour_pct)
        self.cap = float(settings.growth_cap_hours)
        self.floors = tuple(settings.abs_tolerance(m) for m in METRICS)
        self.base = float(settings.base_tolerance_pct)
        self.low = float(settings.low_max)
        self.medium = float(settings.medium_max)
        self.over_high = float(settings.overclaim_threshold_pct)
        self.over_critical = float(settings.overclaim_critical_pct)
        #: (bound, how close to it is too close for floats, status, level), in the table's order.
        self.bands = tuple(
            (bound, _margin(bound), status, level)
            for bound, status, level in (
                (self.base, "MATCHED", None),
                (self.low, "DISCREPANCY_LOW", "LOW"),
                (self.medium, "DISCREPANCY_MEDIUM", "MEDIUM"),
            )
        )
        self.over_margins = (_margin(self.over_critical), _margin(self.over_high))
        #: How often the exact path decided (for the benchmark's curiosity and the tests).
        self.exact_calls = 0

    def exact(self, claimed: tuple[int, int, int], observed: tuple[int | None, ...], hours: float) -> Verdict:
        self.exact_calls += 1
        result = classify(
            claimed=Claim(*claimed),
            platform=Observed(*observed),
            hours_since_claim=hours,
            settings=self.settings,
        )
        diffs = result.diffs
        return Verdict(
            str(result.status),
            None if result.level is None else str(result.level),
            (diffs["views"], diffs["clicks"], diffs["conversions"]),
        )

    def classify(self, claimed: tuple[int, int, int], observed: tuple[int | None, ...], hours: float) -> Verdict:
        """The verdict for a claim and a snapshot with at least one metric; ``hours`` since the claim."""
        h = min(max(hours, 0.0), self.cap)
        growth = 1.0 + self.rate * h if h and self.rate else 1.0
        diffs: list[float | None] = []
        max_pos = 0.0
        max_abs = 0.0
        has_over = False
        missing = False
        for c, p, floor in zip(claimed, observed, self.floors, strict=True):
            if p is None:
                diffs.append(None)
                missing = True
                continue
            if c > _FLOAT_EXACT or p > _FLOAT_EXACT:
                return self.exact(claimed, observed, hours)
            if c > p:
                if c - p <= floor:
                    diffs.append(0.0)
                    continue
                d = (c - p) / (p if p > 1 else 1)
                has_over = True
                if d > max_pos:
                    max_pos = d
                if d > max_abs:
                    max_abs = d
                diffs.append(d)
                continue
            if growth == 1.0:
                if c < p and p - c > floor:
                    d = (c - p) / p
                    if -d > max_abs:
                        max_abs = -d
                    diffs.append(d)
                else:
                    diffs.append(0.0)
                continue
            discounted = p / growth
            gap = discounted - c
            # c < P/G and P/G − c ≤ floor are decided on a float P/G: exact when it is not close.
            margin = _EPS * discounted if discounted > 1.0 else _EPS
            if -margin <= gap <= margin or -margin <= gap - floor <= margin:
                return self.exact(claimed, observed, hours)
            if gap > floor:
                d = -gap / discounted
                if -d > max_abs:
                    max_abs = -d
                diffs.append(d)
            else:
                diffs.append(0.0)

        if has_over:
            critical, high = self.over_critical, self.over_high
            near_critical, near_high = self.over_margins
            if -near_critical <= max_pos - critical <= near_critical or -near_high <= max_pos - high <= near_high:
                return self.exact(claimed, observed, hours)
            if max_pos >= critical:
                return Verdict(_OVER, "CRITICAL", (diffs[0], diffs[1], diffs[2]))
            if max_pos >= high:
                return Verdict(_OVER, "HIGH", (diffs[0], diffs[1], diffs[2]))
        if missing:
            return Verdict(_INCOMPLETE, None, (diffs[0], diffs[1], diffs[2]))
        for bound, margin, status, level in self.bands:
            if -margin <= max_abs - bound <= margin:
                return self.exact(claimed, observed, hours)
            if max_abs <= bound:
                return Verdict(status, level, (diffs[0], diffs[1], diffs[2]))
        return Verdict(_HIGH, "HIGH", (diffs[0], diffs[1], diffs[2]))


def _margin(bound: float) -> float:
    """How close to ``bound`` a float comparison is left to the exact rules."""
    return _EPS * max(1.0, abs(bound))


def _units(value: float) -> int:
    """A trust delta in ten-thousandths, quantised as the ledger quantises it."""
    return int(to_score(value).scaleb(4))


class _Rules:
    """What the simulation needs of one campaign's rule set, precomputed."""

    __slots__ = ("classifier", "units", "fingerprint")

    def __init__(self, ruleset: RuleSet) -> None:
        self.classifier = FastClassifier(ruleset.reconciliation)
        self.fingerprint = ruleset.fingerprint
        #: Nominal trust delta of each status, in ten-thousandths (None: not conclusive).
        self.units: dict[str, int | None] = {
            str(status): None if event is None else _units(ruleset.trust.delta(str(event)))
            for status, event in TRUST_EVENT_BY_STATUS.items()
        }


class Simulation:
    """Accumulates rows (:data:`ROW_COLUMNS`) under a proposed rule set per campaign; :meth:`result` reports.

    ``proposed`` maps a campaign id to its proposed rule set; ``default`` is used for a campaign not in it.
    ``trust_before``/``trust_after`` decide the buckets of the affiliates' scores (the global trust settings
    as they are and as proposed).
    """

    def __init__(
        self,
        *,
        proposed: Mapping[int, RuleSet],
        default: RuleSet,
        trust_before: TrustScoring,
        trust_after: TrustScoring,
        examples: int = 20,
    ) -> None:
        self._default = _Rules(default)
        self._rules: dict[int, _Rules] = {}
        cache: dict[str, _Rules] = {default.fingerprint: self._default}
        for campaign_id, ruleset in proposed.items():
            self._rules[campaign_id] = cache.setdefault(ruleset.fingerprint, _Rules(ruleset))
        self.trust_before = trust_before
        self.trust_after = trust_after
        self.examples_limit = examples
        self.claims = 0
        self.reevaluated = 0
        self.matrix: Counter[tuple[str, str]] = Counter()
        self.levels: Counter[tuple[str, str, str | None, str | None]] = Counter()
        self.before_bins: dict[str, list[int]] = {m: [0] * len(DIFF_BIN_LABELS) for m in METRICS}
        self.after_bins: dict[str, list[int]] = {m: [0] * len(DIFF_BIN_LABELS) for m in METRICS}
        #: affiliate id -> trust change in ten-thousandths (only affiliates whose score would move).
        self.trust_units: Counter[int] = Counter()
        self.alerts_raised: Counter[str] = Counter()
        self.alerts_cleared: Counter[str] = Counter()
        self.fingerprints: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def add_rows(self, rows: Iterable[Row]) -> int:
        """Classify and count a batch of rows; returns how many."""
        n = 0
        rules_of = self._rules
        default = self._default
        matrix = self.matrix
        before_bins = self.before_bins
        after_bins = self.after_bins
        views_before, clicks_before, conversions_before = (before_bins[m] for m in METRICS)
        views_after, clicks_after, conversions_after = (after_bins[m] for m in METRICS)
        for row in rows:
            n += 1
            (
                report_id,
                campaign_id,
                affiliate_id,
                cv,
                cc,
                ccv,
                status,
                level,
                dv,
                dc,
                dcv,
                ledger,
                fingerprint,
                pv,
                pc,
                pcv,
                seconds,
            ) = row
            self.fingerprints[fingerprint] += 1
            for value, bins in ((dv, views_before), (dc, clicks_before), (dcv, conversions_before)):
                if value is not None:
                    bins[bisect.bisect_left(DIFF_BIN_EDGES, value)] += 1
            if seconds is None or (pv is None and pc is None and pcv is None):
                # No evidence decided this verdict: it stands under any rules.
                matrix[(status, status)] += 1
                for value, bins in ((dv, views_after), (dc, clicks_after), (dcv, conversions_after)):
                    if value is not None:
                        bins[bisect.bisect_left(DIFF_BIN_EDGES, value)] += 1
                continue
            self.reevaluated += 1
            rules = rules_of.get(campaign_id, default)
            verdict = rules.classifier.classify((cv, cc, ccv), (pv, pc, pcv), seconds / 3600.0)
            new_status, new_level = verdict.status, verdict.level
            for value, bins in zip(verdict.diffs, (views_after, clicks_after, conversions_after), strict=True):
                if value is not None:
                    bins[bisect.bisect_left(DIFF_BIN_EDGES, value)] += 1
            if new_status not in _CONCLUSIVE and status in _CONCLUSIVE:
                new_status, new_level = status, level  # an outcome that cannot conclude keeps the verdict
            matrix[(status, new_status)] += 1
            if new_status == status and new_level == level:
                continue
            self.levels[(status, new_status, level, new_level)] += 1
            new_units = rules.units[new_status]
            if new_units is not None:
                change = new_units - (ledger or 0)
                if change:
                    self.trust_units[affiliate_id] += change
                for kind, alert_status in (("OVERCLAIM", _OVER), ("HIGH_DISCREPANCY", _HIGH)):
                    if new_status == alert_status:
                        self.alerts_raised[kind] += 1
                    elif status == alert_status:
                        self.alerts_cleared[kind] += 1
            if len(self.examples) < self.examples_limit:
                self.examples.append(
                    {
                        "report_id": report_id,
                        "campaign_id": campaign_id,
                        "affiliate_id": affiliate_id,
                        "claimed": {"views": cv, "clicks": cc, "conversions": ccv},
                        "platform": {"views": pv, "clicks": pc, "conversions": pcv},
                        "hours_since_claim": round(seconds / 3600.0, 3),
                        "before": {"status": status, "level": level, "diffs": _diffs((dv, dc, dcv))},
                        "after": {"status": new_status, "level": new_level, "diffs": _diffs(verdict.diffs)},
                        "fingerprint": fingerprint,
                    }
                )
        self.claims += n
        return n

    def trust_report(self, scores: Mapping[int, Any], *, movers: int = 20) -> dict[str, Any]:
        """Trust per affiliate: ``scores`` are the current scores of the affiliates in :attr:`trust_units`."""
        crossings: Counter[tuple[str, str]] = Counter()
        into_critical = out_of_critical = 0
        moved: list[dict[str, Any]] = []
        for affiliate_id, units in self.trust_units.items():
            if not units:
                continue
            before = to_score(scores[affiliate_id])
            after = min(max(before + to_score(units) / 10_000, to_score(0)), to_score(1))
            b_before = bucket(before, self.trust_before)
            b_after = bucket(after, self.trust_after)
            if b_before != b_after:
                crossings[(str(b_before), str(b_after))] += 1
                if b_after is TrustBucket.CRITICAL:
                    into_critical += 1
                elif b_before is TrustBucket.CRITICAL:
                    out_of_critical += 1
            moved.append(
                {
                    "affiliate_id": affiliate_id,
                    "score_before": str(before),
                    "score_after": str(to_score(after)),
                    "change": str(to_score(after) - before),
                    "bucket_before": str(b_before),
                    "bucket_after": str(b_after),
                }
            )
        moved.sort(key=lambda m: (-abs(float(m["change"])), m["affiliate_id"]))
        return {
            "affiliates_moved": len(moved),
            "affiliates_crossing_buckets": sum(crossings.values()),
            "crossings": [{"from": a, "to": b, "affiliates": n} for (a, b), n in sorted(crossings.items())],
            "into_critical": into_critical,
            "out_of_critical": out_of_critical,
            "largest_moves": moved[:movers],
        }

    def result(self, *, scores: Mapping[int, Any]) -> dict[str, Any]:
        """The report, JSON-ready. ``scores``: current trust scores of the affiliates whose score moves."""
        trust = self.trust_report(scores)
        raised = dict(self.alerts_raised)
        cleared = dict(self.alerts_cleared)
        if trust["into_critical"]:
            raised["LOW_TRUST"] = trust["into_critical"]
        if trust["out_of_critical"]:
            cleared["LOW_TRUST"] = trust["out_of_critical"]
        row_totals: Counter[str] = Counter()
        for (old, _new), count in self.matrix.items():
            row_totals[old] += count
        changed = sum(count for (old, new), count in self.matrix.items() if old != new)
        return {
            "claims": self.claims,
            "reevaluated": self.reevaluated,
            "without_evidence": self.claims - self.reevaluated,
            "changed_status": changed,
            "changed_status_pct": _pct(changed, self.claims),
            "changed_level": sum(self.levels.values()) - changed,
            "identity": changed == 0 and not self.levels,
            "statuses": list(STATUSES),
            "matrix": [
                {
                    "from": old,
                    "to": new,
                    "claims": self.matrix[(old, new)],
                    "pct_of_from": _pct(self.matrix[(old, new)], row_totals[old]),
                }
                for old in STATUSES
                for new in STATUSES
                if self.matrix[(old, new)]
            ],
            "level_changes": [
                {"from": old, "to": new, "level_from": lf, "level_to": lt, "claims": n}
                for (old, new, lf, lt), n in sorted(self.levels.items(), key=lambda kv: (-kv[1], str(kv[0])))
            ],
            "diffs": {
                "bins": list(DIFF_BIN_LABELS),
                "before": {m: list(v) for m, v in self.before_bins.items()},
                "after": {m: list(v) for m, v in self.after_bins.items()},
            },
            "trust": trust,
            "alerts": {"would_raise": raised, "no_longer_raised": cleared},
            "decided_under": dict(self.fingerprints.most_common()),
            "examples": self.examples,
            "exact_classifications": sum(r.classifier.exact_calls for r in {*self._rules.values(), self._default}),
        }


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _diffs(values: Iterable[float | None]) -> dict[str, float | None]:
    return {m: (None if v is None or math.isnan(v) else round(v, 6)) for m, v in zip(METRICS, values, strict=True)}
