"""Stopping a run on a signal: SIGINT (Ctrl+C), SIGTERM (``docker stop``, a CI cancel,
``timeout``) and SIGHUP (a closed terminal) all mean the same thing.

The first signal stops dispatching and asks every running command to stop (SIGINT to its
process group and to every process carrying its job's token, which a program may handle to
save its state); whatever has not stopped after :data:`GRACE` seconds is killed, and so is
everything at a second signal. "Whatever" is the whole tree, not the command alone: a
shell's background child (``sleep 600 & python train.py``) is started with SIGINT ignored
and outlives its shell, so the run ends only once every stopped tree is gone — waiting out
the grace period for such a process, then killing it. The
handler raises nothing: the run loop keeps collecting reports, so an experiment that
finished meanwhile is recorded, never put back in the queue, and one that was cut short
goes back to the queue (see ``JobReport.interrupted``).

Signal dispositions are also what jobs inherit: a runner started as ``cmd &`` from a script
inherits "ignore SIGINT", and an ignored signal stays ignored across ``exec``. A signal with
a Python handler is reset to its default in a child, so an inherited "ignore" is replaced by
a handler that ignores it: the runner keeps ignoring it, its jobs do not.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from sweeprun.system import procs

#: How long a job gets to stop after the first signal before its process tree is killed
#: (``SWEEPRUN_STOP_GRACE`` seconds, when set).
GRACE = 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Set when the run is stopping (a signal): no command starts any more, and one that
#: fails from now on was cut short rather than failed (see :mod:`sweeprun.run.command`).
STOP = threading.Event()


class Stopper:
    """Installed for the length of a run (main thread only); restores what it replaced."""

    def __init__(
        self,
        running: Callable[[], list[procs.ProcessRef]],
        on_stop: Callable[[], None],
        grace: float | None = None,
    ) -> None:
        self.running = running
        self.on_stop = on_stop
        self.grace = _grace() if grace is None else grace
        self.signals = 0
        #: The trees the first signal reached, and when the grace period ends.
        self._stopped: list[procs.ProcessRef] = []
        self._deadline = 0.0
        self._old: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Stopper:
        STOP.clear()
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: leave them be
        for sig in SIGNALS:
            old = signal.getsignal(sig)
            self._old[sig] = old
            # Respect an inherited "ignore" for the runner, but not for its jobs.
            signal.signal(sig, _ignore if old == signal.SIG_IGN else self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_trees()
        for sig, old in self._old.items():
            if old is not None:  # None: a handler installed outside Python, left as is
                signal.signal(sig, old)
        if self._timer is not None:
            self._timer.cancel()
        STOP.clear()  # the next run in this process starts afresh

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        STOP.set()
        self.on_stop()
        if self.signals == 1:
            self._stopped = list(self.running())
            self._deadline = time.monotonic() + self.grace
            for proc in self._stopped:
                proc.signal_tree(signal.SIGINT)
            self._timer = threading.Timer(self.grace, self.kill)
            self._timer.daemon = True
            self._timer.start()
        else:
            self.kill()

    def kill(self) -> None:
        """Kill every running command's whole process tree now."""
        for proc in [*self.running(), *self._stopped]:
            proc.signal_tree(signal.SIGKILL)

    def _finish_trees(self) -> None:
        """The run ends: what the stop reached and still lives (a background child that
        ignores SIGINT, its command gone) gets the rest of the grace period, then SIGKILL."""
        if not self._stopped:
            return
        while time.monotonic() < self._deadline:
            if not any(p.tree_alive() for p in self._stopped):
                return
            time.sleep(0.05)
        left = [p for p in self._stopped if p.signal_tree(signal.SIGKILL)]
        if left:
            print(
                f"sweeprun: killed what was left of {len(left)} stopped command(s) after "
                f"{self.grace:g} s (processes that ignored SIGINT)",
                file=sys.stderr,
            )


def _grace() -> float:
    """:data:`GRACE`, or ``SWEEPRUN_STOP_GRACE`` seconds when that is a number >= 0."""
    try:
        value = float(os.environ.get("SWEEPRUN_STOP_GRACE", ""))
    except ValueError:
        return GRACE
    return value if 0 <= value < float("inf") else GRACE


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing: the signal stays ignored here, not in children."""


class StopToken:
    """Why a run stops dispatching (``-x``, a full disk, a signal, ``queue stop``), set
    from any thread or a signal handler; the first reason stands, an interrupt overrides.

    No lock: a signal handler runs in the main thread, possibly while that thread is
    inside :meth:`stop` itself, and would deadlock on one. Each call is one attribute
    assignment (atomic); a forced reason lives apart, so a plain reason set at the same
    moment can never hide it.
    """

    def __init__(self) -> None:
        self._first: str | None = None
        self._forced: str | None = None

    @property
    def reason(self) -> str | None:
        """The interrupt, else the first reason, else ``None``."""
        return self._forced or self._first

    @reason.setter
    def reason(self, value: str | None) -> None:
        self._forced, self._first = None, value

    def __bool__(self) -> bool:
        return self.reason is not None

    def stop(self, reason: str, force: bool = False) -> None:
        """Stop with ``reason`` (kept if a reason stands already, unless ``force``)."""
        if force:
            self._forced = reason
        elif self._first is None:
            self._first = reason

    def clear(self) -> None:
        """Dispatch again (a worker's next batch)."""
        self._forced = self._first = None
