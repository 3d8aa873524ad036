"""Benchmark of the runner's memory (issue 7): peak RSS while draining N queued trivial
experiments (default 10,000) with ``--run-all -j 2``.

Run: ``python benchmarks/bench_queue.py [--n 10000]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, commit_repo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    opts = ap.parse_args()
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp)
        matrix = ", ".join(str(i) for i in range(opts.n))
        commit_repo(
            repo,
            {
                "params.yaml": "i: 0\n",
                "sweeps.yaml": f"cmd: 'true'\nsweeps:\n  g:\n    matrix:\n      i: [{matrix}]\n",
            },
        )
        subprocess.run(
            [sys.executable, "-m", "sweeprun", "-q"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "sweeprun", "--run-all", "-j", "2", "-q"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
        # The runner is the largest process this script waited for (git and `true` are tiny).
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"drained {opts.n} queued experiments with -j 2 in {took:.1f} s; "
        f"runner peak RSS {peak_mb:.0f} MB (target < 200 MB)"
    )
    print(json.dumps({"n": opts.n, "seconds": round(took, 2), "peak_rss_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main()
