"""``sweeprun report``: one self-contained page of the experiments — the page of
``sweeprun ui`` with its state inlined (no server, nothing from the network), plus a
summary, the failures' log tails and the sweep definitions.

The experiments are the first ``--max-rows`` in ``show``'s order; the step curves are
those of the first experiments (select them in the table); the parameter importance of the
first few metrics is computed with ``--importance`` (a few seconds: Optuna and
scikit-learn load).
"""

from __future__ import annotations

import argparse
import html
import time
import webbrowser
from typing import TYPE_CHECKING, Any

from sweeprun._core.argtypes import nonnegative_int
from sweeprun._core.exitcode import ExitCode
from sweeprun.commands import uistate
from sweeprun.commands.plots import curve_charts, javascript_bundle, records_of, target
from sweeprun.hookspec import hookimpl
from sweeprun.report.table import subset
from sweeprun.report.uipage import ui_page
from sweeprun.run.metrics import log_tail
from sweeprun.spec.dvcproject import find_pipelines
from sweeprun.spec.loader import default_spec
from sweeprun.store import resultsindex, written
from sweeprun.store.git import run_git

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry

#: Failures whose log tails the report shows.
MAX_FAILURES = 50
#: Metrics whose parameter importance the report computes (each takes a fANOVA fit).
MAX_IMPORTANCE = 4
FAILED = ("failed", "timeout", "expect-failed", "error")


def _report(config: Config) -> int:
    with resultsindex.no_gc(freeze=True):
        return _write_report(config)


def _write_report(config: Config) -> int:
    records = records_of(config)
    limit = int(config.getoption("max_rows"))
    listed = subset(records, range(min(limit, len(records)))) if limit > 0 else records
    state = uistate.state_of(config, listed)
    state["curves"] = curve_charts(config, listed)  # (of its first MAX_CURVES)
    state["importance"] = _importance(config, state) if config.getoption("importance") else {}
    shown = f"{len(listed)} experiments"
    if len(listed) < len(records):
        shown = f"the first {len(listed)} of {len(records)} experiments: --max-rows"
    failures = [r for r in records if str(r["state"]) in FAILED]
    sections = [("Summary", _summary(config, records, shown))]
    after = [("Failures", _failures(config, failures))] if failures else []
    after.append(("Sweep definitions", _definitions(config)))
    out = target(config, "report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    page = ui_page("sweeprun report", javascript_bundle(config), state, sections, after)
    out.write_text(page)
    written.note(config.repo, [out])
    config.stdout.write(f"wrote {out} ({len(records)} experiments)\n")
    if config.getoption("open"):
        webbrowser.open(out.as_uri())
    return ExitCode.OK


def _importance(config: Config, state: dict[str, Any]) -> dict[str, Any]:
    """fANOVA importance of the first metrics, over the current baseline's results."""
    metrics = [c for c in state["columns"] if c["section"] == "metrics"][:MAX_IMPORTANCE]
    recs = uistate.frame(config.repo) if metrics else []  # read once for every metric
    out = {}
    for c in metrics:
        name = f"{c['file']}:{c['key']}" if c["file"] else c["key"]
        out[name] = uistate.importance(config, name, state["head"] or "*", recs)
        if "needs Optuna" in str(out[name].get("error", "")):
            break  # said once is enough
    return out


def _summary(config: Config, records: list[dict[str, Any]], shown: str) -> str:
    head = run_git(["log", "-1", "--format=%h %s (%an, %ad)", "--date=short"], config.repo.root,
                   check=False).strip()  # fmt: skip
    states: dict[str, int] = {}
    for r in records:
        states[str(r["state"])] = states.get(str(r["state"]), 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (
        f"<p>Baseline <code>{html.escape(head)}</code> · {html.escape(counts)} · "
        f"{html.escape(shown)} · generated {when} by sweeprun (a static page: nothing "
        "updates; <code>sweeprun ui</code> follows the runs)</p>"
    )


def _failures(config: Config, records: list[dict[str, Any]]) -> str:
    logs = config.repo.common_dir / "sweeprun" / "logs"
    parts = []
    for r in records[:MAX_FAILURES]:
        tail = log_tail(logs / f"{r['key']}.log") or "(no log)"
        why = r.get("message") or r["state"]
        parts.append(
            f"<details open><summary><b>{html.escape(r['name'])}</b> {html.escape(str(why))}"
            f"</summary><pre>{html.escape(tail)}</pre></details>"
        )
    if len(records) > MAX_FAILURES:
        more = len(records) - MAX_FAILURES
        parts.append(f"<p>… and {more} more failures (sweeprun show lists them all)</p>")
    return "".join(parts)


def _definitions(config: Config) -> str:
    path = default_spec(config.repo.root)
    if path is None:
        return "<p>(no spec in the repository's root)</p>"
    root = config.repo.root
    files = find_pipelines(root, path) if path.is_dir() else [path]  # a DVC project: each
    return "".join(
        f"<p><code>{html.escape(f.relative_to(root).as_posix())}</code></p>"
        f"<pre>{html.escape(f.read_text())}</pre>"
        for f in files
    )


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="experiments (default: all)")
    parser.add_argument(
        "-o", "--output", help="the page to write (default: .git/sweeprun/report.html)"
    )
    parser.add_argument(
        "--max-rows",
        type=nonnegative_int,
        default=5000,
        metavar="N",
        help="experiments in the page, in show's order (default 5000; 0: all)",
    )
    parser.add_argument("-A", "--all-baselines", action="store_true", help="every baseline")
    parser.add_argument(
        "--importance",
        action="store_true",
        help="compute the parameter importance of the first metrics (fANOVA; needs Optuna; "
        "a few seconds)",
    )
    parser.add_argument("--open", action="store_true", help="open it in a browser")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun report``."""
    commands.add(
        "report",
        "one self-contained HTML page of the experiments (sweeprun ui's views, offline)",
        _report_arguments,
        _report,
        examples=(
            "sweeprun report --open            # .git/sweeprun/report.html",
            "sweeprun report -o reports/sweep.html --max-rows 500",
        ),
    )
