"""What-if simulation of a rule change over stored verdicts (DESIGN §9 "Simulation"). Reads only.

:func:`simulation_run` streams each selected claim with its stored verdict and the platform snapshot that
decided it (one server-side cursor, in a read-only transaction when it opens its own) through the pure
core, :class:`reconciliation.rules.simulation.Simulation`, under the proposed rule set of the claim's
campaign. No row is written and no platform is called; memory does not grow with the number of claims.

Proposed rules are the global settings with ``set_values`` applied (``{"RECONCILIATION_SETTINGS":
{"low_max": 0.12}}``, the same shape as a campaign's overrides), and on top of them each campaign's own
``rule_overrides`` — or ``overrides`` instead, when given (a campaign's proposed overrides).
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from reconcile_project.config import (
    GROUPS,
    OVERRIDABLE,
    RuleOverrideError,
    RuleSet,
    build_ruleset,
    short_fingerprint,
)
from reconciliation import rules
from reconciliation.models import (
    Affiliate,
    AffiliateReport,
    Campaign,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
    campaign_ruleset,
)
from reconciliation.rules.simulation import Row, Simulation

#: ``--ruleset-other-than CURRENT``: verdicts not decided under their campaign's current rule set.
CURRENT = "CURRENT"
CHUNK = 10_000
_STATUSES_WITH_EVIDENCE = tuple(str(s) for s in (*rules.CONCLUSIVE_STATUSES, rules.Status.INCOMPLETE_PLATFORM_DATA))


class SimulationError(ValueError):
    """Bad input to a simulation; ``errors`` maps what was wrong to a message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Selection:
    """Which stored claims: all of these that are given (``statuses`` is any of)."""

    campaign_id: int | None = None
    since: dt.datetime | None = None  # submitted at or after
    until: dt.datetime | None = None  # submitted before
    statuses: tuple[str, ...] = ()
    #: The newest ``limit`` claims of the selection (by report id).
    limit: int | None = None
    #: ``CURRENT`` (each campaign's current rule set) or a fingerprint (or its first digits): only verdicts
    #: decided under another rule set. Claims not decided yet (PENDING) are left out.
    ruleset_other_than: str | None = None
    #: Filled in by :func:`selection_sql` for ``CURRENT``: campaign id → current fingerprint.
    current_fingerprints: Mapping[int, str] = field(default_factory=dict)


def parse_set_values(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``GROUP__FIELD=value`` (as the environment spells it) into ``{GROUP: {field: value}}``.

    A value is read as JSON when it is JSON (``0.12``, ``5``, ``true``), else kept as a string; the group's
    own validation then types it as a setting read from the environment would be.
    """
    patch: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        group, sep2, field_name = name.strip().partition("__")
        group = group.upper()
        if not sep or not sep2 or not field_name:
            errors[pair] = "expected GROUP__FIELD=value, e.g. RECONCILIATION_SETTINGS__LOW_MAX=0.12"
            continue
        if group not in OVERRIDABLE:
            errors[pair] = f"unknown or not a rule group (choose from {sorted(OVERRIDABLE)})"
            continue
        field_name = field_name.lower()
        if field_name not in GROUPS[group][1].model_fields:
            errors[pair] = f"{group} has no setting {field_name!r}"
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        patch.setdefault(group, {})[field_name] = value
    if errors:
        raise SimulationError(errors)
    return patch


def _global_groups() -> dict[str, Any]:
    return {name: getattr(settings, name) for name in OVERRIDABLE}


def proposed_global(set_values: Mapping[str, Any] | None) -> RuleSet:
    """The global rule set with ``set_values`` applied; raises SimulationError naming the bad settings."""
    try:
        return build_ruleset(_global_groups(), set_values or {})
    except RuleOverrideError as exc:
        raise SimulationError({f"set {k}": v for k, v in exc.errors.items()}) from None


def _groups_of(ruleset: RuleSet) -> dict[str, Any]:
    return {name: getattr(ruleset, GROUPS[name][0] or "") for name in OVERRIDABLE}


@dataclass
class _Rulesets:
    current: dict[int, RuleSet]
    proposed: dict[int, RuleSet]
    default_proposed: RuleSet
    global_current: RuleSet
    global_proposed: RuleSet


def _rulesets(
    *, campaign_id: int | None, set_values: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None
) -> _Rulesets:
    global_proposed = proposed_global(set_values)
    groups = _groups_of(global_proposed)
    try:
        default_proposed = build_ruleset(groups, overrides)
    except RuleOverrideError as exc:
        raise SimulationError({f"overrides {k}": v for k, v in exc.errors.items()}) from None
    campaigns = Campaign.objects.order_by("pk").values_list("pk", "rule_overrides")
    if campaign_id is not None:
        campaigns = campaigns.filter(pk=campaign_id)
    current: dict[int, RuleSet] = {}
    proposed: dict[int, RuleSet] = {}
    built: dict[str, RuleSet] = {}
    for pk, stored in campaigns:
        try:
            current[pk] = campaign_ruleset(stored)
        except RuleOverrideError:  # as the attempts do: a campaign whose stored overrides are broken runs globally
            current[pk] = campaign_ruleset(None)
            stored = None
        if overrides is not None:
            proposed[pk] = default_proposed
            continue
        key = json.dumps(stored or {}, sort_keys=True)
        if key not in built:
            built[key] = build_ruleset(groups, stored)
        proposed[pk] = built[key]
    if campaign_id is not None and campaign_id not in current:
        raise SimulationError({"campaign": f"no campaign {campaign_id}"})
    return _Rulesets(current, proposed, default_proposed, campaign_ruleset(None), global_proposed)


def _tables() -> dict[str, str]:
    return {
        "log": ReconciliationLog._meta.db_table,
        "report": AffiliateReport._meta.db_table,
        "post": Post._meta.db_table,
        "attempt": ReconciliationAttempt._meta.db_table,
        "snapshot": PlatformReport._meta.db_table,
    }


def selection_sql(selection: Selection) -> tuple[str, list[Any]]:
    """``FROM … WHERE …`` over log ``l``, report ``r`` and post ``p`` for a selection, with its parameters."""
    t = _tables()
    where = ["TRUE"]
    params: list[Any] = []
    if selection.campaign_id is not None:
        where.append("p.campaign_id = %s")
        params.append(selection.campaign_id)
    if selection.since is not None:
        where.append("r.submitted_at >= %s")
        params.append(selection.since)
    if selection.until is not None:
        where.append("r.submitted_at < %s")
        params.append(selection.until)
    if selection.statuses:
        where.append(f"l.status IN ({_placeholders(selection.statuses)})")
        params += list(selection.statuses)
    if selection.ruleset_other_than:
        where.append("l.status <> %s")
        params.append(str(rules.Status.PENDING))
        if selection.ruleset_other_than == CURRENT:
            ids = list(selection.current_fingerprints)
            fingerprints = [selection.current_fingerprints[i] for i in ids]
            if connection.vendor == "postgresql":
                where.append(
                    "NOT EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::text[]) AS c(id, fp)"
                    " WHERE c.id = p.campaign_id AND c.fp = l.ruleset_fingerprint)"
                )
                params += [ids, fingerprints]
            elif ids:
                where.append(
                    "NOT (" + " OR ".join(["(p.campaign_id = %s AND l.ruleset_fingerprint = %s)"] * len(ids)) + ")"
                )
                params += [value for pair in zip(ids, fingerprints, strict=True) for value in pair]
        else:
            # A fingerprint is hex (checked by the callers): no LIKE wildcard in it.
            where.append("l.ruleset_fingerprint NOT LIKE %s")
            params.append(selection.ruleset_other_than.lower() + "%")
    sql = (
        f" FROM {t['log']} l JOIN {t['report']} r ON r.id = l.report_id JOIN {t['post']} p ON p.id = r.post_id"
        f" WHERE {' AND '.join(where)}"
    )
    return sql, params


#: From this many selected claims on, the deciding snapshots are found by one hash join over all attempts
#: instead of an index look-up per claim (about twice as fast for a million claims, much slower for a few).
HASH_JOIN_FROM = 50_000


def _placeholders(values: Iterable[Any]) -> str:
    return ", ".join("%s" for _ in values)


def _stream_sql(selection: Selection, *, hash_join: bool) -> tuple[str, list[Any]]:
    """The streamed rows (:data:`ROW_COLUMNS`; on SQLite the last column is the claim's and the snapshot's
    times instead, see :func:`_with_seconds`)."""
    t = _tables()
    base, params = selection_sql(selection)
    statuses = _placeholders(_STATUSES_WITH_EVIDENCE)
    postgres = connection.vendor == "postgresql"
    # The snapshot that decided the stored verdict: the latest attempt that reached it, and its snapshot.
    # A claim without one (PENDING, MISSING) keeps its verdict under any rules.
    if postgres and hash_join:
        evidence = (
            f"LEFT JOIN (SELECT DISTINCT ON (a.report_id, a.status) a.report_id, a.status, s.views, s.clicks,"
            f" s.conversions, s.fetched_at FROM {t['attempt']} a JOIN {t['snapshot']} s ON s.attempt_id = a.id"
            f" WHERE a.status IN ({statuses}) ORDER BY a.report_id, a.status, a.number DESC) e"
            " ON e.report_id = l.report_id AND e.status = l.status"
        )
    elif postgres:
        evidence = (
            f"LEFT JOIN LATERAL (SELECT s.views, s.clicks, s.conversions, s.fetched_at FROM {t['attempt']} a"
            f" JOIN {t['snapshot']} s ON s.attempt_id = a.id"
            f" WHERE a.report_id = l.report_id AND a.status = l.status AND l.status IN ({statuses})"
            " ORDER BY a.number DESC LIMIT 1) e ON TRUE"
        )
    else:
        evidence = (
            f"LEFT JOIN {t['snapshot']} e ON e.id = (SELECT s.id FROM {t['attempt']} a"
            f" JOIN {t['snapshot']} s ON s.attempt_id = a.id"
            f" WHERE a.report_id = l.report_id AND a.status = l.status AND l.status IN ({statuses})"
            " ORDER BY a.number DESC LIMIT 1)"
        )
    # Seconds between claim and fetch exactly as the attempt computed them (timedelta.total_seconds()).
    seconds = (
        "EXTRACT(EPOCH FROM e.fetched_at - r.submitted_at)::float8" if postgres else "r.submitted_at, e.fetched_at"
    )
    columns = (
        "l.report_id, p.campaign_id, p.affiliate_id, r.claimed_views, r.claimed_clicks, r.claimed_conversions,"
        " l.status, l.discrepancy_level, l.views_diff_pct, l.clicks_diff_pct, l.conversions_diff_pct,"
        " CAST(ROUND(l.trust_delta * 10000) AS INTEGER), l.ruleset_fingerprint, e.views, e.clicks, e.conversions,"
        f" {seconds}"
    )
    from_, where = base.split(" WHERE ", 1)
    sql = f"SELECT {columns}{from_} {evidence} WHERE {where}"
    params = [*_STATUSES_WITH_EVIDENCE, *params]
    if selection.limit is not None:
        sql += " ORDER BY l.report_id DESC LIMIT %s"
        params.append(selection.limit)
    return sql, params


def selection_count(selection: Selection) -> int:
    sql, params = selection_sql(selection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*)" + sql, params)
        (count,) = cursor.fetchone()
    return min(int(count), selection.limit) if selection.limit is not None else int(count)


def selection_estimate(selection: Selection) -> int:
    """The planner's estimate of :func:`selection_count`, without counting (to choose how to read)."""
    sql, params = selection_sql(selection)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) SELECT 1" + sql, params)
        (plan,) = cursor.fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    rows = int(plan[0]["Plan"]["Plan Rows"])
    return min(rows, selection.limit) if selection.limit is not None else rows


def with_current_fingerprints(selection: Selection) -> Selection:
    """The selection with each campaign's current fingerprint filled in (for ``ruleset_other_than=CURRENT``)."""
    if selection.ruleset_other_than != CURRENT:
        return selection
    found = _rulesets(campaign_id=selection.campaign_id, set_values=None, overrides=None)
    current = {k: r.fingerprint for k, r in found.current.items()}
    return Selection(**{**asdict(selection), "current_fingerprints": current})


def selected_report_ids(selection: Selection) -> list[int]:
    """Report ids of a selection, oldest first (for re-reconciliation in batches)."""
    selection = with_current_fingerprints(selection)
    sql, params = selection_sql(selection)
    sql = "SELECT l.report_id" + sql + " ORDER BY l.report_id"
    if selection.limit is not None:
        sql += " LIMIT %s"
        params.append(selection.limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _prefetched(cursor: Any, size: int) -> Iterator[list[Row]]:
    """Batches of ``cursor.fetchmany(size)``, the next one fetched by a thread while this one is classified.

    The database computes and sends a batch while the GIL is released (network wait), so on two cores the
    server and the classification overlap instead of taking turns.
    """
    batches: queue.Queue[list[Row] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(size)
                while not stop.is_set():
                    try:
                        batches.put(rows or None, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if not rows:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            batches.put(exc)

    thread = threading.Thread(target=produce, name="simulation-fetch", daemon=True)
    thread.start()
    try:
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _parse_time(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def _with_seconds(rows: list[Row]) -> list[Row]:
    """SQLite rows (times as stored) as :data:`ROW_COLUMNS` rows (seconds since the claim)."""
    out: list[Row] = []
    for row in rows:
        submitted, fetched = row[-2], row[-1]
        seconds = None if fetched is None else (_parse_time(fetched) - _parse_time(submitted)).total_seconds()
        out.append((*row[:-2], seconds))
    return out


def _stream(selection: Selection, sim: Simulation, progress: Callable[[int], None] | None, *, claims: int) -> None:
    sql, params = _stream_sql(selection, hash_join=claims >= HASH_JOIN_FROM)
    own = not connection.in_atomic_block
    postgres = connection.vendor == "postgresql"
    with transaction.atomic():
        if own and postgres:
            with connection.cursor() as cursor:
                # First statement of our own transaction: PostgreSQL itself refuses any write from here on.
                cursor.execute("SET TRANSACTION READ ONLY")
                # A cursor is planned for its first rows (nested loops); this one is read to the end.
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
                cursor.execute("SET LOCAL jit = off")
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(sql, params)
            batches = _prefetched(cursor.cursor, CHUNK) if postgres else iter(lambda: cursor.fetchmany(CHUNK), [])
            for rows in batches:
                n = sim.add_rows(rows if postgres else _with_seconds(rows))
                if progress is not None:
                    progress(n)
        finally:
            cursor.close()


def simulation_run(
    *,
    selection: Selection,
    set_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    examples: int = 20,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Re-classify the selected stored claims under the proposed rules; returns the report (JSON-ready).

    ``progress(n)`` is called after each batch of ``n`` claims; ``total(n)`` once, before, with the number of
    claims selected (counted only when it is asked for). Raises SimulationError for bad settings, overrides
    or selection.
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    found = _rulesets(campaign_id=selection.campaign_id, set_values=set_values, overrides=overrides)
    if selection.ruleset_other_than == CURRENT:
        selection = Selection(
            **{**asdict(selection), "current_fingerprints": {k: r.fingerprint for k, r in found.current.items()}}
        )
    if total is not None:
        claims = selection_count(selection)
        total(claims)
    else:
        claims = selection_estimate(selection) if connection.vendor == "postgresql" else selection_count(selection)
    sim = Simulation(
        proposed=found.proposed,
        default=found.default_proposed,
        trust_before=found.global_current.trust,
        trust_after=found.global_proposed.trust,
        examples=examples,
    )
    _stream(selection, sim, progress, claims=claims)
    ids = [a for a, units in sim.trust_units.items() if units]
    scores: dict[int, Any] = {}
    for start in range(0, len(ids), CHUNK):
        scores.update(Affiliate.objects.filter(pk__in=ids[start : start + CHUNK]).values_list("pk", "trust_score"))
    result = sim.result(scores=scores)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    changed_rules = [
        {
            "campaign_id": pk,
            "current": short_fingerprint(found.current[pk].fingerprint),
            "proposed": short_fingerprint(ruleset.fingerprint),
        }
        for pk, ruleset in sorted(found.proposed.items())
        if ruleset.fingerprint != found.current[pk].fingerprint
    ]
    result["decided_under"] = {short_fingerprint(k) if k else "": v for k, v in result["decided_under"].items()}
    for example in result["examples"]:
        example["fingerprint"] = short_fingerprint(example["fingerprint"])
    return {
        "selection": {
            "campaign_id": selection.campaign_id,
            "since": selection.since.isoformat() if selection.since else None,
            "until": selection.until.isoformat() if selection.until else None,
            "statuses": list(selection.statuses),
            "limit": selection.limit,
            "ruleset_other_than": selection.ruleset_other_than,
        },
        "proposed": {
            "set": dict(set_values or {}),
            "overrides": None if overrides is None else dict(overrides),
            "global_current": short_fingerprint(found.global_current.fingerprint),
            "global_proposed": short_fingerprint(found.global_proposed.fingerprint),
            "campaigns_changed": len(changed_rules),
            "campaign_rulesets": changed_rules[:50],
        },
        **result,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "claims_per_s": round(result["claims"] / seconds) if seconds > 0 else None,
    }
