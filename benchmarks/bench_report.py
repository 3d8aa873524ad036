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
from typing import Any

from _common import ENV, make_results


def make(repo: Path, n: int) -> None:
    """A repository with ``n`` finished experiments of a 50 by 4 grid, repeated."""

    def values(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        lr, units = round((i % 50) / 100 + 0.01, 4), 32 * (1 + i % 4)
        return {"lr": lr, "units": units}, {"acc": round(1 - lr / (1 + units / 64), 4),
                                            "loss": lr * 2}  # fmt: skip

    spec = ("params: params.yaml\ncmd: python3 train.py\nmetrics: [m.json]\n"
            "sweeps:\n  g:\n    matrix: {lr: [0.1, 0.2], units: [32, 64]}\n")  # fmt: skip
    make_results(repo, n, values, {"params.yaml": "lr: 0.1\nunits: 64\n", "sweeps.yaml": spec})


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
