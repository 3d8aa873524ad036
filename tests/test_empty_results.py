"""A declared metrics or plots file that is missing (or a directory where a metrics file
should be) fails the stage, with one line naming it (issue 22, item 4)."""

from __future__ import annotations

import pytest

from sweeprun.testing import SweepProject


@pytest.mark.parametrize(
    ("declared", "cmd", "message"),
    [
        (
            "metrics: [metrics.json]",
            "echo no metrics",
            "stage 'main' did not produce its metrics file 'metrics.json'",
        ),
        (
            "metrics: [somedir]",
            "mkdir -p somedir && echo '{}' > somedir/m.json",
            "stage 'main' declares metrics 'somedir', which is a directory, not a file",
        ),
        (
            "plots: [loss.csv]",
            "echo no plots",
            "stage 'main' did not produce its plots file 'loss.csv'",
        ),
    ],
    ids=["missing-metrics", "metrics-dir", "missing-plots"],
)
def test_a_missing_declared_result_fails_the_experiment(
    sweepproject: SweepProject, declared: str, cmd: str, message: str
) -> None:
    sp = sweepproject
    sp.write("params.yaml", "lr: 1\n")
    sp.write("sweeps.yaml", f"params: params.yaml\ncmd: {cmd}\n{declared}\n")
    sp.commit()
    res = sp.run("-S", "lr=2", "--run")
    assert res.ret == 1, res.stdout + res.stderr
    res.assert_outcomes(failed=1)
    assert message in res.stdout
    (rec,) = sp.records()
    assert (rec["state"], rec["message"]) == ("failed", message)
    # In the workspace too, and a plot directory is fine (DVC allows one of images).
    res = sp.run("run")
    assert res.ret == 1
    assert message in res.stdout


def test_a_plot_directory_is_a_declared_result(sweepproject: SweepProject) -> None:
    sp = sweepproject
    sp.write("sweeps.yaml", "cmd: mkdir -p imgs && touch imgs/a.png\nplots: [imgs]\n")
    sp.commit()
    res = sp.run("run")
    assert res.ret == 0, res.stdout + res.stderr
