"""Adopting what a killed runner finished: exactly once, even under ``kill -9``.

A runner can die between a command's exit and the result's ref. Running the experiment
again would run its command to completion twice. Instead, the next runner that reclaims
the experiment looks for what the dead one left:

1. the result commit, which the job notes in its runner's lease journal (``<key> done
   <sha>``) the moment it exists: it is published as it is;
2. else the outcome of the last command, which its slot's pid file records the moment the
   command exits (``KEY exit RC STAGE CLAIM``, before anything else: see
   ``command.run_command``): if it was the pipeline's last command and the slot still holds
   what it left (nobody took the slot since: the record is still there, under the claim
   the dead runner made), the result is recorded from that workspace without running
   anything.

Otherwise the experiment goes back to the queue as before. A command that was still running when
its runner died never finishes: the runner's supervisor kills it (``system.supervisor``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace

from sweeprun.exceptions import GitError
from sweeprun.model import JobReport, Record, RunOptions
from sweeprun.run import workspace
from sweeprun.run.executor import adopt_job
from sweeprun.run.jobs import claim_token, job_setup, make_job
from sweeprun.run.runner import Events
from sweeprun.run.snapshot import read_result
from sweeprun.store.records import ExpStore


def adopter(store: ExpStore, options: RunOptions, events: Events) -> Callable[[Record], bool]:
    """A function that records an orphan's finished result; ``True`` when it did (and
    tells ``events``)."""
    repo = store.repo

    def publish(rec: Record, commit: str) -> bool:
        """The job had made its result commit: publish it as it is."""
        result = read_result(store.cwd, commit)
        if result is None or result.key != rec.key:
            return False
        log = repo.state_dir / "logs" / f"{rec.key}.log"
        with contextlib.suppress(OSError), open(log, "ab") as f:
            f.write(b"sweeprun: adopted: its runner died before publishing this result\n")
        report = replace(
            JobReport.of_result(result, commit, str(log)), name=rec.name, exp_id=rec.id
        )
        return done(rec, report)

    def done(rec: Record, report: JobReport) -> bool:
        if report.result_commit is None:
            return False
        try:
            store.finish(rec, report.result_commit, report.name)
        except GitError:
            return False  # it goes back to the queue: running it again is the safe side
        events.adopted(rec, report)
        return True

    def adopt(rec: Record) -> bool:
        claims = store.leases().get(rec.key, [])
        if not claims:
            return False
        if claims[0].result and publish(rec, claims[0].result):
            return True
        found = workspace.find_outcome(repo.common_dir, rec.key, claim_token(claims[0]))
        stages = rec.data.stages
        if found is None or not stages or found[2] != len(stages) - 1:
            return False  # still running when its runner died, or not the last stage
        ws, rc, stage = found
        with workspace.hold(ws) as held:
            # Under the slot's lock, the record must still be there: else another job
            # has taken the slot since, and the workspace is not what the command left.
            if not held or workspace.find_outcome(
                repo.common_dir, rec.key, claim_token(claims[0])
            ) != (ws, rc, stage):
                return False
            setup, env = job_setup(repo.root, repo.common_dir)
            job = make_job(store, rec, options, setup, {**env, **events.job_env(rec)})
            report = adopt_job(job, ws, rc, stage)
            workspace.forget(ws)  # its index no longer tells the truth: check out next time
        return done(rec, report)

    return adopt
