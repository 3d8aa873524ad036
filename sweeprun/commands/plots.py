"""``sweeprun plots`` and ``sweeprun report``: charts of a sweep, and one page to share.

``plots [NAMES…] [-o DIR] [--open]`` writes each chart as SVG and PNG plus an offline
``index.html``: every numeric metric against every swept param, the step curves of the
spec's ``plots:`` files (DVC's ``x``/``y``/``template``) per experiment, and metrics over
checkpoints. ``report -o FILE.html`` puts the experiments table (sortable, filterable),
parallel coordinates, those charts, the failures with their log tails, the baseline and
the sweep definitions in one self-contained file. Needs ``vl-convert-python`` (the
``plots`` extra).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import re
import time
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun._core.argtypes import nonnegative_int
from sweeprun._core.exitcode import ExitCode
from sweeprun.commands import listing
from sweeprun.commands.listing import checkpoint_records
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.report import charts, page
from sweeprun.report.draw import Drawer
from sweeprun.report.table import MISSING, column, fmt, subset, value
from sweeprun.run.metrics import log_tail
from sweeprun.spec.dvcproject import find_pipelines
from sweeprun.spec.loader import default_spec
from sweeprun.store import resultsindex, written
from sweeprun.store.git import run_git

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def _vl() -> Any:
    try:
        import vl_convert  # deferred: an optional extra, ~15 MB of native code
    except ImportError:
        raise UsageError(
            "plots and report need vl-convert-python: pip install 'sweeprun[plots]'"
        ) from None
    return vl_convert


def javascript_bundle(config: Config) -> str:
    """Vega, Vega-Lite and Vega-Embed as one script (built once per vl-convert version)."""
    vlc = _vl()
    cache = config.repo.common_dir / "sweeprun" / f"vega-bundle-{vlc.__version__}.js"
    try:
        return cache.read_text()
    except OSError:
        pass
    text = str(vlc.javascript_bundle())
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(cache)
    return text


def _records(config: Config) -> list[dict[str, Any]]:
    found = listing.rows(config.repo, all_baselines=bool(config.getoption("all_baselines")))
    records = listing.frame(*found)  # the index's columns: no record of 100,000 decoded
    names = config.getoption("names") or []
    if names:
        known = {r["name"] for r in records}
        missing = [n for n in names if n not in known]
        if missing:
            raise UsageError(f"{missing[0]!r}: no such experiment (see 'sweeprun show')")
        records = subset(records, (i for i, r in enumerate(records) if r["name"] in names))
    if not records:
        raise UsageError("no experiments to plot (queue and run some: sweeprun sweeps.yaml --run)")
    return records


def _plot_files(config: Config) -> list[tuple[str, dict[str, Any]]]:
    """``(path, properties)`` of the spec's ``plots:`` (files or directories)."""
    path = default_spec(config.repo.root)
    if path is None:
        return []
    spec = config.hook.sweeprun_load_spec(path=path, config=config)
    props: dict[str, dict[str, Any]] = {}
    for definition in spec.plots:
        if isinstance(definition, dict):
            for k, v in definition.items():
                props[str(k)] = v if isinstance(v, dict) else {}
        elif isinstance(definition, str):
            props.setdefault(definition, {})
    for stage in spec.stages:
        for p in stage.plots:
            props.setdefault(p, {})
    return list(props.items())


def _rows(text: str, path: str) -> list[dict[str, Any]]:
    """A plots file's rows: CSV/TSV with typed numbers, or JSON (a list, or {name: list})."""
    if path.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [])
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.endswith(".tsv") else ",")
    out = []
    for row in reader:
        typed: dict[str, Any] = {}
        for k, v in row.items():
            try:
                typed[k] = float(v) if v not in (None, "") else None
            except ValueError:
                typed[k] = v
        out.append(typed)
    return out


#: Experiments whose step curves are drawn (the first ones shown, or those named).
MAX_CURVES = 20


def curve_charts(config: Config, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step curves of the ``plots:`` files, each experiment a series; checkpoints' metrics
    (of the first :data:`MAX_CURVES` experiments)."""
    out = []
    root = config.repo.root
    # Curves are per experiment: beyond a few dozen series a chart says nothing, and each
    # experiment's files are read from git. Name experiments to plot others.
    records = subset(records, range(min(MAX_CURVES, len(records))))
    for path, props in _plot_files(config):
        files: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            commit = r.get("commit")
            if not commit:
                continue
            listing = run_git(
                ["ls-tree", "-r", "--name-only", commit, "--", path], root, check=False
            )
            for name in listing.split():
                if not name.endswith((".csv", ".tsv", ".json")):
                    continue
                try:
                    rows = _rows(run_git(["show", f"{commit}:{name}"], root), name)
                except Exception:  # a file git cannot show, or that does not parse: no curve
                    continue
                files.setdefault(name, []).extend({**row, "experiment": r["name"]} for row in rows)
        for name, rows in files.items():
            chart = charts.curve(name, rows, props)
            if chart is not None:
                out.append(chart)
    steps = [r for r in checkpoint_records(config.repo, records) if r["state"] == "checkpoint"]
    for metric in charts.numeric_metrics(steps):
        rows = [
            {"experiment": r["name"].rsplit("@", 1)[0], "step": r["checkpoints"],
             metric: value(r, "metrics", metric)}
            for r in steps
        ]  # fmt: skip
        chart = charts.curve(f"{metric} over checkpoints", rows, {"x": "step", "y": metric})
        if chart is not None:
            out.append(chart)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "chart"


def _plots(config: Config) -> int:
    with resultsindex.no_gc(freeze=True):  # records are trees: nothing for it to find
        return _draw(config)


def _draw(config: Config) -> int:
    _vl()  # a one-line error now if vl-convert is not installed
    # Started first: the helper starts vl-convert's engine on the other core meanwhile.
    with Drawer() as drawer:
        records = _records(config)
        out = _target(config, "plots")
        out.mkdir(parents=True, exist_ok=True)
        written.note(config.repo, [out])
        all_charts = []
        made = itertools.chain(charts.each_sweep_chart(records), curve_charts(config, records))
        for i, spec in enumerate(made, 1):
            title = spec.get("title", "chart")
            stem = f"{i:02d}-{_slug(title['text'] if isinstance(title, dict) else title)}"
            drawer.send(spec, out / f"{stem}.svg", out / f"{stem}.png")  # drawn meanwhile
            all_charts.append(spec)
        drawer.finish()
    specs: dict[str, Any] = {}
    body = page.charts_html("chart-", all_charts, specs)
    index = out / "index.html"
    index.write_text(page.page("sweeprun plots", [("", body)], specs, javascript_bundle(config)))
    config.stdout.write(f"wrote {len(all_charts)} charts (SVG, PNG) and {index}\n")
    if config.getoption("open"):
        webbrowser.open(index.as_uri())
    return ExitCode.OK


def _report(config: Config) -> int:
    with resultsindex.no_gc(freeze=True):
        return _write_report(config)


def _write_report(config: Config) -> int:
    records = _records(config)
    params = charts.swept(records)
    metrics = charts.numeric_metrics(records)
    header = ["Experiment", "State", "Sweep", *params, *metrics]
    limit = int(config.getoption("max_rows"))
    listed = subset(records, range(min(limit, len(records)))) if limit > 0 else records
    columns = [
        [(r["name"], r["name"]) for r in listed],
        [(str(r["state"]), str(r["state"])) for r in listed],
        [(str(r.get("sweep") or "-"), str(r.get("sweep") or "")) for r in listed],
        *([(fmt(v), None if v is MISSING else v) for v in column(listed, "params", c)]
          for c in params),
        *([(fmt(v), None if v is MISSING else v) for v in column(listed, "metrics", c)]
          for c in metrics),
    ]  # fmt: skip
    rows = [list(row) for row in zip(*columns, strict=True)]
    failed = {i for i, r in enumerate(listed) if str(r["state"]) in _FAILED}
    specs: dict[str, Any] = {}
    sections = [("", _summary(config, records))]
    heading = f"Experiments ({len(records)})"
    if len(listed) < len(records):
        heading = f"Experiments (the first {len(listed)} of {len(records)}: --max-rows)"
    sections.append((heading, page.results_table(header, rows, failed)))
    pc = charts.parallel_coordinates(records, params, metrics)
    if pc is not None:
        sections.append(("Params → metrics", page.charts_html("pc-", [pc], specs)))
    plotted = [*charts.sweep_charts(records), *curve_charts(config, records)]
    if plotted:
        sections.append(("Plots", page.charts_html("chart-", plotted, specs)))
    failures = [r for r in records if str(r["state"]) in _FAILED]
    if failures:
        sections.append(("Failures", _failures(config, failures)))
    sections.append(("Sweep definitions", _definitions(config)))
    target = _target(config, "report.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page.page("sweeprun report", sections, specs, javascript_bundle(config)))
    written.note(config.repo, [target])
    config.stdout.write(f"wrote {target} ({len(records)} experiments)\n")
    if config.getoption("open"):
        webbrowser.open(target.as_uri())
    return ExitCode.OK


_FAILED = ("failed", "timeout", "expect-failed", "error")


def _target(config: Config, default: str) -> Path:
    """Where to write: ``-o``, or by default inside ``.git/sweeprun/`` — never where the
    next queue would snapshot it into every experiment."""
    given = config.getoption("output")
    if given is None:
        return config.repo.state_dir / default
    return (config.invocation_dir / str(given)).resolve()


def _summary(config: Config, records: list[dict[str, Any]]) -> str:
    import html  # deferred: only the report needs it

    head = run_git(["log", "-1", "--format=%h %s (%an, %ad)", "--date=short"], config.repo.root,
                   check=False).strip()  # fmt: skip
    states: dict[str, int] = {}
    for r in records:
        states[str(r["state"])] = states.get(str(r["state"]), 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (
        f"<p>Baseline <code>{html.escape(head)}</code> · {html.escape(counts)} · "
        f"generated {when} by sweeprun</p>"
    )


def _failures(config: Config, records: list[dict[str, Any]]) -> str:
    import html  # deferred: only the report needs it

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


#: Failures whose log tails the report shows.
MAX_FAILURES = 50


def _definitions(config: Config) -> str:
    import html  # deferred: only the report needs it

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


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="experiments (default: all)")
    parser.add_argument("-o", "--output", help="directory to write (default: .git/sweeprun/plots)")
    parser.add_argument("-A", "--all-baselines", action="store_true", help="every baseline")
    parser.add_argument("--open", action="store_true", help="open index.html in a browser")


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
        help="rows of the experiments table, in show's order (default 5000; 0: all)",
    )
    parser.add_argument("-A", "--all-baselines", action="store_true", help="every baseline")
    parser.add_argument("--open", action="store_true", help="open it in a browser")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun plots`` and ``sweeprun report``."""
    commands.add(
        "plots",
        "charts of the experiments: SVG, PNG and an offline page",
        _plot_arguments,
        _plots,
        examples=(
            "sweeprun plots                    # into .git/sweeprun/plots",
            "sweeprun plots -o charts --open",
        ),
    )
    commands.add(
        "report",
        "one self-contained HTML page of the experiments",
        _report_arguments,
        _report,
        examples=(
            "sweeprun report --open            # .git/sweeprun/report.html",
            "sweeprun report -o reports/sweep.html --max-rows 500",
        ),
    )
