"""Make the pictures in docs/images from real sweeps (not drawn by hand).

Each project is run end to end in a temporary directory:

- ``ui-quickstart.png``, ``report.png``, ``plots-rmse.png``: the quickstart sweep in
  ``sweeprun ui``, in ``sweeprun report`` and one chart of ``sweeprun plots``;
- ``ui-seeds-1000.png``: a 1,000-experiment sweep (10 learning rates x 5 widths x 20
  seeds of a small program with a noisy loss), its metric-vs-param chart showing the
  mean ± std band across the seeds, the lr axis brushed, two experiments' curves selected.

Run: ``python docs/images/make_screenshots.py`` (needs the test extra's playwright and
Debian's chromium; about a minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="docs",
    GIT_AUTHOR_EMAIL="docs@example.com",
    GIT_COMMITTER_NAME="docs",
    GIT_COMMITTER_EMAIL="docs@example.com",
    SWEEPRUN_ADDOPTS="",
    CI="true",
)
TRAIN = """
import json, math, random, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
rng = random.Random(p["seed"])
loss = (math.log10(p["lr"]) + 2.2) ** 2 + abs(p["units"] - 96) / 200 + rng.gauss(0, 0.15)
json.dump({"loss": round(loss, 4), "acc": round(1 / (1 + loss), 4)}, open("m.json", "w"))
with open("curve.csv", "w") as f:
    f.write("step,loss\\n" + "".join(f"{s},{loss + 2 / s:.4f}\\n" for s in range(1, 21)))
"""
SPEC = f"""params: params.yaml
cmd: {sys.executable} train.py
deps: [train.py]
metrics: [m.json]
plots: [curve.csv]
sweeps:
  seeds:
    matrix:
      train.lr: [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 1.0]
      train.units: [32, 64, 96, 128, 256]
      train.seed: [{", ".join(str(s) for s in range(20))}]
"""


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout


def shoot(repo: Path, out: Path, setup: Callable[[Any], None] | None = None, url: str = "") -> None:
    """Serve ``repo`` (or open ``url``), let ``setup`` act on the page, screenshot."""
    from playwright.sync_api import sync_playwright

    server = (
        None
        if url
        else subprocess.Popen(
            [sys.executable, "-m", "sweeprun", "ui", "--port", "0"],
            cwd=repo,
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
    )
    if server is not None:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=shutil.which("chromium") or "chromium", args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#pc g.axis")
            if setup is not None:
                setup(page)
            page.wait_for_timeout(1500)  # the charts' last draws
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=30)
    print(f"wrote {out}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", demo)
        sh(demo, "git", "init", "-q")
        sh(demo, "git", "add", "-A")
        sh(demo, "git", "commit", "-qm", "baseline")
        sh(demo, sys.executable, "-m", "sweeprun", "--run", "-j", "2")
        shoot(demo, HERE / "ui-quickstart.png")
        sh(demo, sys.executable, "-m", "sweeprun", "report", "-o", "sweep.html")
        shoot(demo, HERE / "report.png", url=(demo / "sweep.html").as_uri())
        sh(demo, sys.executable, "-m", "sweeprun", "plots", "-o", "plots")
        shutil.copy(demo / "plots" / "04-rmse-by-model.degree.png", HERE / "plots-rmse.png")

        seeds = Path(tmp) / "seeds"
        seeds.mkdir()
        (seeds / "params.yaml").write_text("train:\n  lr: 0.01\n  units: 64\n  seed: 0\n")
        (seeds / "train.py").write_text(TRAIN)
        (seeds / "sweeps.yaml").write_text(SPEC)
        (seeds / ".gitignore").write_text("__pycache__/\n")
        sh(seeds, "git", "init", "-q")
        sh(seeds, "git", "add", "-A")
        sh(seeds, "git", "commit", "-qm", "a sweep with seeds")
        sh(seeds, sys.executable, "-m", "sweeprun", "sweeps.yaml", "--run", "-j", "2", "-q")
        shoot(seeds, HERE / "ui-seeds-1000.png", _band_brush_and_curves)


def _band_brush_and_curves(page: Any) -> None:
    """The loss against lr (mean ± std across seeds), a brush on the units axis, and two
    experiments' curves."""
    page.select_option("#metric", "m.json:loss")
    page.select_option("#param", "params.yaml:train.lr")
    page.wait_for_selector("#bands .mark-area path")
    axis = page.locator('#pc g.axis[data-column="params.yaml:train.units"] rect.hit')
    box = axis.bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.8)
    page.mouse.down()
    page.mouse.move(x, box["y"] + box["height"] * 0.55, steps=4)
    page.mouse.up()
    for check in page.locator("#tbody input[type=checkbox]").all()[:2]:
        check.check()
    page.wait_for_selector("#curves svg")


if __name__ == "__main__":
    main()
