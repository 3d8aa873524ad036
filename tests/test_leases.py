"""Lease journals: who runs what, so a dead runner's experiments go back to the queue."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from functools import partial

from sweeprun.model import QUEUE, RUNNING
from sweeprun.run.workspace import kill_leftovers
from sweeprun.store.git import discover
from sweeprun.store.leases import SUFFIX
from sweeprun.store.records import ExpStore
from sweeprun.testing import SweepProject


def _queued_store(sweepproject: SweepProject, n: int = 2) -> ExpStore:
    sweepproject.write("params.yaml", "x: 0\n")
    values = ", ".join(str(i) for i in range(n))
    sweepproject.write(
        "sweeps.yaml", f"cmd: 'true'\nsweeps:\n  s:\n    matrix: {{x: [{values}]}}\n"
    )
    sweepproject.commit()
    assert sweepproject.run("sweeps.yaml").ret == 0
    return ExpStore(discover(sweepproject.path))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_one_journal_per_runner_and_a_lost_race_is_taken_back(
    sweepproject: SweepProject,
) -> None:
    a, b = _queued_store(sweepproject), ExpStore(discover(sweepproject.path))
    first, second = a.records(QUEUE)
    assert a.claim(first) is not None and a.claim(second) is not None
    assert b.claim(first) is None  # another runner was first: b takes its claim back
    journals = sorted((sweepproject.path / ".git/sweeprun/leases").glob(f"*{SUFFIX}"))
    assert len(journals) == 2  # one per runner, not one per experiment
    claims = a.leases()
    assert set(claims) == {first.key, second.key}
    assert all(len(c) == 1 and c[0].pid == os.getpid() for c in claims.values())
    assert a.orphans() == []  # its runner (this process) lives
    b.close()
    a.close()  # the runner ends: its journal goes
    assert not list(journals[0].parent.glob(f"*{SUFFIX}"))


def test_dead_runner_is_reclaimed_and_its_journal_removed(sweepproject: SweepProject) -> None:
    store = _queued_store(sweepproject)
    rec = store.records(QUEUE)[0]
    assert store.claim(rec) is not None
    # Hand the claim to a runner that died: its journal survives it, as after kill -9.
    store.journal.close()
    leases_dir = sweepproject.path / ".git/sweeprun/leases"
    dead = leases_dir / f"{socket.gethostname()}-1-1{SUFFIX}"
    header = {"host": socket.gethostname(), "pid": _dead_pid(), "started": 0}
    dead.write_text(json.dumps(header) + f"\n{rec.key} 1.5\nnot-a-key 2.")  # a torn last line
    assert [r.key for r in store.orphans()] == [rec.key]
    assert [r.key for r in store.reclaim(partial(kill_leftovers, store.repo.common_dir))] == [
        rec.key
    ]
    assert not dead.exists()
    assert store.records(RUNNING) == [] and rec.key in {r.key for r in store.records(QUEUE)}
    store.close()


def test_running_ref_without_any_claimant_is_an_orphan(sweepproject: SweepProject) -> None:
    store = _queued_store(sweepproject, 1)
    (rec,) = store.records(QUEUE)
    assert store.claim(rec) is not None
    store.journal.close()  # as if the runner ended without releasing it
    assert [r.key for r in store.orphans()] == [rec.key]
    store.close()
