"""Template helpers of the analysts' admin pages: percentages, status badges, evidence, inline SVG charts.

Charts are drawn on the server as inline SVG (the admin must work offline: no CDN, no script), each with
its figures as a table inside ``<details>`` for screen readers and for copying. Every label and value
goes through ``format_html``/``escape``: labels come from the database (affiliate names, platform slugs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django import template
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

#: One label style for every status, level, severity and outcome: a coloured pill (see risk.css in the
#: page templates). Unknown values get the neutral colour.
BADGE_COLOURS = {
    # Good
    "MATCHED": "#2e7d32",
    "ACTIVE": "#2e7d32",
    "CLOSED": "#2e7d32",
    "SUCCESS": "#2e7d32",
    "RESOLVED": "#2e7d32",
    "high_trust": "#2e7d32",
    "normal": "#558b2f",
    "LOW": "#558b2f",
    "DISCREPANCY_LOW": "#558b2f",
    # Watch
    "ACKNOWLEDGED": "#1565c0",
    "PENDING": "#607d8b",
    "RUNNING": "#607d8b",
    "DEFERRED": "#607d8b",
    "MEDIUM": "#ef6c00",
    "DISCREPANCY_MEDIUM": "#ef6c00",
    "PARTIAL": "#ef6c00",
    "INCOMPLETE_PLATFORM_DATA": "#ef6c00",
    "low_trust": "#ef6c00",
    "HALF_OPEN": "#ef6c00",
    # Bad
    "OPEN": "#c62828",
    "HIGH": "#c62828",
    "DISCREPANCY_HIGH": "#c62828",
    "MISSING": "#6a1b9a",
    "MISSING_PLATFORM_DATA": "#6a1b9a",
    "ERROR": "#6a1b9a",
    "DISCARDED": "#6a1b9a",
    "OPEN_BREAKER": "#c62828",
    "CRITICAL": "#8e0000",
    "REVOKED": "#8e0000",
    "THROTTLE": "#ef6c00",
    "SUSPEND": "#8e0000",
    "REINSTATE": "#2e7d32",
    "AFFILIATE_OVERCLAIMED": "#8e0000",
    "critical": "#8e0000",
    "SUSPENDED": "#8e0000",
}


def badge_html(value: Any) -> SafeString:
    """``value`` as a status pill (the one label style of the admin)."""
    if value in (None, ""):
        return mark_safe('<span class="risk-badge" style="background:#9e9e9e">-</span>')
    text = str(value)
    colour = BADGE_COLOURS.get(text, "#455a64")
    return format_html('<span class="risk-badge" style="background:{}">{}</span>', colour, text.replace("_", " "))


@register.filter
def badge(value: Any) -> SafeString:
    return badge_html(value)


def format_pct(value: Any, signed: bool = True) -> str:
    """A fraction as a rounded percentage: 1.0 → ``+100 %``, -0.125 → ``-12.5 %``; None → ``-``.

    One decimal below 10 % (where a tolerance band's edge is), whole percents above.
    """
    if value is None or value == "":
        return "-"
    number = float(value) * 100
    if number in (float("inf"), float("-inf")):
        return "∞"
    digits = 1 if abs(number) < 10 and round(number, 1) != round(number) else 0
    text = f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"
    return f"{text} %"


@register.filter
def pct(value: Any) -> str:
    return format_pct(value, signed=True)


@register.filter
def pct_plain(value: Any) -> str:
    return format_pct(value, signed=False)


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON as plain text: the template escapes it, so a ``<script>`` in evidence stays text."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def is_web_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


@register.filter
def web_links(value: Any) -> list[str]:
    """Every http(s) URL among the JSON's string values (``javascript:``, ``data:`` and the like are left out)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif is_web_url(node) and node.strip() not in found:
            found.append(node.strip())

    walk(value)
    return found[:50]


@register.filter
def safe_link(value: Any) -> SafeString:
    """A link only for an http(s) URL; anything else is shown as escaped text."""
    if is_web_url(value):
        return format_html('<a href="{}" rel="noopener noreferrer nofollow" target="_blank">{}</a>', value, value)
    return SafeString(escape("" if value is None else value))


# --- charts -------------------------------------------------------------------------------------------

Point = tuple[Any, Any]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


def _table(points: Sequence[Point], caption: str, value_label: str) -> SafeString:
    rows = format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", ((label, value) for label, value in points))
    return format_html(
        '<details class="risk-chart-table"><summary>{} as a table</summary>'
        "<table><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table></details>",
        caption,
        "label",
        value_label,
        rows,
    )


def bar_svg(points: Sequence[Point], *, caption: str, width: int = 640, height: int = 160) -> SafeString:
    """Vertical bars, one per (label, value), with the figure as each bar's tooltip."""
    pad = 20
    top = max((_number(v) for _, v in points), default=0.0) or 1.0
    step = (width - 2 * pad) / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        h = (height - 2 * pad) * _number(value) / top
        bars.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="#417690"><title>{}: {}</title></rect>',
                f"{pad + i * step + 1:.1f}",
                f"{height - pad - h:.1f}",
                f"{max(step - 2, 1):.1f}",
                f"{h:.1f}",
                label,
                value,
            )
        )
    return _svg(bars, points, caption=caption, width=width, height=height, top=top)


def line_svg(
    points: Sequence[Point], *, caption: str, width: int = 640, height: int = 160, top: float | None = None
) -> SafeString:
    """A polyline through (label, value) in order, each point with its figure as a tooltip."""
    pad = 20
    top = top or max((_number(v) for _, v in points), default=0.0) or 1.0
    step = (width - 2 * pad) / max(len(points) - 1, 1)
    xy = [(pad + i * step, height - pad - (height - 2 * pad) * _number(v) / top) for i, (_, v) in enumerate(points)]
    parts: list[SafeString] = []
    if len(xy) > 1:
        parts.append(
            format_html(
                '<polyline fill="none" stroke="#417690" stroke-width="2" points="{}"/>',
                " ".join(f"{x:.1f},{y:.1f}" for x, y in xy),
            )
        )
    for (x, y), (label, value) in zip(xy, points, strict=True):
        parts.append(
            format_html(
                '<circle cx="{}" cy="{}" r="3" fill="#417690"><title>{}: {}</title></circle>',
                f"{x:.1f}",
                f"{y:.1f}",
                label,
                value,
            )
        )
    return _svg(parts, points, caption=caption, width=width, height=height, top=top)


def _svg(
    parts: Iterable[SafeString], points: Sequence[Point], *, caption: str, width: int, height: int, top: float
) -> SafeString:
    body = mark_safe("".join(parts))  # each part was built by format_html
    axis = format_html(
        '<line x1="20" y1="{0}" x2="{1}" y2="{0}" stroke="#999"/>'
        '<text x="2" y="14" font-size="10" fill="#666">{2}</text>',
        height - 20,
        width - 20,
        f"{top:g}",
    )
    empty = (
        format_html('<text x="30" y="{}" font-size="12" fill="#666">no data</text>', height // 2) if not points else ""
    )
    return format_html(
        '<figure class="risk-chart"><svg role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'xmlns="http://www.w3.org/2000/svg">{}{}{}</svg><figcaption>{}</figcaption>{}</figure>',
        caption,
        width,
        height,
        width,
        height,
        axis,
        body,
        empty,
        caption,
        _table(points, caption, "value"),
    )


@register.simple_tag
def bar_chart(points: Sequence[Point], caption: str) -> SafeString:
    return bar_svg(list(points), caption=caption)


@register.simple_tag
def line_chart(points: Sequence[Point], caption: str, top: float | None = None) -> SafeString:
    return line_svg(list(points), caption=caption, top=top)
