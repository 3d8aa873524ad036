"""Commands run without ``/bin/sh`` only when that changes nothing the user can see."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeprun.spec.template import command_argv


@pytest.mark.parametrize(
    ("cmd", "argv"),
    [
        ("python3 train.py --lr 0.1", ["python3", "train.py", "--lr", "0.1"]),
        # Shell metacharacters inside single quotes are plain text: no shell needed.
        (
            """python3 -c 'import json; json.dump({"a": 1}, open("m.json", "w"))'""",
            ["python3", "-c", 'import json; json.dump({"a": 1}, open("m.json", "w"))'],
        ),
        ('echo "a b" c', ["echo", "a b", "c"]),
        ("echo 'it'\"'\"'s'", ["echo", "it's"]),
        ("echo ''", ["echo", ""]),
        ("./run.sh x", ["./run.sh", "x"]),  # a path: not looked up on PATH
        # Shell syntax outside quotes, or expansions inside double quotes: the shell runs it.
        ("echo a | wc", None),
        ("echo a > f", None),
        ("echo $HOME", None),
        ('echo "$HOME"', None),
        ('echo "a\\"b"', None),
        ("echo a\\ b", None),
        ("echo *.py", None),
        ("echo ~", None),
        ("echo a; echo b", None),
        ("echo {a,b}", None),
        ("echo 'unbalanced", None),
        ("X=1 python3 t.py", None),
        ("cd sub && make", None),
        (". ./env.sh", None),
        ("export A=1", None),
        ("exit 3", None),  # a builtin, no program: only the shell knows it
        ("no-such-program-anywhere x", None),  # the shell words the error
        ("", None),
        ("   ", None),
    ],
)
def test_command_argv(cmd: str, argv: list[str] | None) -> None:
    assert command_argv(cmd) == argv


def _sh_words(cmd: str) -> list[str]:
    """The words ``sh`` makes of ``cmd`` (after expansion), as printf receives them."""
    script = f'set -- {cmd}\nprintf \'%s\\0\' "$#" "$@"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    count, *words = out.decode().split("\0")[:-1]
    assert len(words) == int(count)
    return words


ANY = list("ab1 -_.,:=/'\"{}$|;*\\#~!")
# Command tails built from plain, single-quoted and double-quoted pieces (mostly ones that
# need no shell), with a sprinkle of raw special characters.
PIECE = st.one_of(
    st.text(st.sampled_from(list("ab1-_.,:=/")), min_size=1, max_size=4),
    st.text(st.sampled_from([c for c in ANY if c != "'"]), max_size=5).map(lambda t: f"'{t}'"),
    st.text(st.sampled_from([c for c in ANY if c not in '"$`\\']), max_size=5).map(
        lambda t: f'"{t}"'
    ),
    st.sampled_from([" ", "  ", " ", "$", "*", "\\", "'", '"', "#", "~", ";", "{a,b}"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECE, min_size=1, max_size=6).map("".join))
def test_argv_matches_what_sh_would_run(tail: str) -> None:
    """Whenever sweeprun skips the shell, the program gets the very argv sh would give it."""
    argv = command_argv("printf " + tail)  # printf: a program that is on PATH
    if argv is not None:
        assert argv[1:] == _sh_words(tail)
