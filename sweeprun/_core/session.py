"""The session: collect experiments from specs, queue them, run them — as pytest does.

``wrap_session`` is the skeleton (start → collect → queue → run loop → finish) with
cleanup guaranteed; exceptions become exit codes in ``cli``. Collection knows nothing of
processes; the scheduler knows nothing of YAML: they meet in queue records.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from sweeprun._core import expansion, specpaths, streaming, studies, worker
from sweeprun._core.exitcode import ExitCode
from sweeprun._core.options import run_options
from sweeprun._core.selection import check_fan_out
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import FAILED_STATES, QUEUE, Record
from sweeprun.spec import names
from sweeprun.spec.collect import (
    Experiment,
    check_overlap,
    composer,
    interpolate_stages,
    params_of,
    spec_overrides,
)
from sweeprun.spec.hydra import Composer
from sweeprun.spec.loader import Spec
from sweeprun.spec.overrides import Override, parse_override
from sweeprun.spec.params import ParamsSet
from sweeprun.spec.schema import schema_text
from sweeprun.spec.sweeps import Sweep
from sweeprun.store.git import refuse_sparse, run_git
from sweeprun.store.records import ExpStore
from sweeprun.system.stopping import StopToken

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun.model import JobReport
    from sweeprun.run.runner import Runner


DEFAULT_SWEEP = "run"


class Session:
    """State of one ``sweeprun [SPEC…]`` invocation."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.items: list[Experiment] = []
        #: ``--collect-only`` streamed instead (see _core/streaming.py).
        self.listed: streaming.Listing | None = None
        self.specs: list[Spec] = []
        self._loaded: dict[Path, Spec] = {}
        self.queued: list[Record] = []
        self.skipped_duplicates: list[tuple[Experiment, Record]] = []
        self.reports: list[JobReport] = []
        #: Why the run stops dispatching (``shouldstop``), shared with its runner.
        self.stop = StopToken()
        #: The run's runner, once it runs (see ``_core.runloop``).
        self.runner: Runner | None = None
        #: The collected ``optimize:`` sweeps (see _core/studies.py).
        self.studies: list[studies.OpenStudy] = []
        self._studies_of: dict[str, list[studies.OpenStudy]] = {}
        #: A background worker's: a run also takes what is queued meanwhile.
        self.follow = False
        #: ids of collected experiments to queue again even if they ran (--lf/--ff)
        self.force_keys: set[int] = set()
        #: Warnings about a sweep, said once selection is done: (spec, sweep) → text.
        self.warnings: list[tuple[tuple[str, str], str]] = []
        #: Where the collected points came from, when -S or -n shaped them (said with
        #: the count).
        self.origins: list[str] = []
        self.started = time.time()
        self.exitstatus: int = ExitCode.OK
        #: How experiments run: the typed options, never the Namespace below this point.
        self.options = run_options(config.args)
        if self.options.backend == "dask" and not self.options.worker_url:
            url = run_git(["config", "sweeprun.workerUrl"], config.repo.root, check=False)
            self.options = replace(self.options, worker_url=url.strip() or None)
        if (self.options.worker_url or "").startswith("-"):
            # git would read it as an option of push/fetch (--upload-pack=… runs a command).
            raise UsageError(
                f"--worker-url {self.options.worker_url}: not a git URL (valid: a path, "
                "file://, git://, ssh:// or https:// URL)"
            )
        #: ``sweeprun run`` without ``--temp``: the job runs in the user's work tree.
        self.in_place = False
        self._store: ExpStore | None = None

    @property
    def store(self) -> ExpStore:
        if self._store is None:
            self._store = ExpStore(self.config.repo)
        return self._store

    @property
    def shouldstop(self) -> str | None:
        """Why the run stops dispatching, or ``None``."""
        return self.stop.reason

    @shouldstop.setter
    def shouldstop(self, reason: str | None) -> None:
        self.stop.reason = reason

    @property
    def running(self) -> dict[str, Record]:
        """The run's claimed records by key (none before it runs)."""
        return self.runner.running if self.runner is not None else {}

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.config.hook

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- collection -------------------------------------------------------------------------

    def spec_paths(self) -> list[tuple[Path, str | None]]:
        """SPEC arguments resolved to spec files (see :func:`specpaths.spec_paths`)."""
        return specpaths.spec_paths(self.config)

    def collect(self) -> list[Experiment]:
        """Load every spec and expand its sweeps into experiments."""
        limit = int(self.config.getoption("max_points"))
        overrides = [parse_override(s, limit) for s in self.config.getoption("set_params") or []]
        repo = self.config.repo
        items: list[Experiment] = []
        loaded: dict[Path, list[Experiment]] = {}
        seen: set[tuple[str, str]] = set()
        paths = self.spec_paths()
        picked = bool(self.config.getoption("keyword"))  # -k picks points of the sweeps
        for path, selector in paths:
            if path not in loaded:
                self.config.pluginmanager.load_conftests(repo.root, path.parent)
                spec = self.load_spec(path)
                self.specs.append(spec)
                # -S without SPEC::SWEEP or -k: the points -S makes, against the base
                # params (DVC's `exp run -S`), not -S inside every sweep of the spec.
                adhoc = (
                    bool(overrides)
                    and not picked
                    and all(
                        s is None or s.partition("[")[0] == DEFAULT_SWEEP
                        for p, s in paths
                        if p == path
                    )
                )  # (an ad-hoc point's own id, SPEC::run[…], is run by that id again)
                loaded[path] = self._collect_spec(spec, overrides, adhoc)
            got = loaded[path]
            self.studies += [
                s
                for s in self._studies_of.get(path.relative_to(repo.root).as_posix(), [])
                if selector in (None, s.sweep.name) and s not in self.studies
            ]
            if selector is not None:
                want = [i for i in got if i.id == selector or i.sweep == selector]
                if not want and not any(s.sweep.name == selector for s in self.studies):
                    rel = path.relative_to(repo.root).as_posix()
                    raise UsageError(
                        f"{rel}::{selector}: no such sweep or experiment (see --collect-only)"
                    )
                got = want
            for item in got:
                if (item.spec.path, item.id) not in seen:
                    seen.add((item.spec.path, item.id))
                    items.append(item)
        self.items = items
        return items

    def load_spec(self, path: Path) -> Spec:
        """The spec at ``path``, loaded once (by its plugin) however often asked for."""
        if path not in self._loaded:
            self._loaded[path] = self.hook.sweeprun_load_spec(path=path, config=self.config)
        return self._loaded[path]

    def warn_selected(self, items: list[Experiment]) -> None:
        """Say the collection's warnings about sweeps that still have a selected point
        (one that ``-k`` deselected is of no concern)."""
        kept = {(i.spec.path, i.sweep) for i in items}
        for where, text in self.warnings:
            if where in kept:
                print(f"sweeprun: warning: {text}", file=sys.stderr)

    def apply_name_option(self, items: list[Experiment]) -> None:
        """``-n NAME`` names the one selected experiment; ``-n PREFIX`` a sweep PREFIX-1…N."""
        name = self.config.getoption("name")
        if name is None:
            return
        names.check_name_option(name)
        if len(items) > 1:  # said, never a silent suffix
            self.origins.append(f"-n {name} names {len(items)}: {name}-1 … {name}-{len(items)}")
        for i, item in enumerate(items, 1):
            item.name = name if len(items) == 1 else f"{name}-{i}"
            item.name_mark = None

    def _collect_spec(self, spec: Spec, overrides: list[Override], adhoc: bool) -> list[Experiment]:
        params = params_of(spec)
        fixed, cli_points = spec_overrides(spec, params, overrides)
        sweeps = spec.sweeps or [Sweep(name=DEFAULT_SWEEP, groups=[])]
        if overrides:
            self.origins.append(specpaths.set_origin(spec, adhoc))
        if adhoc:
            sweeps = [Sweep(name=DEFAULT_SWEEP, groups=[])]
        items: list[Experiment] = []
        with composer(spec) as app:
            for sweep in sweeps:
                said = len(app.shadows) if app else 0
                items.extend(self._collect_sweep(spec, sweep, params, fixed, cli_points, app))
                for line in app.shadows[said:] if app else ():
                    # The app runs with the winner's value: the swept choice is not what ran.
                    text = f"{spec.path}: sweep {sweep.name!r}: {line}"
                    self.warnings.append(((spec.path, sweep.name), text))
        return items

    def _collect_sweep(
        self,
        spec: Spec,
        sweep: Sweep,
        params: ParamsSet,
        fixed: dict[str, Any],
        cli_points: list[dict[str, Any]],
        app: Composer | None,
    ) -> list[Experiment]:
        study = studies.study_of(self, spec, sweep, params)
        if study is not None:  # its points come as results do (see _core/studies.py)
            self._studies_of.setdefault(spec.path, []).append(study)
            return []
        items = []
        expansion.check_size(self.config, spec, sweep, max(1, len(cli_points)))
        points = expansion.expand(self.config, spec, sweep, params) if sweep.groups else [{}]
        keys = {*fixed, *(k for c in cli_points for k in c)}
        warning = check_overlap(spec, sweep, points, keys, max(1, len(cli_points)))
        if warning:
            self.warnings.append(((spec.path, sweep.name), warning))
        if len(cli_points) > 1:
            points = [{**p, **c} for p in points for c in cli_points]
        name_mark = sweep.raw.value_marks.get("name") if sweep.name_template else None
        points = [{**point, **fixed} for point in points]
        composed = app.compose_many(points) if app is not None else None  # checks them
        for n, point in enumerate(points):
            exp = Experiment(
                id=names.make_id(sweep.name, point),
                sweep=sweep.name,
                spec=spec,
                params=params,
                point=point,
                stages=[],
                name_mark=name_mark,
                expect=sweep.expect,
            )
            exp.composed = composed[n] if composed is not None else None
            exp.stages = interpolate_stages(spec, exp)
            exp.name = self.hook.sweeprun_make_name(
                experiment=exp, template=sweep.name_template, config=self.config
            )
            items.append(exp)
        return items

    def collect_points(
        self, spec: Spec, sweep: Sweep, params: ParamsSet, point: dict[str, Any]
    ) -> list[Experiment]:
        """The experiment of one given point of ``sweep`` (a study's trial)."""
        return self._collect_sweep(spec, sweep, params, point, [], None)


# -- hooks --------------------------------------------------------------------------------


@hookimpl(trylast=True)
def sweeprun_cmdline_main(config: Config) -> int:
    """The main mode: collect → queue → (run)."""
    return wrap_session(config, _main)


def wrap_session(config: Config, body: Callable[[Session], int]) -> int:
    """Run ``body`` inside session start/finish; the exit status reaches every plugin."""
    session = Session(config)
    status: int = ExitCode.INTERNAL_ERROR
    try:
        config.hook.sweeprun_sessionstart(session=session)
        status = body(session)
        return status
    except UsageError:
        status = ExitCode.USAGE_ERROR
        raise
    except KeyboardInterrupt:
        status = ExitCode.INTERRUPTED
        session.shouldstop = "interrupted"
        session.store.release(list(session.running.values()))
        return status
    finally:
        session.exitstatus = status
        try:
            config.hook.sweeprun_sessionfinish(session=session, exitstatus=status)
        finally:
            session.close()


def _main(session: Session) -> int:
    config = session.config
    check_fan_out(config)
    if config.getoption("schema"):
        config.stdout.write(schema_text())
        return ExitCode.OK
    run_all = bool(config.getoption("run_all"))
    run_now = bool(config.getoption("run"))
    if (run_all or run_now) and not config.getoption("collect_only"):
        refuse_sparse(config.repo.root)
    items: list[Experiment] = []
    collecting = bool(config.getoption("specs")) or not run_all
    if collecting and config.getoption("collect_only"):
        session.listed = streaming.collect(session)  # None: collected as usual
    if collecting and session.listed is None:
        items = session.collect()
        config.hook.sweeprun_collection_modifyitems(session=session, config=config, items=items)
        session.warn_selected(items)
        session.apply_name_option(items)
        session.items = items
    config.hook.sweeprun_collection_finish(session=session)
    if config.getoption("collect_only"):
        found = items or session.listed or session.studies
        return ExitCode.OK if found else ExitCode.NO_TESTS_COLLECTED
    if not items and not session.studies and not run_all:
        return ExitCode.NO_TESTS_COLLECTED
    queued = config.hook.sweeprun_queue(session=session, items=items) if items else []
    queued += studies.start(session, session.options.jobs) if session.studies else []
    session.queued = queued
    if config.getoption("idle_timeout") is not None and not config.getoption("worker"):
        raise UsageError("--idle-timeout: an option of 'sweeprun queue start' (a worker's)")
    if run_all and config.getoption("worker"):
        return worker.serve(session, config.getoption("worker"))
    if run_all:
        # Experiments whose runner died: adopted when their command had finished, else
        # run again.
        records = worker.queued_now(session)
    elif run_now:
        # Points that were queued already (not just now, not twice in this batch) run too.
        fresh = {rec.key for rec in queued}
        skipped = {
            rec.key: rec
            for _, rec in session.skipped_duplicates
            if rec.ref.startswith(QUEUE) and rec.commit and rec.key not in fresh
        }
        records = studies.with_pending(session, list(queued) + list(skipped.values()))
    else:
        return ExitCode.OK
    # The exit code reflects every collected experiment's recorded outcome: a rerun of
    # 'SPEC --run' over recorded failures must not go green by skipping them.
    failed_before = run_now and bool(recorded_failures(session))
    if not records:
        if session.reports:  # adopted from a runner that died
            return (
                ExitCode.TESTS_FAILED if any(not r.passed for r in session.reports) else ExitCode.OK
            )
        if failed_before:
            return ExitCode.TESTS_FAILED
        return ExitCode.NO_TESTS_COLLECTED if not items else ExitCode.OK
    config.hook.sweeprun_runloop(session=session, records=records)
    if session.shouldstop == "interrupted":
        return ExitCode.INTERRUPTED
    failed = failed_before or any(not r.passed for r in session.reports)
    return ExitCode.TESTS_FAILED if failed else ExitCode.OK


def recorded_failures(session: Session) -> list[Record]:
    """Collected experiments skipped because they already have a failed result."""
    return [rec for _, rec in session.skipped_duplicates if rec.state in FAILED_STATES]
