"""The long fault campaign (issue 12): kill -9, SIGTERM and Ctrl+C of a runner at random
moments, each followed by a rerun; counts lost experiments, experiments run to completion
twice, and leftovers (queue or running refs, live job processes).

Run: ``python benchmarks/bench_faults.py [--trials 20] [--against SRC]``; ``--against`` runs
the same trials (same seeds) with another sweeprun checkout, for comparison.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - compiles sweeprun, as an installed copy would be

from sweeprun.campaign import fault_campaign

FAULTS = {"kill -9": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "Ctrl+C": signal.SIGINT}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--against", help="another sweeprun checkout, measured the same way")
    opts = ap.parse_args()
    sources = [("this checkout", "")]
    if opts.against:
        sources.append((opts.against, str(Path(opts.against).resolve())))
    for label, source in sources:
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="sweeprun-faults-") as tmp:
            results = fault_campaign(Path(tmp), list(FAULTS.values()), opts.trials, source)
        print(f"{label} ({time.monotonic() - start:.0f} s), 6 experiments per trial, -j 2:")
        for name, fault in FAULTS.items():
            print(f"  {name:8s} {results[fault]}")


if __name__ == "__main__":
    main()
