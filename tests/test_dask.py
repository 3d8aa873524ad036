"""The same queue on a real Dask cluster (scheduler and worker processes on loopback)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

distributed = pytest.importorskip("distributed")


def test_run_all_on_a_local_dask_cluster(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml").ret == 0
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        res = sweepproject.run_subprocess(
            "--run-all", "-j", "2", "--backend", "dask", "--scheduler", cluster.scheduler_address
        )
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=6)
    recs = sweepproject.records()
    assert len(recs) == 6 and {r["state"] for r in recs} == {"success"}
    for rec in recs:
        model = rec["params"]["params.yaml"]["model"]
        assert rec["metrics"]["metrics.json"]["score"] == model["alpha"] * 10 + model["degree"]


COUNTED = """
import json, sys
open(sys.argv[1], "a").write(open("params.yaml").read().split()[-1] + "\\n")
json.dump({"ok": 1}, open("m.json", "w"))
"""


def test_a_worker_that_dies_after_its_job_finished_does_not_run_it_again(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Shared file system: the result noted in the runner's journal (before the task
    returned) is what a task Dask runs again reports; the command ran once."""
    from test_dask_git import DIE_AFTER_FIRST

    mark, ran = tmp_path / "died", tmp_path / "ran.txt"
    preload = tmp_path / "die_after_first.py"
    preload.write_text(DIE_AFTER_FIRST.format(mark=str(mark)))
    sp = sweepproject
    sp.write("params.yaml", "i: 0\n")
    sp.write("counted.py", COUNTED)
    sp.write(
        "sweeps.yaml",
        f"params: params.yaml\nstages:\n  count:\n    cmd: {sys.executable} counted.py {ran}\n"
        "    always_changed: true\n    metrics: [m.json]\n"
        "sweeps:\n  g:\n    matrix: {i: [1, 2, 3, 4]}\n",
    )
    sp.commit()
    assert sp.run("sweeps.yaml").ret == 0
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        preload=[str(preload)],
    ) as cluster:
        res = sp.run_subprocess(
            "--run-all", "-j", "2", "--backend", "dask", "--scheduler", cluster.scheduler_address
        )
    assert mark.exists(), "the fault did not happen"
    assert res.ret == 0, res.stdout + res.stderr
    assert sorted(ran.read_text().split()) == ["1", "2", "3", "4"]
    assert {r["state"] for r in sp.records()} == {"success"} and len(sp.records()) == 4
