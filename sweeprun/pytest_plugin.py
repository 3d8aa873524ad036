"""``pytest sweeps.yaml``: experiments as pytest items (registered under ``pytest11``).

A spec named on pytest's command line is always collected; spec files pytest finds while
walking directories (``sweeps.yaml``, ``*.sweeps.yaml``) are collected with ``--sweeps`` or
``sweeps = true`` in the ini file, so a project's unit tests and its sweeps run in one call.
Each experiment is an item whose name is its sweeprun id (``grid[lr=0.1]``), so ``-k``,
``-x``, ``--lf``, ``--collect-only`` and ``--junitxml`` are pytest's own. Running an item
queues and runs that one experiment through sweeprun's executor, in-process: the result
is recorded as any other experiment (``sweeprun show`` lists it), and an experiment that
already has a successful result is not run again, as with ``sweeprun``; a failed one is
(``sweeprun --lf``), as a test runs again. A non-zero exit or a missed
``expect:`` fails the item with sweeprun's failure report (the log tail) as its text.

This module is imported by every pytest run in an environment where sweeprun is
installed, so it imports nothing of sweeprun until a spec is collected.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SPEC_PATTERNS = ("sweeps.yaml", "sweeps.yml", "*.sweeps.yaml", "*.sweeps.yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sweeprun", "sweeprun experiments as test items")
    group.addoption(
        "--sweeps",
        action="store_true",
        default=None,
        help="collect sweeps.yaml / *.sweeps.yaml files found in directories as tests",
    )
    group.addoption(
        "--sweeprun-args",
        default=None,
        metavar="ARGS",
        help='sweeprun options for collecting and running them, e.g. "-S lr=0.1 --timeout 60"',
    )
    parser.addini("sweeps", "collect sweeps files found in directories", type="bool", default=False)
    parser.addini("sweeprun_args", "sweeprun options (as --sweeprun-args)", default="")


def _extra_args(config: pytest.Config) -> list[str]:
    given = config.getoption("sweeprun_args")
    text = given if given is not None else str(config.getini("sweeprun_args") or "")
    return shlex.split(text)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not any(fnmatch.fnmatch(file_path.name, p) for p in SPEC_PATTERNS):
        return None
    config = parent.config
    named = any(
        Path(str(arg).split("::", 1)[0]).resolve() == file_path.resolve() for arg in config.args
    )
    enabled = config.getoption("sweeps")
    if enabled is None:
        enabled = bool(config.getini("sweeps"))
    if not (named or enabled):
        return None
    return SweepsFile.from_parent(parent, path=file_path)


def _sweeprun(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run sweeprun in-process in ``cwd``: (exit code, stdout, stderr)."""
    from sweeprun._core.cli import main  # deferred: not loaded by pytest runs without specs

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        ret = main(args, stdout=out, cwd=cwd)
    return int(ret), out.getvalue(), err.getvalue()


class SweepsFile(pytest.File):
    """A sweeps file: its experiments, collected by sweeprun."""

    def collect(self) -> Iterator[pytest.Item]:
        args = [self.path.name, "--collect-only", "--json", *_extra_args(self.config)]
        ret, out, err = _sweeprun(args, self.path.parent)
        if ret == 5:  # nothing collected: no items, as pytest has it
            return
        if ret != 0:
            raise SweepsCollectError(err.strip() or out.strip() or f"sweeprun exited {ret}")
        for exp in json.loads(out):
            name = str(exp["id"])
            # The id given as a string, so pytest parses it as it parses the ids in its
            # cache (``grid[lr=0.1]``: name and params): --lf finds the item again.
            yield SweepItem.from_parent(
                self, name=name, nodeid=f"{self.nodeid}::{name}", experiment=exp
            )


class SweepsCollectError(Exception):
    """sweeprun refused the spec (its one-line error is the message)."""


class SweepItem(pytest.Item):
    """One experiment of a sweep."""

    def __init__(self, *, experiment: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        point = experiment.get("point") or {}
        self.user_properties.extend((f"param:{k}", v) for k, v in point.items())

    def runtest(self) -> None:
        selector = f"{self.path.name}::{self.experiment['id']}"
        # --lf: a recorded failure runs again (as a test does); a recorded success is
        # reported from its record, not run twice (as sweeprun does).
        args = [selector, "--run", "--lf", *_extra_args(self.config)]
        ret, out, err = _sweeprun(args, self.path.parent)
        if ret != 0:
            raise SweepFailed(ret, out, err)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, SweepFailed):
            return excinfo.value.report()
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class SweepFailed(Exception):
    """An experiment failed: sweeprun's own failure report explains it."""

    def __init__(self, ret: int, out: str, err: str) -> None:
        super().__init__(ret)
        self.ret, self.out, self.err = ret, out, err

    def report(self) -> str:
        lines = self.out.splitlines()
        # sweeprun's FAILURES section holds the log tail and the reason; show it alone.
        start = next((i for i, ln in enumerate(lines) if "FAILURES" in ln), None)
        body = (
            # the section's body, without its "____ id (name) ____" title
            "\n".join(ln for ln in lines[start + 1 : -1] if not ln.startswith("____"))
            if start is not None
            else self.out.strip()
        )
        text = body.strip() or self.err.strip() or f"sweeprun exited with code {self.ret}"
        return f"{text}\n(sweeprun exit code {self.ret})"
