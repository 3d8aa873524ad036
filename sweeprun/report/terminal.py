"""The terminal reporter: pytest-style header, progress, FAILURES and summary line."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Generator, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

from sweeprun import __version__
from sweeprun._core.session import recorded_failures
from sweeprun._core.streaming import Listed, Listing
from sweeprun.hookspec import hookimpl
from sweeprun.report import live
from sweeprun.report.safe import shown
from sweeprun.spec.cimatrix import matrix

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.session import Session
    from sweeprun.model import JobReport, Record
    from sweeprun.spec.collect import Experiment


OUTCOME_CHAR = {"passed": ".", "failed": "F", "error": "E"}
OUTCOME_WORD = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR"}


def _word(report: JobReport) -> str:
    """PASSED, FAILED, ERROR — or PRUNED (an optimize: trial stopped early)."""
    return "PRUNED" if report.state == "pruned" else OUTCOME_WORD[report.outcome]


def _collected(item: Experiment | Listed, verbosity: int) -> str:
    """An experiment's line in ``--collect-only``."""
    if verbosity < 0:
        return item.id
    if isinstance(item, Listed):  # streamed: its params' text was made once per value
        params = item.params_text
    else:
        params = ", ".join(f"{k}={v!r}" for k, v in item.point.items())
    name = f" name={item.name}" if item.name else ""
    return f"  <Experiment {item.spec.path}::{item.id}{name}> {params}"


class TerminalReporter:
    """Writes the session to a text stream; registered as plugin ``terminalreporter``."""

    def __init__(self, config: Config, out: IO[str] | None = None) -> None:
        self.config = config
        self.out = out or config.stdout
        self.verbosity = int(config.getoption("verbose") or 0) - int(config.getoption("quiet") or 0)
        self.width = max(40, min(shutil.get_terminal_size((80, 24)).columns, 120))
        self._total = 0
        self._done = 0
        self._line_len = 0
        self._started = time.time()
        self._live: Any = None

    # -- helpers ----------------------------------------------------------------------------

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def lines(self, texts: Iterable[str]) -> None:
        """Many lines, written in chunks (a million lines, one write and flush each,
        took seconds of system time)."""
        if self._line_len:
            self.write("\n")
            self._line_len = 0
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == 4096:
                self.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            self.write("\n".join(chunk) + "\n")

    def line(self, text: str = "") -> None:
        if self._line_len:
            self.write("\n")
            self._line_len = 0
        self.write(text + "\n")

    def sep(self, char: str, title: str = "") -> None:
        if title:
            pad = max(2, self.width - len(title) - 2)
            left = pad // 2
            self.line(f"{char * left} {title} {char * (pad - left)}")
        else:
            self.line(char * self.width)

    @property
    def json_collect(self) -> bool:
        return bool(
            self.config.getoption("collect_only")
            and (self.config.getoption("json") or self.config.getoption("ci_matrix"))
        )

    # -- hooks ------------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def sweeprun_sessionstart(self, session: Session) -> None:
        self._started = session.started

    def _header(self, session: Session) -> None:
        # Printed once collection succeeded, so a usage error is one line and nothing else.
        if self.verbosity < 0 or self.json_collect:
            return
        self.sep("=", "sweeprun session starts")
        repo = self.config.repo
        store = session.store
        branch = store.branch()
        self.line(f"sweeprun {__version__}, python {sys.version.split()[0]}")
        self.line(f"root: {repo.root}")
        self.line(f"baseline: {store.head()[:7]}" + (f" ({branch})" if branch else " (detached)"))
        plugins = self.config.pluginmanager.plugin_names()
        if plugins:
            self.line("plugins: " + ", ".join(plugins))
        for lines in self.config.hook.sweeprun_report_header(config=self.config):
            for text in [lines] if isinstance(lines, str) else lines or []:
                self.line(text)

    @hookimpl(trylast=True)
    def sweeprun_collection_finish(self, session: Session) -> None:
        self._header(session)
        items = session.items
        fmt = self.config.getoption("ci_matrix")
        if fmt:
            nodes = [f"{i.spec.path}::{i.id}" for i in items]
            found = matrix(fmt, nodes, self.config.getoption("shard_size"))
            self.write(json.dumps(found, separators=(",", ":")) + "\n")
            return
        if self.json_collect:
            self.write(json.dumps([collect_record(i) for i in items], indent=2, default=str) + "\n")
            return
        if not self.config.getoption("specs") and self.config.getoption("run_all"):
            return
        listed: Sequence[Experiment] | Listing = items
        if session.listed is not None:  # streamed: made as they are printed
            listed = session.listed
        if self.verbosity >= 0:
            n = len(listed)
            origin = f" ({'; '.join(session.origins)})" if session.origins else ""
            k = len(session.studies)
            studies = f" and {k} stud{'ies' if k != 1 else 'y'} (optimize:)" if k else ""
            self.line(f"collected {n} experiment{'s' if n != 1 else ''}{studies}{origin}")
        if self.config.getoption("collect_only"):
            records = session.store.records() if session.studies else []
            for study in session.studies:
                for line in study.lines(records):
                    self.line(shown(line))
            self.lines(shown(_collected(item, self.verbosity)) for item in listed)

    @hookimpl(wrapper=True)
    def sweeprun_queue(
        self, session: Session, items: list[Experiment]
    ) -> Generator[None, list[Record], list[Record]]:
        queued = yield
        skipped = session.skipped_duplicates
        if self.verbosity >= 0:
            n = len(queued)
            self.line(f"queued {n} experiment{'s' if n != 1 else ''}")
            if self.verbosity > 0:
                for rec in queued:
                    self.line(shown(f"  {rec.name}  {rec.id}"))
        if skipped and self.verbosity >= 0:
            self.line(
                f"skipped {len(skipped)} already queued, running or finished "
                "(--force to queue again):"
            )
            for item, rec in skipped[: 10 if self.verbosity <= 0 else None]:
                self.line(shown(f"  {item.id} is {rec.name} ({rec.state})"))
            if len(skipped) > 10 and self.verbosity <= 0:
                self.line(f"  … and {len(skipped) - 10} more (-v to list all)")
        return queued

    @hookimpl(wrapper=True)
    def sweeprun_runloop(
        self, session: Session, records: list[Record]
    ) -> Generator[None, Any, Any]:
        self._total = len(records)
        if self.verbosity >= 0:
            self.line(
                f"running {self._total} experiment{'s' if self._total != 1 else ''}"
                f" with -j {self.config.getoption('jobs') or 1}"
            )
            self.line()

        if self.verbosity >= 0 and live.wanted(self.out):
            self._live = live.LiveProgress(session, self.out, self._total)
            try:
                with self._live:
                    result = yield
            finally:
                self._live = None
        else:
            result = yield
        if self._line_len:
            self._end_progress_line()
        return result

    def _end_progress_line(self) -> None:
        pct = 100 * self._done // max(1, self._total, self._done)
        pad = max(1, self.width - self._line_len - 7)
        self.write(" " * pad + f"[{pct:3d}%]\n")
        self._line_len = 0

    @hookimpl(trylast=True)
    def sweeprun_report(self, session: Session, report: JobReport) -> None:
        self._done += 1
        if self._live is not None:
            word = _word(report)
            self._live.print(
                shown(f"{word:7s} {report.exp_id} ({report.name}, {report.duration:.1f}s)")
            )
            return
        if self.verbosity > 0:
            pct = 100 * self._done // max(1, self._total, self._done)
            self.line(
                shown(
                    f"{report.exp_id} {_word(report)} "
                    f"({report.name}, {report.duration:.2f}s) [{pct:3d}%]"
                )
            )
            return
        self.write("p" if report.state == "pruned" else OUTCOME_CHAR[report.outcome])
        self._line_len += 1
        if self._line_len >= self.width - 8:
            self._end_progress_line()

    @hookimpl(trylast=True)
    def sweeprun_checkpoint(self, session: Session, record: Record, commit: str, step: int) -> None:
        if self._live is not None:
            self._live.print(
                shown(f"checkpoint {step} of {record.id} ({record.name}): {commit[:7]}")
            )
        elif self.verbosity >= 0:
            self.line(shown(f"checkpoint {step} of {record.id} ({record.name}): {commit[:7]}"))

    @hookimpl(trylast=True)
    def sweeprun_sessionfinish(self, session: Session, exitstatus: int) -> None:
        if self.json_collect or exitstatus == 4:
            return
        if self._line_len:
            self._end_progress_line()
        reports = session.reports
        failed = [r for r in reports if r.outcome != "passed"]
        if failed and self.verbosity >= -1:
            self.sep("=", "FAILURES")
            for r in failed:
                self.sep("_", shown(f"{r.exp_id} ({r.name})"))
                if r.message:
                    self.line(f"E   {shown(r.message)}")
                for text in r.log_tail.splitlines():
                    self.line(text)
                self.line(f"(full log: {r.log_path})")
        self.config.hook.sweeprun_terminal_summary(session=session, exitstatus=exitstatus)
        if session.shouldstop and session.shouldstop != "interrupted":
            self.line(f"!!! {session.shouldstop} !!!")
        if not reports and not (self.config.getoption("run") or self.config.getoption("run_all")):
            return
        if exitstatus == 2:
            self.sep("!", "interrupted: unfinished experiments were queued again")
        counts: dict[str, int] = {}
        for r in reports:
            kind = r.state if r.state in ("expect-failed", "pruned") else r.outcome
            counts[kind] = counts.get(kind, 0) + 1
        skipped = len(session.skipped_duplicates) if self.config.getoption("run") else 0
        parts = [
            f"{counts[k]} {k}"
            for k in ("passed", "pruned", "failed", "expect-failed", "error")
            if counts.get(k)
        ]
        if skipped:
            n_failed = len(recorded_failures(session))
            parts.append(
                f"{skipped} skipped"
                + (f" ({n_failed} recorded as failed: --lf reruns them)" if n_failed else "")
            )
        elapsed = time.time() - session.started
        summary = ", ".join(parts) or "no experiments ran"
        self.sep("=", f"{summary} in {elapsed:.2f}s")


def collect_record(item: Experiment) -> dict[str, Any]:
    """What ``--collect-only --json`` prints for one experiment."""
    return {
        "id": item.id,
        "name": item.name,
        "sweep": item.sweep,
        "spec": item.spec.path,
        "point": item.point,
        "params": item.full_params(),
    }


@hookimpl
def sweeprun_configure(config: Config) -> None:
    """Register the reporter for the main mode."""
    if config.command is None:
        config.pluginmanager.register(TerminalReporter(config), "terminalreporter")
