"""``sweeprun run``: run the pipeline once now, like ``dvc exp run``.

By default it runs in your workspace: ``-S`` edits the params files there, outputs land
there (and go to the cache, and into ``.gitignore``), ``sweeprun.lock`` is written, and the
result is recorded as an experiment ref — ``HEAD`` does not move. ``--temp`` runs it in a
pooled temporary workspace instead, leaving yours untouched. Either way the experiment is
queued and run by the same scheduler and executor as a sweep's (one execution path): the
same record, environment, checkpoints, ``--timeout``, ``--retries``, ``--reset``, ``--rev``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun._core.exitcode import ExitCode
from sweeprun._core.options import add_run_options, add_set_param
from sweeprun._core.runloop import SessionEvents
from sweeprun._core.session import DEFAULT_SWEEP, Session
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import FAILED_STATES, QUEUE, Record, State
from sweeprun.report.safe import shown
from sweeprun.run import pipeline
from sweeprun.run.adopt import adopter
from sweeprun.run.publisher import WORKSPACE_CHECKPOINT
from sweeprun.run.snapshot import gitignore_outs, gitignore_text
from sweeprun.run.workspace import kill_leftovers
from sweeprun.spec import dag, names
from sweeprun.spec.collect import (
    Experiment,
    composer,
    interpolate_stages,
    params_of,
    spec_overrides,
)
from sweeprun.spec.loader import default_spec
from sweeprun.spec.overrides import parse_override
from sweeprun.store.cache import Cache
from sweeprun.store.git import refuse_sparse, run_git
from sweeprun.system.paths import guarded

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="STAGE",
        help="stages to run, with what they depend on (default: all)",
    )
    parser.add_argument(
        "--spec", default=None, help="the spec (default: sweeps.yaml, else dvc.yaml)"
    )
    add_set_param(parser, sweeps=False)
    parser.add_argument("-n", "--name", help="experiment name")
    parser.add_argument(
        "--temp", action="store_true", help="run in a temporary workspace, not in yours"
    )
    parser.add_argument(
        "--single-item",
        action="store_true",
        help="run only the named stages, not what they depend on",
    )
    parser.add_argument(
        "-f",
        "--force",
        dest="force_stages",
        action="store_true",
        help="run stages even when the run-cache has their outputs",
    )
    parser.add_argument(
        "--dry", action="store_true", help="print which stages would run and why; change nothing"
    )
    add_run_options(parser)


def _experiment(config: Config) -> Experiment:
    given = config.getoption("spec")
    found = default_spec(config.invocation_dir) if given is None else None
    path = (config.invocation_dir / given).resolve() if given else found
    if path is None:
        raise UsageError(
            f"no sweeps.yaml or dvc.yaml in {config.invocation_dir} (name one with --spec)"
        )
    if given is not None and not path.is_file():
        raise UsageError(f"--spec {given}: no such spec file")
    spec = config.hook.sweeprun_load_spec(path=path, config=config)
    params = params_of(spec)
    overrides = [parse_override(s) for s in config.getoption("set_params")]
    fixed, points = spec_overrides(spec, params, overrides)
    if len(points) > 1:
        raise UsageError(
            "-S: 'sweeprun run' runs one experiment; to sweep, use 'sweeprun -S … --run'"
        )
    exp = Experiment(
        id=names.make_id(DEFAULT_SWEEP, fixed),
        sweep=DEFAULT_SWEEP,
        spec=spec,
        params=params,
        point=fixed,
        stages=[],
    )
    with composer(spec) as app:
        if app is not None:
            exp.composed = app.compose(fixed)  # checks the overrides with Hydra
            for line in app.shadows:
                print(f"sweeprun: warning: {spec.path}: {line}", file=sys.stderr)
    try:
        stages = dag.select(
            interpolate_stages(spec, exp),
            config.getoption("targets"),
            bool(config.getoption("single_item")),
        )
    except dag.PipelineError as exc:
        raise UsageError(f"sweeprun run: {exc}") from None
    exp.stages = stages
    exp.name = config.getoption("name")
    if exp.name is not None:
        names.check_name_option(exp.name)
    return exp


def _why(stage_lock: dict[str, Any], old: dict[str, Any]) -> str:
    if not old:
        return "never ran here"
    changed = [what for what in ("cmd", "deps", "params") if old.get(what) != stage_lock[what]]
    if not changed:
        return "up to date"
    if "deps" in changed:
        deps = [
            d for d in stage_lock["deps"] if old.get("deps", {}).get(d) != stage_lock["deps"][d]
        ]
        return "changed deps: " + ", ".join(deps) if deps else "changed deps"
    return "changed " + " and ".join(changed)


def _run(config: Config) -> int:
    session = Session(config)
    try:
        exp = _experiment(config)
        if config.getoption("dry"):
            return _dry_run(config, exp)
        return _run_one(config, session, exp, in_place=not config.getoption("temp"))
    finally:
        session.close()


def _dry_run(config: Config, exp: Experiment) -> int:
    if config.getoption("temp"):
        raise UsageError("--dry with --temp: a dry run changes nothing anyway; drop --temp")
    root = config.repo.root
    out = config.stdout
    old_lock = pipeline.read_lock(root / pipeline.LOCK_FILE)
    if exp.rendered_files():
        out.write("(params as they would be after -S)\n")
    with open(os.devnull, "wb") as sink:
        outcomes = pipeline.run_stages(
            exp.stages,
            root,
            Cache.for_repo(config.repo.common_dir),
            [pf.path for pf in exp.params],
            {},
            sink,
            lambda *a: 0,
            force=bool(config.getoption("force_stages")),
            dry=True,
            params_texts=exp.rendered_files(),
        )
    for o in outcomes:
        why = o.message or _why(o.lock, old_lock.get(o.name, {}))
        verdict = "restore from the run-cache" if o.status == "cached" else "run"
        out.write(f"{o.name}: would {verdict} ({why})\n")
    return ExitCode.OK


def _run_one(config: Config, session: Session, exp: Experiment, in_place: bool) -> int:
    """Queue the experiment and run it through the scheduler, here or in a pooled slot.

    Every check that can refuse (the name, a recorded twin) is made before a file of the
    workspace is written.
    """
    root = config.repo.root
    exclude: list[str] = []
    if in_place and session.options.worker_url:
        raise UsageError(
            f"--worker-url {session.options.worker_url}: 'sweeprun run' works in this work "
            "tree; run it with --temp, or queue it and use --run-all"
        )
    refuse_sparse(root)
    store = session.store
    if in_place:
        # A workspace run's results and cached outs of an earlier run are not its inputs
        # (the snapshot is taken before -S writes the params files: the same point gets
        # the same key as in a sweep).
        exclude = [
            *dag.committed_results(exp.stages),
            *(o.path for s in exp.stages for o in s.outs if o.cache),
        ]
        # What a killed 'sweeprun run' left: its job killed, its entry back in the queue —
        # to be run here again, not by a later --run-all in a pooled workspace.
        store.reclaim(
            partial(kill_leftovers, config.repo.common_dir),
            adopter(store, session.options, SessionEvents(session)),
        )
        store.drop_queued([r for r in store.records(QUEUE) if r.data.in_place])
    # -f, --reset and --rev ask for a run of an experiment that may be recorded: its new
    # record replaces the old one, which stays reachable (show --all-records).
    opts = session.options
    rerun = bool(config.getoption("force_stages") or opts.reset or opts.rev)
    # The workspace as the run will leave it: cached outs in .gitignore (written below,
    # once nothing can refuse), so that a run and its rerun are the same experiment.
    ignore = gitignore_text(root, exp.stages) if in_place else None
    overlay = {".gitignore": ignore.encode()} if ignore is not None else None
    plan = store.plan([exp], force=rerun, exclude=exclude, overlay=overlay)
    if in_place and not plan.planned and _continues(config, exp, plan.skipped[0][1]):
        plan = store.plan([exp], force=True, exclude=exclude, overlay=overlay)
    waiting = [r for _, r in plan.skipped if r.state == State.QUEUED]
    if not plan.planned and not waiting:
        return _not_run(config, plan.skipped[0][1])
    if in_place:
        for path, text in exp.rendered_files().items():
            guarded(root, path, "params file").write_text(text)  # -S edits them, as dvc exp run
        gitignore_outs(root, exp.stages)  # cached outs never enter git
    outcome = store.commit_plan(plan, in_place=in_place)
    records = outcome.queued or waiting
    session.in_place = in_place
    session.options = replace(session.options, jobs=1)
    try:
        config.hook.sweeprun_runloop(session=session, records=records)
    finally:
        if in_place:
            # Not finished (interrupted, or sweeprun failed): not left for --run-all to
            # run somewhere else; its checkpoints stay, and the next run continues.
            done = {r.key for r in session.reports if r.result_commit}
            session.store.drop_queued([r for r in records if r.key not in done])
    quiet = int(config.getoption("quiet") or 0)
    out = config.stdout
    for report in session.reports:
        if not quiet:  # the whole log, as the command wrote it
            with contextlib.suppress(OSError):
                out.write(Path(report.log_path).read_text(errors="replace"))
            for name, status, message in report.stages:
                out.write(f"{name}: {status}{' — ' + message if message else ''}\n")
        if report.result_commit:
            said = (
                f"recorded experiment {report.name} ({report.result_commit[:7]}) "
                f"at baseline {session.store.head()[:7]}: {report.state}"
                f"{' — ' + report.message if report.message else ''}"
            )
        else:
            said = f"{report.outcome}: experiment {report.name} — {report.message}"
        out.write(shown(said) + "\n")
    if session.shouldstop == "interrupted":
        return ExitCode.INTERRUPTED
    if not session.reports:
        config.stdout.write("nothing to run: the same experiment is already running\n")
        return ExitCode.OK
    return ExitCode.OK if all(r.passed for r in session.reports) else ExitCode.TESTS_FAILED


def _continues(config: Config, exp: Experiment, twin: Record) -> bool:
    """Whether the workspace holds a checkpoint (``apply NAME@N``) other than the last one
    of its recorded twin: running it then continues from there, a run of its own."""
    marker = config.repo.state_dir / WORKSPACE_CHECKPOINT
    if not twin.finished or not marker.is_file() or not any(s.checkpoint_outs for s in exp.stages):
        return False
    last = run_git(
        ["rev-parse", "-q", "--verify", f"{twin.commit}^1"], config.repo.root, check=False
    )
    return marker.read_text().strip() != last.strip()


def _not_run(config: Config, twin: Record) -> int:
    """The experiment is running, or recorded: say so; the exit code is its outcome."""
    if twin.state == State.RUNNING:
        config.stdout.write(
            f"nothing to run: the same experiment is already running ({twin.name})\n"
        )
        return ExitCode.OK
    said = (
        f"nothing to run: this experiment is recorded already as {twin.name} ({twin.id}, "
        f"{twin.state}) at baseline {twin.baseline[:7]}; 'sweeprun apply {twin.name}' brings "
        "its results here, -f runs it again (its record is replaced and kept: "
        "show --all-records)"
    )
    config.stdout.write(shown(said) + "\n")
    return ExitCode.TESTS_FAILED if twin.state in FAILED_STATES else ExitCode.OK


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun run``."""
    commands.add(
        "run",
        "run the pipeline once now (in your workspace, or --temp)",
        _add_arguments,
        _run,
        examples=(
            "sweeprun run -S train.lr=0.05    # one run in your workspace, like dvc exp run",
            "sweeprun run --temp -n best-lr   # in a temporary workspace, named",
            "sweeprun run -f                  # all stages again; replaces (and keeps) a record",
        ),
    )
