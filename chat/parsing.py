"""What people type in chat, turned into values: counts written as people write them, command words.

Pure: no Django, no ORM, no clock. Every refusal names the bad value and says how to write it instead,
because the message is all the person in the chat window gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

#: Largest count accepted by default (the submission service's own bound: no post has a trillion views).
DEFAULT_MAXIMUM = 10**12
#: Longer than any count up to the maximum can be written ("1,000,000,000,000" is 17 characters).
MAX_LENGTH = 32

SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}

# Digits, with thousands separators only in groups of three; an optional fraction; an optional suffix.
_COUNT = re.compile(r"(?P<int>\d+|\d{1,3}(?:,\d{3})+)(?:\.(?P<frac>\d+))?(?P<suffix>[kmb]?)", re.IGNORECASE | re.ASCII)
HOW_TO_WRITE = "write it like 12500, 12,500 or 12.5k"


class CountRejected(ValueError):
    """``value`` is not a count; ``message`` says why, naming it."""

    def __init__(self, value: str, message: str):
        super().__init__(message)
        self.value = value
        self.message = message


def parse_count(text: str, *, maximum: int = DEFAULT_MAXIMUM) -> int:
    """A whole, non-negative count from ``12500``, ``12,500``, ``12.5k``, ``3M`` or ``1.2b``.

    Refused (CountRejected): anything else (``12.5.5k``, ``1,20``, ``12 500``), a negative number, a
    fraction (``1.5``, or ``1.2345k`` = 1234.5) and a count above ``maximum``.
    """
    value = text.strip()
    shown = value if len(value) <= MAX_LENGTH else value[:MAX_LENGTH] + "…"
    if not value:
        raise CountRejected(text, f"a number is missing ({HOW_TO_WRITE})")
    if len(value) > MAX_LENGTH:
        raise CountRejected(text, f"'{shown}' is too long to be a count")
    if value.startswith("-") and _COUNT.fullmatch(value[1:]):
        raise CountRejected(text, f"'{shown}' is negative; a count is 0 or more")
    match = _COUNT.fullmatch(value)
    if match is None:
        raise CountRejected(text, f"'{shown}' is not a number ({HOW_TO_WRITE})")
    digits = match["int"].replace(",", "") + "." + (match["frac"] or "0")
    exact = Decimal(digits) * SUFFIXES[match["suffix"].lower()]
    if exact != exact.to_integral_value():
        raise CountRejected(text, f"'{shown}' is {_plain(exact)}, not a whole number")
    count = int(exact)
    if count > maximum:
        raise CountRejected(text, f"'{shown}' is more than {maximum:,}")
    return count


def _plain(value: Decimal) -> str:
    """``1234.5`` rather than ``1.2345E+3``."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def count_forms(n: int) -> list[str]:
    """Every way this module accepts ``n`` written: plain, with separators, and with each suffix."""
    forms = [str(n), f"{n:,}"]
    for suffix, factor in SUFFIXES.items():
        if suffix:
            forms += [_plain(Decimal(n) / factor) + suffix, _plain(Decimal(n) / factor) + suffix.upper()]
    return forms


# --- commands -------------------------------------------------------------------------------------

COMMANDS = ("claim", "status", "link", "help")
CLAIM_USAGE = "/claim <post url> <views> <clicks> <conversions> [campaign id]"
STATUS_USAGE = "/status <report id>"
LINK_USAGE = "/link <code>"


class CommandRejected(ValueError):
    """The command's arguments are wrong; the message says which and how to write them."""


@dataclass(frozen=True)
class ClaimArgs:
    post_url: str
    views: int
    clicks: int
    conversions: int
    #: None: the affiliate's one open campaign on the post's platform (see services.chat_claim).
    campaign_id: int | None


def claim_args(
    *,
    url: str | None,
    views: str | None,
    clicks: str | None,
    conversions: str | None,
    campaign: str | None = None,
    maximum: int = DEFAULT_MAXIMUM,
) -> ClaimArgs:
    """The ``/claim`` arguments, each checked; every bad one is named in one message."""
    problems: list[str] = []
    if not url or not url.strip():
        problems.append("the post url is missing")
    counts: dict[str, int] = {}
    for name, raw in (("views", views), ("clicks", clicks), ("conversions", conversions)):
        if raw is None or not str(raw).strip():
            problems.append(f"{name} is missing")
            continue
        try:
            counts[name] = parse_count(str(raw), maximum=maximum)
        except CountRejected as exc:
            problems.append(f"{name}: {exc.message}")
    campaign_id = None
    if campaign is not None and str(campaign).strip():
        campaign_id = campaign_id_of(str(campaign))
        if campaign_id is None:
            problems.append(f"campaign: '{str(campaign).strip()[:MAX_LENGTH]}' is not a campaign id (a number like 7)")
    if problems:
        raise CommandRejected("; ".join(problems) + f". Usage: {CLAIM_USAGE}")
    return ClaimArgs(
        post_url=slack_link(url or ""),
        views=counts["views"],
        clicks=counts["clicks"],
        conversions=counts["conversions"],
        campaign_id=campaign_id,
    )


def campaign_id_of(text: str) -> int | None:
    """``7`` or ``#7``: a campaign id (up to bigint); None when it is not one."""
    value = text.strip().removeprefix("#")
    if not re.fullmatch(r"[0-9]{1,18}", value):
        return None
    return int(value)


def report_id_of(text: str) -> int:
    value = text.strip().removeprefix("#")
    if not value:
        raise CommandRejected(f"the report id is missing. Usage: {STATUS_USAGE}")
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise CommandRejected(f"'{value[:MAX_LENGTH]}' is not a report id (a number like 1234). Usage: {STATUS_USAGE}")
    return int(value)


def slack_link(text: str) -> str:
    """Slack may send a link as ``<https://x|label>`` (when the command escapes links): the URL inside."""
    value = text.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].split("|", 1)[0]
    return value


@dataclass(frozen=True)
class Command:
    name: str
    words: list[str]


def split_command(command: str, text: str) -> Command:
    """A Slack command and its text: ``/claim a b`` or an umbrella command ``/affiliates claim a b``.

    Slack names commands per workspace and ``/status`` is often taken, so any command name works when
    its first word is one of :data:`COMMANDS`.
    """
    name = command.strip().lstrip("/").lower()
    words = text.split()
    if name not in COMMANDS:
        if words and words[0].lower() in COMMANDS:
            name, words = words[0].lower(), words[1:]
        else:
            name = "help"
    return Command(name=name, words=words)


CLAIM_WORDS = ("url", "views", "clicks", "conversions", "campaign")


def word_options(command: Command) -> dict[str, str]:
    """The options of a command typed as words (Slack): positional, in the order of the usage line."""
    words = command.words
    if command.name == "claim":
        if len(words) > len(CLAIM_WORDS):
            extra = " ".join(words[len(CLAIM_WORDS) :])[:40]
            raise CommandRejected(f"too many words ('{extra}' is extra). Usage: {CLAIM_USAGE}")
        return dict(zip(CLAIM_WORDS, words, strict=False))
    if command.name == "status":
        return {"report": " ".join(words)}
    if command.name == "link":
        return {"code": " ".join(words)}
    return {}
