"""``-k EXPR`` matching, as pytest: ``and``/``or``/``not``/parentheses over words.

A word matches an experiment when it is a case-insensitive substring of its id, name
or sweep. Words are any run of characters other than whitespace and parentheses, so a
value such as ``lr=0.1``, ``model.alpha=0.5`` or ``grid[a=1,b=x/y]`` can be selected as
it is written; quote a word (``"opt=adam w"``) to include spaces, parentheses or the
words ``and``/``or``/``not``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sweeprun.exceptions import UsageError

_TOKEN = re.compile(r"""\s*("[^"]*"|'[^']*'|\(|\)|[^\s()]+)""")


def compile_keyword(expr: str) -> Callable[[Any], bool]:
    """Compile ``expr`` into a predicate over objects with ``id``, ``name``, ``sweep``."""
    tokens = _TOKEN.findall(expr)
    if not tokens:
        raise UsageError(f"-k {expr!r}: empty expression")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        tok: str = tokens[pos]
        pos += 1
        return tok

    Pred = Callable[[str], bool]

    def parse_or() -> Pred:
        left = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda s: a(s) or b(s))(left, right)
        return left

    def parse_and() -> Pred:
        left = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            left = (lambda a, b: lambda s: a(s) and b(s))(left, right)
        return left

    def parse_not() -> Pred:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda s: not inner(s)
        return parse_atom()

    def parse_atom() -> Pred:
        tok = peek()
        if tok is None:
            raise UsageError(f"-k {expr!r}: unexpected end of expression")
        if tok == "(":
            take()
            inner = parse_or()
            if peek() != ")":
                raise UsageError(f"-k {expr!r}: missing ')'")
            take()
            return inner
        if tok in (")", "and", "or"):
            raise UsageError(f"-k {expr!r}: unexpected {tok!r}")
        word = take().lower()
        if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
            word = word[1:-1]  # quoted: spaces, parentheses and 'and' are literal
        return lambda s: word in s

    pred = parse_or()
    if pos != len(tokens):
        raise UsageError(f"-k {expr!r}: unexpected {tokens[pos]!r}")

    def match(item: Any) -> bool:
        text = " ".join(str(getattr(item, a, "") or "") for a in ("id", "name", "sweep"))
        return pred(text.lower())

    return match
