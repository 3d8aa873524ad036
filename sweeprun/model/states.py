"""Outcomes of a job and recorded states of an experiment."""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """An experiment's state, as ``show`` prints it and records store it."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    #: The command succeeded but a metric missed the sweep's ``expect:``.
    EXPECT_FAILED = "expect-failed"
    #: A trial of an ``optimize:`` sweep stopped early on its checkpoint metrics: finished,
    #: not failed (``expect:`` does not apply).
    PRUNED = "pruned"
    CHECKPOINT = "checkpoint"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:
        # As the string: "failed" in FAILED_STATES must hold (Enum hashes its name).
        return hash(self.value)

    @classmethod
    def parse(cls, value: object) -> State:
        """The state named ``value``; ``UNKNOWN`` for anything else (a newer version's)."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


#: Recorded states of an experiment that did not succeed (``--lf``, ``retry --failed``,
#: ``remove --failed``, a rerun's exit code).
FAILED_STATES = frozenset({State.FAILED, State.TIMEOUT, State.EXPECT_FAILED})


class Outcome(str, Enum):
    """How a job ended, from the runner's point of view."""

    PASSED = "passed"
    FAILED = "failed"
    #: sweeprun itself could not run or record the job: no result, back to the queue.
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:
        # As the string: "failed" in FAILED_STATES must hold (Enum hashes its name).
        return hash(self.value)
