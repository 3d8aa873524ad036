"""Benchmark of the runner's memory (issue 7): peak RSS while draining N queued trivial
experiments (default 10,000) with ``--run-all -j 2``.

Run: ``python benchmarks/bench_queue.py [--n 10000]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "SWEEPRUN_ADDOPTS": "",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    opts = ap.parse_args()
    env = dict(os.environ, **ENV)
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp)
        (repo / "params.yaml").write_text("i: 0\n")
        (repo / "sweeps.yaml").write_text(
            "cmd: 'true'\nsweeps:\n  g:\n    matrix:\n      i: ["
            + ", ".join(str(i) for i in range(opts.n))
            + "]\n"
        )
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
            subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
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
