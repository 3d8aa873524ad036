"""``expect:`` metric assertions: a miss (or a missing metric) fails the experiment.

Conditions: ``">= 0.8"``, ``"< 0.5"``, ``"== 3"``, ``"!= 'nan'"``, ranges ``"0.1..0.5"``
(inclusive) and ``"[0.1, 0.5)"`` (brackets say inclusive or not). A metric is named by its
dotted key in any metrics file (``acc``, ``val.loss``) or as ``file:key`` when ambiguous.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sweeprun.spec.overrides import parse_value
from sweeprun.spec.params import flatten

_CMP = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_DOTS = re.compile(r"^\s*([^.\s][^\s]*?)\s*\.\.\s*(\S+)\s*$")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*$")
_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _number(text: str, where: str) -> float:
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expect {where}: {text!r} is not a number")
    return float(value)


@dataclass(frozen=True)
class Expectation:
    """One parsed condition on one metric."""

    metric: str
    text: str
    op: str  # a comparison operator, or "range"
    value: Any = None
    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = True

    def holds(self, actual: Any) -> bool:
        """Whether ``actual`` satisfies the condition (non-numbers fail numeric ones)."""
        if self.op == "range":
            if isinstance(actual, bool) or not isinstance(actual, (int, float)):
                return False
            lo = actual >= self.low if self.low_closed else actual > self.low
            hi = actual <= self.high if self.high_closed else actual < self.high
            return bool(lo and hi)
        if self.op in ("==", "!="):
            return bool(_OPS[self.op](actual, self.value))
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False
        return bool(_OPS[self.op](actual, self.value))


def parse_expectation(metric: str, condition: Any) -> Expectation:
    """Parse ``condition`` for ``metric``; ``ValueError`` with a hint when it does not parse."""
    hint = "(e.g. '>= 0.8', '< 0.5', '== 3', '0.1..0.5', '[0, 1)')"
    if not isinstance(condition, str):
        raise ValueError(f"expect {metric}: the condition must be a string {hint}")
    text = condition.strip()
    m = _CMP.match(text)
    if m:
        op, raw = m.groups()
        value = parse_value(raw)
        if op not in ("==", "!=") and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise ValueError(f"expect {metric}: {condition!r} is not a condition {hint}")
        return Expectation(metric, text, op, value=value)
    m = _INTERVAL.match(text)
    if m:
        lo, hi = _number(m.group(2), metric), _number(m.group(3), metric)
        return Expectation(
            metric,
            text,
            "range",
            low=lo,
            high=hi,
            low_closed=m.group(1) == "[",
            high_closed=m.group(4) == "]",
        )
    m = _DOTS.match(text)
    if m:
        lo, hi = _number(m.group(1), metric), _number(m.group(2), metric)
        return Expectation(metric, text, "range", low=lo, high=hi)
    raise ValueError(f"expect {metric}: cannot parse {condition!r} {hint}")


def lookup(metrics: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """Find metric ``name`` (``key`` or ``file:key``) in ``{file: data}``."""

    if ":" in name:
        path, _, key = name.rpartition(":")
        if path in metrics:
            flat = flatten(metrics[path])
            return (key in flat, flat.get(key))
    for data in metrics.values():
        flat = flatten(data)
        if name in flat:
            return True, flat[name]
    return False, None


def check(expect: Mapping[str, str], metrics: Mapping[str, Any]) -> list[str]:
    """Messages for every unmet expectation (empty when all hold)."""
    failures = []
    for metric, condition in expect.items():
        exp = parse_expectation(metric, condition)
        found, actual = lookup(metrics, metric)
        if not found:
            failures.append(
                f"expectation {metric} {exp.text} not met: metric {metric!r} is missing"
            )
        elif not exp.holds(actual):
            failures.append(f"expectation {metric} {exp.text} not met: {actual!r}")
    return failures
