"""The sweep language end to end: blocks, -S grammar, params formats, names, expect, selection."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sweeprun.spec.schema import SCHEMA
from sweeprun.testing import SweepProject

ROOT = Path(__file__).resolve().parents[1]
PARAMS = "# p\ntrain:\n  lr: 0.1  # rate\n  units: 64\n  opt: adam\nseed: 0\n"


def setup(sp: SweepProject, spec: str, params: str = PARAMS) -> None:
    sp.write("params.yaml", params)
    sp.write("sweeps.yaml", spec)
    sp.commit()


def ids(sp: SweepProject, *args: str) -> list[str]:
    res = sp.run("--collect-only", "-q", *args)
    assert res.ret in (0, 5), res.stderr
    return res.outlines


@pytest.mark.parametrize("example", ["quickstart", "language"])
def test_collect_json_of_examples_matches_expectations(
    sweepproject: SweepProject, example: str
) -> None:
    sweepproject.copy_example(example)
    sweepproject.commit()
    res = sweepproject.run("--collect-only", "--json")
    assert res.ret == 0, res.stderr
    expected = json.loads((ROOT / "tests" / "expected" / f"{example}.collect.json").read_text())
    assert json.loads(res.stdout) == expected


@pytest.mark.parametrize("example", ["quickstart", "language", "pipeline", "hydra-app"])
def test_examples_validate_against_the_schema(example: str) -> None:
    data = yaml.safe_load((ROOT / "examples" / example / "sweeps.yaml").read_text())
    jsonschema.validate(data, SCHEMA)


def test_schema_rejects_what_the_loader_rejects() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cmd": "x", "bogus": 1}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cmd": "x", "sweeps": {"g": {"random": {"n": 1}}}}, SCHEMA)


def test_schema_option_prints_it(sweepproject: SweepProject) -> None:
    res = sweepproject.run("--schema")
    assert res.ret == 0
    assert json.loads(res.stdout) == SCHEMA
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_language_example_runs_with_expectations(sweepproject: SweepProject) -> None:
    sweepproject.copy_example("language")
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=15, skipped=1)  # paired's first point equals a grid point
    names = {r["name"] for r in sweepproject.records()}
    assert {"lr0.1-u64", "lr0.5-u32", "lr0.001-u128"} <= names


def test_blocks_lists_and_cli_sweeps(sweepproject: SweepProject) -> None:
    setup(
        sweepproject,
        """
        cmd: echo
        sweeps:
          z:
            zip: {train.lr: [0.1, 0.2], train.units: [1, 2]}
          l:
            - values: [{train.opt: sgd}]
            - matrix: {seed: [1, 2]}
          b:
            blocks:
              - values: [{seed: 5}]
    """,
    )
    assert ids(sweepproject) == [
        "z[train.lr=0.1,train.units=1]",
        "z[train.lr=0.2,train.units=2]",
        "l[train.opt=sgd]",
        "l[seed=1]",
        "l[seed=2]",
        "b[seed=5]",
    ]
    # -S sweeps form a product with every spec sweep; fixed -S values apply to all
    assert ids(sweepproject, "sweeps.yaml::b", "-S", "train.units=3,4", "-S", "train.opt=x") == [
        "b[seed=5,train.units=3,train.opt=x]",
        "b[seed=5,train.units=4,train.opt=x]",
    ]


def test_cli_sweep_without_spec_sweeps(sweepproject: SweepProject) -> None:
    setup(sweepproject, "cmd: echo\n")
    assert ids(sweepproject, "-S", "train.lr=range(1,3)", "-S", "seed=choice(7,8)") == [
        "run[train.lr=1,seed=7]",
        "run[train.lr=1,seed=8]",
        "run[train.lr=2,seed=7]",
        "run[train.lr=2,seed=8]",
    ]
    assert ids(sweepproject) == ["run"]


def test_add_force_delete_keys_with_minimal_diffs(sweepproject: SweepProject) -> None:
    setup(sweepproject, "cmd: echo\n")
    res = sweepproject.run(
        "-S",
        "+train.dropout=0.5",
        "-S",
        "~seed",
        "-S",
        "++train.lr=1e-3",
        "-S",
        "+extra.name='007'",
    )
    assert res.ret == 0, res.stderr
    (sha,) = sweepproject.refs("refs/sweeprun/queue/").values()
    text = sweepproject.git("show", f"{sha}:params.yaml")
    assert text == (
        "# p\ntrain:\n  lr: 0.001  # rate\n  units: 64\n  opt: adam\n"
        "  dropout: 0.5\nextra:\n  name: '007'\n"
    )
    assert yaml.safe_load(text)["extra"]["name"] == "007"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("-S", "+train.lr=1"),
            "-S +train.lr=1: 'train.lr' already exists in params.yaml "
            "(use ++train.lr=… to override it)",
        ),
        (("-S", "~nope"), "-S ~nope: unknown param key 'nope' in params.yaml*"),
        (("-S", "~seed=3"), "-S ~seed=3: 'seed' is 0 in params.yaml, not 3"),
        (
            ("-S", "train.lx=1"),
            "-S train.lx=1: unknown param key 'train.lx' in params.yaml "
            "(did you mean 'train.lr'?)*",
        ),
        (("-S", "a=(1"), "-S 'a=(1': unbalanced quotes or brackets*"),
        (("sweeps.yaml::nope",), "sweeps.yaml::nope: no such sweep or experiment*"),
    ],
)
def test_override_errors(sweepproject: SweepProject, args: tuple[str, ...], error: str) -> None:
    setup(sweepproject, "cmd: echo\n")
    res = sweepproject.run(*args)
    assert res.ret == 4
    assert len(res.errlines) == 1
    res.fnmatch_lines([f"sweeprun: error: {error}"], stream="stderr")
    assert sweepproject.refs() == {}


@pytest.mark.parametrize(
    ("sweep", "error"),
    [
        (
            "zip: {train.lr: [1, 2], train.units: [1]}",
            "sweeps.yaml:4:11: sweep 'g': zip lists must have equal lengths (train.lr has 2, "
            "train.units has 1)",
        ),
        (
            "random: {n: 2, space: {train.lr: 'gauss(0, 1)'}}",
            "sweeps.yaml:4:28: sweep 'g': space key 'train.lr': unknown distribution 'gauss'*",
        ),
        (
            "random: {n: 2, space: {train.lr: 'uniform(2, 1)'}}",
            "sweeps.yaml:4:28: sweep 'g': space key 'train.lr': uniform(2, 1) needs low < high",
        ),
        (
            "random: {n: 5, space: {train.opt: [a, b]}}",
            "sweeps.yaml:4:14: sweep 'g': 'n' is 5 but the discrete space has only 2 points",
        ),
        (
            "matrix: {train.lr: [1], include: [{train.nope: 1}]}",
            "sweeps.yaml:4:40: sweep 'g': unknown param key 'train.nope' in params.yaml*",
        ),
        (
            "matrix: {train.lr: [1, 2]}\n    expect: {acc: '>> 3'}",
            "sweeps.yaml:5:19: expect acc: '>> 3' is not a condition*",
        ),
        ("values: {train.lr: 1}", "sweeps.yaml:4:13: 'values' of sweep 'g' must be a list"),
    ],
)
def test_sweep_errors_are_located(sweepproject: SweepProject, sweep: str, error: str) -> None:
    setup(sweepproject, f"cmd: echo\nsweeps:\n  g:\n    {sweep}\n")
    res = sweepproject.run()
    assert res.ret == 4, res.stdout
    assert len(res.errlines) == 1
    res.fnmatch_lines([f"sweeprun: error: {error}"], stream="stderr")
    assert sweepproject.refs() == {}


def test_json_and_toml_params_minimal_diffs_and_types(sweepproject: SweepProject) -> None:
    sweepproject.write("p.json", '{\n  "lr": 0.1,\n  "tag": "007",\n  "n": 1\n}\n')
    sweepproject.write("p.toml", "# comment kept\n[opt]\nlr = 0.1  # inline kept\nn = 1\n")
    setup(
        sweepproject,
        """
        params: [p.json, p.toml]
        cmd: echo
        sweeps:
          g:
            matrix:
              lr: [1e-3]
              p.toml:opt.lr: [2e-3]
    """,
    )
    assert sweepproject.run().ret == 0
    (sha,) = sweepproject.refs("refs/sweeprun/queue/").values()
    assert (
        sweepproject.git("show", f"{sha}:p.json")
        == '{\n  "lr": 0.001,\n  "tag": "007",\n  "n": 1\n}\n'
    )
    assert (
        sweepproject.git("show", f"{sha}:p.toml")
        == "# comment kept\n[opt]\nlr = 0.002  # inline kept\nn = 1\n"
    )


def test_interpolation_is_shell_quoted(sweepproject: SweepProject, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    setup(sweepproject, "cmd: echo ${train.opt} > out.txt\nmetrics: [out.txt]\n")
    res = sweepproject.run("--run", "-S", f"train.opt='x; touch {marker}'")
    assert res.ret == 0, res.stdout
    (rec,) = sweepproject.records()
    assert sweepproject.git("show", f"{rec['commit']}:out.txt") == f"x; touch {marker}\n"
    assert not marker.exists()


def test_names_templates_and_prefix(sweepproject: SweepProject) -> None:
    setup(
        sweepproject,
        """
        cmd: echo
        sweeps:
          g:
            matrix: {train.lr: [0.1, 0.2], train.opt: ["a/b", "c d"]}
            name: "lr{train.lr}-{train.opt}-{seed}"
    """,
    )
    res = sweepproject.run("--collect-only")
    res.fnmatch_lines(["*name=lr0.1-a_b-0>*", "*name=lr0.1-c_d-0>*"])
    res = sweepproject.run("sweeps.yaml::g", "-n", "trial", "-S", "seed=1")
    assert res.ret == 0
    res.fnmatch_lines(["collected 4 experiments (*; -n trial names 4: trial-1 … trial-4)"])
    assert sorted(r["name"] for r in sweepproject.records()) == [
        "trial-1",
        "trial-2",
        "trial-3",
        "trial-4",
    ]


def test_expect_pass_miss_and_missing(sweepproject: SweepProject) -> None:
    sweepproject.write(
        "acc.py",
        "import json, yaml\np = yaml.safe_load(open('params.yaml'))\n"
        "json.dump({'acc': p['train']['lr']}, open('m.json', 'w'))\n",
    )
    setup(
        sweepproject,
        """
        cmd: python3 acc.py
        metrics: [m.json]
        sweeps:
          ok:
            values: [{train.lr: 0.9}]
            expect: {acc: ">= 0.8", m.json:acc: "0.5..1"}
          low:
            values: [{train.lr: 0.7}]
            expect: {acc: ">= 0.8"}
          missing:
            values: [{train.lr: 0.95}]
            expect: {f1: "[0, 1]"}
    """,
    )
    res = sweepproject.run("--run")
    assert res.ret == 1
    # A missed expectation is not a crash: its own state, in the summary, show and junit.
    res.assert_outcomes(passed=1, expect_failed=2)
    states = {r["sweep"]: r["state"] for r in sweepproject.records()}
    assert states == {"ok": "success", "low": "expect-failed", "missing": "expect-failed"}
    res.fnmatch_lines(
        [
            "E   expectation acc >= 0.8 not met: 0.7",
            "E   expectation f1 [0, 1] not met: metric 'f1' is missing",
        ]
    )


def test_selection_k_node_ids_deselect_and_directories(sweepproject: SweepProject) -> None:
    setup(
        sweepproject,
        """
        cmd: echo
        sweeps:
          g:
            matrix: {train.lr: [0.1, 0.2], train.opt: ["x y", "and"]}
    """,
    )
    sweepproject.write("sub/more.sweeps.yaml", "params: ../params.yaml\ncmd: echo\n")
    sweepproject.commit("more")
    assert ids(sweepproject, "-k", "lr=0.2 and 'opt=x y'") == ["g[train.lr=0.2,train.opt=x y]"]
    assert ids(sweepproject, "-k", '"opt=and" and not lr=0.1') == ["g[train.lr=0.2,train.opt=and]"]
    assert ids(sweepproject, "sweeps.yaml::g[train.lr=0.1,train.opt=and]") == [
        "g[train.lr=0.1,train.opt=and]"
    ]
    assert ids(
        sweepproject,
        "sweeps.yaml",
        "--deselect",
        "sweeps.yaml::g[train.lr=0.1,train.opt=and]",
        "--deselect",
        "g[train.lr=0.2,train.opt=x y]",
    ) == ["g[train.lr=0.1,train.opt=x y]", "g[train.lr=0.2,train.opt=and]"]
    # a directory collects sweeps.yaml and *.sweeps.yaml below it, in path order
    res = sweepproject.run("--collect-only", ".")
    res.fnmatch_lines(
        [
            "collected 5 experiments",
            "*<Experiment sub/more.sweeps.yaml::run>*",
            "*<Experiment sweeps.yaml::g[train.lr=0.1,train.opt=x y]>*",
        ]
    )


def test_editable_sweep_queues_only_new_points(sweepproject: SweepProject) -> None:
    setup(sweepproject, "cmd: echo\nsweeps:\n  g:\n    matrix: {train.lr: [1, 2]}\n")
    assert sweepproject.run().ret == 0
    sweepproject.write(
        "sweeps.yaml", "cmd: echo\nsweeps:\n  g:\n    matrix: {train.lr: [1, 2, 3]}\n"
    )
    # the spec is part of the workspace: commit the edit so the baseline is comparable
    res = sweepproject.run()
    res.fnmatch_lines(["queued 3 experiments"])  # uncommitted spec edit: a new workspace
    sweepproject.commit("edit")
    assert sweepproject.run().ret == 0
    sweepproject.write(
        "sweeps.yaml", "cmd: echo\nsweeps:\n  g:\n    matrix: {train.lr: [1, 2, 3, 4]}\n"
    )
    sweepproject.git("update-index", "--assume-unchanged", "sweeps.yaml")
    res = sweepproject.run()
    assert res.ret == 0
    res.fnmatch_lines(["queued 1 experiment", "skipped 3 already queued*"])
    res = sweepproject.run("--force")
    res.fnmatch_lines(["queued 0 experiments"])
