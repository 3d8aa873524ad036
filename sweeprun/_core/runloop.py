"""The built-in ``scheduler`` plugin: one invocation's run, as a ``run.runner.Runner``.

The runner knows run options, the store, a stop token, an event sink and a source; this
module builds them from the session — the source (the queue; what a background worker
finds queued meanwhile; a study's proposals) and the sink that turns the runner's events
into the session's hooks (``sweeprun_report``, ``sweeprun_checkpoint``, …), where the
terminal reporter, junit, the live display and plugins listen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sweeprun._core import studies
from sweeprun.hookspec import hookimpl
from sweeprun.model import JobReport, Record
from sweeprun.run.runner import Events, Runner
from sweeprun.run.sources import ProposerSource, QueueSource, Source

if TYPE_CHECKING:
    from sweeprun._core.session import Session


class SessionEvents(Events):
    """A runner's events as the session's plugin hooks."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.store)
        self.session = session

    def job_env(self, record: Record) -> Mapping[str, str]:
        config = self.session.config
        extra: dict[str, str] = {}
        for got in config.hook.sweeprun_job_env(config=config, record=record):
            if got:
                extra.update(got)
        return extra

    def store_result(self, report: JobReport, record: Record) -> str | None:
        session = self.session
        ref: str | None = session.hook.sweeprun_store_result(
            session=session, report=report, record=record
        )
        return ref

    def report(self, report: JobReport) -> None:
        self.session.reports.append(report)
        self.session.hook.sweeprun_report(session=self.session, report=report)

    def checkpoint(self, record: Record, commit: str, step: int) -> None:
        self.session.hook.sweeprun_checkpoint(
            session=self.session, record=record, commit=commit, step=step
        )

    def adopted(self, record: Record, report: JobReport) -> None:
        self.session.reports.append(report)
        self.session.config.stdout.write(
            f"adopted {record.name}: its command had finished under a runner that died "
            f"({report.outcome}); it does not run again\n"
        )


def source_of(session: Session, records: list[Record]) -> Source:
    """Where the run's work comes from: ``records``, then for a background worker what is
    queued meanwhile (the studies' next trials first), for a study its proposals."""
    if session.follow:
        return QueueSource(records, session.store, top_up=lambda: studies.top_up(session, 1))
    if session.studies:
        return ProposerSource(records, studies.more(session))
    return QueueSource(records)


@hookimpl(trylast=True)
def sweeprun_runloop(session: Session, records: list[Record]) -> bool:
    """Run ``records`` (and what the source offers next) with a :class:`Runner`."""
    session.runner = Runner(
        session.options,
        session.store,
        source_of(session, records),
        stop=session.stop,
        events=SessionEvents(session),
        in_place=session.in_place,
        prune=studies.pruner(session),
    )
    session.runner.run()
    return True
