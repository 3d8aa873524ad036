"""``sweeprun run``: run the pipeline once now, like ``dvc exp run``.

By default it runs in your workspace: ``-S`` edits the params files there, outputs land
there (and go to the cache, and into ``.gitignore``), ``sweeprun.lock`` is written, and the
result is recorded as an experiment ref — ``HEAD`` does not move. ``--temp`` queues the
experiment and runs it in a pooled temporary workspace instead, leaving yours untouched.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from sweeprun.exceptions import UsageError
from sweeprun.run import pipeline
from sweeprun.spec import names
from sweeprun.store.cache import Cache
from sweeprun.store.git import ZERO, RefConflict, RefOp, run_git
from sweeprun.system.paths import guarded

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry
    from sweeprun._core.session import Session
    from sweeprun.spec.collect import Experiment

hookimpl = pluggy.HookimplMarker("sweeprun")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="STAGE",
        help="stages to run, with what they depend on (default: all)",
    )
    parser.add_argument("--spec", default="sweeps.yaml", help="the spec (default: sweeps.yaml)")
    from sweeprun._core.session import add_set_param

    add_set_param(parser)
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
        action="store_true",
        help="run stages even when the run-cache has their outputs",
    )
    parser.add_argument(
        "--dry", action="store_true", help="print which stages would run and why; change nothing"
    )


def _experiment(config: Config, session: Session) -> Experiment:
    from sweeprun._core.session import DEFAULT_SWEEP
    from sweeprun.spec.collect import Experiment, interpolate_stages
    from sweeprun.spec.overrides import parse_override
    from sweeprun.spec.params import ParamsFile, ParamsSet

    path = (config.invocation_dir / config.getoption("spec")).resolve()
    if not path.is_file():
        raise UsageError(f"--spec {config.getoption('spec')}: no such spec file")
    spec = config.hook.sweeprun_load_spec(path=path, config=config)
    params = ParamsSet([ParamsFile.load(spec.root, p) for p in spec.params_files])
    overrides = [parse_override(s) for s in config.getoption("set_params")]
    fixed, points = session._overrides(params, overrides)
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
    try:
        stages = pipeline.select(
            interpolate_stages(spec, exp),
            config.getoption("targets"),
            bool(config.getoption("single_item")),
        )
    except pipeline.PipelineError as exc:
        raise UsageError(f"sweeprun run: {exc}") from None
    exp.stages = stages
    exp.name = config.getoption("name")
    if exp.name and not names.is_ref_safe(exp.name):
        raise UsageError(f"-n/--name {exp.name!r}: not usable as a git ref name")
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
    from sweeprun._core.session import Session

    session = Session(config)
    try:
        exp = _experiment(config, session)
        if config.getoption("temp"):
            return _run_temp(config, session, exp)
        return _run_here(config, session, exp)
    finally:
        session.close()


def _run_here(config: Config, session: Session, exp: Experiment) -> int:
    from sweeprun.run.command import run_command
    from sweeprun.run.executor import read_metrics
    from sweeprun.store.records import content_key, format_message, result_ref

    repo = config.repo
    root = repo.root
    out = config.stdout
    cache = Cache.for_repo(repo.common_dir)
    params_files = [pf.path for pf in exp.params]
    old_lock = pipeline.read_lock(root / pipeline.LOCK_FILE)
    if config.getoption("dry"):
        if exp.rendered_files():
            out.write("(params as they would be after -S)\n")
        with open("/dev/null", "wb") as sink:
            outcomes = pipeline.run_stages(
                exp.stages,
                root,
                cache,
                params_files,
                {},
                sink,
                lambda *a: 0,
                force=config.getoption("force"),
                dry=True,
                params_texts=exp.rendered_files(),
            )
        for o in outcomes:
            why = o.message or _why(o.lock, old_lock.get(o.name, {}))
            verdict = "restore from the run-cache" if o.status == "cached" else "run"
            out.write(f"{o.name}: would {verdict} ({why})\n")
        return 0
    for path, text in exp.rendered_files().items():
        guarded(root, path, "params file").write_text(text)  # -S edits them, as dvc exp run
    head = session.store.head()
    name = exp.name or ""
    log_path = repo.state_dir / "logs" / f"run-{int(time.time() * 1000)}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    import os

    env = dict(
        os.environ,
        SWEEPRUN_EXP_NAME=name,
        SWEEPRUN_BASELINE_REV=head,
        SWEEPRUN_ROOT=str(root),
        SWEEPRUN_WORKSPACE=str(root),
    )
    started = time.time()
    with open(log_path, "wb") as log:
        outcomes = pipeline.run_stages(
            exp.stages,
            root,
            cache,
            params_files,
            env,
            log,
            lambda stage, cwd, env, log: run_command(
                stage.cmd, cwd, env, log, None, values=dict(stage.values)
            ),
            force=bool(config.getoption("force")),
        )
    out.write(log_path.read_text(errors="replace"))
    if any(o.status != "failed" for o in outcomes):
        pipeline.write_lock(root, outcomes)
    _gitignore_outs(root, exp)
    failed = [o for o in outcomes if o.status == "failed"]
    metrics = read_metrics(root, tuple(exp.stages))
    tree = session.store.snapshot_workspace(pipeline.committed_results(exp.stages))
    key = content_key(head, tree, {}, exp.stages_record())
    name = name or names.default_name(key)
    meta = exp.record(key=key, name=name, baseline=head, queued_at=int(started))
    meta.update(
        {
            "state": "failed" if failed else "success",
            "returncode": failed[0].returncode if failed else 0,
            "started": started,
            "finished": time.time(),
            "metrics": metrics,
            "message": failed[0].message if failed else "",
            "workspace": True,
        }
    )
    message = format_message(f"sweeprun: {meta['state']} {name} (workspace run)", meta)
    commit = run_git(["commit-tree", tree, "-p", head], root, input=message).strip()
    ref = result_ref(head, name)
    current = run_git(["rev-parse", "-q", "--verify", ref], root, check=False).strip()
    try:
        session.store.updater.transaction([RefOp(ref, commit, current or ZERO)])
    except RefConflict as exc:
        raise UsageError(f"experiment {name!r} changed while running: {exc}") from None
    for o in outcomes:
        out.write(f"{o.name}: {o.status}{' — ' + o.message if o.message else ''}\n")
    out.write(f"recorded experiment {name} ({commit[:7]}) at baseline {head[:7]}\n")
    return 1 if failed else 0


def _gitignore_outs(root: Path, exp: Experiment) -> None:
    """Add cached outs to ``.gitignore`` so they never enter git objects."""
    ignore = guarded(root, ".gitignore")
    text = ignore.read_text() if ignore.exists() else ""
    lines = set(text.splitlines())
    new = [
        f"/{o.path}" for s in exp.stages for o in s.outs if o.cache and f"/{o.path}" not in lines
    ]
    if new:
        sep = "" if not text or text.endswith("\n") else "\n"
        ignore.write_text(text + sep + "\n".join(new) + "\n")


def _run_temp(config: Config, session: Session, exp: Experiment) -> int:
    if config.getoption("dry"):
        raise UsageError("--dry with --temp: a dry run changes nothing anyway; drop --temp")
    outcome = session.store.enqueue([exp], force=True)
    records = outcome.queued or [r for _, r in outcome.skipped if r.state == "queued"]
    for rec in records:
        rec.meta["force"] = bool(config.getoption("force"))
    config.args.jobs = 1
    config.hook.sweeprun_runloop(session=session, records=records)
    for report in session.reports:
        config.stdout.write(report.log_tail + "\n")
        config.stdout.write(
            f"{report.outcome}: experiment {report.name}"
            f"{' — ' + report.message if report.message else ''}\n"
        )
    if not session.reports:
        config.stdout.write("nothing to run: the same experiment is already running\n")
        return 0
    return 0 if all(r.passed for r in session.reports) else 1


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun run``."""
    commands.add(
        "run", "run the pipeline once now (in your workspace, or --temp)", _add_arguments, _run
    )
