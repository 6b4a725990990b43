"""CSV cells a spreadsheet will not evaluate (OWASP "CSV injection"), for every CSV the service writes."""

from __future__ import annotations

import re

#: What a spreadsheet would evaluate: these leading characters, unless the cell is a plain number (a
#: negative trust delta must stay a number).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def escape_formula(text: str) -> str:
    """``'`` before a cell a spreadsheet would evaluate (``=1+1``, ``@SUM(..)``, ``-2+3``), not before ``-0.5``."""
    if text.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def escape_text(text: str) -> str:
    """The same for a column that only ever holds text (a name, a URL): ``+1`` there is text, and a
    spreadsheet must show it as written rather than turn it into the number 1."""
    return "'" + text if text.startswith(FORMULA_START) else text
