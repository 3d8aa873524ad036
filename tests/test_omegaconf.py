"""OmegaConf merges ``-S`` into the recorded params (struct mode, interpolations resolved)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeprun.spec.overrides import DELETE
from sweeprun.spec.params import ParamsFile, omegaconf_merge
from sweeprun.testing import SweepProject

PARAMS = """\
# model settings (this comment must survive every sweep)
model:
  lr: 0.1          # learning rate
  warmup_lr: ${model.lr}
  layers: [8, 4]
train:
  epochs: 3
  run_name: lr${model.lr}-e${train.epochs}
"""


def project(sp: SweepProject) -> None:
    sp.write("params.yaml", PARAMS)
    sp.write(
        "train.py",
        """
        import json
        from omegaconf import OmegaConf
        cfg = OmegaConf.load("params.yaml")
        json.dump({"warmup": cfg.model.warmup_lr, "name": cfg.train.run_name},
                  open("metrics.json", "w"))
        """,
    )
    sp.write("sweeps.yaml", "cmd: python3 train.py\ndeps: [train.py]\nmetrics: [metrics.json]\n")
    sp.commit()


def test_recorded_params_are_the_merge_with_interpolations_resolved(
    sweepproject: SweepProject,
) -> None:
    project(sweepproject)
    res = sweepproject.run("-S", "model.lr=0.5,0.01", "-S", "+train.seed=7", "--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    recs = {r["point"]["model.lr"]: r for r in sweepproject.records() if r["name"] != "workspace"}
    assert set(recs) == {0.5, 0.01}
    params = recs[0.5]["params"]["params.yaml"]
    assert params["model"] == {"lr": 0.5, "warmup_lr": 0.5, "layers": [8, 4]}
    assert params["train"] == {"epochs": 3, "run_name": "lr0.5-e3", "seed": 7}
    # the program saw the same values, from a file that still says ${model.lr}
    assert recs[0.5]["metrics"]["metrics.json"] == {"warmup": 0.5, "name": "lr0.5-e3"}
    # the file in the experiment differs from the baseline only where the point does
    commit = recs[0.01]["commit"]
    diff = sweepproject.git("diff", "-U0", "HEAD", commit, "--", "params.yaml")
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == [
        "-  lr: 0.1          # learning rate",
        "+  lr: 0.01          # learning rate",
        "+  seed: 7",
    ], diff


def test_struct_mode_unknown_keys_need_plus(sweepproject: SweepProject) -> None:
    project(sweepproject)
    res = sweepproject.run("-S", "model.bogus=1", "--collect-only")
    assert res.ret == 4
    assert "unknown param key 'model.bogus' in params.yaml" in res.stderr
    assert "'+'" in res.stderr
    assert not sweepproject.refs()


def test_delete_with_interpolations(sweepproject: SweepProject) -> None:
    project(sweepproject)
    res = sweepproject.run("-S", "~model.layers", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = [r for r in sweepproject.records() if r["name"] != "workspace"]
    assert rec["params"]["params.yaml"]["model"] == {"lr": 0.1, "warmup_lr": 0.1}


def test_text_that_only_looks_like_an_interpolation_is_recorded_as_written() -> None:
    pf = ParamsFile.from_text("params.yaml", "cmd: echo ${HOME:-x}\nlr: 1\n")
    assert pf.merged({"lr": 2}) == {"cmd": "echo ${HOME:-x}", "lr": 2}


_KEYS = st.text(alphabet="abcdefgh_", min_size=1, max_size=4)
_LEAF = st.one_of(
    st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.text(alphabet="xyz -", max_size=4), st.none(),
)  # fmt: skip
_TREE = st.recursive(
    _LEAF,
    lambda inner: st.one_of(
        st.dictionaries(_KEYS, inner, min_size=1, max_size=3),
        st.lists(_LEAF, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


def _leaves(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in _leaves(v, f"{prefix}{key}.")]
    return [prefix[:-1]] if prefix else []


@settings(max_examples=150, deadline=None)
@given(
    data=st.dictionaries(_KEYS, _TREE, min_size=1, max_size=4),
    value=_LEAF,
    pick=st.integers(0, 1000),
    delete=st.booleans(),
)
def test_the_fast_path_is_omegaconfs_merge(
    data: dict[str, Any], value: Any, pick: int, delete: bool
) -> None:
    """Without interpolations, applying a point to the data gives exactly OmegaConf's merge."""
    keys = _leaves(data)
    if not keys:
        return
    key = keys[pick % len(keys)]
    changes = {key: DELETE if delete else value}
    pf = ParamsFile(path="p.yaml", text="", fmt="yaml", data=data)
    assert pf.apply(changes) == omegaconf_merge("p.yaml", data, changes)


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], "s", 1.5])
def test_added_keys_of_any_type(value: Any) -> None:
    data = {"model": {"lr": 1}, "x": "${model.lr}"}
    merged = omegaconf_merge("p.yaml", data, {"model.extra": value})
    assert merged == {"model": {"lr": 1, "extra": value}, "x": 1}
