"""What a job weighs on its way to a worker, and what a queue commit's message weighs.

For params files of about 1, 14 and 140 KB: queue one experiment (``-S lr=0.2``), build
the job the runner would send for it, and print its pickled size and the queue commit's
message size. ``--against SRC`` measures the same with the sweeprun package in SRC (e.g. a
``git worktree`` of an older commit) in the same run.

Run: ``python benchmarks/bench_job_size.py [--against ../old]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import bench_env

SIZES = {"1 KB": 40, "14 KB": 500, "140 KB": 5000}  # lines of ~28 bytes

# Runs in a subprocess, against either package layout.
MEASURE = r"""
import io, json, os, pickle, sys
try:  # the layered package
    from sweeprun._core.cli import _prepare
    from sweeprun._core.session import Session
    from sweeprun.model import QUEUE
    try:  # today's: a job made from the store
        from sweeprun.run.jobs import job_setup, make_job
        layout = "runner"
    except ImportError:  # before the Runner: from the session
        from sweeprun.run.scheduler import job_setup, make_job
        layout = "session"
except ImportError:  # the flat package of earlier versions
    from sweeprun.cli import _prepare
    from sweeprun.session import Session
    from sweeprun.gitstore import QUEUE
    from sweeprun.scheduler import make_job
    layout = "flat"
session = Session(_prepare(["--run-all"], io.StringIO()))
(record,) = session.store.records(QUEUE)
if layout == "flat":
    job = make_job(session, record, {})
else:
    setup, env = job_setup(session.config.repo.root, session.config.repo.common_dir)
    owner = session.store if layout == "runner" else session
    job = make_job(owner, record, session.options, setup, env)
session.close()
message = os.popen(f"git log -1 --format=%B {record.commit}").read()
print(json.dumps({"job": len(pickle.dumps(job)), "message": len(message.encode())}))
"""


def measure(src: Path | None, lines: int, base: Path) -> dict[str, int]:
    repo = Path(tempfile.mkdtemp(dir=base))
    env = bench_env()
    if src is not None:
        env["PYTHONPATH"] = str(src)
    params = "lr: 0.1\n" + "".join(f"key_{i:05d}: {'v' * 16}\n" for i in range(lines))
    (repo / "params.yaml").write_text(params)
    (repo / "sweeps.yaml").write_text("params: params.yaml\ncmd: echo ${lr}\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    subprocess.run(
        [sys.executable, "-m", "sweeprun", "sweeps.yaml", "-S", "lr=0.2", "-q"],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], cwd=repo, env=env, check=True, capture_output=True
    )
    data: dict[str, int] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    data["params"] = len(params)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout's source directory")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweeprun-bench-") as tmp:
        base = Path(tmp)
        print(f"{'params':>8} {'job (this)':>11} {'message (this)':>15}", end="")
        print(f" {'job (old)':>10} {'message (old)':>14}" if opts.against else "")
        for label, lines in SIZES.items():
            this = measure(None, lines, base)
            row = f"{label:>8} {this['job']:>9,} B {this['message']:>13,} B"
            if opts.against:
                old = measure(opts.against.resolve(), lines, base)
                row += f" {old['job']:>8,} B {old['message']:>12,} B"
            print(row)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
