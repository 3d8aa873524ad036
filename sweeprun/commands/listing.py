"""Experiments as rows: the public record of each (``show --json``, ``api.experiments``)."""

from __future__ import annotations

import json
from typing import Any

from sweeprun.model import QUEUE, RUNNING
from sweeprun.run.checkpoint import REF_PREFIX, chain
from sweeprun.store import resultsindex
from sweeprun.store.git import RepoPaths
from sweeprun.store.records import ExpStore
from sweeprun.store.resultsindex import Row

#: Running first, then queued, then results.
STATE_ORDER = {"running": 0, "queued": 1}


def rows(repo: RepoPaths, all_baselines: bool = False) -> list[Row]:
    """Experiments of the current baseline (or all, the current one first), newest first
    per state: running and queued ones read from their refs, results from the index."""
    store = ExpStore(repo)
    try:
        head = store.head()
        live = [resultsindex.row(r) for r in store.records(QUEUE, RUNNING)]
    finally:
        store.close()
    found = [r for r in [*live, *resultsindex.rows(repo)] if all_baselines or r.baseline == head]
    found.sort(key=lambda r: (r.baseline != head, STATE_ORDER.get(r.state, 2), -r.queued_at, r.id))
    return found


def parse(found: list[Row]) -> list[dict[str, Any]]:
    """The records of ``rows`` as dicts."""
    with resultsindex.no_gc():
        got: list[dict[str, Any]] = json.loads("[" + ",".join(r.line for r in found) + "]")
    return got


def load_records(repo: RepoPaths, all_baselines: bool = False) -> list[dict[str, Any]]:
    """Experiment records of the current baseline (or all), newest first per state."""
    return parse(rows(repo, all_baselines))


def checkpoint_records(repo: RepoPaths, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per checkpoint of each experiment, after the experiment's own row."""

    out = []
    for rec in records:
        out.append(rec)
        running = rec["state"] in ("queued", "running")
        tip = REF_PREFIX + rec["key"] if running else rec["commit"]
        if not rec.get("checkpoints") and rec["state"] not in ("running", "failed"):
            continue
        for sha, meta in chain(repo.root, tip, rec["baseline"]):
            out.append(
                {
                    **rec,
                    "name": f"{rec['name']}@{meta['step']}",
                    "state": "checkpoint",
                    "metrics": meta.get("metrics", {}),
                    "commit": sha,
                    "checkpoints": meta["step"],
                }
            )
    return out
