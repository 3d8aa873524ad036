"""``optimize:`` sweeps: points proposed from finished results, Optuna as the engine.

The study is not kept anywhere but in git: every time a point is wanted, an in-memory
Optuna study is rebuilt from the sweep's records — finished trials added with their
metric (``add_trial``), queued and running ones as running trials (the sampler's constant
liar keeps them from being proposed again) — and asked for the next point. So a run
killed with ``kill -9``, another machine after ``pull`` or a background worker continue
the same study. The sampler's seed is the sweep's ``seed`` plus the number of trials the
study holds, so a given seed and completion order propose the same points.

This module is pure (no store, no session): :mod:`sweeprun._core.studies` reads the
records and queues what is proposed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeprun.exceptions import SweepValueError, UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.sweepers.random import Dimension, parse_dimension

OPTIMIZE_KEYS = ("trials", "seed", "sampler", "metric", "direction", "space", "prune")
SAMPLERS = ("tpe", "cmaes", "gp", "random", "qmc", "nsga2")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
DIRECTIONS = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
#: Where Optuna comes from, said when it is missing.
INSTALL = "pip install 'sweeprun[optimize]' (Optuna)"


@dataclass(frozen=True)
class PruneConfig:
    """``prune:``: stop a trial whose checkpoint metric is worse than the others' there."""

    pruner: str  # median | hyperband | successive-halving
    min_steps: int  # no trial is stopped before this many checkpoints


@dataclass(frozen=True)
class OptimizeConfig:
    """One ``optimize:`` block, checked."""

    trials: int
    seed: int
    sampler: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]  # "minimize" | "maximize", one per metric
    space: tuple[Dimension, ...]
    #: A digest of the block: the study is the sweep's records with this digest (a changed
    #: space or objective starts another study; a changed ``trials`` or ``prune``
    #: continues it).
    digest: str
    prune: PruneConfig | None = None

    def describe(self) -> str:
        """One line: sampler, objective and budget."""
        goal = ", ".join(f"{d[:3]} {m}" for m, d in zip(self.metrics, self.directions, strict=True))
        prune = self.prune
        pruning = f", prune: {prune.pruner} from step {prune.min_steps}" if prune else ""
        return f"{self.sampler}, {goal}, {self.trials} trials, seed {self.seed}{pruning}"


def parse_optimize(block: Any) -> OptimizeConfig:
    """Check an ``optimize:`` block; :class:`SweepValueError` (located by key) if wrong."""
    if not isinstance(block, Mapping):
        raise SweepValueError("'optimize' must be a mapping", ())
    for key in block:
        if key not in OPTIMIZE_KEYS:
            raise SweepValueError(
                f"unknown key {key!r} in 'optimize' (valid: {', '.join(OPTIMIZE_KEYS)})", (key,)
            )
    trials = block.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SweepValueError("'trials' must be a whole number >= 1", ("trials",))
    seed = block.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepValueError("'seed' must be an integer", ("seed",))
    sampler = block.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SweepValueError(
            f"'sampler' {sampler!r} is not one of: {', '.join(SAMPLERS)}", ("sampler",)
        )
    raw_metric = block.get("metric")
    metrics = tuple(raw_metric) if isinstance(raw_metric, list) else (raw_metric,)
    if not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise SweepValueError(
            "'metric' must name a metric (as in 'show --best'; file:key when ambiguous), "
            "or be a list of them",
            ("metric",),
        )
    raw_dir = block.get("direction", "min")
    dirs = tuple(raw_dir) if isinstance(raw_dir, list) else (raw_dir,) * len(metrics)
    if len(dirs) != len(metrics) or not all(d in DIRECTIONS for d in dirs):
        raise SweepValueError(
            f"'direction' must be min or max (a list of them for {len(metrics)} metrics)",
            ("direction",),
        )
    if len(metrics) > 1 and sampler not in ("nsga2", "random", "qmc", "tpe"):
        raise SweepValueError(
            f"sampler {sampler!r} optimizes one metric; for several use nsga2 or tpe",
            ("sampler",),
        )
    prune = _parse_prune(block.get("prune"), len(metrics))
    space = block.get("space")
    if not isinstance(space, Mapping) or not space:
        raise SweepValueError(
            "'optimize' needs 'space', a mapping of param → distribution",
            ("space",) if "space" in block else (),
        )
    dims = []
    for key, value in space.items():
        try:
            dim = parse_dimension(str(key), value)
        except SweepValueError as exc:
            raise SweepValueError(exc.message, ("space", str(key))) from None
        if dim.kind == "normal":
            raise SweepValueError(
                f"space key {key!r}: normal() has no bounds to search; use uniform(low, "
                "high) or loguniform(low, high)",
                ("space", str(key)),
            )
        dims.append(dim)
    plain = {k: block[k] for k in ("seed", "sampler", "metric", "direction", "space") if k in block}
    digest = hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()
    return OptimizeConfig(
        trials=trials,
        seed=seed,
        sampler=str(sampler),
        metrics=tuple(str(m) for m in metrics),
        directions=tuple(DIRECTIONS[str(d)] for d in dirs),
        space=tuple(dims),
        digest=digest[:12],
        prune=prune,
    )


def _parse_prune(block: Any, metrics: int) -> PruneConfig | None:
    """The ``prune:`` mapping (``None``: no pruning)."""
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise SweepValueError(
            "'prune' must be a mapping: {pruner: median, min_steps: 2}", ("prune",)
        )
    for key in block:
        if key not in ("pruner", "min_steps"):
            raise SweepValueError(
                f"unknown key {key!r} in 'prune' (valid: pruner, min_steps)", ("prune", key)
            )
    pruner = block.get("pruner", "median")
    if pruner not in PRUNERS:
        raise SweepValueError(
            f"'pruner' {pruner!r} is not one of: {', '.join(PRUNERS)}", ("prune", "pruner")
        )
    steps = block.get("min_steps", 1)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise SweepValueError("'min_steps' must be a whole number >= 0", ("prune", "min_steps"))
    if metrics > 1 and pruner != "none":
        raise SweepValueError(
            "pruning needs one metric (Optuna prunes single objectives)", ("prune",)
        )
    return None if pruner == "none" else PruneConfig(str(pruner), steps)


@dataclass(frozen=True)
class Trial:
    """A trial as the records tell it: its point, and its metric values once finished
    (``None``: queued or running; an empty tuple: finished without the metric)."""

    point: Mapping[str, Any]
    values: tuple[float, ...] | None
    #: Stopped by the pruner (``values``: the metric where it stopped).
    pruned: bool = False


def _optuna() -> Any:
    try:
        import optuna  # deferred: optional, and ~0.5 s to import
    except ImportError:
        raise UsageError(f"optimize: Optuna is not installed: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distributions(optuna: Any, config: OptimizeConfig) -> dict[str, Any]:
    d = optuna.distributions
    out: dict[str, Any] = {}
    for dim in config.space:
        a = dim.args
        if dim.kind == "choice":
            out[dim.key] = d.CategoricalDistribution(list(a))
        elif dim.kind == "randint":
            out[dim.key] = d.IntDistribution(int(a[0]), int(a[1]))
        else:
            out[dim.key] = d.FloatDistribution(a[0], a[1], log=dim.kind == "loguniform")
    return out


def _sampler(optuna: Any, name: str, seed: int) -> Any:
    s = optuna.samplers
    try:
        if name == "tpe":
            return s.TPESampler(seed=seed, constant_liar=True)
        if name == "random":
            return s.RandomSampler(seed=seed)
        if name == "cmaes":
            return s.CmaEsSampler(seed=seed)
        if name == "gp":
            return s.GPSampler(seed=seed)
        if name == "qmc":
            return s.QMCSampler(seed=seed)
        return s.NSGAIISampler(seed=seed)
    except ImportError as exc:
        raise UsageError(f"optimize: sampler {name!r} needs {exc.name or exc}") from None


def _fits(dist: Any, value: Any) -> bool:
    """Whether ``value`` lies in Optuna distribution ``dist``."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def propose(config: OptimizeConfig, history: Sequence[Trial], n: int) -> list[dict[str, Any]]:
    """The next ``n`` points of the study that ``history`` is (see the module docstring)."""
    optuna = _optuna()
    dists = _distributions(optuna, config)
    sampler = _sampler(optuna, config.sampler, config.seed + len(history))
    study = optuna.create_study(directions=list(config.directions), sampler=sampler, storage=None)
    ts = optuna.trial.TrialState
    for trial in history:
        params = {k: trial.point[k] for k in dists if k in trial.point}
        if len(params) != len(dists) or not all(_fits(dists[k], v) for k, v in params.items()):
            continue  # a point outside this space (queued by hand): not this study's
        if trial.values is None:
            study.enqueue_trial(params, skip_if_exists=False)
            study.ask(dists)  # running: the constant liar keeps its neighbourhood free
        elif trial.pruned and len(trial.values) == 1:
            # As Optuna keeps a pruned trial: its last reported value, for TPE to rank.
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=dists, state=ts.PRUNED,
                    intermediate_values={0: trial.values[0]},
                )
            )  # fmt: skip
        elif len(trial.values) == len(config.metrics) and all(
            math.isfinite(v) for v in trial.values
        ):
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=dists, values=list(trial.values)
                )
            )
        else:
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=dists, state=ts.FAIL)
            )
    # A point tried before (or twice in this batch) is not proposed again: the sampler is
    # asked again (the repeat stays in the study as running, pushing it elsewhere) a few
    # times; fewer points than asked means the space has no new one to give.
    seen = {_signature(t.point) for t in history}
    out: list[dict[str, Any]] = []
    for _ in range(n + REASKS):
        if len(out) == n or (space_size(config) or math.inf) <= len(seen):
            break
        point = _readable(study.ask(dists).params, dists)
        if _signature(point) not in seen:
            seen.add(_signature(point))
            out.append(point)
    size = space_size(config)
    if len(out) < n and size is not None and size <= 100_000:
        # A small discrete space the sampler keeps repeating points of: its untried
        # points in order, so that none is left out and none runs twice.
        for values in itertools.product(*(d.args if d.kind == "choice" else
                                          range(int(d.args[0]), int(d.args[1]) + 1)
                                          for d in config.space)):  # fmt: skip
            point = dict(zip((d.key for d in config.space), values, strict=True))
            if len(out) < n and _signature(point) not in seen:
                seen.add(_signature(point))
                out.append(point)
    return out


#: How many repeated points ``propose`` asks past before it says the space is used up.
REASKS = 20


def _signature(point: Mapping[str, Any]) -> str:
    return repr(sorted(point.items()))


def space_size(config: OptimizeConfig) -> int | None:
    """How many points the space has, when every dimension is discrete (else ``None``)."""
    if not all(d.discrete for d in config.space):
        return None
    return math.prod(d.size for d in config.space)


def _readable(params: Mapping[str, Any], dists: Mapping[str, Any]) -> dict[str, Any]:
    """Floats to 6 significant digits (ids and names stay readable, as in ``random:``),
    unless rounding would leave the space."""
    out = dict(params)
    for key, value in params.items():
        if isinstance(value, float):
            short = float(f"{value:.6g}")
            out[key] = short if _fits(dists[key], short) else value
    return out


class Pruning:
    """One study's pruner, kept for a runner's life: finished trials are added as they
    are seen (with the metric at each of their checkpoints), running ones report their
    checkpoints and are asked whether to stop. Thread-safe (jobs ask from their threads)."""

    def __init__(self, config: OptimizeConfig) -> None:
        assert config.prune is not None
        optuna = _optuna()
        self.config = config
        self._dists = _distributions(optuna, config)
        self._ts = optuna.trial.TrialState
        self._create = optuna.trial.create_trial
        prune = config.prune
        p = optuna.pruners
        pruner = (
            p.MedianPruner(n_startup_trials=1, n_warmup_steps=prune.min_steps)
            if prune.pruner == "median"
            else p.SuccessiveHalvingPruner(min_resource=max(1, prune.min_steps))
            if prune.pruner == "successive-halving"
            else p.HyperbandPruner(min_resource=max(1, prune.min_steps))
        )
        self._study = optuna.create_study(
            direction=config.directions[0], sampler=optuna.samplers.RandomSampler(0), pruner=pruner
        )
        #: Trials running in this process, by experiment key.
        self.live: dict[str, Any] = {}
        self.known: set[str] = set()
        self._lock = threading.Lock()

    def add(self, key: str, trial: Trial, steps: Mapping[int, float], pruned: bool) -> None:
        """A finished trial: its final value (if any) and its value at each checkpoint."""
        with self._lock:
            self.known.add(key)
            params = {k: trial.point[k] for k in self._dists if k in trial.point}
            if len(params) != len(self._dists):
                return
            live = self.live.pop(key, None)
            state = (
                self._ts.PRUNED if pruned else self._ts.COMPLETE if trial.values else self._ts.FAIL
            )
            if live is not None:  # ran here: its trial is told how it ended
                values = list(trial.values or ()) if state == self._ts.COMPLETE else None
                self._study.tell(live, values, state=state)
                return
            value = trial.values[0] if state == self._ts.COMPLETE and trial.values else None
            self._study.add_trial(
                self._create(
                    params=params, distributions=self._dists, value=value, state=state,
                    intermediate_values=dict(steps),
                )
            )  # fmt: skip

    def should_stop(self, key: str, point: Mapping[str, Any], step: int, value: float) -> bool:
        """Report a running trial's metric at checkpoint ``step``; whether to stop it."""
        with self._lock:
            trial = self.live.get(key)
            if trial is None:
                params = {k: point[k] for k in self._dists if k in point}
                self._study.enqueue_trial(params, skip_if_exists=False)
                trial = self.live[key] = self._study.ask(self._dists)
            trial.report(value, step)
            if not trial.should_prune():
                return False
            del self.live[key]
            self._study.tell(trial, state=self._ts.PRUNED)
            self.known.add(key)
            return True


# -- plugin -------------------------------------------------------------------------------


@hookimpl
def sweeprun_block_types() -> list[str]:
    """``optimize``: a sweep whose points are proposed as results come in."""
    return ["optimize"]


@hookimpl(trylast=True)
def sweeprun_propose(
    config: OptimizeConfig, history: list[Trial], n: int
) -> list[dict[str, Any]] | None:
    """Optuna's proposal (see :func:`propose`)."""
    return propose(config, history, n)
