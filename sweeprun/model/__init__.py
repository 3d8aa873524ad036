"""Typed, versioned records: what crosses every boundary of sweeprun.

Imports nothing of sweeprun's. Each record has one writer and ``to_json``/``from_json``;
records written by earlier versions are migrated when read (see :mod:`.records`).
"""

from sweeprun.model.job import BACKENDS, CHECKPOINT_ENV, Job, JobReport, JobSetup, RunOptions
from sweeprun.model.reap import Reapable, size_of, unlink_later
from sweeprun.model.records import (
    CHECKPOINTS,
    EXPS,
    QUEUE,
    REPLACED,
    RUNNING,
    SCHEMA,
    STASH,
    STUDIES,
    CheckpointRecord,
    ExpRecord,
    QueueRecord,
    Record,
    Result,
    format_message,
    is_record,
    parse_message,
    parse_record,
    public_record,
    replaced_ref,
    result_ref,
)
from sweeprun.model.stage import Out, Stage
from sweeprun.model.states import FAILED_STATES, Outcome, State

__all__ = [
    "BACKENDS",
    "CHECKPOINTS",
    "CHECKPOINT_ENV",
    "EXPS",
    "FAILED_STATES",
    "QUEUE",
    "REPLACED",
    "RUNNING",
    "SCHEMA",
    "STASH",
    "STUDIES",
    "CheckpointRecord",
    "ExpRecord",
    "Job",
    "JobReport",
    "JobSetup",
    "Out",
    "Outcome",
    "QueueRecord",
    "Reapable",
    "Record",
    "Result",
    "RunOptions",
    "Stage",
    "State",
    "format_message",
    "is_record",
    "parse_message",
    "parse_record",
    "public_record",
    "replaced_ref",
    "result_ref",
    "size_of",
    "unlink_later",
]
