"""Run options: defined once for every mode that runs experiments, turned into
:class:`~sweeprun.model.RunOptions` — the only form in which options go below the CLI."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sweeprun._core.argtypes import nonnegative_int, positive_seconds, slot_list
from sweeprun.hookspec import hookimpl
from sweeprun.model import BACKENDS, RunOptions

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


def run_options(args: argparse.Namespace) -> RunOptions:
    """The typed run options of parsed arguments (absent ones keep their defaults)."""
    get = vars(args).get
    maxfail = 1 if get("exitfirst") else int(get("maxfail") or 0)
    return RunOptions(
        jobs=max(1, int(get("jobs") or 1)),
        backend=str(get("backend") or "threads"),
        scheduler=get("scheduler"),
        connect_timeout=float(get("connect_timeout") or 10.0),
        timeout=get("timeout"),
        retries=int(get("retries") or 0),
        slots=tuple(s for s in (get("slots") or "").split(",") if s),
        reset=bool(get("reset")),
        rev=get("rev"),
        force=bool(get("force_stages")),
        maxfail=maxfail,
    )


@hookimpl
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """Where and how jobs run (the main mode; ``sweeprun run`` adds the same)."""
    add_run_options(parser)
