"""The configuration of one invocation: parsed options, plugins, repository, ini values."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sweeprun.exceptions import UsageError
from sweeprun.store.git import discover

if TYPE_CHECKING:
    import pluggy

    from sweeprun._core.pluginmanager import PluginManager
    from sweeprun._core.registry import CommandRegistry
    from sweeprun.store.git import RepoPaths

ENV_ADDOPTS = "SWEEPRUN_ADDOPTS"
_NOTSET: Any = object()


@dataclass
class Config:
    """Everything an invocation knows before it starts working."""

    args: argparse.Namespace
    pluginmanager: PluginManager
    commands: CommandRegistry
    invocation_dir: Path
    ini: dict[str, Any]
    command: str | None = None  # sub-command name, None for the main mode
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    _repo: RepoPaths | None = None

    @property
    def hook(self) -> pluggy.HookRelay:
        """The hook relay (``config.hook.sweeprun_…(...)``)."""
        return self.pluginmanager.hook

    @property
    def repo(self) -> RepoPaths:
        """The repository of the invocation directory (a ``UsageError`` outside one)."""
        if self._repo is None:
            self._repo = discover(self.invocation_dir)
        return self._repo

    def getoption(self, name: str, default: Any = _NOTSET) -> Any:
        """An option's value by its dest name; ``ValueError`` for a name no parser of this
        invocation defined (unless a ``default`` is given), as pytest's does."""
        try:
            return getattr(self.args, name)
        except AttributeError:
            if default is not _NOTSET:
                return default
            raise ValueError(f"no option named {name!r}") from None


def find_ini(start: Path) -> tuple[Path | None, dict[str, Any]]:
    """The nearest ``pyproject.toml`` with a ``[tool.sweeprun]`` table, and that table."""
    for d in (start, *start.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            import tomlkit  # deferred: ~25 ms to import, only when a pyproject.toml is there

            try:
                data = tomlkit.parse(candidate.read_text(encoding="utf-8")).unwrap()
            except Exception as exc:
                raise UsageError(f"{candidate}: invalid TOML ({exc})") from None
            table = data.get("tool", {}).get("sweeprun")
            if table is not None:
                if not isinstance(table, dict):
                    raise UsageError(f"{candidate}: [tool.sweeprun] must be a table")
                return candidate, table
        if (d / ".git").exists():
            break
    return None, {}


def ini_args(ini: dict[str, Any], source: str) -> list[str]:
    """Turn ``[tool.sweeprun]`` into command-line words (``addopts`` and known keys)."""
    words: list[str] = []
    addopts = ini.get("addopts", [])
    if isinstance(addopts, str):
        words += shlex.split(addopts)
    elif isinstance(addopts, list) and all(isinstance(a, str) for a in addopts):
        words += addopts
    else:
        raise UsageError(f"{source}: [tool.sweeprun] addopts must be a string or list of strings")
    simple = {
        "jobs": "-j",
        "timeout": "--timeout",
        "retries": "--retries",
        "backend": "--backend",
        "maxfail": "--maxfail",
    }
    for key, value in ini.items():
        if key == "addopts":
            continue
        if key not in simple:
            valid = ", ".join(["addopts", *simple])
            raise UsageError(f"{source}: unknown key {key!r} in [tool.sweeprun] (valid: {valid})")
        words += [simple[key], str(value)]
    return words


def env_args() -> list[str]:
    """Words from ``SWEEPRUN_ADDOPTS``."""
    raw = os.environ.get(ENV_ADDOPTS, "")
    try:
        return shlex.split(raw)
    except ValueError as exc:
        raise UsageError(f"{ENV_ADDOPTS}: {exc}") from None
