"""The demo and the quickstart example are real projects the tests run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sweeprun.testing import SweepProject


def test_demo_runs_a_sweep_end_to_end(sweepproject: SweepProject, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "sweeprun", "demo", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "sweeprun", "show", "--json"],
        cwd=target,
        capture_output=True,
        text=True,
        check=True,
    )
    recs = json.loads(shown.stdout)
    assert len(recs) == 6
    # a higher degree fits sin(x) better: the example computes something real
    rmse = {
        r["params"]["params.yaml"]["model"]["degree"]: r["metrics"]["metrics.json"]["rmse"]
        for r in recs
        if r["params"]["params.yaml"]["model"]["alpha"] == 0.0
    }
    assert rmse[5] < rmse[3] < rmse[1]


def test_demo_refuses_a_non_empty_directory(sweepproject: SweepProject) -> None:
    sweepproject.write("x.txt", "x")
    res = sweepproject.run("demo", str(sweepproject.path))
    assert res.ret == 4
    res.fnmatch_lines(["sweeprun: error: demo: * exists and is not empty"], stream="stderr")


def test_quickstart_example_collects(sweepproject: SweepProject) -> None:
    sweepproject.copy_example("quickstart")
    sweepproject.commit()
    res = sweepproject.run("--collect-only", "-q")
    assert res.ret == 0
    assert res.outlines == [
        f"grid[model.degree={d},model.alpha={a}]" for d in (1, 3, 5) for a in (0.0, 1.0)
    ]


def test_demo_in_a_temporary_directory_cleans_up_unless_kept(tmp_path: Path) -> None:
    env = dict(__import__("os").environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "sweeprun", "demo"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed at the end: --keep keeps it" in proc.stdout and "6 passed" in proc.stdout
    assert not list(tmp_path.glob("sweeprun-demo-*"))
    proc = subprocess.run(
        [sys.executable, "-m", "sweeprun", "demo", "--keep", "--no-run"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (kept,) = tmp_path.glob("sweeprun-demo-*")
    assert (kept / "sweeps.yaml").is_file() and not (kept / ".git" / "sweeprun").exists()
