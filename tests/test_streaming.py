"""``--collect-only`` streams big sweeps (``_core/streaming.py``) and says what collection
says: every spec here is listed both ways, streamed and collected as usual, and the
outputs (and exit codes, and errors) must be the same."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import pytest

from sweeprun._core import streaming
from sweeprun.testing import SweepProject

PARAMS = """
train: {lr: 0.1, units: 32, optimizer: adam, flag: false, layers: [1, 2], note: null}
seed: 0
"""

SPECS = {
    "matrix of every kind of value": """
params: params.yaml
cmd: echo ${train.lr} ${train.optimizer}
sweeps:
  g:
    matrix:
      train.lr: [0.1, 1e-05, 3, -0.5]
      train.optimizer: [adam, "1", "true", "a,b", "it's", "x]y", ""]
      train.layers: [[1, 2], [3]]
      train.note: [null, {a: 1}]
      train.flag: [true, false]
""",
    "groups concatenated, a group's blocks multiplied": """
params: params.yaml
cmd: echo ${seed}
sweeps:
  g:
    - matrix: {train.lr: [0.1, 0.2]}
      values: [{train.units: 8}, {train.units: 16, train.optimizer: sgd}]
    - zip: {train.lr: [1, 2], seed: [5, 6]}
    - random: {n: 4, seed: 3, space: {train.lr: "loguniform(1e-4, 1e-1)"}}
  h:
    values: [{seed: 1}, {seed: 2}]
""",
    "two params files": """
params: [params.yaml, data.json]
cmd: echo ${data.json:noise} ${train.lr}
sweeps:
  g:
    matrix: {data.json:noise: [0.1, 0.2], train.lr: [1, 2], data.json:seed: [7]}
""",
}


@pytest.fixture
def project(sweepproject: SweepProject) -> SweepProject:
    sweepproject.write("params.yaml", PARAMS)
    sweepproject.write("data.json", '{"noise": 0.0, "seed": 0}\n')
    sweepproject.write("sweeps.yaml", SPECS["matrix of every kind of value"])
    sweepproject.commit()
    return sweepproject


def both_ways(
    p: SweepProject, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[tuple[int, str, str], tuple[int, str, str], bool]:
    """(streamed run, usual run, whether the first one streamed)."""
    real = streaming.collect
    streamed: list[bool] = []

    def spy(session: Any) -> streaming.Listing | None:
        got = real(session)
        streamed.append(got is not None)
        return got

    monkeypatch.setattr(streaming, "collect", spy)
    a = p.run("--collect-only", *args)
    monkeypatch.setattr(streaming, "collect", lambda session: None)
    b = p.run("--collect-only", *args)
    monkeypatch.setattr(streaming, "collect", real)
    return (a.ret, a.stdout, a.stderr), (b.ret, b.stdout, b.stderr), any(streamed)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("verbosity", [[], ["-q"], ["-v"]])
def test_a_streamed_listing_is_the_collected_one(
    project: SweepProject, monkeypatch: pytest.MonkeyPatch, name: str, verbosity: list[str]
) -> None:
    project.write("sweeps.yaml", SPECS[name])
    streamed, usual, did = both_ways(project, monkeypatch, *verbosity)
    assert did
    assert streamed == usual and usual[0] == 0, usual
    assert "collected" in usual[1] or verbosity == ["-q"]


def test_random_matrices_and_values_list_the_same_both_ways(
    project: SweepProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    values: list[Any] = [0.1, 2, -3, "adam", "1", "null", True, None, [1], {"a": [2]}, "x y", 1e-9]
    keys = ["train.lr", "train.units", "train.optimizer", "seed", "train.note"]
    streamed_some = False
    for _ in range(12):
        picked = rng.sample(keys, rng.randint(1, 4))
        matrix = {k: rng.sample(values, rng.randint(1, 3)) for k in picked[:2]}
        lines = ["params: params.yaml", "cmd: echo ${seed}", "sweeps:", "  g:"]
        lines.append(f"    - matrix: {_flow(matrix)}")
        rest = picked[2:]
        if rest:
            entries = [
                {k: rng.choice(values) for k in rest if rng.random() < 0.8} for _ in range(3)
            ]
            lines.append(f"      values: {_flow(entries)}")
        if rng.random() < 0.5:
            lines.append(f"    - values: [{{seed: {rng.randint(0, 9)}}}]")
        project.write("sweeps.yaml", "\n".join(lines) + "\n")
        streamed, usual, did = both_ways(project, monkeypatch, "-q")
        assert streamed == usual, "\n".join(lines)
        streamed_some |= did
    assert streamed_some


def _flow(value: Any) -> str:
    import json

    return json.dumps(value)  # JSON is YAML's flow style


@pytest.mark.parametrize(
    "spec,args",
    [
        # keys that overlap (train and train.lr) merge: collected as usual
        ("g:\n    matrix: {train.lr: [1, 2]}\n    values: [{train: {lr: 3}}]", []),
        ("g:\n    matrix: {train.lr: [1, 1]}", []),  # a repeated value: deduplicated
        ("g:\n    matrix: {train.lr: [1, 2], include: [{train.lr: 3}]}", []),
        ("g:\n    name: lr-{train.lr}\n    matrix: {train.lr: [1, 2]}", []),
        ("g:\n    matrix: {train.lr: [1, 2]}", ["-k", "lr=1"]),
        ("g:\n    matrix: {train.lr: [1, 2]}", ["-S", "seed=3"]),
        ("g:\n    matrix: {train.lr: [1, 2]}", ["sweeps.yaml::g[train.lr=1]"]),
    ],
)
def test_what_needs_every_experiment_is_collected_as_usual(
    project: SweepProject, monkeypatch: pytest.MonkeyPatch, spec: str, args: list[str]
) -> None:
    project.write("sweeps.yaml", f"params: params.yaml\ncmd: echo ${{seed}}\nsweeps:\n  {spec}\n")
    streamed, usual, did = both_ways(project, monkeypatch, *args)
    assert not did
    assert streamed == usual and usual[0] == 0, usual


@pytest.mark.parametrize(
    "sweep,cmd",
    [
        ("matrix: {train.lr: [1, 2], nope: [1]}", "echo 1"),  # a key no params file has
        ("matrix: {train.lr: [1, 2], seed: [1, 2]}", "echo ${train.missing}"),
        ('matrix: {train.lr: [1, 2], train.optimizer: [adam, "a\\0b"]}', "echo ${train.optimizer}"),
        ("matrix: {train.lr: [1], train.optimizer: [{x: 1}, adam]}", "echo ${train.optimizer.x}"),
        ("matrix: {train.lr: []}", "echo 1"),
    ],
)
def test_a_bad_part_is_refused_as_collection_refuses_it(
    project: SweepProject, monkeypatch: pytest.MonkeyPatch, sweep: str, cmd: str
) -> None:
    """Every part is checked: keys against the params files, and the stages interpolated
    with each value (a NUL byte only in one value, a ${key} only one value lacks)."""
    project.write("sweeps.yaml", f"params: params.yaml\ncmd: {cmd}\nsweeps:\n  g:\n    {sweep}\n")
    streamed, usual, _ = both_ways(project, monkeypatch)
    assert usual[0] == 4, usual
    assert streamed == usual


PEAK = """
import re, runpy, sys
sys.argv = ["sweeprun", "--collect-only", "-q", "--max-points", "10000000"]
try:
    runpy.run_module("sweeprun", run_name="__main__")
finally:
    # VmHWM: this process's own peak (ru_maxrss would count the pytest process it was
    # forked from: Linux carries the old memory's peak over exec)
    status = open("/proc/self/status").read()
    print(re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1), file=sys.stderr)
"""


def test_ten_million_points_stream_in_little_memory(project: SweepProject) -> None:
    """2,000,000 points listed in a few dozen MB (collected as experiments, the same
    listing held every one: some 3 GB); 10⁷ with --max-points stream the same way."""
    many = ", ".join(str(i) for i in range(1000))
    project.write(
        "sweeps.yaml",
        "params: params.yaml\ncmd: echo ${train.lr}\nsweeps:\n  g:\n"
        f"    matrix: {{seed: [1, 2], train.lr: [{many}], train.units: [{many}]}}\n",
    )
    project.commit()
    proc = subprocess.run([sys.executable, "-c", PEAK], cwd=project.path, capture_output=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_kb = int(proc.stderr.split()[-1])  # the process's own peak, not its siblings'
    lines = proc.stdout.splitlines()
    assert len(lines) == 2_000_000
    assert lines[0] == b"g[seed=1,train.lr=0,train.units=0]"
    assert lines[-1] == b"g[seed=2,train.lr=999,train.units=999]"
    assert peak_kb < 200_000, peak_kb
