"""The sub-command registry: plugins add ``sweeprun show``, ``sweeprun queue`` and so on."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeprun._core.config import Config


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, one-line help, argument setup and implementation."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Config], int]
    #: Two or three command lines that end its ``--help``.
    examples: tuple[str, ...] = ()


class CommandRegistry:
    """Name → :class:`Command`; a later registration of the same name replaces it."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        help: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        run: Callable[[Config], int],
        examples: tuple[str, ...] = (),
    ) -> None:
        """Register a sub-command (``examples`` end its ``--help``)."""
        self._commands[name] = Command(name, help, add_arguments, run, examples)

    def get(self, name: str) -> Command | None:
        """The command called ``name``, if any."""
        return self._commands.get(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def __contains__(self, name: object) -> bool:
        return name in self._commands


def examples_epilog(examples: tuple[str, ...], before: str = "") -> str:
    """The end of a ``--help`` page: ``examples:`` and one command line each."""
    lines = [before, ""] if before else []
    return "\n".join([*lines, "examples:", *(f"  {e}" for e in examples)])
