"""The same queue on a real Dask cluster (scheduler and worker processes on loopback)."""

from __future__ import annotations

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
