"""Lists and mappings are ordinary sweep values: in every block kind, ids, names, records,
``show`` (table, csv, json) and ``diff`` (issue 22, item 5)."""

from __future__ import annotations

import csv
import io
import json

import yaml

from sweeprun.testing import SweepProject

PROGRAM = """
import json, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"width": sum(p["train"]["units"]), "opt": len(p["opt"])}, open("metrics.json", "w"))
"""


def _project(sp: SweepProject) -> None:
    sp.write("params.yaml", "train:\n  units: [8]\n  lr: 0.1\nopt: {name: sgd}\n")
    sp.write("train.py", PROGRAM)
    sp.write(
        "sweeps.yaml",
        """
        params: params.yaml
        cmd: python3 train.py
        deps: [train.py]
        metrics: [metrics.json]
        sweeps:
          m:
            matrix:
              train.units: [[64, 32], [128]]
            name: "u{train.units}"
          v:
            values: [{train.units: [1, 2, 3]}]
          z:
            zip: {train.units: [[4], [5, 5]], train.lr: [0.1, 0.2]}
          r:
            random:
              n: 2
              seed: 0
              space: {train.units: [[7], [7, 7]]}
          mp:
            matrix:
              opt: [{name: adam, beta: 0.9}]
        """,
    )
    sp.write(".gitignore", "__pycache__/\nmetrics.json\n")
    sp.commit()


def test_lists_and_mappings_are_swept_recorded_and_shown(sweepproject: SweepProject) -> None:
    sp = sweepproject
    _project(sp)
    res = sp.run("--collect-only")
    assert res.ret == 0, res.stderr
    assert "m[train.units=[64,32]]" in res.stdout
    assert 'mp[opt={"beta":0.9,"name":"adam"}]' in res.stdout

    res = sp.run("--run", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    recs = {r["id"]: r for r in sp.records()}
    assert len(recs) == 8
    m = recs["m[train.units=[64,32]]"]
    assert m["state"] == "success"
    assert m["params"]["params.yaml"]["train"]["units"] == [64, 32]
    assert m["metrics"]["metrics.json"] == {"width": 96, "opt": 1}
    assert m["name"] == "u64,32"  # a list's items; '[' is not allowed in a ref
    assert recs["v[train.units=[1,2,3]]"]["metrics"]["metrics.json"]["width"] == 6
    assert recs["z[train.units=[5,5],train.lr=0.2]"]["metrics"]["metrics.json"]["width"] == 10
    mp = recs['mp[opt={"beta":0.9,"name":"adam"}]']
    assert mp["params"]["params.yaml"]["opt"] == {"name": "adam", "beta": 0.9}
    assert mp["metrics"]["metrics.json"]["opt"] == 2
    # The queued params file holds the value as YAML, with the rest of the file as it was.
    text = sp.git("show", f"{m['commit']}:params.yaml")
    assert yaml.safe_load(text)["train"] == {"units": [64, 32], "lr": 0.1}
    assert "opt: {name: sgd}" in text

    # show spreads a list over columns, as it does for metrics lists: units[0], units[1].
    table = sp.run("show", "--sweep", "m")
    assert table.ret == 0, table.stderr
    head, *lines = table.stdout.splitlines()
    assert "train.units[0]" in head and "train.units[1]" in head
    row = next(line.split() for line in lines if line.startswith("u64,32 "))
    assert {"64", "32"} <= set(row)
    rows = list(csv.DictReader(io.StringIO(sp.run("show", "--csv", "--sweep", "m").stdout)))
    got = sorted((r["train.units[0]"], r["train.units[1]"]) for r in rows)
    assert got == [("128", ""), ("64", "32")]
    diff = sp.run("diff", m["name"], "--json")
    assert diff.ret == 0, diff.stderr
    changed = {r["key"]: r for r in json.loads(diff.stdout)}
    assert any(k.endswith("train.units") for k in changed), changed
