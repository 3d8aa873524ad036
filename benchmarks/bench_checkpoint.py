"""Benchmark of checkpoints (issue 5): the round trip from "signal file created" to
"released", with a 10 MB checkpoint out that changes at every step.

Run: ``python benchmarks/bench_checkpoint.py [--steps 20]``. Prints the median and the
90th percentile, and the cost of hashing + copying 10 MB in the same run as a floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ENV

PROGRAM = """
import json, os, time
from sweeprun.api import make_checkpoint
times = []
for step in range(int(os.environ["STEPS"])):
    with open("model.bin", "wb") as f:
        f.write(os.urandom(10 * 1024 * 1024))
    t0 = time.perf_counter()
    make_checkpoint()
    times.append(time.perf_counter() - t0)
json.dump(times, open(os.environ["TIMES"], "w"))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "train.py").write_text(PROGRAM)
        (repo / "params.yaml").write_text("x: 1\n")
        (repo / "sweeps.yaml").write_text(
            f"params: params.yaml\nstages:\n  train:\n    cmd: {sys.executable} train.py\n"
            "    outs:\n      - model.bin: {checkpoint: true}\n"
        )
        env = dict(os.environ, **ENV, STEPS=str(opts.steps), TIMES=str(Path(tmp) / "t.json"))
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
            subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
        proc = subprocess.run(
            [sys.executable, "-m", "sweeprun", "--run", "-q"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            raise SystemExit(proc.stdout + proc.stderr)
        times = sorted(json.loads((Path(tmp) / "t.json").read_text()))
        blob = Path(tmp) / "floor.bin"
        blob.write_bytes(os.urandom(10 * 1024 * 1024))
        start = time.perf_counter()
        hashlib.sha256(blob.read_bytes()).hexdigest()
        shutil.copyfile(blob, Path(tmp) / "floor.copy")
        floor = time.perf_counter() - start
    med = statistics.median(times) * 1000
    p90 = times[int(len(times) * 0.9) - 1] * 1000
    print(
        f"checkpoint round trip with a 10 MB out, {opts.steps} steps: median {med:.1f} ms, "
        f"p90 {p90:.1f} ms (target: median < 100 ms); hash + copy of 10 MB alone: "
        f"{floor * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
