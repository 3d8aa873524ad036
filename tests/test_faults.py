"""The fault campaign: a runner killed (-9), terminated or interrupted at a random moment,
then run again. Each experiment must be recorded once and run to completion once.

Small in CI (``SWEEPRUN_FAULT_TRIALS``, default 2 per fault); ``benchmarks/bench_faults.py
--trials 20`` runs the long version.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sweeprun.campaign import fault_campaign


@pytest.mark.faults
@pytest.mark.parametrize(
    "fault",
    [signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
    ids=["kill-9", "sigterm", "ctrl-c", "sighup"],
)
def test_every_experiment_exactly_once(tmp_path: Path, fault: int) -> None:
    trials = int(os.environ.get("SWEEPRUN_FAULT_TRIALS", "2"))
    (result,) = fault_campaign(tmp_path, [fault], trials).values()
    # Any double run fails: the supervisor records every exit, even under kill -9.
    assert (result.lost, result.twice, result.leftovers) == (0, 0, 0), str(result)
    assert result.trials == trials


@pytest.mark.faults
def test_one_of_two_runners_killed(tmp_path: Path) -> None:
    """Two runners drain one queue; one is killed (-9) at a random moment, the other goes
    on; the rerun finishes. Nothing lost, nothing completed twice (the killed runner's
    claims stay taken until its supervisor has written the exits it was writing)."""
    trials = int(os.environ.get("SWEEPRUN_FAULT_TRIALS", "2"))
    (result,) = fault_campaign(tmp_path, [signal.SIGKILL], trials, runners=2).values()
    assert (result.lost, result.twice, result.leftovers) == (0, 0, 0), str(result)


@pytest.mark.faults
def test_a_killed_runner_of_warm_jobs(tmp_path: Path) -> None:
    """Warm workers (``warm: true``): the zygote writes each job's exit the moment it reaps
    it and outlives its runner long enough to, as the supervisor does for commands."""
    trials = int(os.environ.get("SWEEPRUN_FAULT_TRIALS", "2"))
    (result,) = fault_campaign(tmp_path, [signal.SIGKILL], trials, warm=True).values()
    assert (result.lost, result.twice, result.leftovers) == (0, 0, 0), str(result)
