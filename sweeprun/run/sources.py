"""Where a run's work comes from: the queue refs, or a proposer (an ``optimize:`` study).

A :class:`~sweeprun.run.runner.Runner` takes the records of :meth:`Source.first`, then,
when those are used up, asks :meth:`Source.more` each time a slot frees: the records it
offers that the run has not seen are claimed in turn. A source that ``follows`` is asked
again while jobs still run (a slot waits for work rather than idle until the batch ends);
the run ends once it offers nothing new and nothing runs. Ask/tell, as Optuna's loop: a
proposer sees every result the moment it is published, since it reads the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sweeprun.model import Record
from sweeprun.store.records import ExpStore


class Source(Protocol):
    """What a runner pulls its work from."""

    #: Whether to ask :meth:`more` again while jobs of the run still go on.
    follows: bool

    def first(self) -> list[Record]:
        """The records to run first, in order."""

    def more(self) -> list[Record]:
        """Records to run now (the runner skips those it has seen); none: nothing yet,
        or nothing more."""


@dataclass
class QueueSource:
    """The queue refs: ``records``, and with ``store`` (a background worker) whatever is
    queued meanwhile, after ``top_up`` (a study's next trials) when given."""

    records: list[Record]
    store: ExpStore | None = None
    top_up: Callable[[], object] | None = None
    follows: bool = field(init=False)

    def __post_init__(self) -> None:
        self.follows = self.store is not None

    def first(self) -> list[Record]:
        return list(self.records)

    def more(self) -> list[Record]:
        if self.store is None:
            return []
        if self.top_up is not None:
            self.top_up()
        return self.store.queued()


@dataclass
class ProposerSource:
    """``records``, then what ``propose`` offers each time a slot frees: a proposer that
    reads the results recorded so far (an ``optimize:`` study) and queues its next
    points, returning the queued ones to run."""

    records: list[Record]
    propose: Callable[[], list[Record]]
    follows: bool = True

    def first(self) -> list[Record]:
        return list(self.records)

    def more(self) -> list[Record]:
        return self.propose()
