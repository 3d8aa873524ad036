"""Benchmark of queues (issues 7 and 27): queueing N points beside git creating N refs,
the queueing process's peak memory, and the runner draining queued trivial experiments.

(a) queue an A x B matrix of N points (``sweeprun sweeps.yaml -q`` in a fresh repository),
    beside ``git update-ref --stdin`` creating N refs in another fresh repository, in the
    same run; the ratio (target <= 2.5x at 100,000) and the queueing's peak RSS (target
    < 500 MB);
(b) ``--run-all -j 2`` of ``--drain`` queued trivial experiments (default 2,000): the
    drain rate and the runner's peak RSS (issue 7's target: < 200 MB at 10,000);
(c) ``--collect-only -q`` of a ``--collect`` point matrix (default 1,000,000; 0: skip):
    seconds and peak RSS (target < 5 s, < 500 MB), with ``--against`` too.

Run: ``python benchmarks/bench_queue.py [--n 100000] [--drain 2000] [--collect 1000000]
[--against SRC]``
(``--against`` a ``git worktree`` of an older commit queues with that sweeprun too). The
last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, commit_repo


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process, measured by GNU time's wrapper-free way:
    a child of a fresh Python whose rusage holds only it."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode); "
        "sys.stderr.write(p.stderr.decode()[-2000:])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], cwd=cwd, env=env, capture_output=True, text=True
    )
    took, peak, rc = out.stdout.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return float(took), float(peak)


def queue_time(
    base: Path, n: int, env: dict[str, str], src: str | None, collect: bool = False
) -> tuple[float, float]:
    """Queue (or ``collect``: list) an A x B matrix of ``n`` points in a fresh repository;
    (seconds, MB)."""
    a = 100 if n >= 1000 else 10
    b = max(1, n // a)
    repo = base / f"{'collect' if collect else 'queue'}-{src is not None}"
    repo.mkdir()
    spec = (
        "params: params.yaml\ncmd: echo ${a} ${b}\nsweeps:\n  g:\n    matrix:\n"
        f"      a: [{', '.join(map(str, range(a)))}]\n"
        f"      b: [{', '.join(map(str, range(b)))}]\n"
    )
    commit_repo(repo, {"params.yaml": "a: 0\nb: 0\n", "sweeps.yaml": spec})
    run_env = dict(env, PYTHONPATH=src) if src else env
    args = ["sweeps.yaml", "-q", "--max-points", str(a * b)]
    args += ["--collect-only"] if collect else []
    return _timed([sys.executable, "-m", "sweeprun", *args], repo, run_env)


def raw_refs(base: Path, n: int, env: dict[str, str]) -> float:
    """Seconds git takes to create ``n`` loose refs (one ``update-ref --stdin``)."""
    repo = base / "raw"
    repo.mkdir()
    commit_repo(repo, {"a.txt": "a\n"})
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    lines = "".join(f"create refs/sweeprun/queue/{i:020x} {head}\n" for i in range(n))
    t0 = time.perf_counter()
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input=lines, text=True,
                   check=True, env=env)  # fmt: skip
    return time.perf_counter() - t0


def drain(base: Path, n: int, env: dict[str, str]) -> tuple[float, float]:
    """``--run-all -j 2`` of ``n`` queued trivial experiments; (seconds, runner MB)."""
    repo = base / "drain"
    repo.mkdir()
    matrix = ", ".join(str(i) for i in range(n))
    commit_repo(
        repo,
        {
            "params.yaml": "i: 0\n",
            "sweeps.yaml": f"cmd: 'true'\nsweeps:\n  g:\n    matrix:\n      i: [{matrix}]\n",
        },
    )
    subprocess.run([sys.executable, "-m", "sweeprun", "-q"], cwd=repo, env=env, check=True,
                   capture_output=True)  # fmt: skip
    return _timed([sys.executable, "-m", "sweeprun", "--run-all", "-j", "2", "-q"], repo, env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000, help="points to queue")
    ap.add_argument("--drain", type=int, default=2_000, help="experiments to drain (0: skip)")
    ap.add_argument("--collect", type=int, default=1_000_000, help="points to list (0: skip)")
    ap.add_argument("--against", metavar="SRC", help="also queue with the sweeprun in SRC")
    opts = ap.parse_args()
    env = bench_env()
    out: dict[str, float] = {"n": opts.n}
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        base = Path(tmp)
        took, peak = queue_time(base, opts.n, env, None)
        raw = raw_refs(base, opts.n, env)
        out.update(queue_s=round(took, 3), queue_peak_mb=round(peak), raw_refs_s=round(raw, 3))
        print(
            f"(a) queue {opts.n:,} points: {took:.1f} s, peak {peak:.0f} MB (target < 500 MB); "
            f"git update-ref of {opts.n:,} refs in the same run: {raw:.1f} s; "
            f"ratio {took / raw:.1f}x (target <= 2.5x)"
        )
        if opts.against:
            old, old_peak = queue_time(base, opts.n, env, os.path.abspath(opts.against))
            out.update(against_s=round(old, 2), against_peak_mb=round(old_peak))
            print(f"    with {opts.against}: {old:.1f} s, peak {old_peak:.0f} MB; "
                  f"this / that: {took / old:.2f}")  # fmt: skip
        if opts.drain:
            took, peak = drain(base, opts.drain, env)
            out.update(drain_s=round(took, 3), drain_peak_mb=round(peak))
            print(
                f"(b) --run-all -j 2 of {opts.drain:,} queued trivial experiments: {took:.1f} s "
                f"({opts.drain / took:.0f} per second); runner peak RSS {peak:.0f} MB"
            )
        if opts.collect:
            took, peak = queue_time(base, opts.collect, env, None, collect=True)
            out.update(collect_s=round(took, 3), collect_peak_mb=round(peak))
            line = f"(c) --collect-only -q of {opts.collect:,} points: {took:.1f} s, "
            line += f"peak {peak:.0f} MB"
            if opts.against:
                old, old_peak = queue_time(
                    base, opts.collect, env, os.path.abspath(opts.against), collect=True
                )
                out.update(collect_against_s=round(old, 2), collect_against_peak_mb=round(old_peak))
                line += f"; with {opts.against}: {old:.1f} s, peak {old_peak:.0f} MB"
            print(line + " (target < 5 s, < 500 MB)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
