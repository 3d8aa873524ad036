"""Hydra apps composed where they run: the app's own interpreter, plugins and ConfigStore.

The app below keeps its ``model`` group in Hydra's ``ConfigStore`` (registered when its
module is imported) and selects ``hydra/job_logging: teamlog``, a config that a plugin
installed only in the app's own virtual environment provides. sweeprun's interpreter has
neither, so the app's config composes only in the app's interpreter.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

pytest.importorskip("hydra")

PLUGIN = {
    # A Hydra search-path plugin, as hydra-colorlog ships one: it adds the package's
    # configs (here a job_logging config) to every app's search path.
    "hydra_plugins/teamlog_searchpath/__init__.py": "",
    "hydra_plugins/teamlog_searchpath/teamlog_searchpath.py": """
        from hydra.core.config_search_path import ConfigSearchPath
        from hydra.plugins.search_path_plugin import SearchPathPlugin

        class TeamlogSearchPathPlugin(SearchPathPlugin):
            def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
                search_path.append(provider="teamlog", path="pkg://teamlog.conf")
    """,
    "teamlog/__init__.py": "",
    "teamlog/conf/__init__.py": "",
    "teamlog/conf/hydra/job_logging/teamlog.yaml": """
        version: 1
        formatters:
          team: {format: "[team] %(message)s"}
        handlers:
          console: {class: logging.StreamHandler, formatter: team, stream: ext://sys.stdout}
        root: {level: INFO, handlers: [console]}
        disable_existing_loggers: false
    """,
}

APP = {
    "conf/config.yaml": """
        defaults:
          - model: ridge
          - override hydra/job_logging: teamlog
          - _self_
        data:
          n: 40
    """,
    "models.py": """
        class Ridge:
            def __init__(self, alpha):
                self.alpha = alpha
            def score(self, n):
                return round(1 - self.alpha / n, 6)

        class Tree:
            def __init__(self, depth):
                self.depth = depth
            def score(self, n):
                return round(1 - 1 / (n * self.depth), 6)
    """,
    "train.py": """
        import json, logging
        from dataclasses import dataclass

        import hydra
        from hydra.core.config_store import ConfigStore
        from hydra.utils import instantiate

        @dataclass
        class RidgeConf:
            _target_: str = "models.Ridge"
            alpha: float = 0.5

        @dataclass
        class TreeConf:
            _target_: str = "models.Tree"
            depth: int = 4

        cs = ConfigStore.instance()
        cs.store(group="model", name="ridge", node=RidgeConf)
        cs.store(group="model", name="tree", node=TreeConf)

        @hydra.main(config_path="conf", config_name="config", version_base=None)
        def main(cfg):
            logging.getLogger(__name__).info("training")
            model = instantiate(cfg.model)
            json.dump({"score": model.score(cfg.data.n)}, open("metrics.json", "w"))

        if __name__ == "__main__":
            main()
    """,
    ".gitignore": "__pycache__/\n",
}


@pytest.fixture(scope="module")
def app_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment of the app's own: hydra-core (this environment's, through a
    ``.pth`` file) and the teamlog plugin, which only this environment has."""
    venv = tmp_path_factory.mktemp("appenv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "sweeprun-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for rel, text in PLUGIN.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(textwrap.dedent(text).lstrip())
    return python


@pytest.fixture
def app(sweepproject: SweepProject, app_python: Path) -> SweepProject:
    for path, text in APP.items():
        sweepproject.write(path, text)
    sweepproject.write(
        "sweeps.yaml",
        f"""
        params: {{hydra: conf/config.yaml}}
        cmd: {app_python} train.py
        deps: [train.py, models.py]
        metrics: [metrics.json]
        sweeps:
          models:
            matrix:
              model: [ridge, tree]
              data.n: [10, 20]
        """,
    )
    sweepproject.commit()
    return sweepproject


def test_the_plugin_is_the_app_environments_own(app: SweepProject, app_python: Path) -> None:
    """The premise: the app runs in its interpreter and cannot compose in sweeprun's."""
    ran = subprocess.run(
        [str(app_python), "train.py", "hydra.run.dir=."], cwd=app.path, capture_output=True
    )
    assert ran.returncode == 0 and b"[team] training" in ran.stdout, ran.stderr
    alone = subprocess.run(
        [sys.executable, "train.py", "hydra.run.dir=/tmp/x"], cwd=app.path, capture_output=True
    )
    assert b"teamlog" in alone.stderr and alone.returncode != 0


def test_a_config_store_group_is_swept_in_the_apps_own_interpreter(app: SweepProject) -> None:
    res = app.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=4)
    recs = {
        (r["point"]["model"], r["point"]["data.n"]): r
        for r in app.records()
        if r["name"] != "workspace"
    }
    tree = recs[("tree", 20)]
    assert tree["params"]["conf/config.yaml"]["model"] == {"_target_": "models.Tree", "depth": 4}
    assert tree["params"]["hydra"] == {"model": "tree"}
    assert tree["metrics"]["metrics.json"]["score"] == pytest.approx(1 - 1 / 80)
    assert recs[("ridge", 10)]["metrics"]["metrics.json"]["score"] == pytest.approx(0.95)
    res = app.run("show")
    assert (
        res.ret == 0 and "metrics.json:score" in res.stdout.splitlines()[0].replace(" ", "")
    ) or "score" in res.stdout.splitlines()[0]


def test_apply_of_a_hydra_point_then_rerunning_reproduces_it(app: SweepProject) -> None:
    assert app.run("--run", "-S", "model=tree", "-S", "data.n=7", "-n", "deep").ret == 0
    (rec,) = [r for r in app.records() if r["name"] == "deep"]
    res = app.run("apply", "deep")
    assert res.ret == 0, res.stderr
    assert "hydra-overrides.txt" in res.stdout
    cmd = res.stdout.splitlines()[-1].strip()
    assert app.read("hydra-overrides.txt").split() == ["model=tree", "data.n=7"]
    # the printed command, run as printed, is the point again
    subprocess.run(cmd, shell=True, cwd=app.path, check=True, capture_output=True)
    got = json.loads(app.read("metrics.json"))
    assert got["score"] == rec["metrics"]["metrics.json"]["score"] == pytest.approx(1 - 1 / 28)
    assert app.run("apply", "--undo").ret == 0
    assert not (app.path / "hydra-overrides.txt").exists()


def test_an_interpreter_without_hydra_is_one_located_line(sweepproject: SweepProject) -> None:
    for path, text in APP.items():
        sweepproject.write(path, text)
    bare = sweepproject.path.parent / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    sweepproject.write(
        "sweeps.yaml",
        f"params: {{hydra: conf/config.yaml}}\ncmd: {shlex.quote(str(bare))}/bin/python train.py\n",
    )
    sweepproject.commit()
    res = sweepproject.run("-S", "model=tree")
    assert res.ret == 4
    (line,) = res.errlines
    assert line.startswith(
        f"sweeprun: error: sweeps.yaml:2:1: cannot compose conf/config.yaml with {bare}"
    )
    assert "cannot import hydra" in line and line.endswith("python: PATH})")
    assert not sweepproject.refs()


PRESET = {
    "conf/config.yaml": """
        defaults:
          - model: svm
          - _self_
          - preset: fast
        data: {n: 10}
    """,
    "conf/model/svm.yaml": "name: svm\nc: 1\n",
    "conf/model/rf.yaml": "name: rf\nc: 2\n",
    "conf/preset/fast.yaml": "# @package _global_\nmodel:\n  c: 9\n",
    "train.py": """
        import json
        import hydra

        @hydra.main(config_path="conf", config_name="config", version_base=None)
        def main(cfg):
            json.dump({"c": cfg.model.c, "n": cfg.data.n}, open("metrics.json", "w"))

        if __name__ == "__main__":
            main()
    """,
    "sweeps.yaml": """
        params: {hydra: conf/config.yaml}
        cmd: python3 train.py data.n=3
        metrics: [metrics.json]
        sweeps:
          models:
            values:
              - {model: svm}
              - {model: rf}
    """,
    ".gitignore": "__pycache__/\n",
}


def test_a_preset_that_overwrites_a_swept_choice_is_named_and_what_ran_is_recorded(
    sweepproject: SweepProject,
) -> None:
    for path, text in PRESET.items():
        sweepproject.write(path, text)
    sweepproject.commit()
    res = sweepproject.run("--run")
    assert res.ret == 0, res.stderr
    assert (
        "sweeprun: warning: sweeps.yaml: sweep 'models': model=svm: its model.c (1) is "
        "overwritten by preset/fast (9), so every such point runs with 9" in res.errlines
    )
    assert any(line.startswith("sweeprun: warning: sweeps.yaml: sweep 'models': model=rf:")
               for line in res.errlines)  # fmt: skip
    recs = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert len(recs) == 2
    for rec in recs:
        ran = rec["metrics"]["metrics.json"]
        config = rec["params"]["conf/config.yaml"]
        # what the app ran with, as Hydra saved it: the preset's c, and the command's own
        # data.n=3 that no sweep point holds
        assert ran == {"c": 9, "n": 3}
        assert config["model"]["c"] == 9 and config["data"]["n"] == 3
    res = sweepproject.run("show", "--only-changed")
    assert res.ret == 0
    header = res.stdout.splitlines()[0].split()
    # constant columns are left out (model.c is 9 in every row, the workspace's too)
    assert "model" in header and "model.c" not in header and "c" in header, header
