"""The long fault campaign (issues 12, 24): kill -9, SIGTERM, Ctrl+C and SIGHUP of a
runner at random moments, and kill -9 of one of two runners draining one queue, each
followed by a rerun; counts lost experiments, experiments run to completion twice, and
leftovers (queue or running refs, live job processes). (A Dask worker's loss and a
stopped job's background children are tested in tests/test_dask*.py and
tests/test_stopping.py: each with a fault placed where it bites, not at random.)

Run: ``python benchmarks/bench_faults.py [--trials 20] [--against SRC]``; ``--against`` runs
the same trials (same seeds) with another sweeprun checkout, for comparison.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - compiles sweeprun, as an installed copy would be

from sweeprun.campaign import fault_campaign

FAULTS = {
    "kill -9": signal.SIGKILL,
    "SIGTERM": signal.SIGTERM,
    "Ctrl+C": signal.SIGINT,
    "SIGHUP": signal.SIGHUP,
}
#: The same faults sent to one of two runners draining one queue (the other goes on).
TWO = "two runners (one killed)"
#: kill -9 of a runner whose jobs run in warm workers (`warm: true`).
WARM = "kill -9 (warm workers)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--against", help="another sweeprun checkout, measured the same way")
    ap.add_argument(
        "--faults",
        default=",".join([*FAULTS, TWO, WARM]),
        help=f"which (comma-separated; default: all; {TWO!r} is kill -9 of one of two)",
    )
    ap.add_argument(
        "--load", action="store_true", help="keep the other core busy meanwhile (a busy CI box)"
    )
    opts = ap.parse_args()
    names = opts.faults.split(",")
    unknown = [n for n in names if n not in FAULTS and n not in (TWO, WARM)]
    if unknown:
        ap.error(f"--faults: unknown {unknown[0]!r} (valid: {', '.join([*FAULTS, TWO, WARM])})")
    chosen = {name: FAULTS[name] for name in names if name in FAULTS}
    hog = None
    if opts.load:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sources = [("this checkout", "")]
    if opts.against:
        sources.append((opts.against, str(Path(opts.against).resolve())))
    for label, source in sources:
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="sweeprun-faults-") as tmp:
            results = fault_campaign(Path(tmp), list(chosen.values()), opts.trials, source)
            two = (
                fault_campaign(Path(tmp), [signal.SIGKILL], opts.trials, source, runners=2)
                if TWO in names
                else {}
            )
            warm = (
                fault_campaign(Path(tmp), [signal.SIGKILL], opts.trials, source, warm=True)
                if WARM in names
                else {}
            )
        load = " (the other core busy)" if hog else ""
        print(f"{label} ({time.monotonic() - start:.0f} s), 6 experiments per trial, -j 2{load}:")
        for name, fault in chosen.items():
            print(f"  {name:8s} {results[fault]}")
        for result in two.values():
            print(f"  {TWO}: {result}")
        for result in warm.values():
            print(f"  {WARM}: {result}")
    if hog is not None:
        hog.kill()
        hog.wait()


if __name__ == "__main__":
    main()
