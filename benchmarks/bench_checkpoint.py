"""Benchmark of checkpoints (issue 5): the round trip from "signal file created" to
"released", with a 10 MB checkpoint out that changes at every step.

Run: ``python benchmarks/bench_checkpoint.py [--steps 20] [--kb 10240] [--repeat 1]
[--against SRC]``. Prints the median and the 90th percentile, and the cost of hashing +
copying the out in the same run as a floor; ``--kb 1`` measures what a checkpoint costs
beside its out (a small state file and a metric, as an ``optimize:`` trial's);
``--against`` a ``git worktree`` of an older commit runs it too, interleaved.
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
        f.write(os.urandom(int(os.environ["KB"]) * 1024))
    json.dump({"step": step}, open("m.json", "w"))
    t0 = time.perf_counter()
    make_checkpoint()
    times.append(time.perf_counter() - t0)
json.dump(times, open(os.environ["TIMES"], "w"))
"""


def round_trips(steps: int, kb: int, src: str | None) -> list[float]:
    """Each ``make_checkpoint()``'s round trip in one ``--run`` (with the sweeprun of
    ``src``, when given), in seconds."""
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "train.py").write_text(PROGRAM)
        (repo / "params.yaml").write_text("x: 1\n")
        (repo / "sweeps.yaml").write_text(
            f"params: params.yaml\nstages:\n  train:\n    cmd: {sys.executable} train.py\n"
            "    outs:\n      - model.bin: {checkpoint: true}\n    metrics: [m.json]\n"
        )
        env = dict(os.environ, **ENV, STEPS=str(steps), KB=str(kb))
        env["TIMES"] = str(Path(tmp) / "t.json")
        if src:
            env["PYTHONPATH"] = src
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
        return sorted(json.loads((Path(tmp) / "t.json").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--kb", type=int, default=10240, help="size of the checkpoint out")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--against", metavar="SRC", help="also with the sweeprun package in SRC")
    opts = ap.parse_args()
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(opts.repeat):
        mine += round_trips(opts.steps, opts.kb, None)
        if opts.against:
            theirs += round_trips(opts.steps, opts.kb, opts.against)
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        blob = Path(tmp) / "floor.bin"
        blob.write_bytes(os.urandom(opts.kb * 1024))
        start = time.perf_counter()
        hashlib.sha256(blob.read_bytes()).hexdigest()
        shutil.copyfile(blob, Path(tmp) / "floor.copy")
        floor = time.perf_counter() - start
    for label, times in (("this", sorted(mine)), (opts.against, sorted(theirs))):
        if not times:
            continue
        med = statistics.median(times) * 1000
        p90 = times[int(len(times) * 0.9) - 1] * 1000
        print(
            f"{label}: checkpoint round trip with a {opts.kb} KB out, {len(times)} steps: "
            f"median {med:.1f} ms, p90 {p90:.1f} ms (target: median < 100 ms)"
        )
    if theirs:
        ratio = statistics.median(mine) / statistics.median(theirs)
        print(f"this / {opts.against}: {ratio:.2f}")
    print(f"hash + copy of the out alone: {floor * 1000:.1f} ms")


if __name__ == "__main__":
    main()
