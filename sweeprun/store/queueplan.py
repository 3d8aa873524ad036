"""What queueing would do, decided before anything is written: pure, over records read once.

Records are append-only (SPEC §4): queueing never takes a recorded experiment's place as a
side effect. For each collected experiment the plan says one of

- **skip**: the same experiment (same content key) is queued or running — it will run — or
  already recorded (under the name asked for, if one is) and nothing asked to run it again;
- **queue** under a free name (a default ``exp-<hash>`` is lengthened past any name in use);
- **queue as a replacement** of a finished record, only when asked (``-f``/``--force``,
  ``--lf``, ``--reset``) and only within the same sweep: the record it replaces stays
  reachable (``refs/sweeprun/replaced/…``, written when the new result lands);
- **refuse**: an explicit name (``-n``, a name template) held by anything else — a located
  error, raised before the caller writes a single file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeprun.model import FAILED_STATES, QUEUE, Record
from sweeprun.spec import names

if TYPE_CHECKING:
    from sweeprun.spec.collect import Experiment


@dataclass
class Planned:
    """One experiment the plan queues."""

    item: Experiment
    key: str
    name: str
    #: New text of the params files it changes.
    files: dict[str, str]
    #: The finished record it replaces when its result lands (explicit reruns only).
    replaces: Record | None = None


@dataclass
class QueuePlan:
    """Everything :meth:`~sweeprun.store.records.ExpStore.commit_plan` needs, decided."""

    baseline: str
    tree: str
    planned: list[Planned] = field(default_factory=list)
    #: Experiments not queued, each with the record that stands for it.
    skipped: list[tuple[Experiment, Record]] = field(default_factory=list)


def content_key(
    baseline: str, tree: str, files: dict[str, str], stages: list[dict[str, Any]], study: str = ""
) -> str:
    """The identity of an experiment: same inputs → same key. A study's trial is also
    its study's: another study (another seed, say) proposing the same point must run it as
    its own trial, not find it "already recorded" and stall (the run-cache still answers
    its stages if nothing changed)."""
    h = hashlib.sha256()
    h.update(f"{baseline}\0{tree}\0".encode())
    if study:
        h.update(f"study {study}\0".encode())
    for path in sorted(files):
        h.update(f"{path}\0{hashlib.sha256(files[path].encode()).hexdigest()}\0".encode())
    h.update(json.dumps(stages, sort_keys=True).encode())
    return h.hexdigest()[:20]


def same_row(rec: Record, item: Experiment) -> bool:
    """Whether ``rec`` is this experiment's row: the same point of the same sweep."""
    return rec.id == item.id and rec.meta.get("spec") == item.spec.path


def same_sweep(rec: Record, item: Experiment) -> bool:
    """Whether ``rec`` belongs to the sweep ``item`` belongs to (its rows are ours to
    replace when asked; another sweep's never are)."""
    meta = rec.meta
    return meta.get("sweep") == item.sweep and meta.get("spec") == item.spec.path


def plan(
    existing: Sequence[Record],
    items: Sequence[Experiment],
    baseline: str,
    tree: str,
    *,
    force: bool = False,
    force_items: set[int] | None = None,
) -> QueuePlan:
    """Decide, for every item, to skip, queue, or queue as a replacement (see the module
    docstring); raise the first name error."""
    out = QueuePlan(baseline, tree)
    by_key: dict[str, list[Record]] = {}
    taken: dict[str, Record] = {}
    for rec in existing:
        by_key.setdefault(rec.key, []).append(rec)
        taken.setdefault(rec.name, rec)
    batch: dict[str, Record] = {}
    for item in items:
        files = item.rendered_files()
        key = content_key(baseline, tree, files, item.stages_record(), item.study)
        if key in batch:
            out.skipped.append((item, batch[key]))  # the same point twice
            continue
        same = by_key.get(key, [])
        pending = [r for r in same if not r.finished]
        if pending:  # queued or running: it runs anyway, once
            out.skipped.append((item, pending[0]))
            continue
        if item.name is not None:
            # A name given (-n, a template) is part of what is asked for: the same inputs
            # recorded under another name are not this experiment's record.
            same = [r for r in same if r.name == item.name]
        forced = force or id(item) in (force_items or ())
        row = [r for r in same if same_row(r, item)]
        if same and not forced:
            out.skipped.append((item, (row or same)[0]))
            continue
        name, replaces = _name(item, key, row, taken, forced, baseline)
        raw = {"key": key, "name": name, "id": item.id, "spec": item.spec.path}
        batch[key] = taken[name] = Record(ref=QUEUE + key, commit="", raw=raw)
        out.planned.append(Planned(item, key, name, files, replaces))
    return out


def _name(
    item: Experiment,
    key: str,
    row: list[Record],
    taken: dict[str, Record],
    forced: bool,
    baseline: str,
) -> tuple[str, Record | None]:
    """The name an item is queued under, and the record it replaces (if any)."""
    if item.name is None and row:
        return row[0].name, row[0]  # a rerun asked for: the same row, a new record
    if item.name is None:
        width = 7
        name = names.default_name(key)
        while name in taken and width < len(key):
            width += 1
            name = names.default_name(key, width)
        return name, None
    name = item.name
    holder = taken.get(name)
    if holder is None:
        return name, None
    retry = item.retries is not None and holder.ref == item.retries.ref
    ours = holder.finished and same_sweep(holder, item)
    if ours and (forced or (retry and holder.state in FAILED_STATES)):
        return name, holder
    where = f"experiment name {name!r} is already used by {holder.id!r} at baseline {baseline[:7]}"
    if ours:
        raise item.name_error(
            f"{where} ({holder.state}); -f (--force in a sweep) runs it again and replaces "
            "it, keeping the earlier record (show --all-records)"
        )
    raise item.name_error(f"{where} (choose another name)")
