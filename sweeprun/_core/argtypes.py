"""argparse types for numeric options: a bad value is a one-line usage error (exit 4)
naming the option and what would be valid, never a surprise later (``--timeout -1``
recording every experiment as a timeout, ``--retries -1`` an assertion)."""

from __future__ import annotations

import argparse
import math


def _whole(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {low}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (``-j``, ``--max-points``)."""
    return _whole(text, 1)


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (``--retries``, ``--maxfail``)."""
    return _whole(text, 0)


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0 (``--timeout``, ``--connect-timeout``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def nonnegative_seconds(text: str) -> float:
    """A finite number of seconds >= 0 (``--idle-timeout``: 0 ends when nothing is queued)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def slot_list(text: str) -> str:
    """A comma-separated list of device ids (``--slots 0,1``), none of them empty."""
    items = text.split(",")
    if not text or any(not item.strip() for item in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0,1 (no empty items)")
    return text
