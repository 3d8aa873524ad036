"""Benchmark of `sweeprun plots` and `sweeprun report` on N experiments (issue 16).

The experiments (a 2-param sweep, 2 metrics) are created through the store's own writers,
as in bench_results.py, not by running them. Times the whole process, warm (the Vega
bundle is built once per vl-convert version and kept), the median of ``--repeat`` runs,
beside ``show --json`` of the same experiments in the same run; prints the page's size.

Run: ``python benchmarks/bench_report.py [--n 1000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ENV, store_results

from sweeprun.model import Result, State
from sweeprun.store.git import run_git


def make(repo: Path, n: int) -> None:
    run_git(["init", "-q"], repo)
    (repo / "params.yaml").write_text("lr: 0.1\nunits: 64\n")
    (repo / "sweeps.yaml").write_text(
        "params: params.yaml\ncmd: python3 train.py\nmetrics: [m.json]\n"
        "sweeps:\n  g:\n    matrix: {lr: [0.1, 0.2], units: [32, 64]}\n"
    )
    run_git(["add", "-A"], repo)
    run_git(["commit", "-q", "-m", "baseline"], repo)
    head = run_git(["rev-parse", "HEAD"], repo).strip()
    tree = run_git(["rev-parse", "HEAD^{tree}"], repo).strip()
    results = []
    for i in range(n):
        lr, units = round((i % 50) / 100 + 0.01, 4), 32 * (1 + i % 4)
        meta = Result(
            key=f"{i:020x}",
            name=f"exp-{i:05d}",
            id=f"g[lr={lr},units={units},i={i}]",
            baseline=head,
            state=State.SUCCESS,
            params={"params.yaml": {"lr": lr, "units": units}},
            metrics={"m.json": {"acc": round(1 - lr / (1 + units / 64), 4), "loss": lr * 2}},
            point={"lr": lr, "units": units},
            sweep="g",
            returncode=0,
            queued_at=1_700_000_000 + i,
            started=1_700_000_000 + i,
            finished=1_700_000_001 + i,
        )
        results.append((meta, f"lr: {lr}\nunits: {units}\n".encode()))
    store_results(repo, head, tree, results)


def timed(repo: Path, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweeprun", *args], cwd=repo, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp)
        make(repo, opts.n)
        timed(repo, "report", "-o", "r.html")  # builds the Vega bundle once (kept)
        report = statistics.median(
            timed(repo, "report", "-o", "r.html") for _ in range(opts.repeat)
        )
        plots = statistics.median(timed(repo, "plots", "-o", "p") for _ in range(opts.repeat))
        show = statistics.median(timed(repo, "show", "--json") for _ in range(opts.repeat))
        size = (repo / "r.html").stat().st_size
        charts = len(list((repo / "p").glob("*.svg")))
    print(
        f"{opts.n} experiments: report {report:.2f} s (target < 3 s, page {size / 1e6:.2f} MB, "
        f"target < 5 MB); plots {plots:.2f} s for {charts} charts as SVG+PNG (target < 3 s); "
        f"show --json in the same run: {show:.2f} s"
    )


if __name__ == "__main__":
    main()
