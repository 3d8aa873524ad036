"""``-S/--set-param`` parsing: ``[file:]key=value`` with typed values (Hydra-style)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sweeprun import yamlio
from sweeprun.exceptions import SpecError, UsageError

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?((\d[\d_]*)?\.\d*([eE][-+]?\d+)?|\d[\d_]*[eE][-+]?\d+|inf|nan)$", re.I)
_KEY = re.compile(r"^([^=:\s]+:)?[A-Za-z_][\w\-]*(\.[\w\-]+)*$")


def parse_value(text: str) -> Any:
    """Type a value the way Hydra does: int, float, bool, null, quoted string, list, dict."""
    s = text.strip()
    if s == "":
        return ""
    low = s.lower()
    if _INT.match(s):
        return int(s.replace("_", ""))
    if _FLOAT.match(s):
        return float(s.replace("_", ""))
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("null", "~"):
        return None
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s[0] in "[{":
        try:
            return yamlio.plain(yamlio.load_located(s, "-S"))
        except SpecError:
            raise UsageError(f"-S: cannot parse value {text!r}") from None
    return s


@dataclass(frozen=True)
class Override:
    """One parsed ``-S`` argument."""

    key: str  # as written, possibly ``file:key``
    value: Any
    text: str


def parse_override(text: str) -> Override:
    """Parse ``[file:]key=value``; raise a ``UsageError`` naming ``-S`` on bad syntax."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise UsageError(
            f"-S {text!r}: expected [file:]key=value, e.g. -S train.lr=0.1 or "
            "-S params.yaml:train.lr=0.1"
        )
    return Override(key=key, value=parse_value(raw), text=text)
