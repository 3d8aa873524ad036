"""``sweeprun show``: experiments as a table (or JSON), read with one ``for-each-ref``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

import pluggy

from sweeprun.gitstore import ExpStore, Record
from sweeprun.params import flatten

if TYPE_CHECKING:
    from sweeprun.commands import CommandRegistry
    from sweeprun.config import Config
    from sweeprun.git import RepoPaths

hookimpl = pluggy.HookimplMarker("sweeprun")

STATE_ORDER = {"running": 0, "queued": 1}


def experiment_record(rec: Record) -> dict[str, Any]:
    """The public record of one experiment (``show --json``, ``api.experiments``)."""
    m = rec.meta
    return {
        "name": rec.name,
        "id": rec.id,
        "state": rec.state,
        "baseline": rec.baseline,
        "sweep": m.get("sweep"),
        "spec": m.get("spec"),
        "params": m.get("params", {}),
        "metrics": m.get("metrics", {}),
        "point": m.get("point", {}),
        "returncode": m.get("returncode"),
        "queued_at": m.get("queued_at"),
        "started": m.get("started"),
        "finished": m.get("finished"),
        "duration": m.get("duration"),
        "message": m.get("message", ""),
        "checkpoints": m.get("checkpoints", 0),
        "key": rec.key,
        "ref": rec.ref,
        "commit": rec.commit,
    }


def load_records(repo: RepoPaths, all_baselines: bool = False) -> list[dict[str, Any]]:
    """Experiment records of the current baseline (or all), newest first per state."""
    store = ExpStore(repo)
    try:
        head = store.head()
        recs = [r for r in store.records() if all_baselines or r.baseline == head]
    finally:
        store.close()
    recs.sort(key=lambda r: (r.baseline != head, STATE_ORDER.get(r.state, 2),
                             -(r.meta.get("queued_at") or 0), r.id))
    return [experiment_record(r) for r in recs]


def checkpoint_records(repo: RepoPaths, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per checkpoint of each experiment, after the experiment's own row."""
    from sweeprun.checkpoint import REF_PREFIX
    from sweeprun.git import run_git
    from sweeprun.gitstore import parse_message

    out = []
    for rec in records:
        out.append(rec)
        running = rec["state"] in ("queued", "running")
        tip = REF_PREFIX + rec["key"] if running else rec["commit"]
        if not rec.get("checkpoints") and rec["state"] not in ("running", "failed"):
            continue
        log = run_git(["log", "--first-parent", "--format=%H%x00%B%x1e", tip,
                       f"^{rec['baseline']}"], repo.root, check=False)
        for chunk in log.split("\x1e"):
            sha, _, body = chunk.strip().partition("\x00")
            meta = parse_message(body)
            if not sha or meta is None or meta.get("state") != "checkpoint":
                continue
            out.append({**rec, "name": f"{rec['name']}@{meta['step']}", "state": "checkpoint",
                        "metrics": meta.get("metrics", {}), "commit": sha,
                        "checkpoints": meta["step"]})
    return out


def flat_columns(records: list[dict[str, Any]], section: str) -> list[str]:
    """Column names of a section (params/metrics), file-qualified only when ambiguous."""
    seen: dict[str, set[str]] = {}
    for rec in records:
        for path, data in (rec.get(section) or {}).items():
            for key in flatten(data):
                seen.setdefault(key, set()).add(path)
    cols = []
    for key, paths in seen.items():
        cols.extend([key] if len(paths) == 1 else [f"{p}:{key}" for p in sorted(paths)])
    return cols


def cell(rec: dict[str, Any], section: str, col: str) -> Any:
    """A record's value for a flattened column (``None`` if absent)."""
    data = rec.get(section) or {}
    if ":" in col and col.split(":", 1)[0] in data:
        path, key = col.split(":", 1)
        return flatten(data[path]).get(key)
    for d in data.values():
        flat = flatten(d)
        if col in flat:
            return flat[col]
    return None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_table(config: Config, records: list[dict[str, Any]]) -> None:
    """Print a rich table: name, state, varying params, metrics."""
    from rich.console import Console
    from rich.table import Table

    params = flat_columns(records, "params")
    varying = [c for c in params
               if len({json.dumps(cell(r, "params", c), default=str) for r in records}) > 1]
    metrics = flat_columns(records, "metrics")
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("Experiment", no_wrap=True)
    table.add_column("State")
    ckpts = any(r.get("checkpoints") for r in records)
    if ckpts:
        table.add_column("Ckpts", justify="right")
    for c in varying:
        table.add_column(c, justify="right")
    for c in metrics:
        table.add_column(c, justify="right", style="cyan")
    for rec in records:
        table.add_row(rec["name"], rec["state"],
                      *([str(rec.get("checkpoints") or "-")] if ckpts else []),
                      *[_fmt(cell(rec, "params", c)) for c in varying],
                      *[_fmt(cell(rec, "metrics", c)) for c in metrics])
    console = Console(file=config.stdout, width=None if config.stdout.isatty() else 200)
    console.print(table)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON record per experiment")
    parser.add_argument("-A", "--all-baselines", action="store_true",
                        help="experiments of every baseline, not only HEAD's")
    parser.add_argument("--all-checkpoints", action="store_true",
                        help="one row per checkpoint as well")


def _run(config: Config) -> int:
    records = load_records(config.repo, bool(config.getoption("all_baselines")))
    if config.getoption("all_checkpoints"):
        records = checkpoint_records(config.repo, records)
    if config.getoption("json"):
        config.stdout.write(json.dumps(records, indent=2, default=str) + "\n")
        return 0
    if not records:
        config.stdout.write("no experiments (queue some with 'sweeprun sweeps.yaml')\n")
        return 0
    render_table(config, records)
    return 0


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun show``."""
    commands.add("show", "table of experiments: name, state, params, metrics",
                 _add_arguments, _run)
