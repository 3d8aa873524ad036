"""Unbounded work is refused fast, before anything is built: exit 4, one line."""

from __future__ import annotations

import time

import pytest

from sweeprun.testing import SweepProject

BOMB = """
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
cmd: echo hi
"""


@pytest.mark.parametrize(
    ("spec", "args", "message"),
    [
        (
            "cmd: echo ${a}\nsweeps:\n  big:\n    matrix:\n"
            "      a: [1,2,3,4,5,6,7,8,9,10]\n      b: [1,2,3,4,5,6,7,8,9,10]\n"
            "      c: [1,2,3,4,5,6,7,8,9,10]\n      d: [1,2,3,4,5,6,7,8,9,10]\n"
            "      e: [1,2,3,4,5,6,7,8,9,10]\n      f: [1,2,3,4,5,6,7,8,9,10]\n"
            "      g: [1,2,3,4,5,6,7,8,9,10]\n",
            (),
            "sweeps.yaml:4:5: sweep 'big' has 10,000,000 points, more than --max-points 1,000,000",
        ),
        (
            "cmd: echo hi\nsweeps:\n  r:\n    random:\n      n: 10000000\n"
            "      space: {a: uniform(0, 1)}\n",
            (),
            "sweep 'r' has 10,000,000 points, more than --max-points 1,000,000",
        ),
        (
            "cmd: echo hi\n",
            ("-S", "a=range(0,10000000)"),
            "range() has 10,000,000 values, more than --max-points 1,000,000",
        ),
        (BOMB, (), "expands (through YAML aliases) to more than 1,000,000 values"),
        (
            "cmd: echo hi\nsweeps:\n  g:\n    matrix: {a: [1, 2, 3]}\n",
            ("--max-points", "2"),
            "sweep 'g' has 3 points, more than --max-points 2",
        ),
    ],
    ids=["matrix-1e7", "random-1e7", "range-1e7", "anchor-bomb", "max-points"],
)
def test_refused_fast(
    sweepproject: SweepProject, spec: str, args: tuple[str, ...], message: str
) -> None:
    p = sweepproject
    p.write("params.yaml", "a: 0\nb: 0\nc: 0\nd: 0\ne: 0\nf: 0\ng: 0\n")
    p.write("sweeps.yaml", spec)
    p.commit()
    start = time.monotonic()
    res = p.run("sweeps.yaml", "--collect-only", *args)
    assert time.monotonic() - start < 10  # measured: well under a second
    assert res.ret == 4, res.stdout + res.stderr
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_huge_spec_is_refused_before_parsing(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.write("params.yaml", "a: 0\n")
    p.write(
        "sweeps.yaml", "cmd: echo hi\nsweeps:\n  v:\n    values:\n" + "    - {a: 1}\n" * 500_000
    )
    p.commit()
    start = time.monotonic()
    res = p.run("sweeps.yaml", "--collect-only")
    assert time.monotonic() - start < 10
    assert res.ret == 4
    assert "too large for a spec" in res.stderr


LINSPACE = """
import sweeprun

@sweeprun.hookimpl
def sweeprun_block_types():
    return ["linspace"]

@sweeprun.hookimpl
def sweeprun_count_block(kind, block):
    return int(block["n"]) if kind == "linspace" else None

@sweeprun.hookimpl
def sweeprun_expand_block(kind, block):
    if kind != "linspace":
        return None
    with open("expanded.txt", "a") as f:  # the test reads what was expanded
        f.write(f"{block['n']}\\n")
    n, lo, hi = int(block["n"]), float(block["from"]), float(block["to"])
    return [{block["key"]: lo + (hi - lo) * i / (n - 1)} for i in range(n)]
"""


def test_a_plugins_block_is_counted_by_its_hook_before_it_is_expanded(
    sweepproject: SweepProject,
) -> None:
    """``sweeprun_count_block``: a plugin's block kind says its size, so ``--max-points``
    refuses it (multiplied by the rest of its group) without expanding it."""
    p = sweepproject
    p.write("params.yaml", "a: 0\nb: 0\n")
    p.write("sweepconf.py", LINSPACE)
    p.write(
        "sweeps.yaml",
        "cmd: echo ${a} ${b}\nsweeps:\n  s:\n    linspace: {key: a, from: 0, to: 1, n: 5000}\n"
        "    matrix: {b: [1, 2, 3]}\n  ok:\n    linspace: {key: a, from: 0, to: 1, n: 3}\n",
    )
    p.commit()
    res = p.run("sweeps.yaml", "--collect-only", "--max-points", "10000")
    assert res.ret == 4, res.stdout + res.stderr
    assert "sweep 's' has 15,000 points, more than --max-points 10,000" in res.stderr
    assert not (p.path / "expanded.txt").exists()  # refused before any block was expanded
    res = p.run("sweeps.yaml", "--collect-only")
    assert res.ret == 0, res.stdout + res.stderr
    assert "ok[a=0.5]" in res.stdout
    assert (p.path / "expanded.txt").read_text().split() == ["5000", "3"]
