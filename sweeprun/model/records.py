"""The records stored in sweeprun's commit messages: one class each, one writer each.

A commit message is a readable subject line and one line ``sweeprun-record: {json}``, so
one ``git for-each-ref`` reads every experiment. Each fact is there once: the params
files' text is in the commit's tree, not in the message.

Schema history (``version`` in the JSON):

1. the first records; a queue record also carried every changed params file's text
   (``files``), which the tree already holds. Read as version 2 without it.
2. a checkpoint record repeated its experiment's queued facts (the merged params, the
   stages: a 14 KB params file made every checkpoint message 17 KB).
3. this module: a checkpoint names its experiment (``key``, ``queue_commit``) and keeps only
   what is its own (step, metrics, outs) and what identifies it (name, id, point); its
   queued facts are its experiment's (:meth:`CheckpointRecord.of`). A schema 2 checkpoint
   is read as it is.

A result still carries its queued facts: once it is published its queue ref is gone, so
the result commit is the one durable holder of its params (and ``show`` reads 100,000 of
them with one ``for-each-ref``, never a second object per row).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Union

from sweeprun.model.stage import Stage
from sweeprun.model.states import State

SCHEMA = 3
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
    #: The params file that a stage's bare keys (``params: [lr]``) are keys of ("": none,
    #: or a record written before this field; ``params`` is stored in sorted order).
    params_default: str = ""
    #: A Hydra app's primary config: ``params[hydra_app]`` is its composed config ("": the
    #: experiment edits params files instead).
    hydra_app: str = ""
    #: An ``optimize:`` sweep's study this trial belongs to (its block's digest; "": none).
    study: str = ""
    #: Its number in the study (0, 1, …: the order it was proposed in).
    trial: int = 0

    state: ClassVar[State] = State.QUEUED

    def to_json(self) -> dict[str, Any]:
        """The JSON form (the message's record)."""
        out: dict[str, Any] = {"version": SCHEMA}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "stages":
                value = [s.to_json() for s in value]
            elif (
                f.name in ("replaces", "in_place", "params_default", "hydra_app", "study", "trial")
                and not value
            ):
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

    def stored_json(self) -> dict[str, Any]:
        """The JSON its commit message stores (see :func:`format_message`)."""
        return self.to_json()

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
        """The JSON form, with the duration spelled out for readers of the record."""
        out = super().to_json()
        out["duration"] = round(self.duration, 6)
        return out


@dataclass(frozen=True)
class CheckpointRecord(QueueRecord):
    """One checkpoint of a running experiment (written by the checkpoint watcher).

    Its message keeps :data:`CHECKPOINT_OWN` only; the queued facts (params, stages, …)
    are its experiment's: :meth:`of` puts them back from the experiment's record.
    """

    step: int = 0
    metrics: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_at: float = 0.0
    #: Checkpoint out path → cache digest.
    checkpoint_outs: Mapping[str, str] = field(default_factory=dict)
    #: The experiment's queued commit (its queue record).
    queue_commit: str = ""

    state: ClassVar[State] = State.CHECKPOINT

    def stored_json(self) -> dict[str, Any]:
        """The message's form: what is the checkpoint's own, and what names its
        experiment."""
        return {k: v for k, v in self.to_json().items() if k in CHECKPOINT_OWN}

    def of(self, experiment: QueueRecord) -> CheckpointRecord:
        """This checkpoint with its experiment's queued facts (``experiment``: its queue
        record, result or running record)."""
        queued = {
            f.name: getattr(experiment, f.name)
            for f in fields(QueueRecord)
            if f.name not in CHECKPOINT_OWN
        }
        return replace(self, **queued)


#: The fields a checkpoint's message keeps (see :class:`CheckpointRecord`).
CHECKPOINT_OWN = frozenset(
    {"version", "state", "key", "name", "id", "baseline", "sweep", "spec", "point"}
    | {"study", "trial", "step", "metrics", "checkpoint_at", "checkpoint_outs", "queue_commit"}
)


ExpRecord = Union[QueueRecord, Result, CheckpointRecord]  # noqa: UP007 (a runtime alias on 3.10)


#: Field names of each record class (``dataclasses.fields`` is slow for 10,000 records).
_NAMES: dict[type[QueueRecord], frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls)) - _RETIRED
    for cls in (QueueRecord, Result, CheckpointRecord)
}


def _kwargs(cls: type[QueueRecord], data: Mapping[str, Any]) -> dict[str, Any]:
    names = _NAMES[cls]
    kw = {k: v for k, v in data.items() if k in names}
    if "workspace" in data and "in_place" not in data:
        kw["in_place"] = bool(data["workspace"])  # schema 1's name for it
    kw["stages"] = tuple(Stage.from_json(s) for s in data.get("stages", ()))
    if kw.get("changed") is not None:
        kw["changed"] = tuple(kw["changed"])
    return kw


def parse_record(data: Mapping[str, Any]) -> ExpRecord | None:
    """The typed record of a message's JSON (any schema so far); ``None`` if it is none."""
    if not is_record(data):
        return None
    state = data.get("state")
    cls: type[QueueRecord] = (
        QueueRecord
        if state is None
        else CheckpointRecord
        if state == State.CHECKPOINT.value
        else Result
    )
    kw = _kwargs(cls, data)
    kw.setdefault("id", data["name"])
    kw.setdefault("baseline", "")
    if cls is Result:
        kw["state"] = State.parse(state)
    try:
        return cls(**kw)
    except (TypeError, ValueError, KeyError):
        return None


def format_message(subject: str, record: ExpRecord) -> str:
    """A commit message: a readable subject line and the JSON record."""
    body = json.dumps(record.stored_json(), sort_keys=True, default=str)
    return f"{subject}\n\n{MESSAGE_MARK} {body}\n"


def parse_message(message: str) -> dict[str, Any] | None:
    """The JSON record of a sweeprun commit message, or ``None`` for any other message."""
    idx = message.find(MESSAGE_MARK)
    if idx < 0:
        return None
    # The record is the rest of that line: cut it out without copying the message's tail
    # twice (show parses 100,000 of these).
    start = idx + len(MESSAGE_MARK)
    end = message.find("\n", start)
    line = message[start : end if end >= 0 else len(message)]
    try:
        data = _DECODE(line.strip())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


_DECODE = json.JSONDecoder().decode


PREFIX = "refs/sweeprun/"
QUEUE = PREFIX + "queue/"
RUNNING = PREFIX + "running/"
EXPS = PREFIX + "exps/"
#: A study's ledger: ``studies/<study>/<trial>`` → the trial's queued commit, created with
#: the queue ref in one transaction and never moved: how many trials a study has proposed
#: is counted here, where no ref moves between namespaces while it is listed.
STUDIES = PREFIX + "studies/"
#: Records that an explicit rerun replaced (``-f``, ``--force``, ``--lf``, a re-used
#: ``-n``): ``replaced/<baseline>/<name>/<commit>``, kept reachable (``show --all-records``).
REPLACED = PREFIX + "replaced/"
#: A running or finished experiment's checkpoint chain: ``checkpoints/<key>`` → its last.
CHECKPOINTS = PREFIX + "checkpoints/"
#: ``apply``'s stash of the workspace as it was (``apply --undo`` restores it).
STASH = PREFIX + "stash"


class Record:
    """One experiment as stored: its ref, its commit and the record in its message.

    Read from git, a record keeps the JSON it came from and is typed on first use of
    :attr:`data`: ``show`` reads 10,000 of them and needs only a few plain fields of each.
    """

    __slots__ = ("_data", "_raw", "commit", "ref")

    def __init__(
        self,
        ref: str,
        commit: str,
        data: ExpRecord | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        if data is None and raw is None:
            raise TypeError("a Record needs its data or its raw JSON")
        self.ref = ref
        self.commit = commit
        self._data = data
        self._raw = raw

    @property
    def data(self) -> ExpRecord:
        """The typed record."""
        if self._data is None:
            assert self._raw is not None
            self._data = parse_record(self._raw) or _minimal(self._raw)
        return self._data

    @property
    def raw(self) -> Mapping[str, Any] | None:
        """The JSON the record was read from, if it was read."""
        return self._raw

    @property
    def meta(self) -> Mapping[str, Any]:
        """The record's JSON form, as stored (for tables and ``--json`` output)."""
        if self._raw is None:
            self._raw = self.data.to_json()
        return self._raw

    def _field(self, name: str) -> Any:
        return self._raw.get(name) if self._raw is not None else getattr(self.data, name)

    @property
    def state(self) -> State:
        """Queued and running come from the ref; a result's state from its record."""
        if self.ref.startswith(QUEUE):
            return State.QUEUED
        if self.ref.startswith(RUNNING):
            return State.RUNNING
        if self._data is not None:
            return self._data.state
        assert self._raw is not None
        state = self._raw.get("state")
        return State.QUEUED if state is None else State.parse(state)

    @property
    def key(self) -> str:
        return str(self._field("key"))

    @property
    def name(self) -> str:
        # A finished experiment's name is its ref's (so `rename` is a ref move).
        if self.ref.startswith(EXPS):
            return self.ref.rsplit("/", 1)[-1]
        if self.ref.startswith(REPLACED):
            return self.ref.rsplit("/", 2)[-2]
        return str(self._field("name"))

    @property
    def finished(self) -> bool:
        """Whether this is a current result (not queued, running or replaced)."""
        return self.ref.startswith(EXPS)

    @property
    def baseline(self) -> str:
        return str(self._field("baseline") or "")

    @property
    def id(self) -> str:
        return str(self._field("id") or self.name)

    @property
    def result(self) -> Result | None:
        """The result record, for a finished experiment."""
        return self.data if isinstance(self.data, Result) else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self.ref, self.commit) == (other.ref, other.commit)

    def __hash__(self) -> int:
        return hash((self.ref, self.commit))

    def __repr__(self) -> str:
        return f"Record({self.ref!r}, {self.commit[:12]!r})"


def public_record(rec: Record) -> dict[str, Any]:
    """The public record of one experiment (``show --json``, ``sweeprun.api``)."""
    m = rec.meta
    return {
        "name": rec.name,
        "id": rec.id,
        "state": str(rec.state),
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
        # Only on records a rerun replaced (show --all-records): rows stay as they were.
        **({"replaced": True} if rec.ref.startswith(REPLACED) else {}),
        # Only on trials of an optimize: sweep.
        **({"study": m["study"], "trial": m.get("trial", 0)} if m.get("study") else {}),
    }


def _minimal(raw: Mapping[str, Any]) -> ExpRecord:
    """What is sure of a record whose fields do not parse: its identity and state."""
    key, name = str(raw["key"]), str(raw["name"])
    exp_id, baseline = str(raw.get("id") or name), str(raw.get("baseline") or "")
    if raw.get("state") is None:
        return QueueRecord(key=key, name=name, id=exp_id, baseline=baseline)
    state = State.parse(raw["state"])
    return Result(key=key, name=name, id=exp_id, baseline=baseline, state=state)


def is_record(raw: Mapping[str, Any]) -> bool:
    """Whether a message's JSON is a sweeprun record (it names its key and name)."""
    return isinstance(raw.get("key"), str) and isinstance(raw.get("name"), str)


def result_ref(baseline: str, name: str) -> str:
    """The ref of a finished experiment."""
    return f"{EXPS}{baseline}/{name}"


def replaced_ref(baseline: str, name: str, commit: str) -> str:
    """Where a result that a rerun replaced is kept."""
    return f"{REPLACED}{baseline}/{name}/{commit}"
