"""The -S grammar (Hydra's), table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from sweeprun.exceptions import UsageError
from sweeprun.spec.overrides import DELETE, parse_override, parse_value
from sweeprun.testing import SweepProject


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-3", -3),
        ("1_000", 1000),
        ("0.5", 0.5),
        ("1e-3", 0.001),
        ("1.", 1.0),
        (".5", 0.5),
        ("inf", float("inf")),
        ("true", True),
        ("False", False),
        ("null", None),
        ("007", "007"),
        ("'007'", "007"),
        ('"a,b"', "a,b"),
        ("adam", "adam"),
        ("", ""),
        ("[1, 2]", [1, 2]),
        ("{a: 1}", {"a": 1}),
        ("v1.2", "v1.2"),
    ],
)
def test_values_keep_their_types(text: str, value: Any) -> None:
    got = parse_value(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("text", "key", "values", "kind", "sweep"),
    [
        ("train.lr=0.1", "train.lr", (0.1,), "set", False),
        ("params.yaml:train.lr=0.1", "params.yaml:train.lr", (0.1,), "set", False),
        ("a=1,2,3", "a", (1, 2, 3), "set", True),
        ("a=range(0,10,4)", "a", (0, 4, 8), "set", True),
        ("a=range(3)", "a", (0, 1, 2), "set", True),
        ("a=range(0, 1, 0.25)", "a", (0, 0.25, 0.5, 0.75), "set", True),
        ("a=choice(adam, sgd)", "a", ("adam", "sgd"), "set", True),
        ("a=[1,2]", "a", ([1, 2],), "set", False),
        ("a=[1,2],[3]", "a", ([1, 2], [3]), "set", True),
        ("a='x,y'", "a", ("x,y",), "set", False),
        ("+new.key=1", "new.key", (1,), "add", False),
        ("++k=v", "k", ("v",), "force", False),
        ("~old", "old", (DELETE,), "delete", False),
        ("a=''", "a", ("",), "set", False),  # empty: written out (a= is an error)
    ],
)
def test_overrides(text: str, key: str, values: tuple[Any, ...], kind: str, sweep: bool) -> None:
    ov = parse_override(text)
    assert (ov.key, ov.values, ov.kind, ov.is_sweep) == (key, values, kind, sweep)


def test_delete_with_value() -> None:
    ov = parse_override("~seed=3")
    assert ov.kind == "delete" and ov.match == 3


@pytest.mark.parametrize(
    "text",
    [
        "novalue",
        "=1",
        "a b=1",
        "a=[1,2",
        "a=range(1,2,0)",
        "a=range(x)",
        "a=choice()",
        "+=1",
        "a.=1",
    ],
)
def test_bad_overrides(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_override(text)
    assert str(info.value).startswith(f"-S {text!r}: ")


TWO_SWEEPS = """
params: params.yaml
cmd: echo ${lr} ${seed}
sweeps:
  g:
    matrix: {lr: [0.1, 0.2], seed: [1, 2, 3]}
  h:
    values: [{lr: 0.3}, {lr: 0.4}]
"""


def test_set_param_makes_the_points_it_names_as_dvc_exp_run_does(
    sweepproject: SweepProject,
) -> None:
    """Issue 23, item 3: with sweeps g and h both varying lr, `-S lr=0.5 -n half` queued
    two experiments with the same params (half-1, half-2); on a 6-point spec, one `-S … -n
    exp2` queued 6."""
    p = sweepproject
    p.write("params.yaml", "lr: 0.01\nseed: 0\n")
    p.write("sweeps.yaml", TWO_SWEEPS)
    p.commit()
    res = p.run("-S", "lr=0.5", "-n", "half")
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(
        ["collected 1 experiment (-S against the base params of sweeps.yaml, not inside its "
         "sweeps; to set it inside one: sweeps.yaml::g -S …)", "queued 1 experiment"]
    )  # fmt: skip
    (rec,) = p.records()
    assert rec["name"] == "half" and rec["params"]["params.yaml"] == {"lr": 0.5, "seed": 0}
    # a -S sweep: its own points, and -n's names said, not silently suffixed
    res = p.run("-S", "lr=0.6,0.7", "-n", "t")
    res.fnmatch_lines(["collected 2 experiments (*; -n t names 2: t-1 … t-2)"])
    # inside a named sweep (or with -k), -S sets the key in each of its points
    res = p.run("sweeps.yaml::g", "-S", "seed=9", "--collect-only", "-q")
    assert res.outlines == ["g[lr=0.1,seed=9]", "g[lr=0.2,seed=9]"]
    res = p.run("-k", "h", "-S", "seed=9", "--collect-only", "-q")
    assert res.outlines == ["h[lr=0.3,seed=9]", "h[lr=0.4,seed=9]"]
    # without -S, the spec's sweeps as they are
    assert len(p.run("--collect-only", "-q").outlines) == 8
