"""Command-line entry: build the plugin manager, parse, dispatch, map errors to exit codes.

This is the only module that decides an exit code for an exception; everything else
raises typed errors (``UsageError`` → 4) or returns codes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NoReturn, cast

from sweeprun import __version__
from sweeprun._core.config import Config, env_args, find_ini, ini_args
from sweeprun._core.exitcode import ExitCode
from sweeprun._core.pluginmanager import PluginManager
from sweeprun._core.registry import CommandRegistry, examples_epilog
from sweeprun.exceptions import SweeprunError, UsageError
from sweeprun.store.git import discover


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (exit 4) instead of exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


MAIN_EXAMPLES = (
    "sweeprun sweeps.yaml --run -j 4        # queue every sweep, run it 4 at a time",
    "sweeprun -S train.lr=0.1,0.01 --run    # a sweep from the command line",
    "sweeprun sweeps.yaml --lf --run        # run again what failed last time",
)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every mode accepts."""
    parser.add_argument(
        "-p",
        dest="plugins",
        action="append",
        default=[],
        metavar="NAME",
        help="load plugin module NAME, or disable it with no:NAME",
    )
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    parser.add_argument("--version", action="version", version=f"sweeprun {__version__}")


def build_main_parser() -> ArgumentParser:
    """The parser of ``sweeprun [SPEC…]``; plugins add to it in ``sweeprun_addoption``."""
    parser = ArgumentParser(
        prog="sweeprun",
        description="Queue and run parameter sweeps as hidden git commits.",
        epilog="sub-commands: see 'sweeprun COMMAND --help' (listed below)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC",
        help="sweeps.yaml files or directories (default: ./sweeps.yaml)",
    )
    add_common_options(parser)
    return parser


def _prepare(argv: list[str], stdout: IO[str], cwd: Path | None = None) -> Config:
    invocation_dir = cwd or Path.cwd()
    commands = CommandRegistry()
    command_name = argv[0] if argv and not argv[0].startswith("-") else None
    pm = PluginManager()
    pm.consider_preparse(argv)
    pm.register_builtins()
    pm.load_entrypoints()
    pm.hook.sweeprun_add_commands.call_historic(kwargs={"commands": commands})
    if command_name is not None and command_name not in commands:
        command_name = None
    ini_path, ini = find_ini(invocation_dir)
    if command_name is None:
        words = env_args() + (ini_args(ini, str(ini_path)) if ini_path else []) + argv
    else:
        words = argv
    # The repository root's sweepconf.py may add options, so load it before parsing.

    try:
        repo = discover(invocation_dir)
    except UsageError:
        repo = None
    if repo is not None:
        pm.load_conftests(repo.root, invocation_dir)
    if command_name is None:
        parser = build_main_parser()
        pm.hook.sweeprun_addoption.call_historic(kwargs={"parser": parser, "commands": commands})
        parser.epilog = examples_epilog(
            MAIN_EXAMPLES, "sub-commands: " + ", ".join(c.name for c in commands)
        )
        args = parser.parse_args(words)
    else:
        cmd = commands.get(command_name)
        assert cmd is not None
        parser = ArgumentParser(
            prog=f"sweeprun {cmd.name}",
            description=cmd.help,
            epilog=examples_epilog(cmd.examples) if cmd.examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common_options(parser)
        cmd.add_arguments(parser)
        args = parser.parse_args(words[1:])
    pm.check_pending()
    config = Config(
        args=args,
        pluginmanager=pm,
        commands=commands,
        invocation_dir=invocation_dir,
        ini=ini,
        command=command_name,
        stdout=stdout,
    )
    config._repo = repo
    return config


def main(
    args: Sequence[str] | None = None, stdout: IO[str] | None = None, cwd: Path | None = None
) -> int:
    """Run sweeprun with ``args`` (default: ``sys.argv[1:]``) and return the exit code.

    ``cwd`` stands for the directory it is run in (default: the current one).
    """
    argv = list(sys.argv[1:] if args is None else args)
    out = stdout if stdout is not None else sys.stdout
    config: Config | None = None
    try:
        config = _prepare(argv, out, cwd)
        config.hook.sweeprun_configure(config=config)
        try:
            if config.command is not None:
                cmd = config.commands.get(config.command)
                assert cmd is not None
                return int(cmd.run(config))
            ret = config.hook.sweeprun_cmdline_main(config=config)
            return int(ret if ret is not None else ExitCode.OK)
        finally:
            config.hook.sweeprun_unconfigure(config=config)
    except UsageError as exc:
        print(f"sweeprun: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except KeyboardInterrupt:
        print("sweeprun: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        raise  # the reader went away: console_main ends quietly
    except SweeprunError as exc:
        print(f"sweeprun: internal error: {exc}", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
    except Exception as exc:
        print(_describe_crash(exc, config), file=sys.stderr)
        return ExitCode.INTERNAL_ERROR


def _describe_crash(exc: BaseException, config: Config | None) -> str:
    """A traceback that names the plugin whose code raised, when it was a plugin."""
    tb = traceback.format_exception(exc)
    where = ""
    if config is not None:
        files = {}
        for name, plugin in config.pluginmanager.list_name_plugin():
            f = getattr(plugin, "__file__", None)
            if f:
                files[str(Path(f).resolve())] = name
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            owner = files.get(str(Path(frame.filename).resolve()))
            if owner is not None:
                where = (
                    f"\nsweeprun: internal error in plugin {owner!r} "
                    f"({frame.filename}:{frame.lineno}, in {frame.name})"
                )
                break
    return "".join(tb) + where


class ReaderSafe(io.TextIOBase):
    """stdout whose reader may go away (``sweeprun --run | head -3``): from then on output
    goes to ``/dev/null`` and the command carries on — a run is not stopped, nor its exit
    code changed, by who reads what it prints."""

    def __init__(self, inner: IO[str]) -> None:
        self.inner = inner
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.inner.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.inner.flush()
            except BrokenPipeError:
                self._gone()

    def isatty(self) -> bool:
        return not self.gone and self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.inner, "encoding", "utf-8"))

    def _gone(self) -> None:
        self.gone = True
        # The descriptor too: nothing (a flush at exit, a child writing) fails on it again.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.inner.fileno())
            os.close(devnull)


def console_main() -> int:
    """The ``sweeprun`` console script.

    A reader that goes away (``sweeprun show | head``) ends the output quietly, and the
    command goes on (see :class:`ReaderSafe`).
    """
    out = ReaderSafe(sys.stdout)
    sys.stdout = out  # print() and plugins that write to sys.stdout too
    try:
        code = main(stdout=cast(IO[str], out))
        out.flush()
    finally:
        sys.stdout = out.inner
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(console_main())
