"""The live progress display on a terminal: counts, ETA, and each running job's last line.

Only when the output is a terminal and not CI (``CI`` unset); otherwise the terminal
reporter prints plain pytest-style lines without control characters.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.live import Live

    from sweeprun._core.session import Session


def wanted(out: IO[str]) -> bool:
    """A live display makes sense here."""
    return out.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 2048))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:120] if lines else ""


class LiveProgress:
    """Renders the state of a run loop a few times a second."""

    def __init__(self, session: Session, out: IO[str], total: int) -> None:
        self.session = session
        self.total = total
        self.started = time.time()
        self.out = out
        self._live: Live | None = None

    def __rich__(self) -> Any:
        # Deferred: rich costs ~35 ms to import; only a terminal's live display needs it.
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        reports = self.session.reports
        done = len(reports)
        failed = sum(not r.passed for r in reports)
        elapsed = time.time() - self.started
        eta = (elapsed / done * (self.total - done)) if done else None
        head = Text(
            f"{done}/{self.total} done, {failed} failed, {elapsed:.0f}s elapsed"
            + (f", ETA {eta:.0f}s" if eta is not None else ""),
            style="bold",
        )
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        table.add_column("running")
        table.add_column("for", justify="right")
        table.add_column("latest log line", overflow="ellipsis", no_wrap=True)
        state = self.session.store.repo.state_dir
        now = time.time()
        for key, rec in list(self.session.running.items()):
            lease = self.session.store.journal.lease(key)
            since = lease.started if lease is not None else now
            # Text, not str: a log line is printed as it is, never read as rich markup.
            table.add_row(
                Text(rec.name),
                f"{now - since:.0f}s",
                Text(last_line(state / "logs" / f"{key}.log")),
            )
        return Group(head, table)

    def __enter__(self) -> LiveProgress:
        # Deferred: rich costs ~35 ms to import; only a terminal's live display needs it.
        from rich.console import Console
        from rich.live import Live

        self._live = Live(
            self, console=Console(file=self.out), refresh_per_second=4, transient=True
        )
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def print(self, text: str) -> None:
        """A line above the live display."""
        if self._live is not None:
            self._live.console.print(text, highlight=False, markup=False)
