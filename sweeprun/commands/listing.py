"""Experiments as rows: the public record of each (``show --json``, ``api.experiments``)."""

from __future__ import annotations

import json
from typing import Any

from sweeprun.model import QUEUE, RUNNING
from sweeprun.report.table import MISSING, RecordList, columns_of
from sweeprun.run.checkpoint import REF_PREFIX, chain
from sweeprun.store import resultsindex
from sweeprun.store.git import RepoPaths
from sweeprun.store.records import ExpStore
from sweeprun.store.resultsindex import FIELDS, Results, Row

#: Running first, then queued, then results.
STATE_ORDER = {"running": 0, "queued": 1}


def rows(
    repo: RepoPaths, all_baselines: bool = False, replaced: bool = False
) -> tuple[list[Row], Results]:
    """Experiments of the current baseline (or all, the current one first), newest first
    per state: running and queued ones read from their refs, results from the index
    (returned too: :func:`parse` and :func:`frame` read it). ``replaced``: the records
    that reruns replaced too, each after the results."""
    store = ExpStore(repo)
    try:
        head = store.head()
        live = [resultsindex.row(r) for r in store.records(QUEUE, RUNNING)]
        old = [resultsindex.row(r) for r in store.replaced()] if replaced else []
    finally:
        store.close()
    old.sort(key=lambda r: (r.baseline != head, -r.queued_at, r.id))
    done = resultsindex.results(repo)
    live.sort(key=lambda r: (r.baseline != head, STATE_ORDER.get(r.state, 2), -r.queued_at, r.id))
    # The index keeps results newest first: the baseline's, then the others', by filtering.
    found = [r for r in live if r.baseline == head]
    found += [r for r in done.rows if r.baseline == head]
    found += [r for r in old if r.baseline == head]
    if all_baselines:
        found += [r for r in live if r.baseline != head]
        found += [r for r in done.rows if r.baseline != head]
        found += [r for r in old if r.baseline != head]
    return found, done


def parse(found: list[Row], done: Results) -> list[dict[str, Any]]:
    """The full records of ``found`` as dicts (what ``show --json`` prints)."""
    with resultsindex.no_gc():
        text = ",".join(done.line(r) for r in found)
        got: list[dict[str, Any]] = json.loads(f"[{text}]")
    return got


def frame(found: list[Row], done: Results) -> list[dict[str, Any]]:
    """The records of ``found`` for tables and charts, built from the index's columns:
    results are slim (their scalar fields), params and metrics are columns
    (:class:`~sweeprun.report.table.RecordList`). Not for JSON output (see :func:`parse`)."""
    with resultsindex.no_gc():
        records = [
            dict(zip(FIELDS, done.fields[r.pos], strict=True)) if r.pos >= 0 else json.loads(r.line)
            for r in found
        ]
        positions = [r.pos for r in found]
        n = done.size  # positions, rows gone since the index was written whole too
        columns: dict[tuple[str, str, str], list[Any]] = {}
        for c in done.columns:
            full = c.values
            if c.rows is not None:
                full = [MISSING] * n
                for i, v in zip(c.rows, c.values, strict=True):
                    full[i] = v
            columns[c.section, c.file, c.key] = [full[p] if p >= 0 else MISSING for p in positions]
        got = RecordList(records, columns)
        live = [i for i, p in enumerate(positions) if p < 0]
        if live:  # queued and running ones: full records, their keys first (as in prepend)
            merged: dict[tuple[str, str, str], list[Any]] = {}
            for key, values in columns_of([records[i] for i in live]).items():
                target = merged[key] = columns.get(key) or [MISSING] * len(records)
                for i, v in zip(live, values, strict=True):
                    target[i] = v
            got = RecordList(records, {**merged, **columns})
    return got


def load_records(repo: RepoPaths, all_baselines: bool = False) -> list[dict[str, Any]]:
    """Experiment records of the current baseline (or all), newest first per state."""
    return parse(*rows(repo, all_baselines))


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
