"""Hydra apps: overrides keep Hydra's meaning and are checked by composing the config.

The app here has config groups, ``_target_`` instantiation and an interpolation across
groups, like the Hydra apps users bring; it runs under the real ``hydra-core``.
"""

from __future__ import annotations

import json

import pytest

from sweeprun.testing import SweepProject

pytest.importorskip("hydra")

FILES = {
    "conf/config.yaml": """
        defaults:
          - model: linear
          - _self_
        data:
          n: 40
          noise: 0.1
        seed: 0
    """,
    "conf/model/linear.yaml": "_target_: app.models.Linear\nlr: 0.1\n",
    "conf/model/poly.yaml": "_target_: app.models.Poly\ndegree: 3\nlr: ${data.noise}\n",
    "app/__init__.py": "",
    "app/models.py": """
        class Linear:
            def __init__(self, lr):
                self.lr = lr
            def score(self, n):
                return 1 - self.lr / n
        class Poly:
            def __init__(self, degree, lr):
                self.degree, self.lr = degree, lr
            def score(self, n):
                return 1 - self.lr / (n * self.degree)
    """,
    "train.py": """
        import json, os, sys
        import hydra
        from hydra.utils import instantiate

        @hydra.main(config_path="conf", config_name="config", version_base=None)
        def main(cfg):
            model = instantiate(cfg.model)
            json.dump({"score": model.score(cfg.data.n), "argv": sys.argv[1:],
                       "cwd": os.getcwd()}, open("metrics.json", "w"))

        if __name__ == "__main__":
            main()
    """,
    "sweeps.yaml": """
        params: {hydra: conf/config.yaml}
        cmd: python3 train.py
        deps: [train.py, app]
        metrics: [metrics.json]
        sweeps:
          models:
            matrix:
              model: [linear, poly]
              data.n: [10, 100]
    """,
    ".gitignore": "__pycache__/\n",
}


@pytest.fixture
def app(sweepproject: SweepProject) -> SweepProject:
    for path, text in FILES.items():
        sweepproject.write(path, text)
    sweepproject.commit()
    return sweepproject


def test_a_hydra_app_is_swept_with_group_choices(app: SweepProject) -> None:
    res = app.run(
        "sweeps.yaml::models", "--run", "-j", "2", "-S", "+extra='it s $HOME; x'", "-S", "seed=3"
    )
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=4)
    recs = {
        (r["point"]["model"], r["point"]["data.n"]): r
        for r in app.records()
        if r["name"] != "workspace"
    }
    assert len(recs) == 4
    poly = recs[("poly", 10)]
    # the composed config is the recorded params; the group choice is its own column
    assert poly["params"]["conf/config.yaml"] == {
        "model": {"_target_": "app.models.Poly", "degree": 3, "lr": 0.1},
        "data": {"n": 10, "noise": 0.1},
        "seed": 3,
        "extra": "it s $HOME; x",
    }
    assert poly["params"]["hydra"] == {"model": "poly"}
    # the app got Hydra's overrides as its own arguments, byte for byte
    metrics = poly["metrics"]["metrics.json"]
    assert metrics["argv"] == [
        "model=poly",
        "data.n=10",
        "+extra='it s $HOME; x'",
        "seed=3",
        "hydra.run.dir=.",
    ]
    assert metrics["score"] == pytest.approx(1 - 0.1 / 30)
    assert recs[("linear", 100)]["metrics"]["metrics.json"]["score"] == pytest.approx(0.999)
    # Hydra's run directory is the experiment's own workspace (one per parallel slot),
    # never the repository, so parallel runs never share one
    cwds = {r["metrics"]["metrics.json"]["cwd"] for r in recs.values()}
    assert len(cwds) == 2 and all("/.git/sweeprun/ws/" in c for c in cwds), cwds
    assert not (app.path / ".hydra").exists() and not (app.path / "outputs").exists()
    res = app.run("show")
    assert res.ret == 0
    header = res.stdout.splitlines()[0].split()
    assert "model" in header and not any(h.startswith("defaults") for h in header)
    # the workspace row is the config composed as it is: only what varies is a column
    assert "data.noise" not in header and "model.lr" not in header
    workspace = res.stdout.splitlines()[1].split()
    assert workspace[:2] == ["workspace", "-"] and "linear" in workspace
    # diff composes the baseline's config too
    res = app.run("diff", poly["name"])
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["conf/config.yaml:seed * 3 * 0 * +3", "hydra:model * poly * linear*"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model=xgb",
            "*Hydra: In 'config': Could not find 'model/xgb'; Available options in 'model':"
            " linear, poly",
        ),
        ("model.bogus=1", "*Could not override 'model.bogus'; To append to your config use +*"),
        ("~seed2", "*Could not delete from config. 'seed2' does not exist"),
    ],
)
def test_overrides_that_do_not_compose_are_refused(
    app: SweepProject, override: str, message: str
) -> None:
    res = app.run("-S", override)
    assert res.ret == 4, res.stdout + res.stderr
    res.fnmatch_lines([f"sweeprun: error: sweeps.yaml: overrides *{message}"], stream="stderr")
    assert len([ln for ln in res.errlines if "error:" in ln]) == 1
    assert not app.refs()


def test_sweeprun_run_in_place(app: SweepProject) -> None:
    res = app.run("run", "-S", "model=poly", "-S", "model.degree=2")
    assert res.ret == 0, res.stdout + res.stderr
    metrics = json.loads(app.read("metrics.json"))
    assert metrics["argv"][:2] == ["model=poly", "model.degree=2"]
    assert metrics["score"] == pytest.approx(1 - 0.1 / 80)


def test_init_finds_the_hydra_app(sweepproject: SweepProject) -> None:
    for path, text in FILES.items():
        if path != "sweeps.yaml":
            sweepproject.write(path, text)
    sweepproject.commit()
    res = sweepproject.run("init")
    assert res.ret == 0, res.stderr
    text = sweepproject.read("sweeps.yaml")
    assert "params: {hydra: conf/config.yaml}" in text
    assert "cmd: python3 train.py  # guessed: it has @hydra.main" in text
    assert "model: [linear, poly]" in text
    res = sweepproject.run("--collect-only")
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["*model[model=linear]*", "*model[model=poly]*"])


@pytest.mark.parametrize(
    "point",
    [
        {},
        {"model": "poly", "data.n": 5},
        {"data.n": 7, "seed": 2, "data.noise": 0.5},
        {"model": "linear", "model.lr": 0.3},
        {"model": "poly", "data.noise": 0.7},  # poly's lr interpolates data.noise
        {"+extra": {"a": 1}, "seed": 4},
        {"data": 5},  # replaces a mapping: does not go in as a value, composed whole
    ],
)
def test_composing_a_point_once_per_group_choice_is_hydras_compose(
    app: SweepProject, point: dict[str, object]
) -> None:
    """The helper's fast path (in the app's interpreter; here, in-process) against
    Hydra's compose of the whole point."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sweeprun.spec.hydra import override_words
    from sweeprun.spec.hydracompose import Composer, plain

    def request(p: dict[str, object]) -> dict[str, tuple[object, str]]:
        return dict(zip(p, zip(p.values(), override_words(p), strict=True), strict=True))

    composer = Composer("config")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(app.path / "conf"), version_base=None):
        composer.compose(request({"model": "poly"}))  # a base for poly: the fast path is taken
        composer.compose(request({}))
        got = composer.compose(request(point))
        cfg, choices = composer.compose_whole(request(point))
    GlobalHydra.instance().clear()
    assert got["params"] == plain(cfg)
    assert got["choices"] == choices


@pytest.mark.parametrize(
    "value",
    ["1", "abc", "true", "x y", "it's", "a,b", "null", 1, 0.1, 1e-05, True, None, [1, "a"],
     {"a": 1, "b": "c d"}, "", "path/to.file:3"],
)  # fmt: skip
def test_values_read_back_by_hydras_own_parser(value: object) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sweeprun.spec.hydra import hydra_value

    parsed = OverridesParser.create().parse_override(f"key={hydra_value(value)}")
    assert parsed.value() == value
