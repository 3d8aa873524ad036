"""The one escaping function for text that reaches a terminal.

A param value, a metric name, an experiment name or id can hold any character, escape
codes included (``\\x1b[2J`` clears the screen, ``\\x1b]0;…\\x07`` retitles the window):
whatever sweeprun prints for a person goes through :func:`shown`, which writes each
control character as its Python escape and leaves every printable character (any script)
as it is. ``--json`` and files written on request keep the exact text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any


def shown(text: str) -> str:
    """``text`` with every non-printable character written as an escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def for_stream(stream: IO[str]) -> Callable[[str], str]:
    """:func:`shown` when ``stream`` is a terminal, else the identity (a file or a pipe
    gets the exact text)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return shown if tty else _same


def _same(text: str) -> str:
    return text


def pictured(text: str) -> str:
    """``text`` with each control character drawn as its Unicode picture (ESC → ␛),
    anything else unprintable as U+FFFD: for charts, where a written escape (``\x1b``)
    would be read as an escape again by the chart's expression language."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable()
        else chr(0x2400 + ord(c))
        if ord(c) < 0x20
        else "\u2421"
        if c == "\x7f"
        else "\ufffd"
        for c in text
    )


def deep(value: Any) -> Any:
    """Every string in ``value`` (mapping keys too) passed through :func:`pictured`."""
    if isinstance(value, str):
        return pictured(value)
    if isinstance(value, dict):
        return {deep(k): deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep(v) for v in value]
    return value
