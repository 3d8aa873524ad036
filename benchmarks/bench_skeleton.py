"""Benchmark of the walking skeleton (issue 2).

(a) queueing 1,000 matrix points, beside the raw cost of creating 1,000 refs with one
    ``git update-ref --stdin`` in the same run;
(b) ``--run-all -j 2`` of N experiments whose command is a tiny ``python -c``, beside N
    bare runs of that command on 2 parallel slots.

Run: ``python benchmarks/bench_skeleton.py [--points 1000] [--runs 200] [--repeat 3] [--dir D]``.
Prints medians and ratios; the machine is noisy, so compare ratios, not seconds. It also
prints what creating a file costs where the repositories live (before and after), since
that decides much of the ratio (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ENV

#: Above this many µs per file creation the disk is in its slow state (docs/performance.md).
CHURNED_US = 80
TINY = 'import json; json.dump({"ok": 1}, open("metrics.json", "w"))'


def sh(args: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("env", dict(os.environ, **ENV))
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def make_repo(base: Path, n_points: int, cmd: str) -> Path:
    repo = Path(tempfile.mkdtemp(dir=base))
    sh(["git", "init", "-q", "-b", "main"], repo)
    (repo / "params.yaml").write_text("# bench\nx: 0   # the swept value\ny: 1\n")
    (repo / "sweeps.yaml").write_text(
        "params: params.yaml\n"
        f"cmd: {json.dumps(cmd)}\n"
        "metrics: [metrics.json]\n"
        "sweeps:\n  grid:\n    matrix:\n"
        f"      x: [{', '.join(str(i) for i in range(1, n_points + 1))}]\n"
    )
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-q", "-m", "baseline"], repo)
    return repo


def sweeprun(repo: Path, *args: str, source: str | None = None) -> float:
    """Time ``sweeprun ARGS``; ``source``: a directory holding another sweeprun to run."""
    env = {"PYTHONPATH": source} if source else {}
    start = time.perf_counter()
    sh([sys.executable, "-m", "sweeprun", *args], repo, env=dict(os.environ, **ENV, **env))
    return time.perf_counter() - start


def raw_refs(repo: Path, n: int) -> float:
    head = sh(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    body = "".join(f"create refs/bench/r{i} {head}\n" for i in range(n))
    start = time.perf_counter()
    sh(["git", "update-ref", "--stdin"], repo, input=body)
    return time.perf_counter() - start


def bare_runs(cwd: Path, n: int, slots: int) -> float:
    def one(_: int) -> None:
        subprocess.run([sys.executable, "-c", TINY], cwd=cwd, check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - start


def create_cost(base: Path, n: int = 300) -> float:
    """Median µs to create an empty file in ``base`` (and later delete it).

    Recording results means creating files (git's ref locks, objects, logs), and what a
    creation costs varies a hundredfold between file systems, and on ext4 without a
    journal with how much was deleted there in the last minutes: this puts the run-all
    ratio in context.
    """
    d = Path(tempfile.mkdtemp(dir=base))
    times = []
    for i in range(n):
        start = time.perf_counter()
        os.close(os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        times.append(time.perf_counter() - start)
    for i in range(n):
        os.unlink(d / f"f{i}")
    d.rmdir()
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="where the temporary repositories go (default: $TMPDIR)")
    ap.add_argument(
        "--against",
        metavar="SRC",
        help="also run (b) with the sweeprun package in SRC (e.g. a 'git worktree' of an "
        "older commit), interleaved with this one, and print the paired ratio",
    )
    opts = ap.parse_args()
    if opts.against:
        compileall.compile_dir(Path(opts.against) / "sweeprun", quiet=1)
    cmd = f"{sys.executable} -c '{TINY}'"
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-", dir=opts.dir) as tmp:
        base = Path(tmp)
        before = create_cost(base)
        print(f"creating a file in {base.parent}: {before:.0f} µs (median)")
        if before > CHURNED_US:
            print(
                "  the disk is churned (many files deleted there in the last minutes, e.g. by"
                " a test run or an earlier benchmark's clean-up): creating files is slow, so"
                " every ratio below is pessimistic; a few idle minutes restore it"
            )
        queue_t, refs_t, run_t, bare_t, other_t = [], [], [], [], []
        for i in range(opts.repeat):
            repo = make_repo(base, opts.points, cmd)
            refs_t.append(raw_refs(repo, opts.points))
            queue_t.append(sweeprun(repo, "sweeps.yaml", "-q"))
            repo = make_repo(base, opts.runs, cmd)
            sweeprun(repo, "sweeps.yaml", "-q")
            if opts.against:
                other = make_repo(base, opts.runs, cmd)
                sweeprun(other, "sweeps.yaml", "-q", source=opts.against)
                if i % 2:  # alternate the order: neither always runs on a fresher machine
                    other_t.append(sweeprun(other, "--run-all", "-j2", "-q", source=opts.against))
            run_t.append(sweeprun(repo, "--run-all", "-j", "2", "-q"))
            if opts.against and not i % 2:
                other_t.append(sweeprun(other, "--run-all", "-j2", "-q", source=opts.against))
            bare_t.append(bare_runs(repo, opts.runs, 2))
        # Each repeat measures sweeprun and the bare commands back to back, so the median
        # of the per-repeat ratios cancels most of the machine's slow drifts.
        pair = statistics.median(a / b for a, b in zip(run_t, bare_t, strict=True))
        q, r = statistics.median(queue_t), statistics.median(refs_t)
        ra, b = statistics.median(run_t), statistics.median(bare_t)
        print(
            f"(a) queue {opts.points} points: median {q:.3f} s "
            f"(raw update-ref of {opts.points} refs: {r:.3f} s; target < 2 s)"
        )
        print(
            f"(b) run-all -j 2 of {opts.runs}: median {ra:.3f} s; "
            f"bare {opts.runs} runs on 2 slots: {b:.3f} s; ratio {ra / b:.2f}x "
            "(target <= 1.5x, aim 1.3x)"
        )
        print(f"    median of per-repeat ratios (back-to-back pairs): {pair:.2f}x")
        print(f"    per-experiment overhead: {(ra - b) / opts.runs * 2 * 1000:.1f} ms per slot")
        if other_t:
            o = statistics.median(other_t)
            paired = statistics.median(a / c for a, c in zip(run_t, other_t, strict=True))
            print(
                f"    {opts.against}: median {o:.3f} s, ratio {o / b:.2f}x; "
                f"this one / that one, median of pairs: {paired:.2f}"
            )
        print(f"creating a file in {base.parent} after the runs: {create_cost(base):.0f} µs")


if __name__ == "__main__":
    main()
