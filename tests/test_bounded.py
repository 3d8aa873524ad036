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
