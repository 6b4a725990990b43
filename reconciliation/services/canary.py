"""Canary: a campaign's proposed rule overrides decided in shadow beside the live rules.

The live verdict is the only one that counts (trust, alerts, the log). The shadow verdict is classified
from the same claim and the same platform snapshot and stored in its own table, in the attempt's
transaction, so a rule change can be judged on live traffic (its agreement rate) before it applies.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q

from reconcile_project.config import RuleOverrideError, short_fingerprint
from reconciliation import rules
from reconciliation.models import Campaign, ShadowVerdict, campaign_ruleset

if TYPE_CHECKING:
    from reconciliation.services.attempts import ClaimedAttempt

logger = logging.getLogger("reconciliation.worker")


def shadow_verdict_record(
    *,
    claimed: ClaimedAttempt,
    platform: rules.Observed | None,
    hours: float,
    live: rules.Classification,
    now: dt.datetime,
) -> ShadowVerdict | None:
    """Record the shadow verdict of an attempt whose platform answered, if its campaign runs a canary.

    Called from the attempt's apply, inside its transaction, with the campaign's shadow overrides read by the
    claim. Writes one row and nothing else.
    """
    if platform is None:  # nothing was observed: any rules say MISSING (and a deferral's attempt row is gone)
        return None
    campaign_id, overrides = claimed.campaign_id, claimed.shadow_rule_overrides
    if campaign_id is None or not overrides:
        return None
    try:
        shadow = campaign_ruleset(overrides)
    except RuleOverrideError as exc:  # written around Campaign.clean(): the canary is off, the live verdict stands
        logger.warning(
            "Canary skipped: shadow overrides do not validate", extra={"campaign_id": campaign_id, "error": str(exc)}
        )
        return None
    verdict = rules.classify(
        claimed=claimed.claim, platform=platform, hours_since_claim=hours, settings=shadow.reconciliation
    )
    live_level = None if live.level is None else str(live.level)
    level = None if verdict.level is None else str(verdict.level)
    return ShadowVerdict.objects.create(
        attempt_id=claimed.attempt_id,
        report_id=claimed.report_id,
        campaign_id=campaign_id,
        live_status=str(live.status),
        live_level=live_level,
        live_fingerprint=claimed.ruleset.fingerprint,
        status=str(verdict.status),
        level=level,
        fingerprint=shadow.fingerprint,
        max_diff_pct=verdict.max_abs_diff,
        agrees=(str(verdict.status), level) == (str(live.status), live_level),
        created_at=now,
    )


def canary_agreement(campaign: Campaign) -> dict[str, Any] | None:
    """The agreement of the campaign's current shadow rules with the live verdicts (None: no canary)."""
    if not campaign.shadow_rule_overrides:
        return None
    try:
        fingerprint = campaign_ruleset(campaign.shadow_rule_overrides).fingerprint
    except RuleOverrideError:
        return None
    verdicts = ShadowVerdict.objects.filter(campaign=campaign, fingerprint=fingerprint)
    totals = verdicts.aggregate(total=Count("id"), agree=Count("id", filter=Q(agrees=True)))
    disagreements = (
        verdicts.filter(agrees=False)
        .values("live_status", "status")
        .annotate(n=Count("id"))
        .order_by("-n", "live_status", "status")[:10]
    )
    total = totals["total"] or 0
    return {
        "fingerprint": fingerprint,
        "short_fingerprint": short_fingerprint(fingerprint),
        "attempts": total,
        "agree": totals["agree"] or 0,
        "agreement_pct": round(100.0 * (totals["agree"] or 0) / total, 2) if total else None,
        "disagreements": [{"live": d["live_status"], "shadow": d["status"], "attempts": d["n"]} for d in disagreements],
    }
