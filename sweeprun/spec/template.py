"""A stage's command template: ``${key}`` references bound to argument words.

Pure string processing (no processes): parsing ``cmd`` into words and references,
binding values to them — as exact argument bytes without a shell, or through
``SWEEPRUN_VALUE_N`` environment variables when a shell is needed — and showing a
command as a person reads it. :mod:`sweeprun.run.command` runs what :func:`prepare` made.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from sweeprun.spec.innershell import Inner, InnerShellError, inner_refs, render

# Outside quotes, these characters mean shell syntax: operators, expansions, globs,
# redirections, comments, brace expansion, escapes. Inside double quotes only $ ` and \
# do; inside single quotes nothing does.
_UNQUOTED_SHELL = frozenset("|&;<>()$`\\*?[]#~{}!\n")
_DOUBLE_QUOTED_SHELL = frozenset("$`\\")
# A leading VAR=value assignment, or a shell keyword/builtin as the first word.
_SHELL_FIRST_WORD = re.compile(
    r"^\s*[A-Za-z_][A-Za-z0-9_]*="
    r"|^\s*(?:cd|export|source|\.|exec|if|for|while|until|case|set|ulimit|umask|alias|eval"
    r"|read|type|command|hash|time)(?:\s|$)"
)
#: Environment variables that carry ``${key}`` values into a command that needs a shell.
VALUE_ENV = "SWEEPRUN_VALUE_"


@dataclass(frozen=True)
class _Ref:
    """A ``${expr}`` in a command template, and the quoting it stands in."""

    expr: str
    quote: str  # "", "'" or '"'
    text: str  # as written, for a template whose values do not name it


_Part = str | _Ref


@dataclass(frozen=True)
class Template:
    """A command line split into words once, with its ``${…}`` references kept as such.

    ``words`` is what the program would receive when no shell is needed (each word a
    sequence of literal text and references); ``script`` is the same line for
    ``/bin/sh`` with every reference left in place, to be rendered as a quoted
    environment variable so that no value ever reaches the shell's parser.
    """

    words: tuple[tuple[_Part, ...], ...]
    script: tuple[_Part, ...]
    needs_shell: bool

    @property
    def exprs(self) -> list[str]:
        """Every ``${expr}`` used, in order of first use."""
        seen: dict[str, None] = {}
        for part in self.script:
            if isinstance(part, _Ref):
                seen.setdefault(part.expr, None)
        return list(seen)


@functools.lru_cache(maxsize=256)
def parse(cmd: str) -> Template:
    """Split ``cmd`` into words as ``sh`` would, keeping ``${expr}`` references whole.

    Cached: every point of a sweep usually runs the same command line. A reference is a
    reference inside any quotes (values are substituted before any shell sees the line,
    as in DVC); a backslash before ``$`` keeps it literal (``\\${x}``).
    """
    words: list[tuple[_Part, ...]] = []
    word: list[_Part] = []
    in_word = False
    script: list[_Part] = []
    needs_shell = bool(_SHELL_FIRST_WORD.search(cmd))
    quote = ""
    i, n = 0, len(cmd)
    while i < n:
        ch = cmd[i]
        if ch == "$" and cmd.startswith("${", i) and (end := cmd.find("}", i + 2)) > 0:
            ref = _Ref(cmd[i + 2 : end].strip(), quote, cmd[i : end + 1])
            word.append(ref)
            script.append(ref)
            in_word = True
            i = end + 1
            continue
        if ch == "\\" and quote != "'" and i + 1 < n:
            # An escape: the next character is literal (the shell's business).
            needs_shell = True
            script.append(cmd[i : i + 2])
            word.append(cmd[i + 1])
            in_word = True
            i += 2
            continue
        script.append(ch)
        i += 1
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                word.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            else:
                needs_shell = needs_shell or ch in _DOUBLE_QUOTED_SHELL
                word.append(ch)
        elif ch in "'\"":
            quote = ch
            in_word = True
        elif ch in " \t":
            if in_word:
                words.append(tuple(word))
                word, in_word = [], False
        else:
            needs_shell = needs_shell or ch in _UNQUOTED_SHELL
            word.append(ch)
            in_word = True
    if in_word:
        words.append(tuple(word))
    # Unbalanced quotes: let the shell say so.
    return Template(tuple(words), tuple(script), needs_shell or bool(quote))


@dataclass(frozen=True)
class Prepared:
    """How to start a command: an argv without a shell, or a script for ``/bin/sh``."""

    argv: list[str] | None
    script: str
    env: dict[str, str]


def prepare(cmd: str, values: Mapping[str, str] | None = None, path: str | None = None) -> Prepared:
    """``cmd`` with its ``${expr}`` references bound to ``values``, ready to start.

    Without shell syntax the program gets the words directly, every value byte for byte
    in its word whatever the quoting. With shell syntax the script refers to each value
    as a double-quoted environment variable (``"${SWEEPRUN_VALUE_1}"``), so the shell
    expands it as one literal word piece and never parses it. A first word that is no
    program on ``path`` may be a builtin (``exit 3``), so it goes to the shell, which
    also words the error as users know it. Skipping ``/bin/sh`` saves a process per
    stage: it matters for short commands.
    """
    values = values or {}
    # In an inner shell's script (sh -c "… ${x}"), a value is that shell's variable.
    tpl, inner = _with_inner(cmd)
    unbound = any(isinstance(p, _Ref) and p.expr not in values for p in tpl.script)
    if not tpl.needs_shell and not unbound and tpl.words and not inner:
        argv = ["".join(values[p.expr] if isinstance(p, _Ref) else p for p in w) for w in tpl.words]
        if "/" in argv[0] or _which(argv[0], path):
            return Prepared(argv, "", {})
    names: dict[str, str] = {}
    out: list[str] = []
    for part in tpl.script:
        if not isinstance(part, _Ref):
            out.append(part)
        elif part.expr not in values:
            out.append(part.text)  # not a reference of this experiment (older records)
        else:
            var = names.setdefault(part.expr, f"{VALUE_ENV}{len(names) + 1}")
            if id(part) in inner:
                out.append(render(var, part.quote, inner[id(part)].quote))
                continue
            out.append(
                {"": f'"${{{var}}}"', '"': f"${{{var}}}", "'": f"'\"${{{var}}}\"'"}[part.quote]
            )
    return Prepared(None, "".join(out), {var: values[expr] for expr, var in names.items()})


@functools.lru_cache(maxsize=256)
def _with_inner(cmd: str) -> tuple[Template, dict[int, Inner]]:
    """``cmd`` parsed, with its references in inner shells' scripts — cached together,
    since the second names the first's references by ``id()``."""
    tpl = parse(cmd)
    return tpl, inner_refs(tpl.words, parse)


@functools.lru_cache(maxsize=256)
def _which(program: str, path: str | None) -> bool:
    return shutil.which(program, path=path) is not None


@functools.lru_cache(maxsize=256)
def check_inner_shells(cmd: str) -> str:
    """Why a ``${key}`` of ``cmd`` cannot be made data in the inner shell it reaches
    (``ssh host "… ${key}"``), or ``""``."""
    try:
        _with_inner(cmd)
    except InnerShellError as exc:
        return str(exc)
    return ""


def command_argv(cmd: str, path: str | None = None) -> list[str] | None:
    """``cmd`` as an argv when no shell feature is used, else ``None`` (run via the shell)."""
    return prepare(cmd, {}, path).argv


def display(cmd: str, values: Mapping[str, str]) -> str:
    """``cmd`` as a person reads it: each reference shown as its shell-quoted value."""
    if not values:
        return cmd
    return "".join(
        shlex.quote(values[p.expr])
        if isinstance(p, _Ref) and p.expr in values
        else (p.text if isinstance(p, _Ref) else p)
        for p in parse(cmd).script
    )
