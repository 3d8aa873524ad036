"""Benchmark of reading results (issue 6): 10,000 experiments, then ``show --json``.

The experiments are created through the store's own writers (one ``fast-import`` for the
commits, one ``update-ref --stdin`` transaction for the refs), not by running them.
``cold`` is the first ``show`` after creating them, ``warm`` the median of the next runs.
DVC's ``exp show`` was measured at about 44 ms per experiment (4.4 s for 100, dvc#7824).

Run: ``python benchmarks/bench_results.py [--n 10000]``.
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

from sweeprun.model import EXPS, Result, State
from sweeprun.store.git import run_git


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--against", type=Path, help="also time show with the sweeprun in SRC")
    opts = ap.parse_args()
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp)
        run_git(["init", "-q"], repo)
        (repo / "params.yaml").write_text("lr: 0.1\nunits: 64\n")
        run_git(["add", "-A"], repo)
        run_git(["commit", "-q", "-m", "baseline"], repo)
        head = run_git(["rev-parse", "HEAD"], repo).strip()
        tree = run_git(["rev-parse", "HEAD^{tree}"], repo).strip()
        start = time.perf_counter()
        results = []
        for i in range(opts.n):
            params = {"params.yaml": {"lr": i / opts.n, "units": 32 + i % 4 * 32}}
            meta = Result(
                key=f"{i:020x}",
                name=f"exp-{i:05d}",
                id=f"g[lr={i / opts.n}]",
                baseline=head,
                state=State.SUCCESS,
                params=params,
                metrics={"m.json": {"acc": (i % 97) / 97, "loss": 1 - (i % 89) / 89}},
                point={"lr": i / opts.n},
                sweep="g",
                returncode=0,
                queued_at=1_700_000_000 + i,
                started=1_700_000_000 + i,
                finished=1_700_000_001 + i,
            )
            text = f"lr: {i / opts.n}\nunits: {32 + i % 4 * 32}\n".encode()
            results.append((meta, text))
        store_results(repo, head, tree, results)
        created = time.perf_counter() - start

        def show(src: Path | None = None) -> float:
            env = dict(os.environ)
            if src is not None:
                env["PYTHONPATH"] = str(src)
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "sweeprun", "show", "--json"],
                cwd=repo,
                env=env,
                capture_output=True,
                check=True,
            ).stdout
            took = time.perf_counter() - t0
            assert out.count(b'"name"') == opts.n
            return took

        cold = show()
        warm = statistics.median(show() for _ in range(3))
        old = (
            statistics.median(show(opts.against.resolve()) for _ in range(3))
            if opts.against
            else None
        )
        t0 = time.perf_counter()
        subprocess.run(
            ["git", "for-each-ref", "--format=%(contents)", EXPS],
            cwd=repo,
            capture_output=True,
            check=True,
        )
        raw = time.perf_counter() - t0
    print(f"created {opts.n} experiments through the store in {created:.2f} s")
    print(
        f"show --json of {opts.n}: cold {cold:.2f} s (target < 5 s), warm {warm:.2f} s "
        f"(target < 1 s) = {warm / opts.n * 1000:.3f} ms per experiment; DVC: ~44 ms per "
        f"experiment ({44 * opts.n / 1000:.0f} s); raw for-each-ref read: {raw:.2f} s"
    )
    if old is not None:
        print(f"{opts.against}: warm {old:.2f} s; this one / that one: {warm / old:.2f}")


if __name__ == "__main__":
    main()
