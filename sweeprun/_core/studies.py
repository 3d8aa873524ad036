"""Studies: ``optimize:`` sweeps queued a few trials at a time, as slots free.

Collecting an ``optimize:`` sweep yields no experiments but a :class:`OpenStudy`. Queueing
it (``sweeprun sweeps.yaml::tune``) proposes as many trials as ``-j`` can run at once;
running (``--run``, ``--run-all``, a background worker) proposes the next one each time a
slot asks for work, until the study holds ``trials`` trials. ``--run-all`` finds the open
studies from the records (a trial's record names its spec, sweep and study), loading
the sweep from the spec as it is in the work tree: if its objective or space changed
since, that is another study, and the old one is left as it is.

The study's trials are its records (see :mod:`sweeprun.sweepers.optimize`): counted and
proposed under a lock per study, so two runners never propose past ``trials`` together,
and a kill -9 between proposing and running leaves a queued trial that the next run
runs — each proposal is recorded once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeprun._core import expansion
from sweeprun.model import EXPS, FAILED_STATES, QUEUE, RUNNING, Record, State
from sweeprun.run import checkpoint
from sweeprun.spec.collect import params_of
from sweeprun.spec.expect import lookup
from sweeprun.spec.sweeps import Sweep, locate
from sweeprun.sweepers.optimize import OptimizeConfig, Pruning, Trial, parse_optimize
from sweeprun.system.damage import held

if TYPE_CHECKING:
    from sweeprun._core.session import Session
    from sweeprun.spec.collect import Experiment
    from sweeprun.spec.loader import Spec
    from sweeprun.spec.params import ParamsSet


@dataclass
class OpenStudy:
    """An ``optimize:`` sweep of a loaded spec."""

    spec: Spec
    sweep: Sweep
    config: OptimizeConfig
    params: ParamsSet
    #: Space key as written → qualified param key (as records store points).
    keys: dict[str, str]
    #: Its space has no untried point left (said once).
    exhausted: bool = False

    @property
    def where(self) -> str:
        """``SPEC::SWEEP``."""
        return f"{self.spec.path}::{self.sweep.name}"

    def lines(self, records: list[Record]) -> list[str]:
        """``--collect-only`` lines: its objective, space and trials so far."""
        history = self.trials(records)
        done = sum(1 for _, t in history if t.values is not None)
        out = [
            f"  <Study {self.where}> {self.config.describe()}: {len(history)} proposed, "
            f"{done} finished",
            *(f"      {d.key}: {d.kind}({', '.join(map(str, d.args))})" for d in self.config.space),
        ]
        for rec, trial in history:
            point = ", ".join(f"{k}={v!r}" for k, v in trial.point.items())
            value = "" if not trial.values else " -> " + ", ".join(f"{v:g}" for v in trial.values)
            out.append(f"    {rec.name} ({rec.state}) {point}{value}")
        return out

    def trials(self, records: list[Record]) -> list[tuple[Record, Trial]]:
        """This study's trials among ``records``, oldest first."""
        out = []
        for rec in records:
            data = rec.data
            if data.study != self.config.digest or data.sweep != self.sweep.name:
                continue
            if data.spec != self.spec.path or rec.state is State.CHECKPOINT:
                continue
            if not (rec.ref.startswith((QUEUE, RUNNING)) or rec.finished):
                continue
            point = {k: data.point[q] for k, q in self.keys.items() if q in data.point}
            pruned = rec.state is State.PRUNED
            out.append((rec, Trial(point, _values(rec, self.config), pruned)))
        out.sort(key=lambda t: (t[0].data.trial, t[0].meta.get("queued_at", 0)))
        return out


def _values(rec: Record, config: OptimizeConfig) -> tuple[float, ...] | None:
    """A finished trial's metric values (empty: failed, or a metric missing)."""
    if not rec.finished:
        return None
    result = rec.result
    if result is None or rec.state in FAILED_STATES:
        return ()
    got = [lookup(result.metrics, m) for m in config.metrics]
    if not all(found and isinstance(v, (int, float)) for found, v in got):
        return ()
    return tuple(float(v) for _, v in got)


def study_of(session: Session, spec: Spec, sweep: Sweep, params: ParamsSet) -> OpenStudy | None:
    """The study of ``sweep`` if it is an ``optimize:`` sweep (a located error if its
    block is wrong, or beside other blocks)."""
    blocks = [b for group in sweep.groups for b in group]
    if not any(kind == "optimize" for kind, _, _ in blocks):
        return None
    _, block, mark = next(b for b in blocks if b[0] == "optimize")
    if len(blocks) > 1:
        raise spec.error(mark, f"sweep {sweep.name!r}: 'optimize' is the sweep's only block")
    if spec.hydra is not None:
        raise spec.error(mark, f"sweep {sweep.name!r}: 'optimize' does not run Hydra apps yet")
    with expansion.located(spec, sweep, block, mark):
        config = parse_optimize(block)
    keys = {}
    for dim in config.space:
        try:
            pf, inner = params.resolve(dim.key)
            pf.check_key(inner, "", add_hint=False)
        except Exception as exc:
            where = locate(block, ("space", dim.key), mark)
            raise spec.error(where, f"sweep {sweep.name!r}: {str(exc).lstrip(': ')}") from None
        keys[dim.key] = params.qualify(dim.key)
    return OpenStudy(spec, sweep, config, params, keys)


@contextlib.contextmanager
def _locked(session: Session, study: OpenStudy) -> Iterator[None]:
    """One proposer at a time per study in this repository."""
    state = session.config.repo.state_dir
    with held(state / "studies" / f"{study.config.digest}.lock", state):
        yield


def top_up(session: Session, limit: int) -> list[Record]:
    """Propose and queue up to ``limit`` trials of each open study (fewer when a study is
    near its ``trials``); the records queued."""
    queued: list[Record] = []
    for study in session.studies:
        with _locked(session, study):
            ledger = session.store.ledger(study.config.digest)
            if len(ledger) >= study.config.trials:
                continue  # full: its records need not be read (a look that is cheap and often)
            history = study.trials(session.store.records())
            taken = _taken(ledger, history)
            n = min(limit, study.config.trials - len(taken))
            if n <= 0:
                continue
            points = session.hook.sweeprun_propose(
                config=study.config, history=[t for _, t in history], n=n
            )
            if not points:
                if not study.exhausted:  # said once; the study ends short of its budget
                    study.exhausted = True
                    session.config.stdout.write(
                        f"study {study.where}: no untried point left in its space after "
                        f"{len(taken)} trials: it ends there ({study.config.trials} asked)\n"
                    )
                continue
            items = [_experiment(session, study, p) for p in points]
            for number, item in enumerate(items, max(taken, default=-1) + 1):
                item.trial = number
            queued += session.store.enqueue(items).queued
    return queued


def _taken(ledger: set[int], history: list[tuple[Record, Trial]]) -> set[int]:
    """The trial numbers a study has used. Counted in its ledger, not by listing records:
    a record moving from running/ to exps/ while they are listed can be missed (a proposal
    too many, as a test with kill -9 found); the records add what a ledger pulled from
    elsewhere lacks."""
    return ledger | {rec.data.trial for rec, _ in history}


def _experiment(session: Session, study: OpenStudy, point: dict[str, Any]) -> Experiment:
    """The experiment of one proposed point (its record names the study)."""
    qualified = {study.keys[k]: v for k, v in point.items()}
    plain = Sweep(
        name=study.sweep.name,
        groups=[],
        name_template=study.sweep.name_template,
        expect=study.sweep.expect,
        raw=study.sweep.raw,
        mark=study.sweep.mark,
    )
    (item,) = session.collect_points(study.spec, plain, study.params, qualified)
    item.study = study.config.digest
    return item


def open_from_records(session: Session, results: bool = True) -> list[OpenStudy]:
    """Add to ``session.studies`` the studies the records name (``--run-all`` and
    workers: nothing collected them). ``results=False``: only queued and running records
    are read (an idle worker's look every half second: a new study always has a queued
    trial, and reading every result that often would cost with many of them). Returns
    ``session.studies``."""
    known = {(s.spec.path, s.sweep.name, s.config.digest) for s in session.studies}
    named: dict[tuple[str, str, str], None] = {}
    listed = session.store.records() if results else session.store.records(QUEUE, RUNNING)
    for rec in listed:
        data = rec.data
        if data.study and (data.spec, data.sweep, data.study) not in known:
            named[(data.spec, data.sweep, data.study)] = None
    root = session.config.repo.root
    for spec_path, sweep_name, digest in named:
        path = root / spec_path
        if not path.is_file():
            continue
        with contextlib.suppress(Exception):  # a spec that no longer loads: left as it is
            spec = session.hook.sweeprun_load_spec(path=path, config=session.config)
            for sweep in spec.sweeps:
                if sweep.name == sweep_name:
                    study = study_of(session, spec, sweep, params_of(spec))
                    if study is not None and study.config.digest == digest:
                        session.studies.append(study)
                        known.add((spec_path, sweep_name, digest))
    return session.studies


def start(session: Session, jobs: int) -> list[Record]:
    """Queue the first trials of the collected studies: as many as ``-j`` runs at once."""
    queued = top_up(session, max(1, jobs))
    for study in session.studies:
        history = study.trials(session.store.records())
        n = len(_taken(session.store.ledger(study.config.digest), history))
        session.config.stdout.write(
            f"study {study.where}: {n} of {study.config.trials} trials proposed "
            f"({study.config.describe()})\n"
        )
    return queued


def with_pending(session: Session, records: list[Record]) -> list[Record]:
    """``records`` and the collected studies' trials queued before (``--run``)."""
    have = {r.key for r in records}
    queued = session.store.queued()
    return records + [r for s in session.studies for r, _ in s.trials(queued) if r.key not in have]


def more(session: Session) -> Callable[[], list[Record]]:
    """A run's proposer (see ``run.sources.ProposerSource``): the next trial of each open
    study, then the studies' queued trials."""

    def ask() -> list[Record]:
        top_up(session, 1)
        queued = session.store.queued()
        return [r for s in session.studies for r, _ in s.trials(queued)]

    return ask


def pruner(session: Session) -> Callable[[Record, int, Mapping[str, Any]], str] | None:
    """What a run asks at each checkpoint of a running trial of a study with ``prune:``
    (see ``Runner.prune``): why to stop it, or ""; ``None`` when no study prunes."""
    pruned = [s for s in session.studies if s.config.prune is not None]
    if not pruned:
        return None
    kept: dict[str, Pruning] = {}
    lock = threading.Lock()

    def ask(rec: Record, step: int, metrics: Mapping[str, Any]) -> str:
        key, data = rec.key, rec.data
        study = next(
            (s for s in pruned if (s.config.digest, s.sweep.name) == (data.study, data.sweep)),
            None,
        )
        if study is None:
            return ""
        metric = study.config.metrics[0]
        found, value = lookup(metrics, metric)
        if not found or isinstance(value, bool) or not isinstance(value, (int, float)):
            return ""
        with lock:
            pruning = kept.get(study.config.digest)
            if pruning is None:
                pruning = kept[study.config.digest] = Pruning(study.config)
            if key not in pruning.live:  # a trial's first checkpoint here: catch up first
                _catch_up(session, study, pruning)
        point = {k: data.point[q] for k, q in study.keys.items() if q in data.point}
        if not pruning.should_stop(key, point, step, float(value)):
            return ""
        assert study.config.prune is not None
        return f"{metric} = {value:g} at checkpoint {step} ({study.config.prune.pruner} pruner)"

    return ask


def _catch_up(session: Session, study: OpenStudy, pruning: Pruning) -> None:
    """Give ``pruning`` the study's trials that finished since it last looked, with the
    metric at each of their checkpoints (their chains)."""
    metric = study.config.metrics[0]
    for rec, trial in study.trials(session.store.records(EXPS)):
        if rec.key in pruning.known and rec.key not in pruning.live:
            continue
        steps = {}
        for _, meta in checkpoint.chain(session.store.cwd, rec.commit, rec.baseline):
            found, value = lookup(meta.get("metrics") or {}, metric)
            if found and isinstance(value, (int, float)) and not isinstance(value, bool):
                steps[int(meta.get("step", 0))] = float(value)
        pruning.add(rec.key, trial, steps, pruned=trial.pruned)
