"""Benchmark of reading results at scale (issue 16): N finished experiments, then ``show``.

The experiments are created through the store's own writers (one ``fast-import`` for the
commits, one ``update-ref --stdin`` transaction for the refs), not by running them, then
packed as a run packs them (``--loose``: left loose).
Each figure is a whole ``sweeprun`` process: ``cold`` is the first ``show --json`` (it
builds the results index), ``warm`` the median of ``--repeat`` runs after it, ``refresh``
a ``show --json`` after 10 new refs (the index reads only those). ``after 1`` and ``after
100``: the index's own read (``resultsindex.results()`` in a process, timed inside it)
right after 1 or 100 new result refs (appended to the index; issue 27), beside the same
read when nothing changed. The new refs name existing commits with old queue times, so
they are sorted in among the rows: the costlier case. Beside them, in the same run:
git's own ``for-each-ref`` of the same refs (names and commits; messages).
``--all`` also times the table, ``report``, ``plots`` and ``api.dataframe()``.
DVC's ``exp show`` was measured at about 44 ms per experiment (4.4 s for 100, dvc#7824).

Run: ``python benchmarks/bench_results.py [--n 10000] [--all] [--against OLD_CHECKOUT]``.
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

from _common import ENV, make_results

from sweeprun.model import EXPS
from sweeprun.store.git import run_git


def make(repo: Path, n: int) -> None:
    """A repository with ``n`` finished experiments of one baseline (a random search: every
    ``lr`` different)."""
    make_results(repo, n, lambda i: (
        {"lr": i / n, "units": 32 + i % 4 * 32},
        {"acc": (i % 97) / 97, "loss": 1 - (i % 89) / 89},
    ))  # fmt: skip


def timed(repo: Path, args: list[str], src: Path | None = None) -> float:
    """Seconds of one ``python -m sweeprun ARGS`` (or ``python -c CODE`` for ``-c``)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "sweeprun", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=repo, env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


READ = """
import time
from sweeprun.store import resultsindex
from sweeprun.store.git import discover
repo = discover(".")
t = time.perf_counter()
resultsindex.results(repo)
print(time.perf_counter() - t)
"""


def index_read(repo: Path, new: int, src: Path | None = None) -> float:
    """Seconds of the results index's read in a process, after ``new`` new result refs."""
    if new:
        head = run_git(["rev-parse", "HEAD"], repo).strip()
        some = run_git(["rev-parse", f"{EXPS}{head}/exp-00000"], repo).strip()
        tag = time.time_ns()
        lines = "".join(f"create {EXPS}{head}/add-{tag}-{i} {some}\n" for i in range(new))
        run_git(["update-ref", "--stdin"], repo, input=lines)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run([sys.executable, "-c", READ], cwd=repo, env=env, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return float(out.split()[-1])


def git_time(repo: Path, fmt: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["git", "for-each-ref", f"--format={fmt}", EXPS], cwd=repo,
                   capture_output=True, check=True)  # fmt: skip
    return time.perf_counter() - t0


COMMANDS = {
    "show --json": ["show", "--json"],
    "show (table)": ["show"],
    "report": ["report", "-o", "r.html"],
    "plots": ["plots", "-o", "plots"],
    "api.dataframe()": ["-c", "import sweeprun.api as a; a.dataframe()"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="also the table, report, plots, api")
    ap.add_argument("--against", type=Path, help="also time the sweeprun in this checkout")
    ap.add_argument("--loose", action="store_true", help="leave the refs loose (not packed)")
    opts = ap.parse_args()
    os.environ.update(ENV)
    names = list(COMMANDS) if opts.all else ["show --json"]
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp)
        start = time.perf_counter()
        make(repo, opts.n)
        if not opts.loose:  # as runs leave them: past 1,024 loose results a run packs them
            run_git(["pack-refs", "--all"], repo)
        print(
            f"created {opts.n} experiments through the store in {time.perf_counter() - start:.2f} s"
        )
        cold = timed(repo, COMMANDS["show --json"])
        warm = {k: statistics.median(timed(repo, COMMANDS[k]) for _ in range(opts.repeat))
                for k in names}  # fmt: skip
        head = run_git(["rev-parse", "HEAD"], repo).strip()
        some = run_git(["rev-parse", f"{EXPS}{head}/exp-00000"], repo).strip()
        lines = "".join(f"create {EXPS}{head}/new-{i} {some}\n" for i in range(10))
        run_git(["update-ref", "--stdin"], repo, input=lines)
        refresh = timed(repo, COMMANDS["show --json"])
        sources = {"now": None, str(opts.against): opts.against.resolve()} if opts.against else {
            "now": None}  # fmt: skip
        reads: dict[str, dict[str, list[float]]] = {}
        for name, src in sources.items():
            got = reads[name] = {"unchanged": [], "after 1": [], "after 100": []}
            for _ in range(opts.repeat):
                for label, new in (("unchanged", 0), ("after 1", 1), ("after 100", 100)):
                    index_read(repo, 0, src)  # current first (another format: rebuilt)
                    got[label].append(index_read(repo, new, src))
        raw_names = git_time(repo, "%(refname) %(objectname)")
        raw_messages = git_time(repo, "%(contents)")
        old = {}
        if opts.against:
            src = opts.against.resolve()
            for k in names:
                try:
                    old[k] = statistics.median(
                        timed(repo, COMMANDS[k], src) for _ in range(opts.repeat)
                    )
                except subprocess.CalledProcessError:
                    old[k] = float("nan")  # that checkout has no such command
    n = opts.n
    json_warm = warm["show --json"]
    print(f"show --json of {n}: cold {cold:.2f} s (builds the index), warm {json_warm:.2f} s "
          f"= {json_warm / n * 1000:.4f} ms per experiment, after 10 new refs "
          f"{refresh:.2f} s")  # fmt: skip
    for name, got in reads.items():
        print(f"the index's read in a process ({name}): " + ", ".join(
            f"{k} {statistics.median(v):.2f} s ({min(v):.2f}-{max(v):.2f})" for k, v in got.items()
        ))  # fmt: skip
    print(f"git for-each-ref of the same refs: names {raw_names:.2f} s, messages "
          f"{raw_messages:.2f} s; DVC: ~44 ms per experiment ({44 * n / 1000:.0f} s)")  # fmt: skip
    for k in names:
        line = f"  {k:<16} warm {warm[k]:6.2f} s"
        if k in old:
            line += f"   {opts.against}: {old[k]:6.2f} s   ratio {warm[k] / old[k]:.2f}"
        print(line)


if __name__ == "__main__":
    main()
