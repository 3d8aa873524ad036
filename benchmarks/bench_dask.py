"""Benchmark of git-only Dask workers (issue 14).

N tiny experiments (a ``python -c`` writing a metric) run ``--run-all -j 2`` three ways on
this machine, each on a fresh queue:

- ``threads``: the default backend (the baseline);
- ``dask``: two local Dask workers that see the repository (shared-filesystem mode);
- ``git-only``: the same two workers reaching the repository only through
  ``git://127.0.0.1`` (``--worker-url``): the runner pushes the queued commits, each
  worker fetches into its own mirror, results come back as packs.

The git transport's cost per experiment is ``(git-only - dask) / N``: what the URL adds to
the same cluster. Run: ``python benchmarks/bench_dask.py [--runs 200] [--repeat 3]``.
Prints medians and ratios (the machine is noisy: compare ratios). Needs ``git daemon``
and ``dask[distributed]``; the workers are not hidden from the repository here (no root
needed), which changes nothing they do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, commit_repo

from sweeprun.loopback import LoopbackCluster, unavailable

TINY = 'import json; json.dump({"ok": 1}, open("metrics.json", "w"))'


def make_repo(base: Path, n: int) -> Path:
    repo = Path(tempfile.mkdtemp(dir=base))
    commit_repo(
        repo,
        {
            "params.yaml": "x: 0\n",
            "sweeps.yaml": "params: params.yaml\n"
            f"cmd: {json.dumps(sys.executable + ' -c ' + json.dumps(TINY))}\n"
            "metrics: [metrics.json]\n"
            "sweeps:\n  grid:\n    matrix:\n"
            f"      x: [{', '.join(str(i) for i in range(1, n + 1))}]\n",
        },
    )
    return repo


def sweeprun(repo: Path, *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sweeprun", *args],
        cwd=repo,
        env=bench_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweeprun {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    return took


def one(base: Path, n: int, extra: list[str]) -> float:
    repo = make_repo(base, n)
    sweeprun(repo, "sweeps.yaml", "-q")
    return sweeprun(repo, "--run-all", "-j", "2", "-q", *extra)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="experiments per run (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each kind (default 3)")
    ap.add_argument("--dir", type=Path, help="where the repositories go (default: a temp dir)")
    args = ap.parse_args()
    why = unavailable(hide=False)
    if why:
        raise SystemExit(f"bench_dask: cannot run here: {why}")
    base = Path(tempfile.mkdtemp(dir=args.dir))
    times: dict[str, list[float]] = {"threads": [], "dask": [], "git-only": []}
    with LoopbackCluster(base / "cluster") as cluster:
        dask = ["--backend", "dask", "--scheduler", cluster.scheduler]
        for _ in range(args.repeat):  # interleaved, so that drift hits every kind alike
            times["threads"].append(one(base, args.runs, []))
            times["dask"].append(one(base, args.runs, dask))
            times["git-only"].append(one(base, args.runs, [*dask, "--worker-url", cluster.url]))
    med = {k: statistics.median(v) for k, v in times.items()}
    n = args.runs
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{n} tiny experiments, --run-all -j 2, median of {args.repeat} ({git})")
    for kind, t in med.items():
        spread = ", ".join(f"{x:.2f}" for x in times[kind])
        print(
            f"  {kind:9} {t:7.2f} s  {1000 * t / n:6.1f} ms/exp  "
            f"{t / med['threads']:5.2f}x threads   ({spread})"
        )
    per = 1000 * (med["git-only"] - med["dask"]) / n
    print(f"  git transport: {per:+.1f} ms per experiment (git-only - dask, same cluster)")


if __name__ == "__main__":
    main()
