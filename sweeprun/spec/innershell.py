"""``${key}`` references inside a script that another shell runs (``sh -c``, ``eval``).

:mod:`sweeprun.spec.template` keeps a value out of the shell that runs the stage's
command. But in ``sh -c "python e.py ${s}"`` the value lands *inside the script* of an
inner shell, which parses it as code. So such a reference is found here, with its quoting
in both scripts, and the command refers to the value there as the inner shell's own
variable: ``"${SWEEPRUN_VALUE_N}"`` in the inner script, written so that the outer shell
passes it on untouched (``\\"\\${…}\\"`` inside double quotes). Both shells then see the
variable's name, never its value. A remote shell (``ssh host "…"``) has no such variable
(its environment is not ours): a reference in its command is refused.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Programs whose ``-c SCRIPT`` argument is a shell script.
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "busybox"})
#: Programs that send their command line to a shell elsewhere.
REMOTE = frozenset({"ssh", "rsh", "slogin", "autossh"})
#: Words that end a simple command (when written apart from their neighbours).
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", "{", "}", "!", "then", "do"})


class InnerShellError(ValueError):
    """A reference no local rewriting makes safe (a remote shell's command, say)."""


@dataclass(frozen=True)
class Inner:
    """A reference inside an inner shell's script: its quoting there (``""``, ``'``, ``"``)."""

    quote: str


#: The name a reference is written back with when an inner script is parsed.
_MARK = "__sweeprun_ref_"


def _literal(word: Sequence[Any]) -> str:
    """A parsed word's text with each reference written back as ``${expr}``."""
    return "".join(p if isinstance(p, str) else "${" + p.expr + "}" for p in word)


def _marked(script: Sequence[Sequence[Any]]) -> str:
    """The words of a script joined, each reference written as ``${MARKn}`` (n: its
    place among the script's references)."""
    out, n = [], 0
    for word in script:
        text = []
        for p in word:
            if isinstance(p, str):
                text.append(p)
            else:
                text.append("${" + f"{_MARK}{n}" + "}")
                n += 1
        out.append("".join(text))
    return " ".join(out)


def _refs(word: Sequence[Any]) -> list[Any]:
    return [p for p in word if not isinstance(p, str)]


#: Options of a shell that take the next word as their argument (``bash -o pipefail -c``).
_OPTION_ARGS = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
#: Programs that run the next words as a command with this command's environment.
_KEEPS_ENV = frozenset({"exec", "command", "nohup", "time"})
#: Options of ``env`` that drop the environment the inner shell would need.
_CLEARS_ENV = frozenset({"-i", "-", "--ignore-environment"})


def _script_word(words: Sequence[Sequence[Any]], at: int) -> int | None:
    """The index of the ``-c`` script of the shell started by ``words[at]``, if any."""
    i = at + 1
    if posixpath.basename(_literal(words[at])) == "busybox":
        if i >= len(words) or _literal(words[i]) not in SHELLS:
            return None
        i += 1
    while i < len(words):
        option = _literal(words[i])
        if option in _OPTION_ARGS:
            i += 2
            continue
        if not option.startswith(("-", "+")) or option.startswith("--") or len(option) < 2:
            return None  # a script file, or the end of the options
        if "c" in option[1:]:
            return i + 1 if i + 1 < len(words) else None
        i += 1
    return None


def _shell_script(words: Sequence[Sequence[Any]], at: int) -> list[Sequence[Any]]:
    """The words that the shell or ``eval`` at ``words[at]`` parses as a script."""
    text = _literal(words[at])
    if text == "eval":
        script = []
        for later in words[at + 1 :]:
            if _literal(later) in _OPERATORS:
                break
            script.append(later)
        return script
    if posixpath.basename(text) in SHELLS:
        index = _script_word(words, at)
        return [words[index]] if index is not None else []
    return []


def inner_refs(words: Sequence[Sequence[Any]], parse: Any) -> dict[int, Inner]:
    """Every reference in an inner shell's script, by ``id()``, with its inner quoting.

    ``parse`` is :func:`sweeprun.spec.template.parse` (passed in: that module uses this
    one). ``InnerShellError`` for a reference no rewriting makes data: in a remote shell's
    command, in the script of a shell that may not get this command's environment (one
    named as another program's argument: ``docker run img sh -c``, ``sudo sh -c``, ``env
    -i sh -c``), or where the inner script's quoting cannot be followed.
    """
    found: dict[int, Inner] = {}
    start = True  # at the first word of a simple command
    cleared = False  # an `env -i` before it: the inner shell would not see our variables
    for at, word in enumerate(words):
        text = _literal(word)
        if text in _OPERATORS:
            start, cleared = True, False
            continue
        program = posixpath.basename(text)
        if start and "=" in text and not text.startswith(("=", "-")) and "/" not in text:
            continue  # VAR=value before the program
        if start and program in _KEEPS_ENV:
            continue
        if start and program == "env":
            options = _simple_command(words, at + 1)
            cleared = any(_literal(w) in _CLEARS_ENV for w in options[: _program_at(options)])
            continue
        script = _shell_script(words, at) if start or program in SHELLS else []
        refs = [r for w in script for r in _refs(w)]
        if start and program in REMOTE and any(_refs(w) for w in _simple_command(words, at + 1)):
            raise InnerShellError(
                f"{program} sends its command line to a remote shell, which would "
                "run the value as code; pass it in a file the remote command reads "
                "(a dep), or run the remote command from a script that quotes it"
            )
        if refs and (not start or cleared):
            raise InnerShellError(
                f"{program} runs a shell that may not get this command's environment "
                "(started by another program, or after env -i); pass the value as the "
                "script's argument, which is data: sh -c '… \"$1\"' sh ${key}"
            )
        start = False
        if not refs:
            continue
        # Ours are marked, so an inner script's own ${var} (written \${var}) is left alone.
        marked = _marked(script)
        seen_in = {
            p.expr: p
            for p in parse(marked).script
            if not isinstance(p, str) and p.expr.startswith(_MARK)
        }
        for n, ref in enumerate(refs):
            seen = seen_in.get(f"{_MARK}{n}")
            if seen is None:
                raise InnerShellError(
                    "the script of the inner shell it starts has quoting sweeprun cannot "
                    'follow; refer to the value as "$1" and pass it after the script: '
                    "sh -c '… \"$1\"' sh ${key}"
                )
            if ref.quote == "'" and seen.quote == "'":
                raise InnerShellError(
                    'pass the value to the inner shell as "$1": sh -c \'… "$1"\' sh ${key}'
                )
            found[id(ref)] = Inner(seen.quote)
    return found


def _program_at(words: Sequence[Sequence[Any]]) -> int:
    """Where the program starts after ``env``'s options and assignments."""
    for k, word in enumerate(words):
        text = _literal(word)
        if not text.startswith("-") and "=" not in text:
            return k
    return len(words)


def _simple_command(words: Sequence[Sequence[Any]], start: int) -> list[Sequence[Any]]:
    """The words from ``start`` to the next operator."""
    out = []
    for word in words[start:]:
        if _literal(word) in _OPERATORS:
            break
        out.append(word)
    return out


def render(var: str, outer: str, inner: str) -> str:
    """How the outer script writes the inner script's ``"${var}"`` (data there) so that
    the outer shell passes it on as text: by the quoting of the reference in each."""
    if outer == "'":  # nothing is special inside single quotes: the inner text as it is
        return f"${{{var}}}" if inner == '"' else f'"${{{var}}}"'
    # Unquoted or inside double quotes: the outer shell would expand $ and eat quotes.
    return {
        "": f'\\"\\${{{var}}}\\"',
        '"': f"\\${{{var}}}",
        "'": f"'\\\"\\${{{var}}}\\\"'" if outer == '"' else f"\\'\\\"\\${{{var}}}\\\"\\'",
    }[inner]
