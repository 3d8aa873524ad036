"""`show` as a table that fits: widths, nulls, lists, CSV/Markdown, filters and summaries."""

from __future__ import annotations

import csv
import io
import re

import pytest

from sweeprun.testing import SweepProject

PARAMS = """
train:
  lr: 0.1
  optimizer: adam
  layers: [64, 32]
  dropout: 0.1
data:
  augment: false
  fraction: 1.0
seed: 0
note: null
"""
TRAIN = """
import json, yaml
p = yaml.safe_load(open("params.yaml"))
t = p["train"]
json.dump({"accuracy": round(0.5 + t["lr"] + p["seed"] / 100, 4),
           "val_loss": round(1 - t["lr"] - t["layers"][0] / 1000, 4),
           "f1|macro": 0.5, "extra": None},
          open("metrics.json", "w"))
"""
SPEC = """
params: params.yaml
cmd: python3 train.py
deps: [train.py]
metrics: [metrics.json]
sweeps:
  wide:
    matrix:
      train.lr: [0.1, 0.2]
      train.optimizer: [adam, sgd]
      train.layers.0: [64, 128]
      train.dropout: [0.1]
      data.fraction: [0.5]
      seed: [0, 1]
    expect: {accuracy: ">= 0.1"}
  other:
    values: [{train.lr: 0.3}]
"""


@pytest.fixture
def wide(sweepproject: SweepProject) -> SweepProject:
    sweepproject.write("params.yaml", PARAMS)
    sweepproject.write("train.py", TRAIN)
    sweepproject.write("sweeps.yaml", SPEC)
    sweepproject.write(".gitignore", "__pycache__/\n")
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    return sweepproject


def test_show_fits_80_columns_with_every_header_readable(
    wide: SweepProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    res = wide.run("show")
    assert res.ret == 0, res.stderr
    lines = res.outlines
    assert all(len(line) <= 80 for line in lines), lines
    header = lines[0].split()
    full = wide.run("show", "--csv").outlines[0].split(",")
    # every visible header is a column's name or its unambiguous abbreviation, never cut
    for h in header:
        assert ("…" not in h and len(h) > 3) or h in ("Sweep", "State"), h
        assert h in full or any(_abbreviates(h, f) for f in full), (h, full)
    assert header[:2] == ["Experiment", "State"]
    assert "accuracy" in header and "val_loss" in header  # metrics are the last to go
    at = next(i for i, line in enumerate(lines) if line.startswith("("))
    note = " ".join(lines[at:])
    assert "left out to fit 80 columns" in note
    left_out = note.split(": ", 1)[1].split(";")[0].split(", ")
    assert set(header) | set(left_out) >= {"Experiment", "State", "accuracy"}
    # rows: full names, never cut
    names = [r["name"] for r in wide.records()]
    assert all(any(line.startswith(n + " ") for line in lines) for n in names)


def _abbreviates(short: str, name: str) -> bool:
    parts, sparts = name.split("."), short.split(".")
    return (
        len(parts) == len(sparts)
        and sparts[-1] == parts[-1]
        and all(p.startswith(s) for p, s in zip(parts[:-1], sparts[:-1], strict=True))
    )


def test_null_is_not_missing_and_lists_are_columns(wide: SweepProject) -> None:
    res = wide.run("show", "--csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows and all(r["Experiment"] != "workspace" for r in rows)  # no workspace row
    first = rows[0]
    assert "train.layers[0]" in first  # a swept element: its own column (layers[1] is constant)
    assert {r["train.layers[0]"] for r in rows} >= {"64", "128"}
    assert first["extra"] == "null"  # a null metric
    assert {r["Sweep"] for r in rows} == {"wide", "other"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["Created"])
    float(first["Duration"])  # seconds, a number
    other = next(r for r in rows if r["Sweep"] == "other")
    assert float(other["accuracy"]) == 0.8  # numbers as numbers, not "-"
    res = wide.run("show", "--md", "--columns", "f1")
    assert "f1\\|macro" in res.outlines[0]


def test_filters_best_and_group_by(wide: SweepProject) -> None:
    assert {r["sweep"] for r in wide.records()} == {"wide", "other"}
    res = wide.run("show", "--sweep", "other", "--csv")
    assert len(res.outlines) == 2
    res = wide.run("show", "-k", "sgd and lr=0.2", "--csv")
    assert len(res.outlines) == 1 + 4  # 2 layer sizes x 2 seeds
    # the direction of accuracy comes from the spec's expect: (">=": the larger the better)
    res = wide.run("show", "--best", "accuracy", "--csv")
    (best,) = list(csv.DictReader(io.StringIO(res.stdout)))
    assert float(best["accuracy"]) == 0.8
    res = wide.run("show", "--best", "val_loss:min", "--csv")
    (best,) = list(csv.DictReader(io.StringIO(res.stdout)))
    assert float(best["val_loss"]) == pytest.approx(0.636)
    res = wide.run("show", "--best", "val_loss")
    assert res.ret == 4 and "say val_loss:min or val_loss:max" in res.stderr
    res = wide.run("show", "--group-by", "seed", "--sweep", "wide")
    assert res.ret == 0, res.stderr
    header, *rows = res.outlines
    assert header.split()[:2] == ["seed", "Runs"]
    assert sorted(r.split()[:2] for r in rows) == [["0", "8"], ["1", "8"]]
    assert all("±" in r for r in rows)
    res = wide.run("show", "--group-by", "nope")
    assert res.ret == 4 and "--group-by nope: no such param" in res.stderr


def test_no_value_reaches_the_terminal_as_control_characters(sweepproject: SweepProject) -> None:
    """A value with escape codes or a line break prints escaped: it cannot clear the
    screen, recolour it or break the table's lines."""
    sweepproject.write("params.yaml", 'note: "plain"\n')
    sweepproject.write(
        "sweeps.yaml",
        'params: params.yaml\ncmd: "true"\n'
        'sweeps:\n  g:\n    values: [{note: "\\e[2J\\e[31mred"}, {note: "two\\nlines"}]\n',
    )
    sweepproject.commit()
    res = sweepproject.run("--run")
    assert res.ret == 0, res.stdout + res.stderr
    res = sweepproject.run("show")
    assert res.ret == 0, res.stderr
    assert "\x1b" not in res.stdout and "two\nlines" not in res.stdout
    assert "\\x1b[2J\\x1b[31mred" in res.stdout and "two\\nlines" in res.stdout
    assert len(res.stdout.splitlines()) == 4  # header, workspace, two experiments
    # machine-readable output keeps the exact text
    assert "two\nlines" in sweepproject.run("show", "--csv").stdout
