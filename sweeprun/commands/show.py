"""``sweeprun show``: experiments as a table (or JSON), read with one ``for-each-ref``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sweeprun._core.argtypes import positive_int
from sweeprun._core.exitcode import ExitCode
from sweeprun.commands import listing, selecting, showtable
from sweeprun.commands.diff import _workspace
from sweeprun.commands.listing import checkpoint_records
from sweeprun.exceptions import SweepValueError, UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import EXPS, FAILED_STATES
from sweeprun.report import table
from sweeprun.report.junit import result_cases, write_cases
from sweeprun.spec.loader import default_spec
from sweeprun.store import resultsindex
from sweeprun.store.git import run_git
from sweeprun.store.records import ExpStore
from sweeprun.sweepers.optimize import parse_optimize

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


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
        "--hide-pruned", action="store_true", help="hide trials an optimize: sweep stopped early"
    )
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
    if config.getoption("hide_pruned"):
        hide.add("pruned")
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
            params, metrics, _ = showtable.build_table(records)
            records = showtable.sort_by_option(config, records, params, metrics)
        table.forget(records)  # the table's cache (sorting fills it): not part of a record
        # One experiment per line: readable, and json's C encoder (indent= would force the
        # pure-Python one: 3.6 s instead of 1.0 s for 100,000 experiments).
        lines = ",\n".join(json.dumps(r, default=str) for r in records)
        config.stdout.write(f"[\n{lines}\n]\n" if records else "[]\n")
        return ExitCode.OK
    if not records and (config.getoption("csv") or config.getoption("md")):
        showtable.render(config, records)  # the header alone: a script reads an empty table
        return ExitCode.OK
    if not records:
        config.stdout.write(_nothing(config, why, elsewhere, bool(hide)) + "\n")
        return ExitCode.OK
    if config.getoption("group_by"):
        _, metrics, _ = showtable.build_table(records)
        header, grouped = selecting.group(records, config.getoption("group_by"), metrics)
        n = len(config.getoption("group_by")) + 1  # the keys and Runs
        drop = list(range(len(header) - 1, n - 1, -1))
        table.print_fitted(config.stdout, header, grouped, n, n, drop)
        return ExitCode.OK
    if not config.getoption("sort_by") and not config.getoption("best"):
        records = table.prepend([_workspace_row(config)], records)
    showtable.render(config, records)
    return ExitCode.OK


def _nothing(config: Config, why: str, elsewhere: int, hidden: bool) -> str:
    """Why ``show`` has no row to print."""
    if why:
        return why
    if hidden:
        return "no experiments left to show (--hide-queued/-failed/-pruned hid them)"
    if elsewhere:
        return (
            f"no experiments at this baseline; {elsewhere} experiment"
            f"{'s' if elsewhere != 1 else ''} at other baselines (show -A lists them)"
        )
    return "no experiments (queue some with 'sweeprun sweeps.yaml')"


#: Options that look into the records (the rest select by baseline and state only).
_NEEDS_RECORDS = ("sweep", "keyword", "best", "junitxml", "all_checkpoints", "sort_by")


def _declared(config: Config) -> dict[str, str]:
    """Metric directions the workspace's spec declares through ``expect:`` and the
    objectives of its ``optimize:`` sweeps."""
    path = default_spec(config.repo.root)
    if path is None:
        return {}
    try:
        spec = config.hook.sweeprun_load_spec(path=path, config=config)
    except UsageError:
        return {}
    out = selecting.directions(s.expect for s in spec.sweeps)
    for kind, block, _ in (b for s in spec.sweeps for g in s.groups for b in g):
        if kind == "optimize":
            with contextlib.suppress(SweepValueError):
                goal = parse_optimize(block)
                for metric, way in zip(goal.metrics, goal.directions, strict=True):
                    out.setdefault(metric, way[:3])
                    out.setdefault(metric.rpartition(":")[2], way[:3])
    return out


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
