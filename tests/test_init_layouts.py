"""`sweeprun init` on the layouts projects come in (issue 23, item 5): a Makefile with a lone
config.yaml, a conf/ directory without Hydra, a Hydra app whose first config group is a
storage backend. Every spec it writes loads and collects, and what it sweeps looks like a
model's knob, never a seed, path, backend or logging key."""

from __future__ import annotations

import pytest
import yaml

from sweeprun.commands.init import choice_group, hyperparameters, make_target
from sweeprun.testing import SweepProject

CONFIG = """
paths:
  data_dir: data/
  port: 8080
logging:
  level: 20
  every: 50
backend: {workers: 4}
seed: 42
model:
  max_depth: 5
  learning_rate: 0.1
  name: tree
epochs_between_saves: 3
"""

MAKEFILE = """
.PHONY: all clean train
clean:
\trm -rf out
lint:
\truff check .
train: data/raw.csv
\tpython3 -c "import json; json.dump({'acc': 0.9}, open('metrics.json', 'w'))"
data/raw.csv:
\tmkdir -p data && echo 1 > data/raw.csv
"""


def _swept(text: str) -> dict[str, list[object]]:
    data = yaml.safe_load(text)
    sweeps = data.get("sweeps") or {}
    return {k: v for s in sweeps.values() for k, v in s.get("matrix", {}).items()}


def _init(sp: SweepProject) -> str:
    sp.commit()
    res = sp.run("init")
    assert res.ret == 0, res.stdout + res.stderr
    res = sp.run("--collect-only", "-q")
    assert res.ret == 0 and res.outlines, res.stdout + res.stderr
    return sp.read("sweeps.yaml")


def test_a_makefile_and_a_lone_config_yaml(sweepproject: SweepProject) -> None:
    sp = sweepproject
    sp.write("config.yaml", CONFIG)
    sp.write("Makefile", MAKEFILE)
    text = _init(sp)
    data = yaml.safe_load(text)
    assert data["params"] == "config.yaml" and data["cmd"] == "make train"
    assert set(_swept(text)) == {"model.max_depth", "model.learning_rate"}
    assert sp.run("--run", "-q", "-k", "grid").ret == 0  # it runs, too


def test_a_conf_directory_without_hydra(sweepproject: SweepProject) -> None:
    sp = sweepproject
    sp.write("conf/config.yaml", CONFIG)
    sp.write("train.py", "print('hi')\n")
    text = _init(sp)
    data = yaml.safe_load(text)
    assert data["params"] == "conf/config.yaml" and data["cmd"] == "python3 train.py"
    assert set(_swept(text)) == {"model.max_depth", "model.learning_rate"}


def test_a_hydra_app_sweeps_its_model_group_not_its_storage_backend(
    sweepproject: SweepProject,
) -> None:
    pytest.importorskip("hydra")
    sp = sweepproject
    sp.write(
        "conf/config.yaml",
        "defaults:\n  - metrics_storage: csv\n  - model: svm\n  - _self_\nseed: 0\n",
    )
    sp.write("conf/metrics_storage/csv.yaml", "path: out.csv\n")
    sp.write("conf/metrics_storage/sqlite.yaml", "path: out.db\n")
    sp.write("conf/model/svm.yaml", "c: 1.0\n")
    sp.write("conf/model/forest.yaml", "depth: 3\n")
    sp.write(
        "train.py",
        "import hydra\n@hydra.main(config_path='conf', config_name='config', version_base=None)\n"
        "def main(cfg):\n    pass\nif __name__ == '__main__':\n    main()\n",
    )
    text = _init(sp)
    assert _swept(text) == {"model": ["forest", "svm"]}


@pytest.mark.parametrize(
    ("params", "want"),
    [
        ({"lr": 0.01, "seed": 1, "port": 80}, ["lr"]),
        ({"num_workers": 4, "n_estimators": 100, "log_every": 10}, ["n_estimators"]),
        ({"x": 3, "random_state": 0, "dropout": 0.5}, ["dropout", "x"]),  # known knobs first
        ({"db": {"timeout": 30}, "verbose": 1}, []),
    ],
)
def test_which_numbers_look_like_knobs(params: dict[str, object], want: list[str]) -> None:
    assert [k for k, _ in hyperparameters(params)] == want


def test_group_and_target_choices(sweepproject: SweepProject) -> None:
    assert choice_group(["callbacks", "logger", "metrics_storage", "optimizer"]) == "optimizer"
    assert choice_group(["data", "model", "trainer"]) == "model"
    assert choice_group(["hydra", "paths"]) is None
    sweepproject.write("Makefile", "install:\n\tpip install .\nfit:\n\tpython fit.py\n")
    assert make_target(sweepproject.path) == "fit"
