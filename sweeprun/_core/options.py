"""Run options: defined once for every mode that runs experiments, turned into
:class:`~sweeprun.model.RunOptions` — the only form in which options go below the CLI."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from sweeprun._core.argtypes import (
    nonnegative_int,
    nonnegative_seconds,
    positive_int,
    positive_seconds,
    slot_list,
)
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import BACKENDS, RunOptions
from sweeprun.spec.cimatrix import FORMATS

if TYPE_CHECKING:
    from sweeprun._core.registry import CommandRegistry


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--timeout``, ``--retries``, ``--reset``, ``--rev``, backends and slots."""
    g = parser.add_argument_group("scheduling")
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default="threads",
        help="joblib backend (threads: default; dask: a Dask cluster)",
    )
    g.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786"
    )
    g.add_argument(
        "--worker-url",
        metavar="URL",
        help="Dask workers reach the repository only through this git URL (git config "
        "sweeprun.workerUrl): they fetch queued commits and return results as git objects",
    )
    g.add_argument(
        "--connect-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="S",
        help="how long to wait for the Dask scheduler (default 10)",
    )
    f = parser.add_argument_group("failure policy and resources")
    f.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        help="kill an experiment's whole process tree after S seconds (outcome: timeout)",
    )
    f.add_argument(
        "--retries",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="run failed or timed-out experiments up to N more times",
    )
    f.add_argument(
        "--slots",
        "--gpus",
        dest="slots",
        type=slot_list,
        metavar="LIST",
        help="e.g. 0,1: each parallel job gets one as CUDA_VISIBLE_DEVICES",
    )
    c = parser.add_argument_group("checkpoints")
    c.add_argument(
        "--reset", action="store_true", help="discard the experiments' checkpoints and start over"
    )
    c.add_argument(
        "--rev",
        metavar="CKPT",
        help="resume from this checkpoint (NAME@N as 'show' prints it, or a commit)",
    )


def add_idle_timeout(group: Any, help: str | None = None) -> None:
    """``--idle-timeout S``: a background worker ends after S seconds with nothing queued."""
    group.add_argument(
        "--idle-timeout",
        type=nonnegative_seconds,
        metavar="S",
        help=help
        or "end after S seconds with nothing queued (0: once the queue is empty; "
        "default: run until 'queue stop')",
    )


def run_options(args: argparse.Namespace) -> RunOptions:
    """The typed run options of parsed arguments (absent ones keep their defaults)."""
    get = vars(args).get
    maxfail = 1 if get("exitfirst") else int(get("maxfail") or 0)
    backend = str(get("backend") or "threads")
    if get("worker_url") and backend != "dask":
        raise UsageError(
            f"--worker-url {get('worker_url')}: git-only workers are Dask workers "
            "(add --backend dask --scheduler ADDRESS)"
        )
    if get("reset") and get("rev"):
        raise UsageError(
            f"--reset with --rev {get('rev')}: --reset starts over, --rev resumes from a "
            "checkpoint; give one of them"
        )
    return RunOptions(
        jobs=max(1, int(get("jobs") or 1)),
        backend=backend,
        scheduler=get("scheduler"),
        worker_url=get("worker_url") or None,
        connect_timeout=float(get("connect_timeout") or 10.0),
        timeout=get("timeout"),
        retries=int(get("retries") or 0),
        slots=tuple(s for s in (get("slots") or "").split(",") if s),
        # -f reruns every stage: a checkpoint stage too starts over, unless --rev says
        # where to continue from.
        reset=bool(get("reset") or (get("force_stages") and not get("rev"))),
        rev=get("rev"),
        force=bool(get("force_stages")),
        maxfail=maxfail,
    )


def add_set_param(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, sweeps: bool = True
) -> None:
    """``-S/--set-param``, shared by the main mode and ``sweeprun run`` (no sweeps)."""
    parser.add_argument(
        "-S",
        "--set-param",
        dest="set_params",
        action="append",
        default=[],
        metavar="[FILE:]KEY=VALUE",
        help=(
            "set a param (repeatable; 1,2 or range() sweeps it): the points -S makes, "
            "against the base params (as dvc exp run -S); with SPEC::SWEEP or -k, inside "
            "the selected sweeps"
        )
        if sweeps
        else "set a param (repeatable)",
    )


@hookimpl
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """Options of the main mode (``sweeprun run`` adds the run options too)."""
    add_run_options(parser)
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
        "-R",
        "--recursive",
        action="store_true",
        help="search SPEC directories (always done; DVC's spelling: -R DIR)",
    )
    g.add_argument(
        "-P",
        "--all-pipelines",
        action="store_true",
        help="every dvc.yaml of the repository, as one DVC project",
    )
    g.add_argument(
        "--max-points",
        type=positive_int,
        default=1_000_000,
        metavar="N",
        help="refuse a sweep of more than N points (default 1,000,000)",
    )
    g.add_argument("--json", action="store_true", help="with --collect-only: JSON output")
    g.add_argument(
        "--shard",
        metavar="I/N",
        help="only the I-th of N round-robin shards of what is selected (CI fan-out)",
    )
    g.add_argument(
        "--ci-matrix",
        choices=FORMATS,
        help="with --collect-only: print the CI matrix (one job per experiment, or per shard)",
    )
    g.add_argument(
        "--shard-size",
        type=positive_int,
        metavar="K",
        help="with --ci-matrix: one job per shard of about K experiments",
    )
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
    # A background worker's (``queue start`` starts it with these; see _core/worker.py).
    r.add_argument("--worker", metavar="ID", help=argparse.SUPPRESS)
    add_idle_timeout(r, help=argparse.SUPPRESS)
    r.add_argument("-j", "--jobs", type=positive_int, default=1, metavar="N", help="parallel jobs")
    r.add_argument("-x", "--exitfirst", action="store_true", help="stop after the first failure")
    r.add_argument(
        "--maxfail", type=nonnegative_int, default=0, metavar="N", help="stop after N failures"
    )
