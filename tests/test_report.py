"""`sweeprun plots` and `sweeprun report`, and the report opened in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sweeprun.testing import SweepProject

pytest.importorskip("vl_convert", reason="plots and report need vl-convert-python (test extra)")

TRAIN = """
import json, yaml
p = yaml.safe_load(open("params.yaml"))
lr, depth = p["lr"], p["depth"]
with open("loss.csv", "w") as f:
    f.write("step,loss\\n")
    for step in range(5):
        f.write(f"{step},{round(1 / (1 + lr * step * depth), 4)}\\n")
json.dump({"acc": round(0.5 + lr * depth / 4, 4), "loss": round(1 / (1 + lr * 4 * depth), 4)},
          open("metrics.json", "w"))
print("lr", lr, "depth", depth)
if lr > 0.25:
    raise SystemExit("diverged: lr too large")
"""
SPEC = """
params: params.yaml
cmd: python3 train.py
deps: [train.py]
metrics: [metrics.json]
plots:
  - loss.csv: {x: step, y: loss, template: linear}
sweeps:
  grid:
    matrix:
      lr: [0.1, 0.2, 0.3]
      depth: [1, 2]
"""


@pytest.fixture
def swept(sweepproject: SweepProject) -> SweepProject:
    sweepproject.write("params.yaml", "lr: 0.1\ndepth: 1\n")
    sweepproject.write("train.py", TRAIN)
    sweepproject.write("sweeps.yaml", SPEC)
    sweepproject.write(".gitignore", "__pycache__/\n*.html\nplots/\n")
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 1, res.stdout + res.stderr  # lr 0.3 diverges, on purpose
    return sweepproject


def test_plots_writes_svg_png_and_an_offline_page(swept: SweepProject) -> None:
    res = swept.run("plots", "-o", "plots")
    assert res.ret == 0, res.stderr
    out = swept.path / "plots"
    svgs = sorted(p.name for p in out.glob("*.svg"))
    # acc and loss against lr and depth, the loss.csv curves, one of each as PNG too
    assert "02-acc-by-lr.svg" in svgs and any("loss.csv" in n for n in svgs), svgs
    assert len(list(out.glob("*.png"))) == len(svgs) >= 5
    assert (out / "02-acc-by-lr.svg").read_text().lstrip().startswith("<svg")
    index = (out / "index.html").read_text()
    assert "vegaEmbed" in index and "<script src" not in index and "https://cdn" not in index
    res = swept.run("plots", "nope")
    assert res.ret == 4 and "'nope': no such experiment" in res.stderr


def _state(text: str) -> dict[str, Any]:
    """The experiments a report page holds (its inlined state)."""
    start = text.index('<script type="application/json" id="state">') + len(
        '<script type="application/json" id="state">'
    )
    data: dict[str, Any] = json.loads(text[start : text.index("</script>", start)])
    return data


def test_report_is_one_file_with_failures_and_definitions(swept: SweepProject) -> None:
    res = swept.run("report", "-o", "sweep.html")
    assert res.ret == 0, res.stderr
    text = (swept.path / "sweep.html").read_text()
    assert len(text) < 5_000_000
    assert "<script src" not in text and "https://cdn" not in text
    state = _state(text)
    assert state["n"] == 6 and sorted(state["fields"]["state"]).count("failed") == 2
    drawn = {r["experiment"] for spec in state["curves"] for r in spec["data"]["values"]}
    assert drawn == set(state["fields"]["name"])  # each one's loss.csv, to select from
    assert "diverged: lr too large" in text  # a failure's log tail
    assert "matrix:" in text and "lr: [0.1, 0.2, 0.3]" in text  # the sweep definitions
    assert "Parallel coordinates" in text and "read-only" in text
    assert state["importance"] == {}  # only with --importance (see below)


def test_report_in_headless_chromium(swept: SweepProject, tmp_path: Path) -> None:
    """The static page draws the ui's views from its inlined state, with nothing from the
    network: table (sorting, filtering), parallel coordinates, the mean ± std band, the
    curves of selected experiments."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (Debian: apt-get install chromium; .ci/run does it as root)")
    res = swept.run("report", "-o", "sweep.html")
    assert res.ret == 0, res.stderr
    url = (swept.path / "sweep.html").as_uri()
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.wait_for_function("document.getElementById('count').textContent.startsWith('6 of 6')")
        assert page.locator("#tbody tr").count() == 6
        # parallel coordinates: an axis per varying param and metric, with ticks
        assert page.locator("#pc g.axis").count() == 4
        assert page.locator('#pc g.axis[data-column="params.yaml:lr"] text').count() > 2
        page.select_option("#metric", "metrics.json:acc")
        page.select_option("#param", "params.yaml:lr")
        page.wait_for_selector("#bands .mark-area path")
        header = page.locator("#thead th", has_text="metrics.json:acc").first
        column = page.locator("#thead th").all_inner_texts().index("metrics.json:acc") + 1
        cells = f"#tbody tr td:nth-child({column})"
        header.click()
        values = [float(v.split()[0]) for v in page.locator(cells).all_inner_texts()]
        assert values == sorted(values), values
        header.click()
        values = [float(v.split()[0]) for v in page.locator(cells).all_inner_texts()]
        assert values == sorted(values, reverse=True), values
        page.fill("#filter", "failed")
        page.wait_for_function("document.getElementById('count').textContent.startsWith('2 of')")
        page.fill("#filter", "")
        for box in page.locator("#tbody input[type=checkbox]").all()[:2]:
            box.check()
        page.wait_for_selector("#curves svg")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert not errors, errors
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert shot.stat().st_size > 10_000


def test_sweep_charts_of_many_experiments_draw_means_or_a_sample() -> None:
    """Beyond MAX_POINTS experiments a chart draws each point's mean (said in a subtitle),
    or a seeded sample when even the points are too many."""
    from sweeprun.report import charts

    n = charts.MAX_POINTS * 4
    records = [
        {"name": f"e{i}", "params": {"p.yaml": {"lr": i % 10 / 10, "seed": i}},
         "metrics": {"m.json": {"acc": (i % 10) + (i % 3) / 3}}}
        for i in range(n)
    ]  # fmt: skip
    by_lr = charts.metric_vs_param(records, "acc", "lr", None)
    assert by_lr["title"]["text"] == "acc by lr" and "mean" in by_lr["title"]["subtitle"]
    points = {row["x"]: row["y"] for row in by_lr["data"]["values"]}
    assert len(points) == 10
    for x, y in points.items():  # the mean of the experiments at that lr, exactly
        ys = [r["metrics"]["m.json"]["acc"] for r in records if r["params"]["p.yaml"]["lr"] == x]
        assert y == pytest.approx(sum(ys) / len(ys))
    by_seed = charts.metric_vs_param(records, "acc", "seed", None)  # n distinct points
    assert "sampled" in by_seed["title"]["subtitle"]
    drawn = by_seed["data"]["values"]
    assert len(drawn) == charts.MAX_SAMPLE and by_seed["mark"]["type"] == "point"
    assert [d["x"] for d in drawn] == sorted(d["x"] for d in drawn)  # in the records' order
    # a sample, not every 4th: a period of 4 in the sweep is not aliased away
    assert {d["x"] % 4 for d in drawn} == {0, 1, 2, 3}
    assert charts.metric_vs_param(records, "acc", "seed", None) == by_seed  # the same one
    small = charts.metric_vs_param(records[:100], "acc", "lr", None)
    assert small["title"] == "acc by lr" and len(small["data"]["values"]) == 100


def test_report_lists_at_most_max_rows_and_says_so(swept: SweepProject) -> None:
    res = swept.run("report", "-o", "small.html", "--max-rows", "2")
    assert res.ret == 0, res.stderr
    page = (swept.path / "small.html").read_text()
    assert "the first 2 of 6 experiments: --max-rows" in page
    assert _state(page)["n"] == 2
    assert "diverged: lr too large" in page  # failures are listed whatever the table shows


def test_dvc_smooth_and_normalized_confusion_templates_render() -> None:
    """DVC's `smooth` draws a LOESS curve over the raw line; `confusion_normalized` colours
    each cell by its share of its y class (per experiment), both drawn by vl-convert."""
    import vl_convert

    from sweeprun.report import charts

    rows = [{"experiment": e, "step": i, "loss": 1 / (1 + i) + (i % 3) / 10}
            for e in ("a", "b") for i in range(30)]  # fmt: skip
    smooth = charts.curve("loss.csv", rows, {"x": "step", "y": "loss", "template": "smooth"})
    assert smooth is not None and len(smooth["layer"]) == 2
    assert smooth["layer"][1]["transform"][0]["loess"] == "loss"
    assert (
        smooth["params"][0]["name"] == "smooth" and smooth["params"][0]["bind"]["input"] == "range"
    )
    assert "<svg" in vl_convert.vegalite_to_svg(smooth)
    pairs = [(0, 0)] * 8 + [(0, 1)] * 2 + [(1, 1)] * 5 + [(1, 0)] * 5
    rows = [{"experiment": "a", "actual": a, "predicted": p} for a, p in pairs]
    props = {"x": "actual", "y": "predicted", "template": "confusion_normalized"}
    normalized = charts.curve("confusion.csv", rows, props)
    assert normalized is not None
    assert normalized["encoding"]["color"]["field"] == "percent_of_y"
    assert [t.get("as") for t in normalized["transform"]][-1] == "percent_of_y"
    svg = vl_convert.vegalite_to_svg(normalized)
    assert "share of y" in svg
    counted = charts.curve("confusion.csv", rows, {**props, "template": "confusion"})
    assert counted is not None and "transform" not in counted


def test_charts_are_drawn_by_a_helper_process_that_reports_a_bad_chart(tmp_path: Path) -> None:
    """The helper (started before results are read) draws each chart it is sent; a chart
    vl-convert rejects is an error naming it, and leaving early stops the helper."""
    from sweeprun.report.draw import Drawer

    good = {"mark": "point", "data": {"values": [{"a": 1}]},
            "encoding": {"x": {"field": "a", "type": "quantitative"}}}  # fmt: skip
    with Drawer() as drawer:
        drawer.send(good, tmp_path / "a.svg", tmp_path / "a.png")
        drawer.finish()
    assert (tmp_path / "a.svg").read_text().startswith("<svg")
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    with Drawer() as drawer:
        drawer.send(good, tmp_path / "b.svg", tmp_path / "b.png")
        drawer.send({"mark": {"type": "no-such-mark"}}, tmp_path / "c.svg", tmp_path / "c.png")
        with pytest.raises(RuntimeError, match=r"could not draw c\.svg"):
            drawer.finish()
    assert (tmp_path / "b.png").exists() and not (tmp_path / "c.svg").exists()
    with pytest.raises(KeyError), Drawer() as drawer:
        raise KeyError("an error before drawing")
    assert drawer._proc.poll() is not None  # not left running


def test_report_importance_only_when_asked(swept: SweepProject) -> None:
    """fANOVA loads Optuna and scikit-learn (seconds): the report computes it with
    ``--importance`` only, and the page says how to get it otherwise."""
    pytest.importorskip("optuna")
    assert swept.run("report", "-o", "imp.html", "--importance").ret == 0
    got = _state((swept.path / "imp.html").read_text())["importance"]
    assert "fANOVA" in got["metrics.json:acc"]["method"], got
    assert set(got["metrics.json:acc"]["importances"]) == {"params.yaml:lr", "params.yaml:depth"}


def test_inlined_json_cannot_end_or_escape_its_script_element() -> None:
    from sweeprun.report.uipage import script_json

    nasty = {"a": "</script><script>alert(1)</script>", "b": "<!--<script>", "c": float("nan")}
    text = script_json(nasty)
    assert "<" not in text
    assert json.loads(text) == {**nasty, "c": None}
