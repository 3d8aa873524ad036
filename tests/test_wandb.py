"""Issue 25, item 4: sweeps written for W&B are accepted as they are (grid → matrix,
random → random, bayes → optimize, hyperband early_terminate → prune)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_optimize import CURVES, CURVES_STAGES

from sweeprun.testing import SweepProject

BAYES = (
    CURVES_STAGES
    + """sweeps:
  wb:
    method: bayes
    name: my-wandb-sweep
    project: demo
    metric:
      name: loss
      goal: minimize
    parameters:
      train:
        parameters:
          lr:
            distribution: log_uniform_values
            min: 0.0001
            max: 0.1
          units:
            values: [64, 128, 256]
    early_terminate:
      type: hyperband
      min_iter: 2
    run_cap: 8
"""
)


def project(p: SweepProject, tmp: Path, spec: str) -> Path:
    log = tmp / "steps.txt"
    p.write("params.yaml", "train:\n  lr: 0.1\n  units: 64\n")
    p.write("train.py", CURVES.format(log=str(log)))
    p.write("sweeps.yaml", spec)
    p.write(".gitignore", "__pycache__/\nstate.json\nm.json\n")
    p.commit()
    return log


def test_a_wandb_bayes_config_with_early_terminate_runs_as_an_optimize_sweep(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    p = sweepproject
    project(p, tmp_path, BAYES.format(python=sys.executable))
    listed = p.run("sweeps.yaml", "--collect-only")
    assert listed.ret == 0, listed.stdout + listed.stderr
    assert "<Study sweeps.yaml::wb> tpe, min loss, 8 trials, seed 0, prune: hyperband" in (
        listed.stdout
    ), listed.stdout
    res = p.run("sweeps.yaml::wb", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    got = [r for r in p.records() if r["sweep"] == "wb"]
    assert len(got) == 8 and {r["state"] for r in got} <= {"success", "pruned"}
    assert all(r["study"] for r in got)
    units = {r["params"]["params.yaml"]["train"]["units"] for r in got}
    assert units <= {64, 128, 256}
    assert all(1e-4 <= r["params"]["params.yaml"]["train"]["lr"] <= 0.1 for r in got)


@pytest.mark.parametrize(
    ("method", "extra", "count"),
    [("grid", "", 6), ("random", "    run_cap: 4\n", 4)],
)
def test_wandb_grid_and_random_configs_become_matrix_and_random(
    sweepproject: SweepProject, tmp_path: Path, method: str, extra: str, count: int
) -> None:
    p = sweepproject
    spec = (
        f"params: params.yaml\ncmd: {sys.executable} -c pass\nsweeps:\n  wb:\n"
        f"    method: {method}\n    parameters:\n      train.lr: {{values: [0.1, 0.01]}}\n"
        "      train.units: {values: [64, 128, 256]}\n" + extra
    )
    if method == "grid":
        spec = spec.replace(
            "{values: [0.1, 0.01]}", "{values: [0.1, 0.01]}\n      seed: {value: 3}"
        )
        p.write("params.yaml", "seed: 0\ntrain:\n  lr: 0.1\n  units: 64\n")
    else:
        p.write("params.yaml", "train:\n  lr: 0.1\n  units: 64\n")
    p.write("sweeps.yaml", spec)
    p.commit()
    res = p.run("sweeps.yaml", "--collect-only")
    assert res.ret == 0, res.stdout + res.stderr
    assert f"collected {count} experiments" in res.stdout, res.stdout


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("run_cap: 8", "program: train.py"), "'program' is not supported (the command is"),
        (("distribution: log_uniform_values", "distribution: q_uniform"), "'q_uniform' is not"),
        (("    run_cap: 8\n", ""), "say how many runs with run_cap: N"),
        (("method: bayes", "method: hyperopt"), "method must be grid, random or bayes"),
        (("type: hyperband", "type: envelope"), "early_terminate supports type: hyperband"),
        (("goal: minimize", "goal: down"), "goal must be minimize or maximize"),
    ],
)
def test_unsupported_wandb_keys_are_located_errors(
    sweepproject: SweepProject, tmp_path: Path, change: tuple[str, str], said: str
) -> None:
    p = sweepproject
    project(p, tmp_path, BAYES.format(python=sys.executable).replace(*change))
    res = p.run("sweeps.yaml::wb")
    assert res.ret == 4 and said in res.stderr, res.stdout + res.stderr
    assert "sweeps.yaml:" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not p.refs("refs/sweeprun/")
