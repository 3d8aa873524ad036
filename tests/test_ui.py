"""Issue 26: ``sweeprun ui`` — a live results page, tested in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sweeprun.testing import SweepProject

#: Waits until the table's count line starts with a text.
COUNT = "document.getElementById('count').textContent.startsWith('{}')"
XSS = "</script><script>window.__pwned=1</script><b>bold</b>"
TRAIN = """
import json, math, yaml
p = yaml.safe_load(open("params.yaml"))
lr, seed = p["train"]["lr"], p["train"]["seed"]
loss = (math.log10(lr) + 2) ** 2 + 0.1 * seed
json.dump({"loss": loss}, open("m.json", "w"))
with open("curve.csv", "w") as f:
    f.write("step,loss\\n" + "".join(f"{s},{loss + 1 / s}\\n" for s in range(1, 6)))
"""
SPEC = f"""
params: params.yaml
stages:
  train:
    cmd: {sys.executable} train.py
    deps: [train.py]
    params: [train, note]
    metrics: [m.json]
    plots: [curve.csv]
sweeps:
  grid:
    matrix:
      train.lr: [0.1, 0.01, 0.001]
      train.seed: [0, 1, 2]
  xss:
    values: [{{note: '{XSS}'}}]
  more:
    values: [{{train.lr: 0.05}}]
"""


@pytest.fixture
def project(sweepproject: SweepProject) -> SweepProject:
    p = sweepproject
    p.write("params.yaml", "train:\n  lr: 0.1\n  seed: 0\nnote: plain\n")
    p.write("train.py", TRAIN)
    p.write("sweeps.yaml", SPEC)
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    res = p.run("sweeps.yaml::grid", "sweeps.yaml::xss", "--run", "-j", "2", "-q")
    assert res.ret == 0, res.stdout + res.stderr
    return p


@pytest.fixture
def served(project: SweepProject) -> Iterator[str]:
    """``sweeprun ui --port 0`` running in the project; its URL."""
    proc = project.popen("ui", "--port", "0")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("sweeprun ui: http://127.0.0.1:"), line + proc.stderr.read()
        yield line.split()[2]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)  # (closes its pipes)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_the_state_is_every_experiment_as_columns(project: SweepProject, served: str) -> None:
    state = _get(served + "api/state")
    assert state["n"] == 10 and sorted(set(state["fields"]["sweep"])) == ["grid", "xss"]
    cols = {(c["section"], c["file"], c["key"]): c["values"] for c in state["columns"]}
    assert sorted(v for v in cols["params", "params.yaml", "train.lr"] if v) == sorted(
        [0.1, 0.01, 0.001] * 3 + [0.1]
    )
    assert XSS in cols["params", "params.yaml", "note"]
    imp = _get(served + "api/importance?metric=m.json:loss&baseline=*")
    assert "fANOVA" in imp["method"], imp
    assert max(imp["importances"], key=imp["importances"].get) == "params.yaml:train.lr"


def test_a_bad_port_is_one_line_and_exit_4(project: SweepProject) -> None:
    res = project.run("ui", "--port", "70000")
    assert res.ret == 4 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--port 70000" in res.stderr


def test_the_page_in_headless_chromium(project: SweepProject, served: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (Debian: apt-get install chromium; .ci/run does it as root)")
    records = {r["name"]: r for r in project.records()}
    lr = {n: r["params"]["params.yaml"]["train"]["lr"] for n, r in records.items()}
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(served) else outside.append(r.url))
        page.goto(served)
        page.wait_for_function(COUNT.format("10 of 10"))
        assert "read-only" in page.inner_text("header")
        # A param value with markup in it stays text: shown as written, never run.
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#results td", has_text="</script><script>").count() == 1
        assert page.locator("#results b").count() == 0

        # Metric vs param: the seeds become a mean ± std band, one panel per sweep.
        page.select_option("#metric", "m.json:loss")
        page.select_option("#param", "params.yaml:train.lr")
        page.wait_for_selector("#bands .mark-area path")
        assert "across every param not on the chart" in page.inner_text("#band-note")

        # Brushing the lr axis (log: 0.001 at the bottom, 0.1 at the top) from the bottom
        # to above its middle keeps lr 0.001 and 0.01: the table follows.
        axis = page.locator('#pc g.axis[data-column="params.yaml:train.lr"] rect.hit')
        box = axis.bounding_box()
        assert box is not None
        x = box["x"] + box["width"] / 2
        page.mouse.move(x, box["y"] + box["height"] - 1)
        page.mouse.down()
        page.mouse.move(x, box["y"] + box["height"] * 0.3, steps=5)
        page.mouse.up()
        page.wait_for_function(COUNT.format("6 of"))
        shown = set(page.eval_on_selector_all("#tbody tr", "rs => rs.map(r => r.dataset.name)"))
        assert shown == {n for n, v in lr.items() if v in (0.01, 0.001)}
        assert page.locator("#pc .brush").count() == 1
        page.click("#clear")
        page.wait_for_function(COUNT.format("10 of"))

        # Two experiments selected: their step curves overlaid, and the diff command.
        two = sorted(n for n, v in lr.items() if v == 0.01)[:2]
        for name in two:
            page.locator(f'#tbody tr[data-name="{name}"] input[type=checkbox]').check()
        page.wait_for_selector("#curves svg")
        page.wait_for_function(
            "names => names.every(n => document.getElementById('curves').textContent.includes(n))",
            arg=two,
        )
        page.click("#diffcmd")
        assert page.input_value("#cmd") in (
            f"sweeprun diff {two[0]} {two[1]}",
            f"sweeprun diff {two[1]} {two[0]}",
        )

        # Live: a result recorded while the page is open appears without a reload.
        page.evaluate("window.__still_here = 1")
        res = project.run_subprocess("sweeps.yaml::more", "--run", "-q")
        assert res.ret == 0, res.stdout + res.stderr
        page.wait_for_function(COUNT.format("11 of 11"), timeout=30_000)
        assert page.evaluate("window.__still_here") == 1
        browser.close()
    assert errors == []
    assert outside == []  # nothing from the network


HOLD = """
import json, os, pathlib, time
from sweeprun.api import make_checkpoint
print("epoch 1/3: warming up", flush=True)
json.dump({"loss": 0.75}, open("m.json", "w"))
open("state.txt", "w").write("1")
make_checkpoint()
print("epoch 2/3: waiting for go", flush=True)
while not pathlib.Path(os.environ["GO"]).exists():
    time.sleep(0.02)
json.dump({"loss": 0.5}, open("m.json", "w"))
"""


def test_a_running_experiment_shows_its_last_log_line_and_checkpoint(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    """Live: what runs now is in the state with its latest log line and checkpoint
    metrics, and the events stream says "changed" when it finishes."""
    p = sweepproject
    go = tmp_path / "go"
    p.write("params.yaml", "x: 1\n")
    p.write("hold.py", HOLD)
    p.write(
        "sweeps.yaml",
        f"params: params.yaml\nstages:\n  train:\n    cmd: {sys.executable} hold.py\n"
        "    outs:\n      - state.txt: {checkpoint: true}\n    metrics: [m.json]\n",
    )
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    runner = p.popen("--run", "-q", env={**os.environ, "GO": str(go)})
    server = p.popen("ui", "--port", "0")
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        deadline = time.monotonic() + 60
        while True:
            state = _get(url + "api/state")
            running = list(state["running"].values())
            if running and running[0].get("step") and "waiting" in running[0]["log"]:
                break
            assert time.monotonic() < deadline, state["running"]
            time.sleep(0.1)
        assert running[0]["log"] == "epoch 2/3: waiting for go"
        assert running[0]["step"] == 1 and running[0]["metrics"] == {"m.json": {"loss": 0.75}}
        assert state["fields"]["state"] == ["running"]
        events = urllib.request.urlopen(url + "api/events", timeout=60)
        go.touch()
        assert runner.wait(timeout=60) == 0
        lines = iter(events)
        assert next(lines) == b"event: changed\n"  # the result's ref moved
        events.close()
        state = _get(url + "api/state")
        assert state["fields"]["state"] == ["success"] and state["running"] == {}
        server.send_signal(signal.SIGINT)  # Ctrl+C ends it, exit 0
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0 and "stopped" in out
    finally:
        for proc in (runner, server):
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


def test_another_host_is_served_with_a_warning(project: SweepProject) -> None:
    proc = project.popen("ui", "--port", "0", "--host", "0.0.0.0")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("sweeprun ui: http://0.0.0.0:"), line
        assert "anyone who can reach this machine can read these results" in proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
