"""The session: collect experiments from specs, queue them, run them — as pytest does.

``wrap_session`` is the skeleton (start → collect → queue → run loop → finish) with
cleanup guaranteed; exceptions become exit codes in ``cli``. Collection knows nothing of
processes; the scheduler knows nothing of YAML: they meet in queue records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from sweeprun._core.argtypes import nonnegative_int, positive_int
from sweeprun._core.exitcode import ExitCode
from sweeprun._core.options import run_options
from sweeprun.exceptions import SweepValueError, UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import FAILED_STATES, QUEUE, Record
from sweeprun.spec import names
from sweeprun.spec.collect import Experiment, find_key_mark, interpolate_stages
from sweeprun.spec.loader import Spec, Sweep, locate
from sweeprun.spec.overrides import Override, parse_override
from sweeprun.spec.params import ParamsSet, flatten, get_path, has_path
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry
    from sweeprun.model import JobReport


SPEC_NAMES = ("sweeps.yaml", "sweeps.yml")
SPEC_GLOBS = ("*.sweeps.yaml", "*.sweeps.yml")
DEFAULT_SWEEP = "run"


class Session:
    """State of one ``sweeprun [SPEC…]`` invocation."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.items: list[Experiment] = []
        self.specs: list[Spec] = []
        self.queued: list[Record] = []
        self.skipped_duplicates: list[tuple[Experiment, Record]] = []
        self.running: dict[str, Record] = {}
        self.reports: list[JobReport] = []
        self.shouldstop: str | None = None
        #: ids of collected experiments to queue again even if they ran (--lf/--ff)
        self.force_keys: set[int] = set()
        self.started = time.time()
        self.exitstatus: int = ExitCode.OK
        #: How experiments run: the typed options, never the Namespace below this point.
        self.options = run_options(config.args)
        #: ``sweeprun run`` without ``--temp``: the job runs in the user's work tree.
        self.in_place = False
        self._store: ExpStore | None = None

    @property
    def store(self) -> ExpStore:
        if self._store is None:
            self._store = ExpStore(self.config.repo)
        return self._store

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.config.hook

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- collection -------------------------------------------------------------------------

    def spec_paths(self) -> list[tuple[Path, str | None]]:
        """SPEC arguments resolved to spec files (directories are searched).

        ``sweeps.yaml::grid`` and ``sweeps.yaml::grid[a=1]`` select one sweep or one
        experiment, as pytest node ids do.
        """
        args: list[str] = self.config.getoption("specs") or []
        base = self.config.invocation_dir
        if not args:
            for name in SPEC_NAMES:
                if (base / name).is_file():
                    return [(base / name, None)]
            raise UsageError(f"no sweeps.yaml in {base} (pass a spec file or directory as SPEC)")
        paths: list[tuple[Path, str | None]] = []
        for arg in args:
            file_part, sep, selector = arg.partition("::")
            p = (base / file_part).resolve()
            if sep and not p.is_file():
                raise UsageError(f"{arg}: {file_part!r} is not a spec file")
            if p.is_dir():
                found = [
                    f
                    for f in sorted(p.rglob("*"))
                    if f.is_file()
                    and ".git" not in f.relative_to(p).parts
                    and (f.name in SPEC_NAMES or any(f.match(g) for g in SPEC_GLOBS))
                ]
                if not found:
                    raise UsageError(f"{arg}: no sweeps.yaml or *.sweeps.yaml below it")
                paths.extend((f, None) for f in found)
            elif p.is_file():
                paths.append((p, selector if sep else None))
            else:
                raise UsageError(f"{arg}: no such spec file or directory")
        root = self.config.repo.root
        for p, _ in paths:
            try:
                p.relative_to(root)
            except ValueError:
                raise UsageError(f"{p}: outside the repository {root}") from None
        return list(dict.fromkeys(paths))

    def collect(self) -> list[Experiment]:
        """Load every spec and expand its sweeps into experiments."""
        limit = int(self.config.getoption("max_points"))
        overrides = [parse_override(s, limit) for s in self.config.getoption("set_params") or []]
        repo = self.config.repo
        items: list[Experiment] = []
        loaded: dict[Path, list[Experiment]] = {}
        seen: set[tuple[str, str]] = set()
        for path, selector in self.spec_paths():
            if path not in loaded:
                self.config.pluginmanager.load_conftests(repo.root, path.parent)
                spec = self.hook.sweeprun_load_spec(path=path, config=self.config)
                self.specs.append(spec)
                loaded[path] = self._collect_spec(spec, overrides)
            got = loaded[path]
            if selector is not None:
                want = [i for i in got if i.id == selector or i.sweep == selector]
                if not want:
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

    def apply_name_option(self, items: list[Experiment]) -> None:
        """``-n NAME`` names the one selected experiment; ``-n PREFIX`` a sweep PREFIX-1…N."""
        name = self.config.getoption("name")
        if not name:
            return
        if not names.is_ref_safe(name):
            raise UsageError(f"-n/--name {name!r}: not usable as a git ref name")
        for i, item in enumerate(items, 1):
            item.name = name if len(items) == 1 else f"{name}-{i}"
            item.name_mark = None

    def _collect_spec(self, spec: Spec, overrides: list[Override]) -> list[Experiment]:
        from sweeprun.spec.params import ParamsFile

        params = ParamsSet([ParamsFile.load(spec.root, p) for p in spec.params_files])
        fixed, cli_points = resolve_overrides(params, overrides)
        sweeps = spec.sweeps or [Sweep(name=DEFAULT_SWEEP, groups=[])]
        items = []
        for sweep in sweeps:
            self._check_size(spec, sweep, max(1, len(cli_points)))
            points = self._expand(spec, sweep, params) if sweep.groups else [{}]
            _check_overlap(spec, sweep, points, {*fixed, *(k for c in cli_points for k in c)})
            if len(cli_points) > 1:
                points = [{**p, **c} for p in points for c in cli_points]
            name_mark = sweep.raw.value_marks.get("name") if sweep.name_template else None
            for point in points:
                point = {**point, **fixed}
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
                exp.stages = interpolate_stages(spec, exp)
                exp.name = self.hook.sweeprun_make_name(
                    experiment=exp, template=sweep.name_template, config=self.config
                )
                items.append(exp)
        return items

    def _check_size(self, spec: Spec, sweep: Sweep, times: int) -> None:
        """Refuse a sweep with more points than ``--max-points``, counted before it is
        expanded (sizes multiply; nothing is built), so that it fails in well under a second."""
        from sweeprun.sweepers.grid import count_block

        limit = int(self.config.getoption("max_points"))
        total = 0
        for group in sweep.groups:
            size = 1
            for kind, block, _ in group:
                n = count_block(kind, block)
                if n is None:
                    return  # a plugin's kind: it bounds itself
                size *= n
            total += size
        total *= times
        if total > limit:
            raise spec.error(
                sweep.mark,
                f"sweep {sweep.name!r} has {total:,} points, more than --max-points "
                f"{limit:,} (narrow it, or raise the limit with --max-points N)",
            )

    def _expand(self, spec: Spec, sweep: Sweep, params: ParamsSet) -> list[dict[str, Any]]:
        from sweeprun.sweepers.grid import product

        points: list[dict[str, Any]] = []
        for group in sweep.groups:
            group_points: list[dict[str, Any]] = []
            for kind, block, mark in group:
                try:
                    got = self.hook.sweeprun_expand_block(
                        kind=kind, block=block, sweep=sweep, spec=spec, config=self.config
                    )
                except SweepValueError as exc:
                    where = locate(block, exc.keypath, mark)
                    raise spec.error(where, f"sweep {sweep.name!r}: {exc.message}") from None
                if got is None:
                    raise spec.error(mark, f"no plugin expands '{kind}' blocks")
                group_points = product(group_points, got)
            points.extend(group_points)
        checked: dict[str, str] = {}  # key as written → qualified key
        out = []
        for point in points:
            qualified = {}
            for key, value in point.items():
                q = checked.get(key)
                if q is None:
                    try:
                        pf, inner = params.resolve(key)
                        pf.check_key(inner, "", add_hint=False)
                    except UsageError as exc:
                        where = find_key_mark(sweep.raw, key) or sweep.mark
                        detail = str(exc).lstrip(": ")
                        raise spec.error(where, f"sweep {sweep.name!r}: {detail}") from None
                    q = checked[key] = params.qualify(key)
                qualified[q] = value
            out.append(qualified)
        return out


def resolve_overrides(
    params: ParamsSet, overrides: list[Override]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check ``-S`` against the params: (fixed values, -S sweep points)."""
    fixed: dict[str, Any] = {}
    axes: list[list[dict[str, Any]]] = []
    for ov in overrides:
        pf, inner = params.resolve(ov.key)
        where = f"-S {ov.text}"
        exists = has_path(pf.data, inner)
        if ov.kind in ("set", "delete") and not exists:
            pf.check_key(inner, where, add_hint=ov.kind == "set")
        if ov.kind == "add" and exists:
            raise UsageError(
                f"{where}: {inner!r} already exists in {pf.path} (use ++{ov.key}=… to override it)"
            )
        if ov.kind == "delete" and ov.match is not None:
            current = get_path(pf.data, inner)
            if current != ov.match:
                raise UsageError(
                    f"{where}: {inner!r} is {current!r} in {pf.path}, not {ov.match!r}"
                )
        key = params.qualify(ov.key)
        if ov.is_sweep:
            axes.append([{key: v} for v in ov.values])
        else:
            fixed[key] = ov.value
    sweep: list[dict[str, Any]] = [{}]
    for axis in axes:
        sweep = [{**a, **b} for a in sweep for b in axis]
    return fixed, sweep


def _check_overlap(spec: Spec, sweep: Sweep, points: list[dict[str, Any]], keys: set[str]) -> None:
    """Say so when ``-S`` sets a key the sweep varies (its points merge: ``-S lr=0.5`` on
    an ``lr`` sweep runs that one value), and refuse values no file or argument can hold
    (a lone surrogate)."""
    both = sorted({k for p in points for k in p} & keys)
    if both and sweep.groups:
        left = len(
            {
                json.dumps(
                    {k: v for k, v in p.items() if k not in keys}, sort_keys=True, default=str
                )
                for p in points
            }
        )
        print(
            f"sweeprun: warning: -S {both[0]} sets a key that sweep {sweep.name!r} in "
            f"{spec.path} varies: its {len(points)} points become {left} (-k selects points "
            "without merging them)",
            file=sys.stderr,
        )
    for point in points:
        for key, value in point.items():
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise spec.error(
                        sweep.mark,
                        f"sweep {sweep.name!r}: the value of {key} is not valid Unicode "
                        "(a lone surrogate)",
                    ) from None


# -- hooks --------------------------------------------------------------------------------


def add_set_param(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-S/--set-param``, shared by the main mode and ``sweeprun run``."""
    parser.add_argument(
        "-S",
        "--set-param",
        dest="set_params",
        action="append",
        default=[],
        metavar="[FILE:]KEY=VALUE",
        help="override a param (repeatable)",
    )


@hookimpl
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """Options of the main mode."""
    g = parser.add_argument_group("collection and queueing")
    add_set_param(g)
    g.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPR",
        help="only experiments whose id, name or sweep matches EXPR",
    )
    g.add_argument("-n", "--name", help="experiment name (PREFIX-1…N for a sweep)")
    g.add_argument("--collect-only", action="store_true", help="list experiments, run nothing")
    g.add_argument(
        "--max-points",
        type=positive_int,
        default=1_000_000,
        metavar="N",
        help="refuse a sweep of more than N points (default 1,000,000)",
    )
    g.add_argument("--json", action="store_true", help="with --collect-only: JSON output")
    g.add_argument(
        "--deselect",
        action="append",
        default=[],
        metavar="NODEID",
        help="drop an experiment or sweep (SPEC::ID, SPEC::SWEEP or an id)",
    )
    g.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of sweeps.yaml and exit"
    )
    g.add_argument(
        "--lf",
        "--last-failed",
        dest="lf",
        action="store_true",
        help="only the experiments that failed last time (at this baseline)",
    )
    g.add_argument(
        "--ff",
        "--failed-first",
        dest="ff",
        action="store_true",
        help="the experiments that failed last time first, then the rest",
    )
    g.add_argument(
        "--force", action="store_true", help="queue again experiments already queued or finished"
    )
    r = parser.add_argument_group("running")
    r.add_argument("--run", action="store_true", help="queue, then run what was collected")
    r.add_argument("--run-all", action="store_true", help="run everything queued")
    r.add_argument("-j", "--jobs", type=positive_int, default=1, metavar="N", help="parallel jobs")
    r.add_argument("-x", "--exitfirst", action="store_true", help="stop after the first failure")
    r.add_argument(
        "--maxfail", type=nonnegative_int, default=0, metavar="N", help="stop after N failures"
    )


@hookimpl(trylast=True)
def sweeprun_make_name(experiment: Experiment, template: str | None, config: Config) -> str | None:
    """Render the sweep's ``name:`` template, if any."""
    if not template:
        return None
    flat: dict[str, Any] = {}
    for path, data in experiment.full_params().items():
        flat.update(flatten(data))
        flat.update({f"{path}:{k}": v for k, v in flatten(data).items()})
    try:
        return names.render_name(template, experiment.point, flat)
    except SweepValueError as exc:
        raise experiment.name_error(exc.message) from None


@hookimpl(trylast=True)
def sweeprun_collection_modifyitems(
    session: Session, config: Config, items: list[Experiment]
) -> None:
    """``--deselect`` and ``-k EXPR`` (words of the id, name or sweep; see keyword.py)."""
    deselect = config.getoption("deselect") or []
    if deselect:

        def dropped(item: Experiment) -> bool:
            for node in deselect:
                spec, sep, rest = node.rpartition("::")
                if sep and spec and item.spec.path != spec.lstrip("./"):
                    continue
                target = rest if sep else node
                if item.id == target or item.sweep == target:
                    return True
            return False

        unknown = [
            node
            for node in deselect
            if not any(node.rpartition("::")[2] in (i.id, i.sweep) for i in items)
        ]
        if unknown:
            raise UsageError(
                f"--deselect {unknown[0]}: no such experiment or sweep (see --collect-only)"
            )
        items[:] = [i for i in items if not dropped(i)]
    expr = config.getoption("keyword")
    if expr:
        from sweeprun.spec.keyword import compile_keyword

        match = compile_keyword(expr)
        items[:] = [i for i in items if match(i)]
    if config.getoption("lf") or config.getoption("ff"):
        _last_failed(session, config, items)


def _last_failed(session: Session, config: Config, items: list[Experiment]) -> None:
    """``--lf``: only what failed last at this baseline; ``--ff``: that first, then the rest.

    Failed experiments are queued again (as with ``--force``): their earlier result is
    replaced by the new run's.
    """
    head = session.store.head()
    failed = {
        (r.meta.get("spec"), r.id): r
        for r in session.store.records("refs/sweeprun/exps")
        if r.baseline == head and r.state in FAILED_STATES
    }
    hit = [i for i in items if (i.spec.path, i.id) in failed]
    for item in hit:
        # The same experiment again: its name (one row per point), its result replaced.
        item.retries = failed[(item.spec.path, item.id)]
        item.name = item.retries.name
    session.force_keys = {id(i) for i in hit}
    if config.getoption("lf"):
        if hit:
            items[:] = hit
        # nothing failed last time: run everything selected, as pytest does
    else:
        items[:] = hit + [i for i in items if id(i) not in session.force_keys]


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
    if config.getoption("schema"):
        from sweeprun.spec.schema import schema_text

        config.stdout.write(schema_text())
        return ExitCode.OK
    run_all = bool(config.getoption("run_all"))
    run_now = bool(config.getoption("run"))
    items: list[Experiment] = []
    if config.getoption("specs") or not run_all:
        items = session.collect()
        config.hook.sweeprun_collection_modifyitems(session=session, config=config, items=items)
        session.apply_name_option(items)
        session.items = items
    config.hook.sweeprun_collection_finish(session=session)
    if config.getoption("collect_only"):
        return ExitCode.OK if items else ExitCode.NO_TESTS_COLLECTED
    if not items and not run_all:
        return ExitCode.NO_TESTS_COLLECTED
    queued = config.hook.sweeprun_queue(session=session, items=items) if items else []
    session.queued = queued
    if run_all:
        from sweeprun.run.adopt import adopter

        # Experiments whose runner died: adopted when their command had finished, else
        # run again.
        session.store.reclaim(adopter(session))
        records = sorted(
            session.store.records(QUEUE), key=lambda r: (r.meta.get("queued_at", 0), r.id)
        )
    elif run_now:
        # Points that were queued already (not just now, not twice in this batch) run too.
        fresh = {rec.key for rec in queued}
        skipped = {
            rec.key: rec
            for _, rec in session.skipped_duplicates
            if rec.ref.startswith(QUEUE) and rec.commit and rec.key not in fresh
        }
        records = list(queued) + list(skipped.values())
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
