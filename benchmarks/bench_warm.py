"""Benchmark of warm Python workers (issue 15) against Hydra's own sequential multirun.

One tiny Hydra app (a config group, ``_target_`` instantiation, a metric written to a
file) swept over N points four ways, each in a fresh repository:

- ``hydra -m``: Hydra's own multirun (basic launcher: sequential, one process);
- ``cold -j 2``: sweeprun, the app as ``cmd: python3 app.py`` (one interpreter per point);
- ``warm -j 1`` and ``warm -j 2``: sweeprun, ``cmd: python -m app`` with ``warm: true`` (a
  warm worker per slot imports the app and Hydra once and forks a run per point).

Every sweeprun run records each point as a git commit with its params, metrics and log;
Hydra's writes an output folder per job. Prints medians and ratios against Hydra's
multirun measured in the same run. Run: ``python benchmarks/bench_warm.py [--n 60]
[--repeat 3] [--app sklearn]``. Needs ``hydra-core``; ``--app sklearn`` (the app of
``examples/hydra-sklearn``, points = model families x seeds) needs scikit-learn and
hydra-colorlog too.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, commit_repo

APP = """
import json

import hydra
from hydra.utils import instantiate


class Model:
    def __init__(self, lr, depth):
        self.lr, self.depth = lr, depth

    def score(self, x):
        return 1 / (1 + abs(self.lr * x - self.depth))


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    model = instantiate(cfg.model)
    json.dump({"score": model.score(cfg.x)}, open("metrics.json", "w"))


if __name__ == "__main__":
    main()
"""

FILES = {
    "app.py": APP,
    "conf/config.yaml": "defaults:\n  - model: small\n  - _self_\nx: 0\n",
    "conf/model/small.yaml": "_target_: app.Model\nlr: 0.1\ndepth: 2\n",
    ".gitignore": "__pycache__/\noutputs/\nmultirun/\n",
}


#: ``--app sklearn``: the example app of examples/hydra-sklearn (a config group per model
#: family, ``_target_`` instantiation, the hydra-colorlog plugin, scikit-learn imports).
SKLEARN = Path(__file__).resolve().parents[1] / "examples" / "hydra-sklearn"
FAMILIES = ("ridge", "forest", "knn")


def sklearn_files() -> dict[str, str]:
    files = {
        p.relative_to(SKLEARN).as_posix(): p.read_text()
        for p in SKLEARN.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "sweeps.yaml"
    }
    return files


def sklearn_spec(kind: str, n: int) -> str:
    run = (
        f"cmd: {sys.executable} -m train\nwarm: true"
        if kind == "warm"
        else f"cmd: {sys.executable} train.py"
    )
    seeds = ", ".join(str(i) for i in range(n // len(FAMILIES)))
    return (
        f"params: {{hydra: conf/config.yaml}}\n{run}\ndeps: [train.py, conf]\n"
        f"metrics: [metrics.json]\nsweeps:\n  grid:\n    matrix:\n"
        f"      model: [{', '.join(FAMILIES)}]\n      seed: [{seeds}]\n"
    )


def spec(kind: str, n: int) -> str:
    # Hydra finds conf/ next to the file of a main defined in __main__: the warm form of
    # a Hydra app is therefore `python -m app` (runpy runs it as __main__), not call:.
    run = (
        f"cmd: {sys.executable} -m app\nwarm: true"
        if kind == "warm"
        else f"cmd: {sys.executable} app.py"
    )
    xs = ", ".join(str(i) for i in range(n))
    return (
        f"params: {{hydra: conf/config.yaml}}\n{run}\ndeps: [app.py]\nmetrics: [metrics.json]\n"
        f"sweeps:\n  grid:\n    matrix:\n      x: [{xs}]\n"
    )


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=bench_env(), capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def one(base: Path, way: str, n: int, app: str) -> float:
    repo = Path(tempfile.mkdtemp(dir=base))
    kind = "cold" if way.startswith("cold") else "warm"
    if app == "sklearn":
        commit_repo(repo, {**sklearn_files(), "sweeps.yaml": sklearn_spec(kind, n)})
        if way == "hydra":
            seeds = f"seed=range(0,{n // len(FAMILIES)})"
            return timed(
                [sys.executable, "train.py", "-m", f"model={','.join(FAMILIES)}", seeds], repo
            )
    else:
        commit_repo(repo, {**FILES, "sweeps.yaml": spec(kind, n)})
    if way == "hydra":
        return timed([sys.executable, "app.py", "-m", f"x=range(0,{n})"], repo)
    jobs = way.rsplit("-j", 1)[1]
    took = timed([sys.executable, "-m", "sweeprun", "--run", "-j", jobs, "-q"], repo)
    got = subprocess.run(
        [sys.executable, "-m", "sweeprun", "show", "--json"],
        cwd=repo,
        env=bench_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert got.count('"state": "success"') == n, got[-500:]
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="points per sweep (default 60)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (default 3)")
    parser.add_argument(
        "--app",
        choices=("tiny", "sklearn"),
        default="tiny",
        help="tiny: a one-file app; sklearn: examples/hydra-sklearn (default: tiny)",
    )
    args = parser.parse_args()
    try:
        import hydra  # noqa: F401
    except ImportError:
        raise SystemExit("needs hydra-core: pip install 'sweeprun[hydra]'") from None
    if args.app == "sklearn":
        try:
            import hydra_plugins.hydra_colorlog  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise SystemExit(
                "--app sklearn needs: pip install scikit-learn hydra-colorlog"
            ) from None
        args.n -= args.n % len(FAMILIES)
    ways = ["hydra", "cold-j2", "warm-j1", "warm-j2"]
    times: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for way in ways:  # interleaved: the machine's noise falls on every way alike
                times[way].append(one(Path(tmp), way, args.n, args.app))
    base = statistics.median(times["hydra"])
    print(f"{args.app} app, {args.n} points, median of {args.repeat} (interleaved):")
    for way in ways:
        t = statistics.median(times[way])
        print(
            f"  {way:8s} {t:7.2f} s  {1000 * t / args.n:7.1f} ms/point  "
            f"{t / base:5.2f}x Hydra's multirun"
        )


if __name__ == "__main__":
    main()
