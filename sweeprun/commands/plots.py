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
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun._core.exitcode import ExitCode
from sweeprun.commands import listing
from sweeprun.commands.listing import checkpoint_records
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.report import charts, page
from sweeprun.report.draw import Drawer
from sweeprun.report.table import subset, value
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
            "plots, report and ui need vl-convert-python: pip install 'sweeprun[plots]'"
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


def records_of(config: Config) -> list[dict[str, Any]]:
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
        records = records_of(config)
        out = target(config, "plots")
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


def target(config: Config, default: str) -> Path:
    """Where to write: ``-o``, or by default inside ``.git/sweeprun/`` — never where the
    next queue would snapshot it into every experiment."""
    given = config.getoption("output")
    if given is None:
        return config.repo.state_dir / default
    return (config.invocation_dir / str(given)).resolve()


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="experiments (default: all)")
    parser.add_argument("-o", "--output", help="directory to write (default: .git/sweeprun/plots)")
    parser.add_argument("-A", "--all-baselines", action="store_true", help="every baseline")
    parser.add_argument("--open", action="store_true", help="open index.html in a browser")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun plots`` (``sweeprun report``: see ``commands.report``)."""
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
