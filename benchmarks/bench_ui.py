"""Benchmark of ``sweeprun ui`` (issue 26): the page's first paint and its update after a
new result, at N experiments, in headless Chromium.

The experiments are written through the store (as in bench_report.py). The server is
started and warm (it builds its state once before it prints its URL); "first paint" is
from navigation to the table listing all N (state fetched, parsed, table, parallel
coordinates and charts drawn), the median of ``--repeat`` page loads; "update" is from a
new result ref (``git update-ref`` of a copy of a result under a new name) to the table
counting N + 1 without a reload — the server's look at its stamp (every 0.5 s), the
results index refresh, the state sent again and drawn. Also prints the state's size and
the server's CPU while idle with the page open.

Run: ``python benchmarks/bench_ui.py [--n 1000] [--repeat 3]`` (needs playwright and
Debian's chromium, as the tests do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import ENV
from bench_report import make

COUNT = "document.getElementById('count').textContent.startsWith('{} of {}')"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (Debian: apt-get install chromium)")
    env = dict(os.environ, **ENV)
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        make(repo, opts.n)
        subprocess.run(
            [sys.executable, "-m", "sweeprun", "show", "-q"],
            cwd=repo,
            env=env,
            capture_output=True,
            check=True,
        )  # fmt: skip  (the index, built)
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "sweeprun", "ui", "--port", "0"],
            cwd=repo, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        ready = time.perf_counter() - started
        try:
            with urllib.request.urlopen(url + "api/state") as r:
                size = len(r.read())
            paints = []
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                for _ in range(opts.repeat):
                    t0 = time.perf_counter()
                    page.goto(url)
                    page.wait_for_function(COUNT.format(opts.n, opts.n), timeout=120_000)
                    paints.append(time.perf_counter() - t0)
                cpu0 = _cpu(server.pid)
                time.sleep(5)
                idle = (_cpu(server.pid) - cpu0) / 5
                head = _git(repo, "rev-parse", "HEAD")
                ref = _git(repo, "for-each-ref", "--count=1", "--format=%(refname)",
                           "refs/sweeprun/exps/")  # fmt: skip
                t0 = time.perf_counter()
                _git(repo, "update-ref", f"refs/sweeprun/exps/{head}/bench-new", ref)
                page.wait_for_function(COUNT.format(opts.n + 1, opts.n + 1), timeout=120_000)
                update = time.perf_counter() - t0
                browser.close()
        finally:
            server.terminate()
            server.communicate(timeout=30)
    print(
        f"ui at {opts.n:,} experiments: server ready in {ready:.2f} s; state {size / 1e6:.1f} MB\n"
        f"  first paint (warm server, {opts.repeat} loads): median "
        f"{statistics.median(paints):.2f} s (min {min(paints):.2f}, max {max(paints):.2f}); "
        f"target < 2 s at 100,000\n"
        f"  update after a new result, no reload: {update:.2f} s\n"
        f"  server CPU while idle with the page open: {idle * 100:.1f} %"
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def _cpu(pid: int) -> float:
    """CPU seconds a process has used (utime + stime, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
