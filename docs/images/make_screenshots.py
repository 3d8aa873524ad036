"""Make the pictures in docs/images from the quickstart sweep (not drawn by hand).

Runs the quickstart example in a temporary repository, writes `sweeprun report` and
`sweeprun plots`, and photographs the report in headless Chromium.
Run: ``python docs/images/make_screenshots.py`` (needs the test extras and ``chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def sh(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True)


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs chromium (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", repo)
        sh("git", "init", "-q", cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-qm", "baseline", cwd=repo)
        sweeprun = [sys.executable, "-m", "sweeprun"]
        sh(*sweeprun, "--run", "-j", "2", cwd=repo)
        sh(*sweeprun, "report", "-o", "sweep.html", cwd=repo)
        sh(*sweeprun, "plots", "-o", "plots", cwd=repo)
        shutil.copy(repo / "plots" / "04-rmse-by-model.degree.png", HERE / "plots-rmse.png")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto((repo / "sweep.html").as_uri())
            page.wait_for_selector("#chart-0 svg")
            page.screenshot(path=str(HERE / "report.png"), full_page=True)
            browser.close()
    print(f"wrote {HERE / 'report.png'} and {HERE / 'plots-rmse.png'}")


if __name__ == "__main__":
    main()
