"""Every hook sweeprun calls, grouped by phase. The reference docs are rendered from here.

Hook names start with ``sweeprun_``. Implement them in ``sweepconf.py`` or in a plugin
module registered through the ``sweeprun`` entry-point group, decorated with
:data:`sweeprun.hookimpl`. ``firstresult`` hooks stop at the first non-``None`` result;
the built-in implementations are ``trylast`` so yours win.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry
    from sweeprun._core.session import Session
    from sweeprun.model import JobReport, Record
    from sweeprun.spec.collect import Experiment
    from sweeprun.spec.loader import Spec
    from sweeprun.spec.sweeps import Sweep
    from sweeprun.sweepers.optimize import OptimizeConfig, Trial

hookspec = pluggy.HookspecMarker("sweeprun")
#: The one marker of hook implementations: built-in plugins, ``sweepconf.py`` and
#: installed plugins use it (as :data:`sweeprun.hookimpl`).
hookimpl = pluggy.HookimplMarker("sweeprun")
#: The one marker of hook implementations: built-in plugins, ``sweepconf.py`` and
#: installed plugins use it (as :data:`sweeprun.hookimpl`).

# -- configuration ------------------------------------------------------------------------


@hookspec(historic=True)
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """Add command-line options to the main ``sweeprun`` parser.

    Called once at start-up for every plugin known then (built-ins, entry points,
    ``-p`` plugins and the ``sweepconf.py`` at the repository root).

    :param parser: the argparse parser of ``sweeprun [SPEC…]``.
    :param commands: the registry of sub-commands, to read or extend.
    """


@hookspec(historic=True)
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register sub-commands (``show``, ``queue``, …) with ``commands.add(...)``."""


@hookspec
def sweeprun_configure(config: Config) -> None:
    """Called after the command line is parsed, before anything runs.

    :param config: the configuration of this invocation.
    """


@hookspec
def sweeprun_unconfigure(config: Config) -> None:
    """Called last, whatever happened; undo what ``sweeprun_configure`` set up."""


@hookspec(firstresult=True)
def sweeprun_cmdline_main(config: Config) -> int | None:
    """Run the invocation and return its exit code. Stops at the first result."""


# -- session ------------------------------------------------------------------------------


@hookspec
def sweeprun_sessionstart(session: Session) -> None:
    """Called when the session (collection, queueing, running) starts."""


@hookspec
def sweeprun_sessionfinish(session: Session, exitstatus: int) -> None:
    """Called when the session ends, with the exit code it will return."""


@hookspec
def sweeprun_report_header(config: Config) -> list[str] | str | None:
    """Return lines to add to the terminal header."""


# -- collection ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def sweeprun_load_spec(path: Path, config: Config) -> Spec | None:
    """Load and validate the spec file at ``path`` (absolute). Stops at the first result.

    Raise :class:`sweeprun.exceptions.SpecError` for invalid input.
    """


@hookspec
def sweeprun_block_types() -> list[str]:
    """Return the sweep block keys (``matrix``, …) this plugin can expand."""
    return []


@hookspec(firstresult=True)
def sweeprun_expand_block(
    kind: str, block: Any, sweep: Sweep, spec: Spec, config: Config
) -> list[dict[str, Any]] | None:
    """Expand one block of a sweep into points (param key → value). First result wins.

    :param kind: the block key, e.g. ``"matrix"``.
    :param block: the block's value as loaded (a located mapping).
    Raise :class:`sweeprun.exceptions.SweepValueError` with a key path for bad input.
    """


@hookspec(firstresult=True)
def sweeprun_count_block(kind: str, block: Any) -> int | None:
    """How many points a block of ``kind`` makes, counted without making them, so that
    ``--max-points`` refuses a huge sweep before anything is built. First result wins;
    ``None`` everywhere: the block bounds itself.
    """


@hookspec(firstresult=True)
def sweeprun_propose(
    config: OptimizeConfig, history: list[Trial], n: int
) -> list[dict[str, Any]] | None:
    """Propose up to ``n`` next points of an ``optimize:`` study, lazily: called each time a
    slot of a run frees (ask/tell), with every trial the study has so far. First result
    wins.

    :param config: the sweep's parsed ``optimize:`` block (objective, space, seed).
    :param history: its trials: finished ones with their objective values, pending ones
        (queued or running) without, in the order they were proposed.
    :return: points keyed as the space is written; fewer than ``n`` (or none) when the
        space has no untried point left.
    """


@hookspec(firstresult=True)
def sweeprun_make_name(experiment: Experiment, template: str | None, config: Config) -> str | None:
    """Return the experiment's name before its content key is known, or ``None``.

    ``None`` everywhere means the default ``exp-<hash>`` name.
    """


@hookspec
def sweeprun_collection_modifyitems(
    session: Session, config: Config, items: list[Experiment]
) -> None:
    """Filter or reorder the collected experiments in place (``-k`` does this)."""


@hookspec
def sweeprun_collection_finish(session: Session) -> None:
    """Called after collection; ``session.items`` holds the experiments. (A
    ``--collect-only`` of built-in hooks alone streams them instead, see
    ``session.listed``; a plugin implementing this hook gets them collected.)"""


# -- queue and run ------------------------------------------------------------------------


@hookspec(firstresult=True)
def sweeprun_queue(session: Session, items: list[Experiment]) -> list[Record] | None:
    """Queue ``items`` and return the queue records to run. Stops at the first result."""


@hookspec(firstresult=True)
def sweeprun_runloop(session: Session, records: list[Record]) -> bool | None:
    """Run the queue ``records`` (claiming each first). Stops at the first result."""


@hookspec
def sweeprun_job_env(config: Config, record: Record) -> dict[str, str] | None:
    """Return extra environment variables for the experiment of ``record``."""


@hookspec(firstresult=True)
def sweeprun_store_result(session: Session, report: JobReport, record: Record) -> str | None:
    """Publish a finished job's result (write its ref); return the ref name.

    :param record: the running record the result finishes (its claim).
    """


@hookspec
def sweeprun_report(session: Session, report: JobReport) -> None:
    """Called in the parent process for every finished experiment (reporters listen)."""


@hookspec
def sweeprun_checkpoint(session: Session, record: Record, commit: str, step: int) -> None:
    """Called in the parent when a running experiment's checkpoint ``step`` is published.

    :param commit: the checkpoint commit (its parent is the previous checkpoint).
    """


@hookspec
def sweeprun_terminal_summary(session: Session, exitstatus: int) -> None:
    """Add a section to the terminal summary."""
