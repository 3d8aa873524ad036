"""The built-in ``gitstore`` plugin: queue collected experiments, publish results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeprun.hookspec import hookimpl
from sweeprun.model import JobReport, Record

if TYPE_CHECKING:
    from sweeprun._core.session import Session
    from sweeprun.spec.collect import Experiment


@hookimpl(trylast=True)
def sweeprun_queue(session: Session, items: list[Experiment]) -> list[Record]:
    """Queue the collected experiments in git and report what happened."""
    outcome = session.store.enqueue(
        items, force=bool(session.config.getoption("force")), force_items=session.force_keys
    )
    session.skipped_duplicates = outcome.skipped
    return outcome.queued


@hookimpl(trylast=True)
def sweeprun_store_result(session: Session, report: JobReport, record: Record) -> str | None:
    """Write the result ref of a finished job (parent process only)."""
    if report.result_commit is None:
        return None
    return session.store.finish(record, report.result_commit, report.name)
