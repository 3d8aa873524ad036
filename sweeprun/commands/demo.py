"""``sweeprun demo``: copy an example project (the quickstart by default) into a new git
repository and sweep it."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sweeprun._core.exitcode import ExitCode
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.store.git import FALLBACK_IDENTITY

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


#: The example projects ``demo --example`` can start from (the docs' pages use them).
EXAMPLES = ("quickstart", "pipeline", "dvc-project", "hydra-app", "hydra-sklearn", "language")


def example_dir(name: str = "quickstart") -> Path:
    """The example shipped in the wheel, or the source tree's ``examples/`` in development."""
    here = Path(__file__).resolve().parents[1]  # the sweeprun package
    for base in (here / "_examples", here.parent / "examples"):
        if any((base / name / spec).is_file() for spec in ("sweeps.yaml", "dvc.yaml")):
            return base / name
    raise UsageError(f"example {name!r} not found (is sweeprun installed completely?)")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", nargs="?", help="where to create the demo repository (default: a new temp dir)"
    )
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel jobs (default 2)")
    parser.add_argument(
        "--example",
        choices=EXAMPLES,
        default="quickstart",
        help="the example project to start from (default: quickstart)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary repository (a DIRECTORY is kept)"
    )
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="only create the repository (the example, committed): the tutorial starts here",
    )


def _run(config: Config) -> int:
    target_arg = config.getoption("directory")
    if target_arg:
        target = (config.invocation_dir / target_arg).resolve()
        if target.exists() and any(target.iterdir()):
            raise UsageError(f"demo: {target} exists and is not empty")
    else:
        target = Path(tempfile.mkdtemp(prefix="sweeprun-demo-"))
    temporary = not target_arg and not config.getoption("keep")
    try:
        return _demo(config, target, temporary)
    finally:
        if temporary:
            shutil.rmtree(target, ignore_errors=True)


def _demo(config: Config, target: Path, temporary: bool) -> int:
    shutil.copytree(
        example_dir(config.getoption("example")),
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    ignore = target / ".gitignore"
    if not ignore.exists():
        # Python's byte code is no input of an experiment (nor of the baseline commit).
        ignore.write_text("__pycache__/\n")
    env = dict(os.environ)
    for key, value in FALLBACK_IDENTITY.items():
        env.setdefault(key, value)
    # The example's command says `python3`: make it the interpreter running sweeprun.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    out = config.stdout

    def sh(*cmd: str, show: bool = True) -> int:
        if show:
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
        argv = list(cmd)
        if argv[0] == "sweeprun":
            argv = [sys.executable, "-m", "sweeprun", *argv[1:]]
        proc = subprocess.run(
            argv,
            cwd=target,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if show or proc.returncode:
            out.write(proc.stdout)
            out.flush()
        return proc.returncode

    out.write(
        f"demo repository: {target}"
        + (" (a temporary one, removed at the end: --keep keeps it)" if temporary else "")
        + "\n"
    )
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "demo baseline"],
    ):
        if sh(*cmd, show=False):
            return ExitCode.INTERNAL_ERROR
    if config.getoption("no_run"):
        out.write(f"next: cd {target} && sweeprun --collect-only\n")
        return ExitCode.OK
    spec = ["sweeps.yaml"] if (target / "sweeps.yaml").is_file() else []  # else dvc.yaml
    if sh("sweeprun", *spec):
        return ExitCode.TESTS_FAILED
    code = sh("sweeprun", "--run-all", "-j", str(config.getoption("jobs")))
    sh("sweeprun", "show")
    if not temporary:
        out.write(f"\nexplore it: cd {target} && sweeprun show --json\n")
    return code


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun demo``."""
    commands.add(
        "demo",
        "create a demo repository and run a sweep in it end to end",
        _add_arguments,
        _run,
        examples=(
            "sweeprun demo",
            "sweeprun demo ./try-sweeprun --no-run   # the tutorial starts here",
            "sweeprun demo ./my-app --example hydra-app --no-run",
        ),
    )
