"""``sweeprun show``: experiments as a table (or JSON), read with one ``for-each-ref``."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sweeprun._core.argtypes import positive_int
from sweeprun._core.exitcode import ExitCode
from sweeprun.commands import listing, selecting
from sweeprun.commands.diff import _workspace
from sweeprun.commands.listing import checkpoint_records
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS, FAILED_STATES
from sweeprun.report import table
from sweeprun.report.junit import result_cases, write_cases
from sweeprun.report.safe import for_stream
from sweeprun.report.table import flat_columns
from sweeprun.spec.loader import default_spec
from sweeprun.spec.params import suggest
from sweeprun.store import resultsindex
from sweeprun.store.git import run_git
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def build_table(
    records: list[dict[str, Any]], only_changed: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """(params columns, metrics columns, all value columns) for ``records``."""

    def varies(section: str, col: str) -> bool:
        # The workspace counts: a param one experiment changed is a column. One record
        # alone (--best) shows all of its params.
        return len(records) == 1 or table.varies(table.column(records, section, col))

    params = [c for c in flat_columns(records, "params") if varies("params", c)]
    metrics = flat_columns(records, "metrics")
    if only_changed:
        metrics = [c for c in metrics if varies("metrics", c)]
    clash = set(params) & set(metrics)
    if clash:  # the same key as a param and a metric: qualify the metric with its file
        qualified: list[str] = []
        for c in metrics:
            if c in clash:
                qualified.extend(f"{p}:{c}" for p in table.files(records, "metrics", c))
            else:
                qualified.append(c)
        metrics = qualified
    return params, metrics, params + metrics


def sort_records(
    records: list[dict[str, Any]],
    column: str,
    params: list[str],
    metrics: list[str],
    descending: bool,
) -> list[dict[str, Any]]:
    """Sort by a column; unknown or ambiguous columns are usage errors."""

    path, sep, key = column.rpartition(":")
    if sep and path in table.files(records, "params"):  # params.yaml:train.lr: a param
        return _sorted(records, "params", column if column in params else key, descending)
    if sep and path in table.files(records, "metrics"):  # so does metrics.json:acc a metric
        return _sorted(records, "metrics", column, descending)
    # Every column counts, shown or not: a name that is both a param and a metric is
    # ambiguous even where one of them is constant.
    all_params = flat_columns(records, "params")
    all_metrics = [c for c in metrics if ":" in c] + flat_columns(records, "metrics")
    candidates = [("params", c) for c in all_params if c == column or c.endswith(":" + column)]
    candidates += [
        ("metrics", c)
        for c in dict.fromkeys(all_metrics)
        if c == column or c.endswith(":" + column)
    ]
    candidates = list(dict.fromkeys(candidates))
    if any(c == column for _, c in candidates) and len({s for s, _ in candidates}) == 1:
        candidates = [(s, c) for s, c in candidates if c == column]
    if not candidates:
        raise UsageError(
            f"--sort-by {column}: unknown column"
            f"{suggest(column, params + metrics)} (columns: "
            f"{', '.join(params + metrics) or 'none'})"
        )
    if len(candidates) > 1:
        raise UsageError(
            f"--sort-by {column}: ambiguous, use one of: " + ", ".join(c for _, c in candidates)
        )
    section, col = candidates[0]
    return _sorted(records, section, col, descending)


def _sorted(
    records: list[dict[str, Any]], section: str, col: str, descending: bool
) -> list[dict[str, Any]]:
    values = table.values(records, section, col)
    present = [i for i, v in enumerate(values) if v is not None]
    absent = [i for i, v in enumerate(values) if v is None]
    present.sort(key=lambda i: sort_key(values[i]), reverse=descending)
    return table.subset(records, present + absent)  # missing last, in either direction


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers by value (ints and floats together), then booleans, strings, the rest."""
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (0, float(value)) if value == value else (1, True)  # NaN: after numbers
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True, default=str))


def render(config: Config, records: list[dict[str, Any]]) -> None:
    """Print the table in the requested format: fitted to a terminal, or CSV, or Markdown."""

    params, metrics, _ = build_table(records, bool(config.getoption("only_changed")))
    for opt, keep in (("columns", True), ("drop", False)):
        pattern = config.getoption(opt)
        if pattern:
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                raise UsageError(f"--{opt} {pattern!r}: not a regular expression ({exc})") from None
            params = [c for c in params if bool(rx.search(c)) == keep]
            metrics = [c for c in metrics if bool(rx.search(c)) == keep]
    records = _sort_by_option(config, records, params, metrics)
    precision = int(config.getoption("precision") or 6)
    csv_out = bool(config.getoption("csv"))
    # CSV: exact text into a file or a pipe; no escape code reaches a terminal.
    on_tty = for_stream(config.stdout)

    def cells(v: Any) -> str:
        return table.csv_value(v) if csv_out else table.fmt(v, precision)

    results = [r for r in records if not _ws(r)]
    ckpts = any(r.get("checkpoints") for r in records)
    # Several baselines (-A, -n, --rev): say which one each row belongs to.
    many = len({r["baseline"] for r in records if r["baseline"]}) > 1
    sweeps = {r.get("sweep") for r in results}
    extra = {
        "Sweep": bool(sweeps - {None, "", "run"}),
        "Baseline": many,
        "Ckpts": ckpts,
        "Created": bool(results),
        "Duration": bool(results),
    }
    shown = [name for name, on in extra.items() if on]
    header = ["Experiment", "State", *shown, *params, *metrics]

    ws = [_ws(r) for r in records]

    def fixed(name: str) -> list[str]:
        if name == "Sweep":
            got = [str(r.get("sweep") or "-") for r in records]
        elif name == "Baseline":
            got = [str(r["baseline"])[:7] for r in records]
        elif name == "Ckpts":
            got = [str(r.get("checkpoints") or "-") for r in records]
        elif csv_out:  # machine-readable: an ISO time and seconds
            if name == "Created":
                got = [table.iso_created(r) for r in records]
            else:
                got = [str(r.get("duration") or "") for r in records]
        elif name == "Created":
            got = table.created_column(records)
        else:
            got = [table.duration(r) for r in records]
        return [("-" if w else g) for g, w in zip(got, ws, strict=True)]

    # Built column by column: one pass over the records per column.
    columns = [
        [r["name"] for r in records],
        [r["state"] + (" (replaced)" if r.get("replaced") else "") for r in records],
        *(fixed(n) for n in shown),
        *([cells(v) for v in table.column(records, "params", c)] for c in params),
        *([cells(v) for v in table.column(records, "metrics", c)] for c in metrics),
    ]
    rows = [list(row) for row in zip(*columns, strict=True)]
    if csv_out:  # results only: the workspace row has no state, time or metrics
        writer = csv.writer(config.stdout, lineterminator="\n")
        rows = [[on_tty(str(c)) for c in row] for row in rows]
        writer.writerow([on_tty(h) for h in header])
        writer.writerows(row for row, w in zip(rows, ws, strict=True) if not w)
        return
    if config.getoption("md"):
        config.stdout.write("| " + " | ".join(table.md_escape(on_tty(h)) for h in header) + " |\n")
        config.stdout.write("|" + "---|" * len(header) + "\n")
        for row in rows:
            config.stdout.write("| " + " | ".join(table.md_escape(on_tty(c)) for c in row) + " |\n")
        return
    first_param = 2 + len(shown)
    first_metric = first_param + len(params)
    position = {h: i for i, h in enumerate(shown, 2)}
    drop_order = [
        *(position[h] for h in ("Duration", "Created", "Baseline", "Ckpts") if h in position),
        *range(first_metric - 1, first_param - 1, -1),  # params, the last first
        *(position[h] for h in ("Sweep",) if h in position),
        *range(len(header) - 1, first_metric - 1, -1),
    ]
    table.print_fitted(config.stdout, header, rows, first_param, first_metric, drop_order)


def _ws(r: dict[str, Any]) -> bool:
    return r.get("name") == "workspace" and r.get("state") == "-"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON record per experiment")
    parser.add_argument("--csv", action="store_true", help="comma-separated values")
    parser.add_argument("--md", action="store_true", help="a Markdown table")
    parser.add_argument(
        "--junitxml",
        metavar="PATH",
        help="also write the shown results as JUnit XML (a CI summary of pulled results)",
    )
    parser.add_argument(
        "-A",
        "--all-baselines",
        action="store_true",
        help="experiments of every baseline, not only HEAD's",
    )
    parser.add_argument(
        "--baseline", metavar="REV", help="experiments of this baseline instead of HEAD's"
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="experiments of the last N commits of the baseline's history (default 1)",
    )
    parser.add_argument(
        "--all-checkpoints", action="store_true", help="one row per checkpoint as well"
    )
    parser.add_argument(
        "--all-records",
        action="store_true",
        help="the records that reruns (-f, --force, --lf) replaced as well, marked 'replaced'",
    )
    parser.add_argument("--sort-by", metavar="COLUMN", help="sort by a param or metric")
    parser.add_argument(
        "--sort-order", choices=("asc", "desc"), default="asc", help="with --sort-by (default asc)"
    )
    parser.add_argument(
        "--only-changed",
        action="store_true",
        help="hide columns whose value is the same everywhere",
    )
    parser.add_argument("--columns", metavar="REGEX", help="only columns matching REGEX")
    # The spellings before flags meant one thing everywhere (-n is a name, --rev a
    # checkpoint, --keep "keep these" elsewhere): accepted one more release, with a warning.
    for old, dest in (("-n", "num"), ("--num", "num"), ("--rev", "rev"), ("--keep", "keep")):
        parser.add_argument(old, dest=f"old_{dest}", help=argparse.SUPPRESS)
    parser.add_argument("--drop", metavar="REGEX", help="hide columns matching REGEX")
    parser.add_argument(
        "--sweep", action="append", metavar="NAME", help="only experiments of this sweep"
    )
    parser.add_argument("-k", metavar="EXPR", dest="keyword", help="select by id, name, sweep")
    parser.add_argument(
        "--best",
        metavar="METRIC[:min|max]",
        help="only the best experiment by METRIC (direction given, or from the spec's expect:)",
    )
    parser.add_argument(
        "--group-by",
        action="append",
        metavar="PARAM",
        help="one row per value of PARAM: runs and each metric's mean ± std over the rest",
    )
    parser.add_argument("--hide-queued", action="store_true", help="hide queued experiments")
    parser.add_argument("--hide-failed", action="store_true", help="hide failed experiments")
    parser.add_argument(
        "--precision",
        type=positive_int,
        default=6,
        metavar="N",
        help="significant digits of numbers (default 6)",
    )


def select_baselines(config: Config) -> set[str] | None:
    """Baselines to show (``None``: all)."""

    if config.getoption("all_baselines"):
        return None
    rev = config.getoption("baseline") or "HEAD"
    num = int(config.getoption("limit") or 1)
    out = run_git(
        ["rev-list", f"--max-count={num}", "--first-parent", rev, "--"],
        config.repo.root,
        check=False,
    ).split()
    if not out:
        raise UsageError(f"--baseline {rev}: no such commit")
    return set(out)


#: Old spelling → (its option's dest, the new option, its dest, a converter).
_RENAMED: dict[str, tuple[str, str, str, Callable[[str], Any]]] = {
    "-n/--num": ("old_num", "--limit", "limit", positive_int),
    "--rev": ("old_rev", "--baseline", "baseline", str),
    "--keep": ("old_keep", "--columns", "columns", str),
}


def _old_spellings(config: Config) -> None:
    """Take the old spellings (with a warning that names the new one)."""
    args = config.args
    for old, (dest, new, new_dest, convert) in _RENAMED.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        print(
            f"sweeprun: warning: show {old} is now {new} (the old spelling goes in the "
            "next release)",
            file=sys.stderr,
        )
        if getattr(args, new_dest, None) is None:
            try:
                setattr(args, new_dest, convert(value))
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise UsageError(f"show {old}: {exc}") from None


def _run(config: Config) -> int:
    _old_spellings(config)
    with resultsindex.no_gc(freeze=True):  # records are trees: nothing for it to find
        return _show(config)


def _show(config: Config) -> int:
    baselines = select_baselines(config)
    hide = {"queued"} if config.getoption("hide_queued") else set()
    if config.getoption("hide_failed"):
        hide.update(FAILED_STATES)
    found, done = listing.rows(
        config.repo, all_baselines=True, replaced=bool(config.getoption("all_records"))
    )
    elsewhere = sum(1 for r in found if baselines is not None and r.baseline not in baselines)
    found = [
        r for r in found if (baselines is None or r.baseline in baselines) and r.state not in hide
    ]
    if config.getoption("json") and not any(config.getoption(o) for o in _NEEDS_RECORDS):
        # Each record's JSON as the index keeps it: nothing to parse or encode again.
        lines = ",\n".join(done.line(r) for r in found)
        config.stdout.write(f"[\n{lines}\n]\n" if found else "[]\n")
        return ExitCode.OK
    # Full records where they are printed or copied; else the index's columns (no record
    # of 100,000 decoded or flattened).
    full = config.getoption("json") or config.getoption("all_checkpoints")
    records = listing.parse(found, done) if full else listing.frame(found, done)
    why = ""  # why nothing is left, said when nothing is
    if config.getoption("sweep"):
        wanted = config.getoption("sweep")
        known = sorted({str(r.get("sweep")) for r in records if r.get("sweep")})
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise UsageError(
                f"show --sweep {unknown[0]}: no experiment of that sweep here (sweeps: "
                f"{', '.join(known) or 'none'}{'; other baselines: show -A' if elsewhere else ''})"
            )
        records = selecting.by_sweep(records, wanted)
    if config.getoption("keyword"):
        before = len(records)
        records = selecting.by_keyword(records, config.getoption("keyword"))
        why = f"0 of {before} experiments match -k {config.getoption('keyword')}"
    if config.getoption("best"):
        records = selecting.best(records, config.getoption("best"), _declared(config))
    if config.getoption("junitxml"):
        _write_junit(config, records)
    if config.getoption("all_checkpoints"):
        records = checkpoint_records(config.repo, records)
    if config.getoption("json"):
        if config.getoption("sort_by"):
            params, metrics, _ = build_table(records)
            records = _sort_by_option(config, records, params, metrics)
        table.forget(records)  # the table's cache (sorting fills it): not part of a record
        # One experiment per line: readable, and json's C encoder (indent= would force the
        # pure-Python one: 3.6 s instead of 1.0 s for 100,000 experiments).
        lines = ",\n".join(json.dumps(r, default=str) for r in records)
        config.stdout.write(f"[\n{lines}\n]\n" if records else "[]\n")
        return ExitCode.OK
    if not records and (config.getoption("csv") or config.getoption("md")):
        render(config, records)  # the header alone: a script reads an empty table
        return ExitCode.OK
    if not records:
        config.stdout.write(_nothing(config, why, elsewhere, bool(hide)) + "\n")
        return ExitCode.OK
    if config.getoption("group_by"):
        _, metrics, _ = build_table(records)
        header, grouped = selecting.group(records, config.getoption("group_by"), metrics)
        n = len(config.getoption("group_by")) + 1  # the keys and Runs
        drop = list(range(len(header) - 1, n - 1, -1))
        table.print_fitted(config.stdout, header, grouped, n, n, drop)
        return ExitCode.OK
    if not config.getoption("sort_by") and not config.getoption("best"):
        records = table.prepend([_workspace_row(config)], records)
    render(config, records)
    return ExitCode.OK


def _nothing(config: Config, why: str, elsewhere: int, hidden: bool) -> str:
    """Why ``show`` has no row to print."""
    if why:
        return why
    if hidden:
        return "no experiments left to show (--hide-queued/--hide-failed hid them)"
    if elsewhere:
        return (
            f"no experiments at this baseline; {elsewhere} experiment"
            f"{'s' if elsewhere != 1 else ''} at other baselines (show -A lists them)"
        )
    return "no experiments (queue some with 'sweeprun sweeps.yaml')"


#: Options that look into the records (the rest select by baseline and state only).
_NEEDS_RECORDS = ("sweep", "keyword", "best", "junitxml", "all_checkpoints", "sort_by")


def _declared(config: Config) -> dict[str, str]:
    """Metric directions the workspace's spec declares through ``expect:``."""
    path = default_spec(config.repo.root)
    if path is None:
        return {}
    try:
        spec = config.hook.sweeprun_load_spec(path=path, config=config)
    except UsageError:
        return {}
    return selecting.directions(s.expect for s in spec.sweeps)


def _sort_by_option(
    config: Config, records: list[dict[str, Any]], params: list[str], metrics: list[str]
) -> list[dict[str, Any]]:
    """``--sort-by``/``--sort-order``, when given."""
    key = config.getoption("sort_by")
    if not key:
        return records
    desc = config.getoption("sort_order") == "desc"
    return sort_records(records, key, params, metrics, desc)


def _write_junit(config: Config, shown: list[dict[str, Any]]) -> None:
    """A testcase per shown result, in the table's order."""
    order = {r["ref"]: i for i, r in enumerate(shown)}
    store = ExpStore(config.repo)
    try:
        recs = sorted(
            (r for r in store.records(EXPS) if r.ref in order), key=lambda r: order[r.ref]
        )
    finally:
        store.close()
    path = (config.invocation_dir / config.getoption("junitxml")).resolve()
    write_cases(path, result_cases(recs), time.time())


def _workspace_row(config: Config) -> dict[str, Any]:
    """The workspace as a row: its params and metrics files as they are now."""

    try:
        _, params, metrics = _workspace(config)
    except Exception:  # an unreadable spec must not break show
        params, metrics = {}, {}
    return {
        "name": "workspace",
        "state": "-",
        "params": params,
        "metrics": metrics,
        "baseline": "",
        "checkpoints": 0,
    }


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun show``."""
    commands.add(
        "show",
        "table of experiments: name, state, params, metrics",
        _add_arguments,
        _run,
        examples=(
            "sweeprun show --sort-by acc --sort-order desc",
            "sweeprun show -A --csv > results.csv   # every baseline, as CSV",
            "sweeprun show --all-records            # with the records that reruns replaced",
        ),
    )
