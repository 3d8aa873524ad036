"""Every declared result is kept, even when git ignores it (a ``reports/*`` project)."""

from __future__ import annotations

import pytest

from sweeprun.testing import SweepProject

pytestmark = pytest.mark.both_git_modes

TRAIN = """
import json, os, pathlib, yaml

p = yaml.safe_load(open("params.yaml"))
os.makedirs("reports", exist_ok=True)
json.dump({"acc": p["lr"] * 2}, open("reports/metrics.json", "w"))
open("reports/confusion_matrix.png", "wb").write(b"\\x89PNG" + bytes(range(256)))
open("reports/loss.csv", "w").write("step,loss\\n1,0.5\\n")
open("model.pkl", "w").write("model")
if os.environ.get("STRAY"):
    open("reports/stray.txt", "w").write("undeclared, ignored")  # git decides: slow path
"""
RESULTS = ["reports/confusion_matrix.png", "reports/loss.csv", "reports/metrics.json"]


def _project(p: SweepProject) -> None:
    p.write("params.yaml", "lr: 0.25\n")
    p.write("train.py", TRAIN)
    p.write(
        "sweeps.yaml",
        """
        params: params.yaml
        stages:
          train:
            cmd: python3 train.py
            deps: [train.py]
            outs: [model.pkl]
            metrics: [reports/metrics.json]
            plots: [reports/confusion_matrix.png, {reports/loss.csv: {cache: false}}]
        """,
    )
    p.write(".gitignore", "reports/*\n__pycache__/\n")
    p.commit()


def _tree(p: SweepProject, commit: str) -> list[str]:
    return p.git("ls-tree", "-r", "--name-only", commit).split()


@pytest.mark.parametrize("stray", ["", "1"], ids=["in-process", "git-add"])
def test_ignored_metrics_and_plots_are_committed_and_applied(
    sweepproject: SweepProject, monkeypatch: pytest.MonkeyPatch, stray: str
) -> None:
    p = sweepproject
    _project(p)
    monkeypatch.setenv("STRAY", stray)
    res = p.run("sweeps.yaml", "-S", "lr=0.5", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = p.records()
    assert rec["metrics"] == {"reports/metrics.json": {"acc": 1.0}}
    files = _tree(p, rec["commit"])
    assert set(RESULTS) <= set(files)
    assert "sweeprun.lock" in files
    assert "model.pkl" not in files and "reports/stray.txt" not in files
    size = p.git("cat-file", "-s", f"{rec['commit']}:reports/confusion_matrix.png")
    assert int(size) == 260  # the bytes are there, not only a number in the message
    res = p.run("apply", rec["name"])
    assert res.ret == 0, res.stderr
    assert p.read("reports/metrics.json") == '{"acc": 1.0}'
    assert (p.path / "reports/confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert p.read("model.pkl") == "model"


def test_a_workspace_run_records_ignored_results(sweepproject: SweepProject) -> None:
    p = sweepproject
    _project(p)
    res = p.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = p.records()
    assert set(RESULTS) <= set(_tree(p, rec["commit"]))
