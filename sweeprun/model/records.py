"""The records stored in sweeprun's commit messages: one class each, one writer each.

A commit message is a readable subject line and one line ``sweeprun-record: {json}``, so
one ``git for-each-ref`` reads every experiment. Each fact is there once: the params
files' text is in the commit's tree, not in the message.

Schema history (``version`` in the JSON):

1. the first records; a queue record also carried every changed params file's text
   (``files``), which the tree already holds. Read as version 2 without it.
2. this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union

from sweeprun.model.stage import Stage
from sweeprun.model.states import State

SCHEMA = 2
MESSAGE_MARK = "sweeprun-record:"
#: Keys of earlier schemas that are dropped when read (see the module docstring).
_RETIRED = frozenset({"files", "force", "version"})


@dataclass(frozen=True)
class QueueRecord:
    """A queued experiment: what to run, at which baseline (written by ``enqueue``)."""

    key: str
    name: str
    id: str
    baseline: str
    sweep: str = ""
    spec: str = ""
    #: The sweep point: qualified param key → value.
    point: Mapping[str, Any] = field(default_factory=dict)
    #: Every params file's data with the point applied: path → data.
    params: Mapping[str, Any] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    expect: Mapping[str, str] = field(default_factory=dict)
    queued_at: float = 0
    #: The workspace snapshot the queued commit's tree adds the params files to.
    tree: str = ""
    #: The failed result this run replaces (``--lf``).
    replaces: str | None = None
    #: Run in the user's workspace (``sweeprun run``), not a pooled one.
    in_place: bool = False
    #: The params files whose text the queued commit changes (the rest are as in
    #: ``tree``); ``None`` when the record does not say (schema 1).
    changed: tuple[str, ...] | None = None

    state: ClassVar[State] = State.QUEUED

    def to_json(self) -> dict[str, Any]:
        """The JSON form (the message's record)."""
        out: dict[str, Any] = {"version": SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "stages":
                value = [s.to_json() for s in value]
            elif f.name in ("replaces", "in_place") and not value:
                continue  # rare: keep messages short
            elif f.name == "changed":
                if value is None:
                    continue
                value = list(value)
            elif isinstance(value, State):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        if type(self) is not QueueRecord:
            out["state"] = self.state.value
        return out

    def queued(self) -> QueueRecord:
        """The queue record this record grew from."""
        return QueueRecord(**{f.name: getattr(self, f.name) for f in fields(QueueRecord)})


@dataclass(frozen=True)
class Result(QueueRecord):
    """A finished experiment (written by the executor, in the result commit)."""

    state: State = State.SUCCESS  # type: ignore[misc]
    attempts: int = 1
    returncode: int | None = 0
    started: float = 0.0
    finished: float = 0.0
    metrics: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    log_tail: str = ""
    queue_commit: str = ""
    host: str = ""
    #: The last checkpoint's step, when the experiment made checkpoints.
    checkpoints: int = 0

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["duration"] = round(self.duration, 6)
        return out


@dataclass(frozen=True)
class CheckpointRecord(QueueRecord):
    """One checkpoint of a running experiment (written by the checkpoint watcher)."""

    step: int = 0
    metrics: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_at: float = 0.0
    #: Checkpoint out path → cache digest.
    checkpoint_outs: Mapping[str, str] = field(default_factory=dict)

    state: ClassVar[State] = State.CHECKPOINT


ExpRecord = Union[QueueRecord, Result, CheckpointRecord]  # noqa: UP007 (a runtime alias on 3.10)


def _kwargs(cls: type[QueueRecord], data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in data.items() if k in names and k not in _RETIRED}
    if "workspace" in data and "in_place" not in data:
        kw["in_place"] = bool(data["workspace"])  # schema 1's name for it
    kw["stages"] = tuple(Stage.from_json(s) for s in data.get("stages", ()))
    if kw.get("changed") is not None:
        kw["changed"] = tuple(kw["changed"])
    return kw


def parse_record(data: Mapping[str, Any]) -> ExpRecord | None:
    """The typed record of a message's JSON (any schema so far); ``None`` if it is none."""
    if not isinstance(data.get("key"), str) or not isinstance(data.get("name"), str):
        return None
    kw = _kwargs(QueueRecord, data)
    kw.setdefault("id", data["name"])
    kw.setdefault("baseline", "")
    state = data.get("state")
    try:
        if state is None:
            return QueueRecord(**kw)
        if state == State.CHECKPOINT.value:
            kw.update({k: v for k, v in _kwargs(CheckpointRecord, data).items() if k not in kw})
            return CheckpointRecord(**kw)
        kw.update({k: v for k, v in _kwargs(Result, data).items() if k not in kw})
        kw["state"] = State.parse(state)
        return Result(**kw)
    except (TypeError, ValueError, KeyError):
        return None


def format_message(subject: str, record: ExpRecord) -> str:
    """A commit message: a readable subject line and the JSON record."""
    body = json.dumps(record.to_json(), sort_keys=True, default=str)
    return f"{subject}\n\n{MESSAGE_MARK} {body}\n"


def parse_message(message: str) -> dict[str, Any] | None:
    """The JSON record of a sweeprun commit message, or ``None`` for any other message."""
    idx = message.find(MESSAGE_MARK)
    if idx < 0:
        return None
    try:
        data = json.loads(message[idx + len(MESSAGE_MARK) :].strip().splitlines()[0])
    except (ValueError, IndexError):
        return None
    return data if isinstance(data, dict) else None


PREFIX = "refs/sweeprun/"
QUEUE = PREFIX + "queue/"
RUNNING = PREFIX + "running/"
EXPS = PREFIX + "exps/"


@dataclass(frozen=True)
class Record:
    """One experiment as stored: its ref, its commit and the typed record in its message."""

    ref: str
    commit: str
    data: ExpRecord

    @property
    def meta(self) -> dict[str, Any]:
        """The record's JSON form (for tables and ``--json`` output)."""
        return self.data.to_json()

    @property
    def state(self) -> State:
        """Queued and running come from the ref; a result's state from its record."""
        if self.ref.startswith(QUEUE):
            return State.QUEUED
        if self.ref.startswith(RUNNING):
            return State.RUNNING
        return self.data.state

    @property
    def key(self) -> str:
        return self.data.key

    @property
    def name(self) -> str:
        # A finished experiment's name is its ref's (so `rename` is a ref move).
        if self.ref.startswith(EXPS):
            return self.ref.rsplit("/", 1)[-1]
        return self.data.name

    @property
    def baseline(self) -> str:
        return self.data.baseline

    @property
    def id(self) -> str:
        return self.data.id or self.name

    @property
    def result(self) -> Result | None:
        """The result record, for a finished experiment."""
        return self.data if isinstance(self.data, Result) else None


def result_ref(baseline: str, name: str) -> str:
    """The ref of a finished experiment."""
    return f"{EXPS}{baseline}/{name}"
