"""Benchmark of the sweep language (issue 3).

(a) ``--collect-only`` of a 100,000-point matrix (whole process), beside a bare
    ``itertools.product`` of the same axes in the same run;
(b) queueing 10,000 points (whole process), beside creating 10,000 refs with one
    ``git update-ref --stdin``.

Run: ``python benchmarks/bench_language.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ENV


def sh(args: list[str], cwd: Path, input: str | None = None) -> None:
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=dict(os.environ, **ENV),
        check=False,
        capture_output=True,
        text=True,
        input=input,
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")


def repo(base: Path, axes: dict[str, int]) -> Path:
    r = Path(tempfile.mkdtemp(dir=base))
    sh(["git", "init", "-q"], r)
    (r / "params.yaml").write_text(
        "# params\ntrain:\n" + "".join(f"  {k}: 0   # {k}\n" for k in axes) + "seed: 0\n"
    )
    lines = "".join(
        f"      train.{k}: [{', '.join(str(i) for i in range(n))}]\n" for k, n in axes.items()
    )
    (r / "sweeps.yaml").write_text("cmd: python -c pass\nsweeps:\n  big:\n    matrix:\n" + lines)
    sh(["git", "add", "-A"], r)
    sh(["git", "commit", "-q", "-m", "b"], r)
    return r


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    sh([sys.executable, "-m", "sweeprun", *args], cwd)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    big = {"a": 100, "b": 100, "c": 10}  # 100,000 points
    mid = {"a": 100, "b": 100}  # 10,000 points
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        base = Path(tmp)
        collect, product, queue, refs = [], [], [], []
        for _ in range(opts.repeat):
            r = repo(base, big)
            collect.append(timed(["--collect-only", "-q"], r))
            start = time.perf_counter()
            sum(1 for _ in itertools.product(*(range(n) for n in big.values())))
            product.append(time.perf_counter() - start)
            r = repo(base, mid)
            queue.append(timed(["-q"], r))
            head = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=r, capture_output=True, text=True, check=True
            ).stdout.strip()
            start = time.perf_counter()
            sh(
                ["git", "update-ref", "--stdin"],
                r,
                input="".join(f"create refs/bench/{i} {head}\n" for i in range(10_000)),
            )
            refs.append(time.perf_counter() - start)
        c, q = statistics.median(collect), statistics.median(queue)
        print(
            f"(a) --collect-only of 100,000 points: median {c:.2f} s (target < 3 s); "
            f"bare itertools.product: {statistics.median(product):.3f} s"
        )
        print(
            f"(b) queue 10,000 points: median {q:.2f} s (target < 15 s); "
            f"10,000 refs in one update-ref: {statistics.median(refs):.2f} s"
        )


if __name__ == "__main__":
    main()
