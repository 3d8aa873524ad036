"""Every params value a stage reads is in its run-cache key and its record, whichever file
it comes from; ``-S file:key`` works for every params file a stage names (issue 22, item 1)."""

from __future__ import annotations

import pytest

from sweeprun.testing import SweepProject

# Writes the value it reads to its out: a stale restore shows as the wrong number.
READ_X = "python3 -c \"import yaml; print(yaml.safe_load(open('other.yaml'))['x'])\" > out.txt"


def _other_file_project(sp: SweepProject, dvc: bool, keys: str = "[x]") -> None:
    sp.write("params.yaml", "lr: 0.1\n")
    sp.write("other.yaml", "x: 1\n")
    stage = f"""
        s:
          cmd: {READ_X}
          params: [{{other.yaml: {keys}}}]
          outs: [out.txt]
    """
    if dvc:
        sp.write("dvc.yaml", "stages:\n" + "\n".join("  " + ln for ln in stage.splitlines()))
    else:
        sp.write(
            "sweeps.yaml",
            "params: params.yaml\nstages:\n" + "\n".join("  " + ln for ln in stage.splitlines()),
        )
    sp.write(".gitignore", "out.txt\n__pycache__/\n")
    sp.commit()


@pytest.mark.parametrize(
    ("dvc", "keys"),
    [(False, "[x]"), (True, "[x]"), (False, "null")],
    ids=["sweeps.yaml", "dvc.yaml", "whole-file"],
)
def test_a_value_of_another_params_file_changes_the_stage_key(
    sweepproject: SweepProject, dvc: bool, keys: str
) -> None:
    sp = sweepproject
    _other_file_project(sp, dvc, keys)
    res = sp.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert sp.read("out.txt") == "1\n"
    sp.write("other.yaml", "x: 2\n")
    sp.commit("x is 2")
    res = sp.run("run")
    assert res.ret == 0, res.stdout + res.stderr
    assert "restored from the run-cache" not in res.stdout
    assert sp.read("out.txt") == "2\n"
    # The record has the value, and show lists it.
    (rec,) = [r for r in sp.records() if r["baseline"] == sp.head()]
    assert rec["params"]["other.yaml"] == {"x": 2}


def test_set_param_on_a_file_a_stage_names(sweepproject: SweepProject) -> None:
    sp = sweepproject
    _other_file_project(sp, dvc=False)
    res = sp.run("-S", "other.yaml:x=3,4", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    got = {r["params"]["other.yaml"]["x"] for r in sp.records()}
    assert got == {3, 4}
    show = sp.run("show")
    head, *rows = show.stdout.splitlines()
    assert "x" in head.split()
    assert sorted(r.split()[-1] for r in rows[1:]) == ["3", "4"]
    res = sp.run("run", "-S", "other.yaml:x=5")
    assert res.ret == 0, res.stdout + res.stderr
    assert sp.read("out.txt") == "5\n"
    assert sp.read("other.yaml") == "x: 5\n"
    res = sp.run("-S", "other.yaml:y=1", "--collect-only")
    assert res.ret == 4
    assert "unknown param key 'y' in other.yaml" in res.stderr


def test_bare_keys_read_the_first_declared_file_whatever_the_names(
    sweepproject: SweepProject,
) -> None:
    """``params: [params.yaml, a.yaml]``: a stage's bare ``lr`` is params.yaml's, even though
    records list files in sorted order (a.yaml first)."""
    sp = sweepproject
    sp.write("params.yaml", "lr: 1\n")
    sp.write("a.yaml", "other: 0\n")
    sp.write(
        "sweeps.yaml",
        """
        params: [params.yaml, a.yaml]
        stages:
          s:
            cmd: python3 -c "import yaml; print(yaml.safe_load(open('params.yaml')))" > out.txt
            params: [lr]
            outs: [out.txt]
        """,
    )
    sp.write(".gitignore", "out.txt\n")
    sp.commit()
    assert sp.run("-S", "lr=2,3", "--run", "-q").ret == 0
    outs = {}
    for rec in sp.records():
        lock = sp.git("show", f"{rec['commit']}:sweeprun.lock")
        outs[rec["params"]["params.yaml"]["lr"]] = (
            '"lr": ' + str(rec["params"]["params.yaml"]["lr"]) in lock
        )
    assert outs == {2: True, 3: True}, outs


def test_a_missing_params_file_of_a_stage_is_a_located_error(sweepproject: SweepProject) -> None:
    sp = sweepproject
    sp.write("params.yaml", "lr: 1\n")
    sp.write(
        "sweeps.yaml",
        """
        stages:
          s:
            cmd: echo
            params: [{nope.yaml: [x]}]
        """,
    )
    sp.commit()
    res = sp.run("--collect-only")
    assert res.ret == 4
    assert (
        res.stderr.strip() == "sweeprun: error: sweeps.yaml:4:15: params file 'nope.yaml' not found"
    )


def test_a_python_params_file_is_read_and_set(sweepproject: SweepProject) -> None:
    """DVC's ``.py`` params files: top-level constants and class attributes."""
    sp = sweepproject
    sp.write("params.yaml", "lr: 1\n")
    sp.write("conf.py", "# settings\nEPOCHS = 3  # keep\n\nclass Train:\n    lr = 0.5\n")
    sp.write(
        "sweeps.yaml",
        """
        stages:
          s:
            cmd: python3 -c "import conf; print(conf.EPOCHS, conf.Train.lr)" > out.txt
            params: [{conf.py: [EPOCHS, Train.lr]}]
            outs: [out.txt]
        """,
    )
    sp.write(".gitignore", "out.txt\n__pycache__/\n")
    sp.commit()
    res = sp.run("run", "-S", "conf.py:Train.lr=0.25")
    assert res.ret == 0, res.stdout + res.stderr
    assert sp.read("out.txt") == "3 0.25\n"
    assert sp.read("conf.py") == "# settings\nEPOCHS = 3  # keep\n\nclass Train:\n    lr = 0.25\n"
    (rec,) = sp.records()
    assert rec["params"]["conf.py"] == {"EPOCHS": 3, "Train": {"lr": 0.25}}
