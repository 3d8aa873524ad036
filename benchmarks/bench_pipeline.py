"""Benchmark of pipelines with a shared stage (issue 4).

20 experiments share a 2-second ``prepare`` stage and each run a 0.2-second ``train`` at
``-j 2``. The ideal is 2 s + 20 x 0.2 s / 2 = 4 s (prepare once, trains in parallel); a tool
that runs prepare per experiment (as DVC's queue does) needs 20 x 2.2 s / 2 = 22 s.

Run: ``python benchmarks/bench_pipeline.py [--repeat 3]``.
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

from _common import ENV

SPEC = """\
params: params.yaml
stages:
  prepare:
    cmd: PY -c "import time; time.sleep(2); open('prepared.txt', 'w').write('data')"
    params: [prepare]
    outs: [prepared.txt]
  train:
    cmd: PY -c "import time; time.sleep(0.2); open('m.json', 'w').write('1')"
    deps: [prepared.txt]
    params: [train]
    metrics: [m.json]
sweeps:
  grid:
    matrix:
      train.lr: [%s]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    env = dict(os.environ, **ENV)
    ideal = 2 + 20 * 0.2 / 2
    times = []
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        for i in range(opts.repeat):
            repo = Path(tmp) / f"r{i}"
            repo.mkdir()
            (repo / "params.yaml").write_text("prepare:\n  n: 1\ntrain:\n  lr: 0\n")
            (repo / "sweeps.yaml").write_text(
                (SPEC % ", ".join(str(k) for k in range(20))).replace("PY", sys.executable)
            )
            for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
                subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "sweeprun", "--run", "-j", "2", "-q"],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            times.append(time.perf_counter() - start)
            if proc.returncode:
                raise SystemExit(proc.stdout + proc.stderr)
    # The same commands bare, in this run: prepare once, then 20 trains on 2 slots.
    from concurrent.futures import ThreadPoolExecutor

    def bare(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())

    start = time.perf_counter()
    bare("import time; time.sleep(2)")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: bare("import time; time.sleep(0.2)"), range(20)))
    measured_ideal = time.perf_counter() - start
    t = statistics.median(times)
    print(
        f"20 experiments, shared 2 s prepare, 0.2 s train, -j 2: median {t:.2f} s; "
        f"ideal {ideal:.1f} s; ratio {t / ideal:.2f}x (target <= 1.3x); "
        f"prepare per experiment would need {20 * 2.2 / 2:.0f} s"
    )
    print(
        f"the same commands bare (prepare once, trains on 2 slots): {measured_ideal:.2f} s; "
        f"ratio {t / measured_ideal:.2f}x"
    )


if __name__ == "__main__":
    main()
