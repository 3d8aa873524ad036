"""DVC projects as they are: ``dvc.yaml`` with vars, ``${}``, foreach, matrix, wdir, flags.

The projects here are written for these tests in the shape of public DVC example
projects (a text-classification pipeline with a git-ignored ``reports/`` folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

PARAMS = """
# project params: comments must survive a sweep
prepare:
  split: 0.2
  seed: 7
featurize:
  max_features: 100
train:
  n_est: 50
  min_split: 0.01
  layers: [8, 4]
  verbose: false
"""

DVC_YAML = """
vars:
  - data_dir: data
  - reports: reports
  - config.yaml:eval
stages:
  prepare:
    cmd: python3 src/prepare.py ${data_dir}/raw.txt ${prepare.split}
    deps: [src/prepare.py, "${data_dir}/raw.txt"]
    params: [prepare.split, prepare.seed]
    outs: ["${data_dir}/prepared"]
  featurize:
    foreach: [train, test]
    do:
      cmd: python3 src/featurize.py ${item} ${featurize.max_features}
      deps: [src/featurize.py, "${data_dir}/prepared"]
      params: [featurize]
      outs: ["${data_dir}/features/${item}.txt"]
  train:
    cmd: python3 ../src/train.py ${train}
    wdir: models
    deps: [../src/train.py, "../${data_dir}/features/train.txt"]
    params: [train]
    outs: [model.txt]
  evaluate:
    matrix:
      split: [train, test]
    cmd: python3 src/evaluate.py ${item.split} ${eval.threshold}
    deps: [src/evaluate.py, models/model.txt, "${data_dir}/features/${item.split}.txt"]
    params:
      - config.yaml:
          - eval.threshold
    metrics:
      - "${reports}/${item.split}.json":
          cache: false
    plots:
      - "${reports}/${item.split}_roc.csv": {x: fpr, y: tpr, cache: false}
  summarize:
    cmd:
      - python3 src/summarize.py
      - echo summarized
    deps: [reports/train.json, reports/test.json]
    metrics: [reports/summary.json: {cache: false}]
plots:
  - ROC:
      template: simple
      x: fpr
      y:
        reports/test_roc.csv: tpr
"""

SOURCES = {
    "src/prepare.py": """
        import os, sys
        open(os.environ["COUNT_FILE"], "a").write("prepare\\n")
        os.makedirs("data/prepared", exist_ok=True)
        text = open(sys.argv[1]).read()
        open("data/prepared/all.txt", "w").write(text + sys.argv[2])
    """,
    "src/featurize.py": """
        import os, sys
        open(os.environ["COUNT_FILE"], "a").write("featurize " + sys.argv[1] + "\\n")
        os.makedirs("data/features", exist_ok=True)
        open(f"data/features/{sys.argv[1]}.txt", "w").write(sys.argv[2])
    """,
    "src/train.py": """
        import json, os, sys
        open(os.environ["COUNT_FILE"], "a").write("train\\n")
        assert os.path.basename(os.getcwd()) == "models", os.getcwd()  # wdir
        json.dump(sys.argv[1:], open("model.txt", "w"))
    """,
    "src/evaluate.py": """
        import json, os, sys
        argv = json.load(open("models/model.txt"))
        n_est = int(argv[argv.index("--n_est") + 1])
        os.makedirs("reports", exist_ok=True)
        json.dump({"acc": n_est / 100, "threshold": float(sys.argv[2])},
                  open(f"reports/{sys.argv[1]}.json", "w"))
        open(f"reports/{sys.argv[1]}_roc.csv", "w").write("fpr,tpr\\n0,0\\n1,1\\n")
    """,
    "src/summarize.py": """
        import json
        a = json.load(open("reports/train.json"))["acc"]
        b = json.load(open("reports/test.json"))["acc"]
        json.dump({"mean_acc": (a + b) / 2}, open("reports/summary.json", "w"))
    """,
}


def dvc_project(sp: SweepProject, dvc_yaml: str = DVC_YAML) -> Path:
    sp.write("params.yaml", PARAMS)
    sp.write("config.yaml", "eval:\n  threshold: 0.5\nother: 1\n")
    sp.write("dvc.yaml", dvc_yaml)
    for path, text in SOURCES.items():
        sp.write(path, text)
    sp.write("data/raw.txt", "hello\n")
    sp.write("models/.gitkeep", "")
    # As DVC projects do: the data, the model and the reports are ignored by git.
    sp.write(".gitignore", "/data/prepared\n/data/features\n/models/model.txt\n/reports/\n")
    sp.commit()
    count = sp.base / "count.txt"
    sp.monkeypatch.setenv("COUNT_FILE", str(count))
    return count


def test_a_dvc_pipeline_is_swept_as_it_is(sweepproject: SweepProject) -> None:
    count = dvc_project(sweepproject)
    res = sweepproject.run("--collect-only", "-S", "train.n_est=10,20")
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["*dvc.yaml::run[train.n_est=10]*", "*dvc.yaml::run[train.n_est=20]*"])

    res = sweepproject.run("-S", "train.n_est=10,20", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=2)
    recs = {
        r["point"]["train.n_est"]: r for r in sweepproject.records() if r["name"] != "workspace"
    }
    assert set(recs) == {10, 20}
    for n, rec in recs.items():
        assert rec["state"] == "success"
        # metrics files in the git-ignored reports/ folder, from a matrix stage (vars in paths)
        assert rec["metrics"]["reports/train.json"] == {"acc": n / 100, "threshold": 0.5}
        assert rec["metrics"]["reports/test.json"]["acc"] == n / 100
        assert rec["metrics"]["reports/summary.json"] == {"mean_acc": n / 100}
        # the list-valued param is recorded as a list
        assert rec["params"]["params.yaml"]["train"]["layers"] == [8, 4]
    runs = count.read_text().splitlines()
    # prepare and featurize do not depend on train.n_est: computed once, shared
    assert runs.count("prepare") == 1
    assert runs.count("featurize train") == 1 and runs.count("featurize test") == 1
    assert runs.count("train") == 2

    # the ${train} mapping became DVC's flags, each value the experiment's own
    name = recs[20]["name"]
    res = sweepproject.run("apply", name)
    assert res.ret == 0, res.stderr
    argv = json.loads(sweepproject.read("models/model.txt"))
    assert argv == ["--n_est", "20", "--min_split", "0.01", "--layers", "8", "4"]
    assert json.loads(sweepproject.read("reports/summary.json")) == {"mean_acc": 0.2}
    assert "# project params: comments must survive a sweep" in sweepproject.read("params.yaml")
    assert "n_est: 20" in sweepproject.read("params.yaml")
    # nothing of DVC's own bookkeeping appeared in the repository
    assert not sweepproject.refs("refs/exps/")


def test_sweeprun_run_in_place_and_targets(sweepproject: SweepProject) -> None:
    dvc_project(sweepproject)
    res = sweepproject.run("run", "-S", "train.n_est=30")
    assert res.ret == 0, res.stdout + res.stderr
    assert json.loads(sweepproject.read("reports/train.json"))["acc"] == 0.3
    res = sweepproject.run("run", "--dry", "featurize@test")
    assert res.ret == 0, res.stderr
    assert "featurize@test" in res.stdout and "train" not in res.stdout


def test_pipeline_key_adds_named_sweeps_and_env(sweepproject: SweepProject) -> None:
    dvc_project(sweepproject)
    sweepproject.write(
        "sweeps.yaml",
        """
        pipeline: dvc.yaml
        env:
          PYTHONPATH: src
          GREETING: hi
        sweeps:
          trees:
            matrix:
              train.n_est: [5, 15]
              config.yaml:eval.threshold: [0.1, 0.9]
            name: "t{train.n_est}-{config.yaml:eval.threshold}"
            expect: {reports/summary.json:mean_acc: ">= 0.05"}
        """,
    )
    sweepproject.write(
        "src/summarize.py",
        """
        import json, os
        assert os.environ["PYTHONPATH"] == "src" and os.environ["GREETING"] == "hi"
        a = json.load(open("reports/train.json"))["acc"]
        b = json.load(open("reports/test.json"))["acc"]
        json.dump({"mean_acc": (a + b) / 2}, open("reports/summary.json", "w"))
        """,
    )
    sweepproject.commit("sweeps")
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=4)
    names = {r["name"]: r for r in sweepproject.records() if r["name"] != "workspace"}
    assert set(names) == {"t5-0.1", "t5-0.9", "t15-0.1", "t15-0.9"}
    assert names["t15-0.9"]["metrics"]["reports/test.json"]["threshold"] == 0.9


def test_stage_env_frozen_and_always_changed(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "lr: 1\n")
    sweepproject.write("data/base.txt", "base\n")
    sweepproject.write(
        "stamp.py",
        """
        import os
        open(os.environ["COUNT_FILE"], "a").write("stamp\\n")
        open("stamp.txt", "w").write("x")
        """,
    )
    sweepproject.write(
        "report.py",
        """
        import json, os, sys
        env = {"who": os.environ["WHO"], "level": int(os.environ["LEVEL"])}
        json.dump({**env, "lr": float(sys.argv[1])}, open("m.json", "w"))
        """,
    )
    sweepproject.write(
        "sweeps.yaml",
        """
        env: {WHO: spec, LEVEL: 1}
        stages:
          fetch:
            cmd: python3 -c "raise SystemExit('frozen stage ran')"
            outs: [data/base.txt]
            frozen: true
          stamp:
            cmd: python3 stamp.py
            deps: [stamp.py, data/base.txt]
            outs: [stamp.txt]
            always_changed: true
          report:
            cmd: python3 report.py ${lr}
            env: {WHO: stage}
            deps: [report.py, stamp.txt]
            metrics: [m.json]
        """,
    )
    sweepproject.write(".gitignore", "/data/\n/stamp.txt\n")
    sweepproject.commit()
    count = sweepproject.base / "count.txt"
    sweepproject.monkeypatch.setenv("COUNT_FILE", str(count))
    res = sweepproject.run("-S", "lr=1,2", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    recs = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert sorted(r["metrics"]["m.json"]["lr"] for r in recs) == [1, 2]
    assert all(r["metrics"]["m.json"]["who"] == "stage" for r in recs)
    assert all(r["metrics"]["m.json"]["level"] == 1 for r in recs)
    # always_changed: never restored from the run-cache, though its inputs are the same
    assert count.read_text().splitlines() == ["stamp", "stamp"]


@pytest.mark.parametrize(
    ("dvc_yaml", "message"),
    [
        (
            "stages:\n  a:\n    cmd: echo ${nope}\n",
            "dvc.yaml:3:10: stage 'a': ${nope} in 'cmd' is not defined*",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    outs: ['${missing}/x']\n",
            "dvc.yaml:4:12: stage 'a': 'outs': ${missing} is not defined*",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    bogus: 1\n",
            "dvc.yaml:4:5: unknown key 'bogus' in stage 'a' (valid: cmd, *",
        ),
        (
            "stages:\n  a:\n    cmd: echo\n    outs: [{x: {cache: false, color: red}}]\n",
            "dvc.yaml:4:31: unknown flag 'color' on 'x' (valid: cache, persist, checkpoint*",
        ),
        (
            "artifacts:\n  m: {path: m.pkl}\nstages: {}\n",
            "dvc.yaml:1:1: 'artifacts' *not supported*",
        ),
        (
            "stages:\n  a:\n    foreach: [1, 2]\n    cmd: echo\n",
            "dvc.yaml:4:5: stage 'a': a 'foreach' stage has only 'foreach' and 'do'",
        ),
        (
            "vars: [missing.yaml]\nstages:\n  a:\n    cmd: echo\n",
            "dvc.yaml:1:8: vars file 'missing.yaml' not found",
        ),
        (
            "vars: [{lr: 1}]\nstages:\n  a:\n    cmd: echo ${lr}\n",
            "dvc.yaml:1:8: vars: 'lr' is already defined by params.yaml",
        ),
    ],
)
def test_bad_dvc_yaml_is_a_located_error(
    sweepproject: SweepProject, dvc_yaml: str, message: str
) -> None:
    sweepproject.write("params.yaml", "lr: 0.1\n")
    sweepproject.write("dvc.yaml", dvc_yaml)
    sweepproject.commit()
    res = sweepproject.run("--collect-only")
    assert res.ret == 4, res.stdout + res.stderr
    res.fnmatch_lines([f"*{message}"], stream="stderr")
    assert len(res.errlines) == 1, res.stderr
    assert not sweepproject.refs()


DVCLIVE_EVAL = """
import json, os, sys
from dvclive import Live

params = json.load(open("params.json"))
with Live() as live:
    live.log_param("lr", params["lr"])
    for step in range(3):
        live.log_metric("loss", 1.0 / (step + 1) * params["lr"])
        live.next_step()
    live.log_metric("acc", 1 - params["lr"], plot=False)
print("exp", os.environ["DVC_EXP_NAME"], file=sys.stderr)
"""


def dvclive_project(sweepproject: SweepProject) -> None:
    """A DVC project whose evaluation logs with the real dvclive."""
    pytest.importorskip("dvclive")
    sweepproject.write("params.json", '{"lr": 0.5}\n')
    sweepproject.write("evaluate.py", DVCLIVE_EVAL)
    sweepproject.write(
        "dvc.yaml",
        """
        params: [params.json]
        stages:
          evaluate:
            cmd: python3 evaluate.py
            deps: [evaluate.py]
            params: [{params.json: [lr]}]
        metrics: [dvclive/metrics.json]
        plots: [dvclive/plots/metrics]
        """,
    )
    # A DVC repository: .dvc/ is committed, its cache and tmp are not.
    sweepproject.write(".dvc/config", "")
    sweepproject.write(".dvc/.gitignore", "/config.local\n/tmp\n/cache\n")
    sweepproject.write(".dvcignore", "")
    sweepproject.commit()
    env = {"DVC_NO_ANALYTICS": "1", "DVCLIVE_LOGLEVEL": "ERROR"}
    for k, v in env.items():
        sweepproject.monkeypatch.setenv(k, v)


def test_a_dvclive_project_logs_into_the_workspace(sweepproject: SweepProject) -> None:
    dvclive_project(sweepproject)
    before = sweepproject.git("for-each-ref")
    res = sweepproject.run_subprocess("-S", "params.json:lr=0.1,0.2", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    recs = [r for r in sweepproject.records() if r["name"] != "workspace"]
    # params.json is the project's only (so default) params file: the point key is bare
    got = sorted((r["point"]["lr"], r["metrics"]["dvclive/metrics.json"]) for r in recs)
    assert [g[0] for g in got] == [0.1, 0.2]
    for lr, metrics in got:
        assert metrics["acc"] == pytest.approx(1 - lr)
        assert metrics["loss"] == pytest.approx(lr / 3)
        assert metrics["step"] == 2
    # dvclive knew it ran inside an experiment: no refs of its own in the user's repository
    after = sweepproject.git("for-each-ref")
    new = {line.split()[-1] for line in after.splitlines()} - {
        line.split()[-1] for line in before.splitlines()
    }
    assert new and all(ref.startswith("refs/sweeprun/") for ref in new), new
    assert not (sweepproject.path / ".git" / "refs" / "exps").exists()
    assert not sweepproject.status().strip(), sweepproject.status()
    # the step curve is kept with the result and comes back with apply
    res = sweepproject.run("apply", recs[0]["name"])
    assert res.ret == 0, res.stderr
    tsv = sweepproject.path / "dvclive" / "plots" / "metrics" / "loss.tsv"
    assert tsv.is_file() and len(tsv.read_text().splitlines()) == 4
    assert os.environ.get("DVC_EXP_NAME") is None  # the runner's own environment is untouched


def test_dvclive_writes_no_object_into_the_shared_store(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Parallel experiments share the repository's object store; dvclive must not write it.

    Inside `dvc exp run` dvclive git-adds its files (dulwich, which fails when another
    writer holds an object's lock: two experiments adding the same dvc.yaml at once).
    Here that other writer is made certain: every object a run will create is locked.
    """
    dvclive_project(sweepproject)
    # A scout copy learns which objects the experiments' results are made of.
    scout = tmp_path / "scout"
    shutil.copytree(sweepproject.path, scout, symlinks=True)
    args = [sys.executable, "-m", "sweeprun", "-S", "params.json:lr=0.1,0.2", "--run", "-j", "2"]
    proc = subprocess.run(args, cwd=scout, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = subprocess.run(
        ["git", "rev-list", "--objects", "--glob=refs/sweeprun/*"],
        cwd=scout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    objects = sweepproject.path / ".git" / "objects"
    locked = []
    for oid in {w for w in listed if len(w) == 40}:
        if not (objects / oid[:2] / oid[2:]).exists():
            (objects / oid[:2]).mkdir(exist_ok=True)
            (objects / oid[:2] / f"{oid[2:]}.lock").write_text("")
            locked.append(oid)
    assert locked
    res = sweepproject.run_subprocess("-S", "params.json:lr=0.1,0.2", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    recs = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert sorted(r["point"]["lr"] for r in recs) == [0.1, 0.2]
    assert all(r["state"] == "success" for r in recs), recs


def test_init_writes_a_starter_that_loads(sweepproject: SweepProject) -> None:
    dvc_project(sweepproject)
    res = sweepproject.run("init")
    assert res.ret == 0, res.stderr
    text = sweepproject.read("sweeps.yaml")
    assert "pipeline: dvc.yaml  # guessed: dvc.yaml is here" in text
    assert "prepare.split: [0.1, 0.2, 0.4]" in text and "seed" not in text
    res = sweepproject.run("--collect-only")
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["collected 6 experiments"])
    # an existing sweeps.yaml is kept unless --force
    res = sweepproject.run("init")
    assert res.ret == 4 and "exists already (--force replaces it)" in res.stderr


def test_init_of_a_plain_project_and_of_nothing(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "model:\n  lr: 0.5\n  kind: tree\n")
    sweepproject.write("train.py", "print(1)\n")
    sweepproject.commit()
    res = sweepproject.run("init")
    assert res.ret == 0, res.stderr
    text = sweepproject.read("sweeps.yaml")
    assert "cmd: python3 train.py  # guessed: train.py is here" in text
    assert "model.lr: [0.25, 0.5, 1.0]" in text
    assert sweepproject.run("--collect-only").ret == 0
    (sweepproject.path / "params.yaml").unlink()
    (sweepproject.path / "train.py").unlink()
    (sweepproject.path / "sweeps.yaml").unlink()
    res = sweepproject.run("init")
    assert res.ret == 0, res.stderr
    assert "cmd: python3 train.py  # guessed: edit me" in sweepproject.read("sweeps.yaml")


def test_a_param_resolved_into_a_path_cannot_be_swept(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", "out_dir: results\nlr: 0.1\n")
    sweepproject.write(
        "dvc.yaml",
        "stages:\n  a:\n    cmd: echo ${lr} > ${out_dir}/x\n    outs: ['${out_dir}/x']\n",
    )
    sweepproject.commit()
    res = sweepproject.run("-S", "lr=0.1,0.2", "--collect-only")  # used in cmd only: fine
    assert res.ret == 0, res.stderr
    res = sweepproject.run("-S", "out_dir=elsewhere", "--collect-only")
    assert res.ret == 4
    assert res.stderr.startswith(
        "sweeprun: error: -S out_dir: dvc.yaml uses out_dir outside 'cmd'"
    ), res.stderr
    assert not sweepproject.refs()


@pytest.mark.parametrize(
    ("dvc_yaml", "message"),
    [
        (
            "vars: [link.yaml]\nstages:\n  a:\n    cmd: echo ${x}\n",
            "dvc.yaml:1:8: path 'link.yaml' resolves to *",
        ),
        (
            "params: [../outside.yaml]\nstages:\n  a:\n    cmd: echo\n",
            "dvc.yaml:1:10: path '../outside.yaml' is outside the repository",
        ),
    ],
)
def test_dvc_yaml_reads_nothing_outside_the_repository(
    sweepproject: SweepProject, dvc_yaml: str, message: str
) -> None:
    outside = sweepproject.base / "outside.yaml"
    outside.write_text("x: secret\n")
    (sweepproject.path / "link.yaml").symlink_to(outside)
    sweepproject.write("params.yaml", "lr: 0.1\n")
    sweepproject.write("dvc.yaml", dvc_yaml)
    sweepproject.commit()
    res = sweepproject.run("--collect-only", "--json")
    assert res.ret == 4, res.stdout + res.stderr
    res.fnmatch_lines([f"*{message}"], stream="stderr")
    assert "secret" not in res.stdout + res.stderr
