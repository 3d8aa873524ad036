"""A full disk fails experiments with one line and loses nothing: freed, one ``--run-all``
finishes the rest."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeprun.testing import SweepProject

GEN = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
open("big.bin", "wb").write(os.urandom(300_000))
json.dump({{"i": p["i"]}}, open("m.json", "w"))
with open({done!r}, "a") as f:
    f.write(f"{{p['i']}}\\n")
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (root only): room for the repository and a few experiments."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_fails_with_one_line_and_loses_nothing(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = SweepProject(small_disk, monkeypatch)
    done = tmp_path / "completed.txt"
    p.write("gen.py", GEN.format(done=str(done)))
    p.write("params.yaml", "i: 0\n")
    p.write(
        "sweeps.yaml",
        """
        params: params.yaml
        cmd: python3 gen.py
        deps: [gen.py]
        outs: [big.bin]
        metrics: [m.json]
        sweeps:
          s:
            matrix:
              i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        """,
    )
    p.write(".gitignore", "__pycache__/\n")
    p.commit()
    res = p.run_subprocess("sweeps.yaml", "--run", "-j", "2")
    out = res.stdout + res.stderr
    assert res.ret == 1, out
    assert "Traceback" not in out
    assert "no space left on device while" in res.stdout
    assert "stopped dispatching" in res.stdout
    assert not p.refs("refs/sweeprun/running/"), "nothing may be left running"
    recorded = {r["params"]["params.yaml"]["i"] for r in p.records() if r["state"] == "success"}
    assert 0 < len(recorded) < 10
    queued = len(p.refs("refs/sweeprun/queue/"))
    assert queued == 10 - len(recorded)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    res = p.run_subprocess("--run-all", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    res.assert_outcomes(passed=queued)
    records = p.records()
    assert sorted(r["params"]["params.yaml"]["i"] for r in records) == list(range(1, 11))
    assert all(r["state"] == "success" for r in records)
    assert not p.refs("refs/sweeprun/queue/") and not p.refs("refs/sweeprun/running/")
    # Every experiment ran to completion in exactly one run of its own... or, when the
    # disk filled up after its program had finished, in one more: never more than twice.
    counts = [done.read_text().split().count(str(i)) for i in range(1, 11)]
    assert all(1 <= c <= 2 for c in counts), counts


def _fill(disk: Path) -> None:
    """Write until the file system is full."""
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError:
        pass  # full


@pytest.mark.parametrize("reserve", [True, False])
def test_claims_go_back_to_the_queue_on_a_full_disk(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch, reserve: bool
) -> None:
    from sweeprun.store.git import discover
    from sweeprun.store.records import ExpStore

    p = SweepProject(small_disk, monkeypatch)
    p.write("params.yaml", "i: 0\n")
    p.write("sweeps.yaml", "cmd: echo\nsweeps:\n  s:\n    matrix: {i: [1, 2]}\n")
    p.commit()
    assert p.run("sweeps.yaml").ret == 0
    store = ExpStore(discover(p.path))
    try:
        store.keep_reserve() if reserve else None
        running = [store.claim(r) for r in store.records()]
        assert all(running) and len(p.refs("refs/sweeprun/running/")) == 2
        _fill(small_disk)
        store.release([r for r in running if r is not None])
    finally:
        store.close()
    left = p.refs("refs/sweeprun/running/")
    if reserve:  # the reserve made room: both claims are queued again
        assert not left and len(p.refs("refs/sweeprun/queue/")) == 2
    else:  # what happened before the reserve: the claims stay (the next runner reclaims)
        assert left
