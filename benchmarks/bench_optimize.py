"""Search that learns, against Hydra's Optuna sweeper and a grid (issue 25, item 5).

One objective with learning curves: each trial "trains" for up to 20 checkpointed steps
(``--step`` seconds each), its loss at step s is ``1 + f(lr, units, dropout) + 0.5/s``
with ``f = 0`` at the known optimum (lr 0.01, units 128, dropout 0.2). Three ways to spend
``--trials`` trials on two parallel slots:

(a) sweeprun ``optimize:`` (TPE) with median pruning, ``--run -j 2``;
(b) Hydra's Optuna sweeper (TPE, ``n_jobs: 2``) with the joblib launcher, on the same
    training function (a Hydra app around it; Optuna 2.x, which that sweeper needs, in
    its own virtual environment — made on first use under ``--hydra-venv``);
(c) a grid of the same budget, ``--run -j 2``.

For each: the wall time and the number of trials (pruned ones included) until the best
final loss is within 5 % of the optimum's (``1.025``), medians over ``--seeds`` seeds. Run:
``python benchmarks/bench_optimize.py [--seeds 5] [--trials 40] [--step 0.05]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, commit_repo

OPTIMUM = 1.0 + 0.5 / 20
TARGET = OPTIMUM * 1.05

CORE = '''
import json, math, os, time

def loss_at(p, step):
    f = (math.log10(p["lr"]) + 2) ** 2 + ((p["units"] - 128) / 64) ** 2
    f += 4 * (p["dropout"] - 0.2) ** 2
    return 1 + f + 0.5 / step

def train(p, checkpoint):
    """20 steps; ``checkpoint(step, loss)`` after each; the final loss."""
    pause = float(os.environ.get("BENCH_STEP", "0.05"))
    for step in range(1, 21):
        time.sleep(pause)
        loss = loss_at(p, step)
        checkpoint(step, loss)
    with open(os.environ["BENCH_LOG"], "a") as f:
        f.write(json.dumps({"at": time.time(), "loss": loss}) + "\\n")
    return loss
'''
SWEEPRUN_TRAIN = """
import json, yaml
from core import train
from sweeprun.api import make_checkpoint

p = yaml.safe_load(open("params.yaml"))["train"]

def checkpoint(step, loss):
    json.dump({"loss": loss}, open("m.json", "w"))
    json.dump({"step": step}, open("state.json", "w"))
    make_checkpoint()

train(p, checkpoint)
"""
HYDRA_APP = """
import hydra
from core import train

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    return train(dict(cfg.train), lambda step, loss: None)

if __name__ == "__main__":
    main()
"""
HYDRA_CONF = """
defaults:
  - override hydra/sweeper: optuna
  - override hydra/launcher: joblib
  - _self_
train:
  lr: 0.1
  units: 64
  dropout: 0.5
hydra:
  sweeper:
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: {seed}
    direction: minimize
    n_trials: {trials}
    n_jobs: 2
    params:
      train.lr: tag(log, interval(0.0001, 0.1))
      train.units: choice(64, 128, 256)
      train.dropout: interval(0.0, 0.5)
  launcher:
    n_jobs: 2
"""
SPACE = """
      space:
        train.lr: loguniform(0.0001, 0.1)
        train.units: choice(64, 128, 256)
        train.dropout: uniform(0.0, 0.5)
"""


def spec(kind: str, seed: int, trials: int) -> str:
    head = (
        "params: params.yaml\nstages:\n  train:\n    cmd: python train.py\n"
        "    deps: [core.py, train.py]\n    outs: [state.json: {checkpoint: true}]\n"
        "    metrics: [m.json]\nsweeps:\n"
    )
    if kind == "grid":  # 40 = 5 x 4 x 2, whatever --trials says
        return head + (
            "  grid:\n    matrix:\n      train.lr: [0.0001, 0.001, 0.01, 0.03, 0.1]\n"
            "      train.units: [64, 128, 192, 256]\n      train.dropout: [0.1, 0.4]\n"
        )
    return head + (
        f"  tune:\n    optimize:\n      trials: {trials}\n      seed: {seed}\n"
        "      metric: loss\n      direction: min\n" + SPACE.rstrip("\n") + "\n"
        "      prune:\n        pruner: median\n        min_steps: 4\n"
    )


def until_target(log: Path, started: float) -> tuple[float, int]:
    """Seconds and trials until the best final loss was within 5 % of the optimum
    (``inf`` and all trials when it never was)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    rows.sort(key=lambda r: r["at"])
    for i, row in enumerate(rows, 1):
        if row["loss"] <= TARGET:
            return row["at"] - started, i
    return float("inf"), len(rows)


def run_sweeprun(
    base: Path, kind: str, seed: int, trials: int, step: float
) -> tuple[float, int, float]:
    repo = base / f"{kind}-{seed}"
    commit_repo(
        repo,
        {
            "core.py": CORE,
            "train.py": SWEEPRUN_TRAIN,
            "params.yaml": "train:\n  lr: 0.1\n  units: 64\n  dropout: 0.5\n",
            "sweeps.yaml": spec(kind, seed, trials),
            ".gitignore": "__pycache__/\nm.json\nstate.json\n",
        },
    )
    log = base / f"{kind}-{seed}.log"
    env = dict(bench_env(), BENCH_LOG=str(log), BENCH_STEP=str(step))
    selector = "sweeps.yaml::tune" if kind == "optimize" else "sweeps.yaml::grid"
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "sweeprun", selector, "--run", "-j", "2", "-q"],
        cwd=repo, env=env, check=True, capture_output=True,
    )  # fmt: skip
    wall = time.time() - started
    # Every trial counts, the pruned ones too (they log no final loss: read the records).
    shown = subprocess.run(
        [sys.executable, "-m", "sweeprun", "show", "--json"],
        cwd=repo, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    ends = sorted(
        (r["finished"], r["state"], (r["metrics"].get("m.json") or {}).get("loss", math.inf))
        for r in json.loads(shown)
    )
    for i, (at, state, loss) in enumerate(ends, 1):
        if state == "success" and loss <= TARGET:
            return at - started, i, wall
    return math.inf, len(ends), wall


def hydra_python(venv: Path) -> Path:
    """The Python of a virtual environment with Hydra's Optuna sweeper (made if missing)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "hydra-core", "hydra-optuna-sweeper",
             "hydra-joblib-launcher", "pyyaml"],
            check=True,
        )  # fmt: skip
    return python


def run_hydra(
    base: Path, python: Path, seed: int, trials: int, step: float
) -> tuple[float, int, float]:
    app = base / f"hydra-{seed}"
    (app / "conf").mkdir(parents=True)
    (app / "core.py").write_text(CORE)
    (app / "app.py").write_text(HYDRA_APP)
    (app / "conf" / "config.yaml").write_text(HYDRA_CONF.format(seed=seed, trials=trials))
    log = base / f"hydra-{seed}.log"
    env = dict(bench_env(), BENCH_LOG=str(log), BENCH_STEP=str(step))
    started = time.time()
    subprocess.run(
        [str(python), "app.py", "--multirun"], cwd=app, env=env, check=True, capture_output=True
    )
    wall = time.time() - started
    seconds, n = until_target(log, started)
    return seconds, n, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--step", type=float, default=0.05, help="seconds per training step")
    ap.add_argument(
        "--hydra-venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sweeprun-bench-hydra-optuna",
    )
    args = ap.parse_args()
    python = hydra_python(args.hydra_venv)
    rows: dict[str, list[tuple[float, int, float]]] = {"optimize": [], "hydra": [], "grid": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for seed in range(args.seeds):
            rows["optimize"].append(run_sweeprun(base, "optimize", seed, args.trials, args.step))
            rows["hydra"].append(run_hydra(base, python, seed, args.trials, args.step))
            if seed == 0:  # a grid has no seed: one run stands for all
                rows["grid"].append(run_sweeprun(base, "grid", 0, args.trials, args.step))
    print(f"{args.trials} trials of up to 20 steps ({args.step:g} s each), 2 slots, "
          f"target: best loss <= {TARGET:.4f} (optimum {OPTIMUM:.4f} + 5 %); medians over "
          f"{args.seeds} seeds:")  # fmt: skip
    print(f"{'':28s} {'to target':>10s} {'trials':>7s} {'wall':>8s}  reached")
    names = {"optimize": "sweeprun optimize + median", "hydra": "Hydra Optuna sweeper",
             "grid": "grid (sweeprun)"}  # fmt: skip
    med: dict[str, float] = {}
    for kind, got in rows.items():
        reached = [r for r in got if r[0] != float("inf")]
        to = statistics.median(r[0] for r in got)
        med[kind] = to
        print(
            f"{names[kind]:28s} {to:9.1f}s {statistics.median(r[1] for r in got):7.0f} "
            f"{statistics.median(r[2] for r in got):7.1f}s  {len(reached)}/{len(got)}"
        )
    if med["hydra"] not in (0, float("inf")):
        print(f"time to target, sweeprun / Hydra-Optuna: {med['optimize'] / med['hydra']:.2f}x "
              "(aim <= 0.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
