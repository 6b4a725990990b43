"""Input and output shapes of the API.

Inputs are strict: counts must be JSON integers (``3.0`` is 3 as JSON Schema reads it, not ``1.5``,
``"1"`` or ``true``), strings are
length-capped and may not carry NUL, lone surrogates or control characters (PostgreSQL cannot store the
first two; a 500 is not an answer to bad input), and ``evidence`` is a small, shallow JSON object.
Outputs are plain serializers over the objects the selectors load; they document the schema too.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.core.validators import RegexValidator
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from reconciliation import rules
from reconciliation.api.filters import MAX_ID, platform_of, platform_schema, unknown_platform_message
from reconciliation.models import ReconciliationStatus
from reconciliation.services.submissions import MAX_CLAIM

EVIDENCE_MAX_BYTES = 16 * 1024
EVIDENCE_MAX_DEPTH = 5
EVIDENCE_MAX_STRING = 2048
TITLE_MAX_LENGTH = 300
POST_URL_MAX_LENGTH = 2048

_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _check_text(value: str, *, allow_newlines: bool = False) -> None:
    if "\x00" in value or _SURROGATES.search(value):
        raise serializers.ValidationError("Contains characters that are not allowed (NUL or unpaired surrogates).")
    if not allow_newlines and _CONTROL.search(value):
        raise serializers.ValidationError("Contains control characters.")


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: fractions, booleans and numeric strings are refused.

    ``3.0`` is accepted as 3: the document is OpenAPI 3.1, whose JSON Schema calls any number without a
    fractional part an integer, so refusing it would refuse what the document declares valid.
    """

    default_error_messages = {"invalid": "Must be a JSON integer (not a fraction, string or boolean)."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class IdField(StrictIntegerField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class ClaimField(StrictIntegerField):
    def __init__(self, **kwargs: Any):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_CLAIM)
        super().__init__(**kwargs)


@extend_schema_field(platform_schema())
class PlatformField(serializers.Field):
    """A platform slug or alias in any letter case (``YouTube``, ``twitter``), stored as the slug."""

    def to_internal_value(self, data: Any) -> str:
        slug = platform_of(data)
        if slug is None:
            raise serializers.ValidationError(unknown_platform_message(), code="invalid_choice")
        return slug

    def to_representation(self, value: Any) -> str:
        return str(value)


class SafeCharField(serializers.CharField):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Documents the rule of _check_text as the field's `pattern` (drf-spectacular reads regex validators).
        self.validators.append(RegexValidator(SAFE_LINE_PATTERN, message="Contains control characters."))

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        _check_text(value)
        return value


# Patterns of the document (ECMA-262 and Python read them alike). Unpaired surrogates, which the API
# refuses too, are not in them: they are not Unicode text, and a surrogate range makes fuzzers ignore
# the whole pattern.
#: A string the database can store: no NUL.
STORABLE_TEXT_PATTERN = r"^[^\u0000]*$"
#: An http(s) URL with a host and nothing that a browser would drop or re-read (whitespace, controls).
HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\u0000-\u0020\u007f/?#@\\]+(?:[/?#][^\u0000-\u0020\u007f]*)?$"
#: Evidence keys whose string values must be http(s) URLs ("url", "screenshot_url", any letter case).
URL_KEY_PATTERN = r"(?:^|_)[Uu][Rr][Ll]$"
_HTTP_URL = re.compile(HTTP_URL_PATTERN)
_URL_KEY = re.compile(URL_KEY_PATTERN.replace("$", r"\Z"))  # Python's "$" also matches before a final newline
#: One line of text the database can store: what SafeCharField accepts, stated for the document.
SAFE_LINE_PATTERN = r"^[^\u0000-\u001f\u007f]*$"


def _evidence_value_name(depth: int, *, url: bool) -> str:
    return f"Evidence{'Url' if url else ''}ValueAtDepth{depth}"


def _evidence_value_schema(depth: int, *, url: bool) -> dict[str, Any]:
    """The schema of a value at ``depth`` (the evidence object is depth 1), under a URL key or not.

    Unrolled to EVIDENCE_MAX_DEPTH (one component per depth, see evidence_components) so that the
    document states the nesting limit exactly.
    """
    string: dict[str, Any] = (
        {"type": "string", "maxLength": EVIDENCE_MAX_STRING, "pattern": HTTP_URL_PATTERN}
        if url
        else {"type": "string", "maxLength": EVIDENCE_MAX_STRING, "pattern": STORABLE_TEXT_PATTERN}
    )
    scalars: list[dict[str, Any]] = [string, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]
    if depth > EVIDENCE_MAX_DEPTH:
        return {"anyOf": scalars}
    return {
        "anyOf": [
            *scalars,
            # A list's items inherit the key it is under; an object's values have keys of their own.
            {"type": "array", "items": _ref(_evidence_value_name(depth + 1, url=url))},
            _evidence_object_schema(depth),
        ]
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _evidence_object_schema(depth: int) -> dict[str, Any]:
    # Keys as patterns (OpenAPI 3.0 has no propertyNames): at most EVIDENCE_MAX_STRING characters, no
    # NUL. A key matching both patterns must satisfy both schemas; a URL value satisfies either.
    any_key = rf"^[^\u0000]{{0,{EVIDENCE_MAX_STRING}}}$"
    url_key = rf"^(?:[^\u0000]{{0,{EVIDENCE_MAX_STRING - 4}}}_)?[Uu][Rr][Ll]$"
    return {
        "type": "object",
        "patternProperties": {
            url_key: _ref(_evidence_value_name(depth + 1, url=True)),
            any_key: _ref(_evidence_value_name(depth + 1, url=False)),
        },
        "additionalProperties": False,
    }


def evidence_components() -> dict[str, dict[str, Any]]:
    """The schemas the evidence field refers to, added to the document by schema.add_evidence_components."""
    return {
        _evidence_value_name(depth, url=url): _evidence_value_schema(depth, url=url)
        for depth in range(2, EVIDENCE_MAX_DEPTH + 2)
        for url in (False, True)
    }


@extend_schema_field(
    {
        **_evidence_object_schema(1),
        "description": (
            f"Free-form proof of the claim (screenshots' URLs, dashboard exports), stored as JSON and never "
            f"rendered as HTML. At most {EVIDENCE_MAX_BYTES} bytes serialised and {EVIDENCE_MAX_DEPTH} levels "
            f"deep; keys and strings at most {EVIDENCE_MAX_STRING} characters, without NUL; a string under a "
            f"key named `url` or ending in `_url` (any letter case) must be an http(s) URL."
        ),
        "example": {"screenshot_url": "https://img.example.com/s/123.png", "note": "from the creator dashboard"},
    }
)
class EvidenceField(serializers.JSONField):
    default_error_messages = {"not_object": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")
        _check_json(data, depth=1, key="")
        size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > EVIDENCE_MAX_BYTES:
            raise serializers.ValidationError(f"Too large: {size} bytes (at most {EVIDENCE_MAX_BYTES}).")
        return data


def _check_json(value: Any, *, depth: int, key: str) -> None:
    if isinstance(value, dict):
        if depth > EVIDENCE_MAX_DEPTH:
            raise serializers.ValidationError(f"Nested deeper than {EVIDENCE_MAX_DEPTH} levels.")
        for k, v in value.items():
            _check_string(k)
            _check_json(v, depth=depth + 1, key=k)
    elif isinstance(value, list):
        if depth > EVIDENCE_MAX_DEPTH:
            raise serializers.ValidationError(f"Nested deeper than {EVIDENCE_MAX_DEPTH} levels.")
        for item in value:
            _check_json(item, depth=depth + 1, key=key)
    elif isinstance(value, str):
        _check_string(value)
        if _URL_KEY.search(key) and not _HTTP_URL.fullmatch(value):
            raise serializers.ValidationError(f"{key}: must be an http(s) URL.")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise serializers.ValidationError("Numbers must be finite.")


def _check_string(value: str) -> None:
    if len(value) > EVIDENCE_MAX_STRING:
        raise serializers.ValidationError(f"Strings must be at most {EVIDENCE_MAX_STRING} characters.")
    _check_text(value, allow_newlines=True)


# --- inputs ---------------------------------------------------------------------------------------


class ClaimsInput(serializers.Serializer):
    claimed_views = ClaimField(help_text=f"Cumulative views, 0 to {MAX_CLAIM}.")
    claimed_clicks = ClaimField(help_text=f"Cumulative clicks, 0 to {MAX_CLAIM}.")
    claimed_conversions = ClaimField(help_text=f"Cumulative conversions, 0 to {MAX_CLAIM}.")
    evidence = EvidenceField(required=False, default=dict)

    def claim(self) -> rules.Claim:
        data = self.validated_data
        return rules.Claim(
            views=data["claimed_views"], clicks=data["claimed_clicks"], conversions=data["claimed_conversions"]
        )


class SubmissionCreateInput(ClaimsInput):
    campaign_id = IdField()
    platform = PlatformField()
    post_url = SafeCharField(
        max_length=POST_URL_MAX_LENGTH,
        help_text="Link to one post (http or https). Normalised; tracking parameters are dropped.",
    )
    title = SafeCharField(max_length=TITLE_MAX_LENGTH, required=False, allow_blank=True, default="")

    field_order = ("campaign_id", "platform", "post_url", "claimed_views", "claimed_clicks", "claimed_conversions")


class MetricsUpdateInput(ClaimsInput):
    pass


class RuleSimulationInput(serializers.Serializer):
    campaign_id = IdField(required=False, help_text="Only this campaign's claims (and `overrides` are its).")
    overrides = serializers.JSONField(
        required=False,
        help_text='Proposed rule_overrides, e.g. {"RECONCILIATION_SETTINGS": {"low_max": 0.12}}, used instead of '
        "each selected campaign's own.",
    )
    set = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text='Proposed global settings as GROUP__FIELD: value, e.g. {"RECONCILIATION_SETTINGS__LOW_MAX": 0.12}.',
    )
    since = serializers.DateTimeField(required=False, help_text="Claims submitted at or after.")
    until = serializers.DateTimeField(required=False, help_text="Claims submitted before.")
    status = serializers.ListField(
        child=serializers.ChoiceField(choices=ReconciliationStatus.choices), required=False, help_text="Any of."
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=1_000_000, default=100_000, help_text="The newest claims of the selection, at most."
    )
    examples = serializers.IntegerField(min_value=0, max_value=100, default=20)

    def validate_overrides(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object of setting groups.")
        return value


class ReconciliationRunInput(serializers.Serializer):
    report_id = IdField(required=False)
    campaign_id = IdField(required=False)
    status = serializers.ChoiceField(choices=ReconciliationStatus.choices, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("report_id", "campaign_id", "status") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("Give exactly one of report_id, campaign_id or status.")
        return attrs


# --- outputs --------------------------------------------------------------------------------------


def report_url(request: Any, report_id: int) -> str:
    path = reverse("api:report-detail", kwargs={"report_id": report_id})
    return request.build_absolute_uri(path) if request is not None else path


class FlagOutput(serializers.Serializer):
    code = serializers.ChoiceField(choices=[c.value for c in rules.FlagCode])
    severity = serializers.ChoiceField(choices=[s.value for s in rules.Severity])
    message = serializers.CharField()
    value = serializers.JSONField(allow_null=True, help_text="The measured value that tripped the rule.")


REPORT_STATE_HELP = (
    "Where the report stands; read it before the status. "
    "`pending`: no attempt has finished yet. "
    "`retrying`: no verdict yet and another attempt is scheduled (`next_attempt_at`); a "
    'MISSING_PLATFORM_DATA or INCOMPLETE_PLATFORM_DATA status is provisional, not a final "could not verify". '
    "`rechecking`: a verdict stands (MATCHED, DISCREPANCY_*, AFFILIATE_OVERCLAIMED) and scheduled re-checks may "
    "still change it (platforms purge invalid traffic for days). "
    "`final`: nothing more is scheduled; the status is the final word (staff may still re-run the report)."
)


class ReportStateField(serializers.ChoiceField):
    """``state`` of a report, computed from its log (``rules.report_state``); documented as an enum."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("source", "log")
        super().__init__(
            choices=[state.value for state in rules.ReportState], read_only=True, help_text=REPORT_STATE_HELP, **kwargs
        )

    def to_representation(self, log: Any) -> str:
        return str(rules.report_state(status=log.status, terminal=log.terminal))


class SubmissionCreatedOutput(serializers.Serializer):
    report_id = serializers.IntegerField()
    post_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ReconciliationStatus.choices)
    state = serializers.ChoiceField(
        choices=[state.value for state in rules.ReportState], help_text=REPORT_STATE_HELP + " Always `pending` here."
    )
    status_url = serializers.URLField(help_text="GET it for the reconciliation result.")
    suspicion_flags = FlagOutput(many=True)


class LatestReportOutput(serializers.Serializer):
    report_id = serializers.IntegerField(source="pk")
    claimed_views = serializers.IntegerField()
    claimed_clicks = serializers.IntegerField()
    claimed_conversions = serializers.IntegerField()
    submitted_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=ReconciliationStatus.choices, source="log.status")
    state = ReportStateField()
    discrepancy_level = serializers.CharField(source="log.discrepancy_level", allow_null=True)
    status_url = serializers.SerializerMethodField()

    def get_status_url(self, obj: Any) -> str:
        return report_url(self.context.get("request"), obj.pk)


class SubmissionListItemOutput(serializers.Serializer):
    post_id = serializers.IntegerField(source="pk")
    campaign_id = serializers.IntegerField()
    platform = serializers.CharField(source="platform.slug")
    platform_post_id = serializers.CharField()
    post_url = serializers.CharField(source="url")
    title = serializers.CharField()
    submitted_at = serializers.DateTimeField(source="created_at", help_text="When the post was first submitted.")
    latest_report = LatestReportOutput(allow_null=True)


class ClaimHistoryOutput(LatestReportOutput):
    suspicion_flags = FlagOutput(many=True)


class SnapshotOutput(serializers.Serializer):
    views = serializers.IntegerField(allow_null=True)
    clicks = serializers.IntegerField(allow_null=True)
    conversions = serializers.IntegerField(allow_null=True)
    fetched_at = serializers.DateTimeField()


class PostOutput(serializers.Serializer):
    post_id = serializers.IntegerField(source="pk")
    campaign_id = serializers.IntegerField()
    platform = serializers.CharField(source="platform.slug")
    platform_post_id = serializers.CharField()
    post_url = serializers.CharField(source="url")
    title = serializers.CharField()
    submitted_at = serializers.DateTimeField(source="created_at")


class MetricsHistoryOutput(serializers.Serializer):
    post = PostOutput()
    claims = ClaimHistoryOutput(many=True, help_text="The latest claims, oldest first.")
    platform_snapshots = SnapshotOutput(many=True, help_text="What the platform reported, oldest first.")


class MetricDiffOutput(serializers.Serializer):
    claimed = serializers.IntegerField()
    diff = serializers.IntegerField(allow_null=True, help_text="Claimed minus platform (absolute).")
    diff_pct = serializers.FloatField(allow_null=True, help_text="Relative difference; > 0 is an over-claim.")


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.CharField()
    status = serializers.CharField(allow_blank=True)
    missing_reason = serializers.CharField(allow_blank=True)
    is_recheck = serializers.BooleanField()
    ruleset_fingerprint = serializers.CharField(
        allow_blank=True, help_text="The rule set this attempt was classified under (sha256 hex; empty: none)."
    )


class ReportDetailOutput(serializers.Serializer):
    report_id = serializers.IntegerField(source="pk")
    post_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField(source="post.campaign_id")
    platform = serializers.CharField(source="post.platform.slug")
    post_url = serializers.CharField(source="post.url")
    submitted_at = serializers.DateTimeField()
    submission_method = serializers.CharField()
    suspicion_flags = FlagOutput(many=True)
    evidence = serializers.JSONField(help_text="As submitted; JSON only, never rendered as HTML.")
    status = serializers.ChoiceField(choices=ReconciliationStatus.choices, source="log.status")
    state = ReportStateField()
    discrepancy_level = serializers.CharField(source="log.discrepancy_level", allow_null=True)
    metrics = serializers.SerializerMethodField()
    max_diff_pct = serializers.FloatField(source="log.max_diff_pct", allow_null=True)
    confidence_ratio = serializers.FloatField(
        source="log.confidence_ratio", allow_null=True, help_text="Metrics the platform reported / 3."
    )
    missing_fields = serializers.ListField(child=serializers.CharField(), source="log.missing_fields")
    missing_reason = serializers.CharField(source="log.missing_reason", allow_blank=True)
    ruleset_fingerprint = serializers.CharField(
        source="log.ruleset_fingerprint",
        allow_blank=True,
        help_text="Which rule set decided the verdict: the fingerprint (sha256 hex) of the global settings with the "
        "campaign's overrides at the time; the admin shows its first 12 digits. Empty until a verdict exists.",
    )
    attempt_count = serializers.IntegerField(source="log.attempt_count", help_text="Attempts listed in `attempts`.")
    attempts = AttemptOutput(many=True)
    deferral_count = serializers.IntegerField(
        source="log.deferral_count",
        help_text="Attempts put off before reaching the platform (its breaker open, rate limited); not listed in "
        "`attempts` and not counted against the retry budget.",
    )
    last_deferred_at = serializers.DateTimeField(source="log.last_deferred_at", allow_null=True)
    last_attempt_at = serializers.DateTimeField(source="log.last_attempt_at", allow_null=True)
    next_attempt_at = serializers.DateTimeField(
        source="log.next_attempt_at", allow_null=True, help_text="When the next check is due (null: none planned)."
    )
    terminal = serializers.BooleanField(source="log.terminal")
    trust_delta = serializers.DecimalField(
        source="log.trust_delta", max_digits=6, decimal_places=4, coerce_to_string=False, allow_null=True
    )

    @extend_schema_field(
        {
            "type": "object",
            "properties": {m: {"$ref": "#/components/schemas/MetricDiffOutput"} for m in rules.METRICS},
            "required": list(rules.METRICS),
        }
    )
    def get_metrics(self, obj: Any) -> dict[str, Any]:
        log = obj.log
        return {
            metric: {
                "claimed": getattr(obj, f"claimed_{metric}"),
                "diff": getattr(log, f"{metric}_diff"),
                "diff_pct": getattr(log, f"{metric}_diff_pct"),
            }
            for metric in rules.METRICS
        }


class AffiliateMeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.EmailField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    trust_score = serializers.DecimalField(max_digits=5, decimal_places=4, coerce_to_string=False)
    trust_bucket = serializers.ChoiceField(choices=[b.value for b in rules.TrustBucket])
    total_submissions = serializers.IntegerField()
    accurate_submissions = serializers.IntegerField()
    posts = serializers.IntegerField()
    reports_by_status = serializers.DictField(child=serializers.IntegerField())


class CampaignOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    client_id = serializers.IntegerField()
    status = serializers.CharField()
    start_date = serializers.DateField()
    end_date = serializers.DateField(allow_null=True)
    platforms = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_platforms(self, obj: Any) -> list[str]:
        return sorted(p.slug for p in obj.platforms.all())


class MetricTotalsOutput(serializers.Serializer):
    views = serializers.IntegerField()
    clicks = serializers.IntegerField()
    conversions = serializers.IntegerField()


class TotalsOutput(serializers.Serializer):
    posts = serializers.IntegerField()
    posts_verified = serializers.IntegerField(help_text="Posts with at least one platform snapshot.")
    claimed = MetricTotalsOutput(help_text="Sum of each post's latest claim.")
    verified = MetricTotalsOutput(help_text="Sum of each post's latest platform-reported values.")
    statuses = serializers.DictField(child=serializers.IntegerField(), help_text="Latest claim's status → posts.")


class PlatformTotalsOutput(TotalsOutput):
    platform = serializers.CharField()


class AffiliateTotalsOutput(TotalsOutput):
    affiliate_id = serializers.IntegerField()
    affiliate_name = serializers.CharField()


class CampaignTotalsOutput(serializers.Serializer):
    total = TotalsOutput()
    by_platform = PlatformTotalsOutput(many=True)
    by_affiliate = AffiliateTotalsOutput(many=True)


class CampaignDetailOutput(CampaignOutput):
    totals = CampaignTotalsOutput()


class CampaignReportOutput(serializers.Serializer):
    report_id = serializers.IntegerField(source="pk")
    post_id = serializers.IntegerField()
    affiliate_id = serializers.IntegerField(source="post.affiliate_id")
    affiliate_name = serializers.CharField(source="post.affiliate.name")
    platform = serializers.CharField(source="post.platform.slug")
    post_url = serializers.CharField(source="post.url")
    claimed_views = serializers.IntegerField()
    claimed_clicks = serializers.IntegerField()
    claimed_conversions = serializers.IntegerField()
    submitted_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=ReconciliationStatus.choices, source="log.status")
    state = ReportStateField()
    discrepancy_level = serializers.CharField(source="log.discrepancy_level", allow_null=True)
    max_diff_pct = serializers.FloatField(source="log.max_diff_pct", allow_null=True)
    confidence_ratio = serializers.FloatField(source="log.confidence_ratio", allow_null=True)
    suspicion_flags = FlagOutput(many=True)


class RuleSimulationOutput(serializers.Serializer):
    selection = serializers.JSONField(help_text="The claims selected, as given.")
    proposed = serializers.JSONField(
        help_text="The proposed settings and overrides, the global rule set's fingerprint now and proposed "
        "(first 12 digits), and the campaigns whose rule set would change."
    )
    claims = serializers.IntegerField()
    reevaluated = serializers.IntegerField(help_text="Claims with a deciding platform snapshot, re-classified.")
    without_evidence = serializers.IntegerField(
        help_text="Claims without one (PENDING, MISSING): they keep their verdict."
    )
    changed_status = serializers.IntegerField()
    changed_status_pct = serializers.FloatField()
    changed_level = serializers.IntegerField(help_text="Same status, another level (an over-claim HIGH → CRITICAL).")
    identity = serializers.BooleanField(help_text="True when nothing would change.")
    statuses = serializers.ListField(child=serializers.CharField())
    matrix = serializers.JSONField(
        help_text="The transition matrix, old status → new status: a list of {from, to, claims, pct_of_from} "
        "(percent of the claims stored with the old status), only cells with claims."
    )
    level_changes = serializers.JSONField()
    diffs = serializers.JSONField(help_text="Claims per diff bin, per metric, before and after.")
    trust = serializers.JSONField(
        help_text="Affiliates whose score would move, bucket crossings, into/out of critical, largest moves."
    )
    alerts = serializers.JSONField(help_text="would_raise and no_longer_raised: alert type → count.")
    decided_under = serializers.DictField(
        child=serializers.IntegerField(), help_text="Stored verdicts per rule set (fingerprint's first 12 digits)."
    )
    examples = serializers.JSONField(help_text="Changed claims: claimed, platform, before, after.")
    exact_classifications = serializers.IntegerField()
    seconds = serializers.FloatField()
    cpu_seconds = serializers.FloatField()
    claims_per_s = serializers.IntegerField(allow_null=True)


class RunFilterOutput(serializers.Serializer):
    report_id = serializers.IntegerField(required=False)
    campaign_id = serializers.IntegerField(required=False)
    status = serializers.ChoiceField(choices=ReconciliationStatus.choices, required=False)


class RunQueuedOutput(serializers.Serializer):
    queued = serializers.IntegerField(
        help_text="Reports selected and not being attempted at request time: reopened now (one report) or by "
        "the maintenance task (a campaign or a status)."
    )
    dispatched = serializers.IntegerField(
        help_text="Sent to the workers right after the request (one report); 0 when the maintenance task reopens "
        "the selection and the sweeper sends it."
    )
    background = serializers.BooleanField(
        help_text="True when a maintenance task reopens the selection in batches after the request."
    )
    filter = RunFilterOutput(help_text="The selection, as given.")


# --- the error envelope (documentation only: the exception handler builds it) ----------------------


class ErrorOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. validation_error, duplicate_post.")
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # a field named "fields", popped by DRF's metaclass
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="400 only: each rejected field and its messages.",
    )
    retry_after = serializers.IntegerField(required=False, help_text="429 only: seconds to wait.")
    existing_post_id = serializers.IntegerField(required=False, help_text="duplicate_post only.")
    update_url = serializers.URLField(required=False, help_text="duplicate_post only: PUT new metrics here.")


class ErrorEnvelopeOutput(serializers.Serializer):
    error = ErrorOutput()
    request_id = serializers.CharField(help_text="Also in the X-Request-ID response header; quote it to support.")
