"""``-S/--set-param`` parsing: Hydra's override grammar, as pure functions.

==============================  =========================================================
``key=value``                   set an existing key (typed: ``1`` int, ``1e-3`` float, …)
``file.yaml:key=value``         the same in another params file of the spec
``key=1,2,3``                   sweep: one experiment per value
``key=range(0,10,2)``           sweep over ``range`` (floats allowed)
``key=choice(adam,sgd)``        sweep over the listed values
``key=[1,2]`` / ``key={a: 1}``  a list / mapping value (not a sweep)
``key='a,b'``                   a quoted string (commas and all)
``+key=value``                  add a key that does not exist yet (error if it does)
``++key=value``                 add or override
``~key`` / ``~key=value``       delete a key (only if it has that value)
==============================  =========================================================
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sweeprun.exceptions import SpecError, UsageError
from sweeprun.spec import yamlio

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?((\d[\d_]*)?\.\d*([eE][-+]?\d+)?|\d[\d_]*[eE][-+]?\d+|inf|nan)$", re.I)
_KEY = re.compile(r"^([^=:\s]+:)?[A-Za-z_0-9][\w\-]*(\.[\w\-]+)*$")
_KEY_VALUE = re.compile(r"^[+~]*[A-Za-z_][\w.\-]*(:[\w.\-]+)?=")
#: The most values one ``range()`` may give (a whole sweep: ``--max-points``).
MAX_VALUES = 1_000_000
_FUNC = re.compile(r"^(range|choice)\((.*)\)$", re.S)


class _Delete:
    """Marker value: the key is removed from the params file."""

    def __repr__(self) -> str:
        return "<delete>"


DELETE: Any = _Delete()


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes, brackets, braces and parentheses."""
    parts: list[str] = []
    depth = 0
    quote = ""
    cur: list[str] = []
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        raise ValueError("unbalanced quotes or brackets")
    parts.append("".join(cur))
    return parts


def parse_value(text: str) -> Any:
    """Type a value the way Hydra does: int, float, bool, null, quoted string, list, dict."""
    s = text.strip()
    if s == "":
        return ""
    low = s.lower()
    if _INT.match(s):
        return int(s.replace("_", ""))
    if (_FLOAT.match(s) and any(c.isdigit() for c in s)) or low.lstrip("+-") in ("inf", "nan"):
        try:
            return float(s.replace("_", ""))
        except ValueError:
            pass  # e.g. "1_.": not a number after all
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
            raise ValueError(f"cannot parse {text!r}") from None
    return s


def _range(args: list[Any], limit: int = 0) -> list[Any]:
    if not 1 <= len(args) <= 3 or not all(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in args
    ):
        raise ValueError("range() takes 1 to 3 numbers: range(stop), range(start, stop[, step])")
    start, stop, step = (
        (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) == 3 else 1)
    )
    if step == 0:
        raise ValueError("range() step must not be zero")
    count = max(0, math.ceil((stop - start) / step))
    limit = limit or MAX_VALUES
    if count > limit:
        # Counted before it is built: ten million values would take gigabytes.
        raise ValueError(f"range() has {count:,} values, more than --max-points {limit:,}")
    if all(isinstance(a, int) for a in (start, stop, step)):
        return list(range(start, stop, step))
    out: list[Any] = []
    i = 0
    while True:  # floats: start + i*step avoids accumulating rounding errors
        v = start + i * step
        if (step > 0 and v >= stop) or (step < 0 and v <= stop):
            return out
        out.append(round(v, 12))
        i += 1


def parse_values(text: str, limit: int = 0) -> tuple[list[Any], bool]:
    """A value or sweep: ``(values, is_sweep)``."""
    s = text.strip()
    m = _FUNC.match(s)
    if m:
        args = [parse_value(a) for a in split_top(m.group(2))] if m.group(2).strip() else []
        if m.group(1) == "range":
            return _range(args, limit), True
        if not args:
            raise ValueError("choice() needs at least one value")
        return args, True
    parts = split_top(s)
    if len(parts) > 1:
        return [parse_value(p) for p in parts], True
    return [parse_value(s)], False


@dataclass(frozen=True)
class Override:
    """One parsed ``-S`` argument."""

    key: str  # as written (without +/++/~), possibly ``file:key``
    values: tuple[Any, ...]  # one value, or the sweep's values; (DELETE,) for ~key
    text: str
    kind: str = "set"  # "set", "add" (+), "force" (++), "delete" (~)
    is_sweep: bool = False
    match: Any = None  # for ``~key=value``: delete only if the value is this

    @property
    def value(self) -> Any:
        """The single value of a non-sweep override."""
        return self.values[0]


def combine(axes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every combination of the ``-S`` sweeps (each axis: one point per value)."""
    points: list[dict[str, Any]] = [{}]
    for axis in axes:
        points = [{**a, **b} for a in points for b in axis]
    return points


def parse_override(text: str, limit: int = 0) -> Override:
    """Parse one ``-S`` argument; a ``UsageError`` naming ``-S`` on bad syntax."""
    raw = text.strip()
    kind = "set"
    if raw.startswith("++"):
        kind, raw = "force", raw[2:]
    elif raw.startswith("+"):
        kind, raw = "add", raw[1:]
    elif raw.startswith("~"):
        kind, raw = "delete", raw[1:]
    key, sep, rest = raw.partition("=")
    key = key.strip()
    example = "e.g. -S train.lr=0.1, -S train.lr=0.1,0.01, -S +new.key=1, -S ~old.key"
    if not _KEY.match(key) or (not sep and kind != "delete"):
        raise UsageError(f"-S {text!r}: expected [+|++|~][file:]key=value ({example})")
    if kind != "delete" and not rest.strip():
        # Hydra reads `a=` as an empty string; a typo or an unset shell variable
        # (-S lr=$LR) reads the same: ask for it to be written out.
        raise UsageError(f"-S {text!r}: no value (an empty string is written {key}='')")
    try:
        if kind == "delete":
            match = parse_value(rest) if sep else None
            return Override(key=key, values=(DELETE,), text=text, kind=kind, match=match)
        values, is_sweep = parse_values(rest, limit)
    except ValueError as exc:
        raise UsageError(f"-S {text!r}: {exc} ({example})") from None
    looks_like_key = [v for v in values[1:] if isinstance(v, str) and _KEY_VALUE.match(v)]
    if is_sweep and looks_like_key:
        # DVC's habit (-S a=1,b=2 sets two params): here a comma makes a sweep.
        raise UsageError(
            f"-S {text!r}: {looks_like_key[0]!r} looks like another override; give each its "
            f"own -S (a comma sweeps over values: -S {key}=1,2)"
        )
    return Override(key=key, values=tuple(values), text=text, kind=kind, is_sweep=is_sweep)
