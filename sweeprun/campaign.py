"""Fault campaigns: kill, terminate or interrupt a runner at a random moment, run again,
and count what was lost, completed twice or left behind (``tests/test_faults.py``,
``benchmarks/bench_faults.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweeprun.system.procs import TOKEN_ENV, job_token
from sweeprun.testing import ENV

CAMPAIGN_JOB = """
import os, random, time, yaml
i = yaml.safe_load(open("params.yaml"))["i"]
time.sleep(random.Random(f"{os.environ['TRIAL_SEED']}-{i}").uniform(0.05, 0.4))
fd = os.open(os.environ["COMPLETIONS"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(fd, f"{i} {time.time()!r}\\n".encode())
os._exit(0)  # completed: the line is its last act
"""


@dataclass
class CampaignResult:
    """What a fault campaign counted, over all its trials."""

    trials: int = 0
    lost: int = 0  # experiments never completed, or never recorded
    twice: int = 0  # experiments whose command ran to completion more than once
    leftovers: int = 0  # queued/running refs or live job processes after the rerun

    def __str__(self) -> str:
        return (
            f"{self.trials} trials: {self.lost} lost, {self.twice} completed twice, "
            f"{self.leftovers} leftovers"
        )


def fault_trial(
    base: Path,
    fault: int,
    seed: int,
    n: int = 6,
    jobs: int = 2,
    source: str = "",
    runners: int = 1,
    warm: bool = False,
) -> CampaignResult:
    """One trial: queue ``n`` experiments, start ``runners`` runners (``--run-all -j jobs``), send
    ``fault`` (a signal) to the first runner at a random moment (the others go on), then
    run ``--run-all`` again to the end and count. Every experiment appends to a file
    outside the repository when it completes, so running to completion twice shows.
    ``source``: another sweeprun checkout to measure instead (put first on
    ``PYTHONPATH``); ``warm``: the jobs run in warm workers (``warm: true``)."""
    rng = random.Random(seed)
    repo = base / f"trial-{seed}"
    repo.mkdir(parents=True)
    completions = base / f"completions-{seed}.txt"
    env = dict(
        os.environ,
        **ENV,
        HOME=str(base),
        COMPLETIONS=str(completions),
        TRIAL_SEED=str(seed),
        **({"PYTHONPATH": source} if source else {}),
    )

    def sweeprun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sweeprun", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    for args in (["init", "-q", "-b", "main"],):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    (repo / "params.yaml").write_text("i: 0\n")
    (repo / "job.py").write_text(CAMPAIGN_JOB)
    run = f"cmd: {sys.executable} -m job\nwarm: true" if warm else f"cmd: {sys.executable} job.py"
    (repo / "sweeps.yaml").write_text(
        f"{run}\nsweeps:\n  g:\n    matrix: {{i: {list(range(n))}}}\n"
    )
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "b"], cwd=repo, env=env, check=True)
    assert sweeprun("sweeps.yaml").returncode == 0
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "sweeprun", "--run-all", "-j", str(jobs)],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(runners)
    ]
    time.sleep(rng.uniform(0.2, 1.5))  # a random moment: that is the point
    started[0].send_signal(fault)
    for runner in started:
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
    done = sweeprun("--run-all", "-j", str(jobs))
    result = CampaignResult(trials=1)
    lines = completions.read_text().splitlines() if completions.exists() else []
    times: dict[int, list[float]] = {}
    for line in lines:
        point, at = line.split()
        times.setdefault(int(point), []).append(float(at))
    records = json.loads(sweeprun("show", "--json").stdout or "[]")
    recorded = [r["params"]["params.yaml"]["i"] for r in records if r["state"] == "success"]
    for i in range(n):
        done_at = sorted(times.get(i, []))
        if not done_at or recorded.count(i) != 1:
            result.lost += 1
        if len(done_at) > 1:  # any double is a failure (the supervisor records every exit)
            result.twice += 1
    refs = subprocess.run(
        ["git", "for-each-ref", "refs/sweeprun/queue", "refs/sweeprun/running"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    # The rerun: 0, or 5 when the first run had finished everything before the fault.
    result.leftovers += len([r for r in refs if r]) + (done.returncode not in (0, 5))

    # Any process left carrying a token of this repository's jobs.
    mark = job_token("", repo / ".git").encode() + b"\0"
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        with contextlib.suppress(OSError):
            env_bytes = (entry / "environ").read_bytes() if entry.name.isdigit() else b""
            if f"{TOKEN_ENV}=".encode() in env_bytes and mark in env_bytes:
                result.leftovers += 1
    return result


def fault_campaign(
    base: Path,
    faults: Sequence[int],
    trials: int,
    source: str = "",
    runners: int = 1,
    warm: bool = False,
) -> dict[int, CampaignResult]:
    """``trials`` trials of each fault (sent to the first of ``runners`` runners of one
    queue; ``warm``: jobs in warm workers); counts per fault."""
    out: dict[int, CampaignResult] = {}
    for fault in faults:
        total = CampaignResult()
        for t in range(trials):
            got = fault_trial(
                base / f"f{fault}-{runners}{'-warm' if warm else ''}",
                fault,
                seed=fault * 1000 + t,
                source=source,
                runners=runners,
                warm=warm,
            )
            total.trials += got.trials
            total.lost += got.lost
            total.twice += got.twice
            total.leftovers += got.leftovers
        out[fault] = total
    return out
