"""Experiments as rows: the public record of each (``show --json``, ``api.experiments``)."""

from __future__ import annotations

from typing import Any

from sweeprun.model import Record
from sweeprun.run.checkpoint import REF_PREFIX, chain
from sweeprun.store.git import RepoPaths
from sweeprun.store.records import ExpStore

#: Running first, then queued, then results.
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
    recs.sort(
        key=lambda r: (
            r.baseline != head,
            STATE_ORDER.get(r.state, 2),
            -(r.meta.get("queued_at") or 0),
            r.id,
        )
    )
    return [experiment_record(r) for r in recs]


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
