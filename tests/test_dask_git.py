"""Git-only Dask workers on a real loopback cluster: ``git daemon`` serving a bare
repository, a scheduler, and two workers that cannot see the runner's repository (a tmpfs
over it in their own mount namespace). Only the git URL and the cache remote connect them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeprun.loopback import LoopbackCluster, unavailable
from sweeprun.testing import SweepProject

WHY = unavailable()

PREP = """
import os, sys
seen = os.path.exists(os.path.join(sys.argv[1], "sweeps.yaml"))
assert not seen, "the worker sees the runner's repository"
open(sys.argv[2], "a").write("prep\\n")
open("data.txt", "w").write("10\\n")
"""
TRAIN = """
import json, os, sys, time, yaml
p = yaml.safe_load(open("params.yaml"))
open(sys.argv[1], "a").write(f"{p['lr']}-{p['depth']}\\n")
if os.path.exists(sys.argv[2]):  # (the workers' environment is not the runner's)
    time.sleep(float(open(sys.argv[2]).read()))
d = int(open("data.txt").read())
json.dump({"score": p["lr"] * d + p["depth"]}, open("metrics.json", "w"))
open("model.bin", "w").write(f"model {p['lr']} {p['depth']}\\n")
open(sys.argv[1] + ".done", "a").write(f"{p['lr']}-{p['depth']}\\n")
"""
STEPS = """
import json, os, sys, time
start = int(open("state.txt").read()) if os.path.exists("state.txt") else 0
for step in range(start + 1, 5):
    open(sys.argv[1], "a").write(f"{step}\\n")
    open("state.txt", "w").write(str(step))
    json.dump({"step": step}, open("m.json", "w"))
    open(os.environ["SWEEPRUN_CHECKPOINT"], "w").close()
    while os.path.exists(os.environ["SWEEPRUN_CHECKPOINT"]):
        time.sleep(0.01)
    time.sleep(1.0)
"""


@pytest.fixture
def cluster(sweepproject: SweepProject, tmp_path: Path) -> Iterator[LoopbackCluster]:
    if WHY:
        pytest.skip(WHY)
    with LoopbackCluster(tmp_path / "cluster", hidden=[sweepproject.path]) as c:
        yield c


def project(sp: SweepProject, tmp_path: Path) -> tuple[Path, Path]:
    """Six points over a shared, cached ``prep`` stage; the counters live outside the
    repository (the workers see them, the runner's repository they do not)."""
    preps, trains = tmp_path / "preps.txt", tmp_path / "trains.txt"
    py = sys.executable
    sp.write("params.yaml", "lr: 0\ndepth: 1\nseed: 0\n")
    sp.write("prep.py", PREP)
    sp.write("train.py", TRAIN)
    sp.write(
        "sweeps.yaml",
        f"""
        params: params.yaml
        stages:
          prep:
            cmd: {py} prep.py {sp.path} {preps}
            deps: [prep.py]
            params: [seed]
            outs: [data.txt]
          train:
            cmd: {py} train.py {trains} {tmp_path / "sleep"}
            deps: [train.py, data.txt]
            params: [lr, depth]
            outs: [model.bin]
            metrics: [metrics.json]
        sweeps:
          grid:
            matrix:
              lr: [1, 2, 3]
              depth: [1, 2]
        """,
    )
    sp.write(".gitignore", "data.txt\nmodel.bin\n")
    sp.commit()
    sp.git("config", "sweeprun.cacheRemote", str(tmp_path / "cache-remote"))
    assert sp.run().ret == 0
    return preps, trains


def run_all(sp: SweepProject, c: LoopbackCluster, *extra: str) -> list[str]:
    return [
        *("--run-all", "-j", "2", "--backend", "dask"),
        *("--scheduler", c.scheduler, "--worker-url", c.url, *extra),
    ]


def check_six(sp: SweepProject) -> None:
    recs = sp.records()
    assert len(recs) == 6 and {r["state"] for r in recs} == {"success"}, recs
    for rec in recs:
        p = rec["params"]["params.yaml"]
        assert rec["metrics"]["metrics.json"]["score"] == p["lr"] * 10 + p["depth"]
    assert not sp.refs("refs/sweeprun/queue/")


def test_git_only_workers_run_a_sweep_once_with_a_shared_stage(
    sweepproject: SweepProject, tmp_path: Path, cluster: LoopbackCluster
) -> None:
    preps, trains = project(sweepproject, tmp_path)
    res = sweepproject.run_subprocess(*run_all(sweepproject, cluster))
    assert res.ret == 0, res.stdout + res.stderr + cluster.log("worker0")
    res.assert_outcomes(passed=6)
    check_six(sweepproject)
    assert preps.read_text() == "prep\n"  # the shared stage: once across both workers
    assert sorted(trains.read_text().split()) == sorted(
        f"{lr}-{d}" for lr in (1, 2, 3) for d in (1, 2)
    )
    # The results came back as objects; the runner wrote the refs; the URL is clean.
    assert not sweepproject.git("--git-dir", str(cluster.served), "for-each-ref").strip()
    # apply brings the outs from the cache remote: this machine never computed them.
    assert not (sweepproject.path / ".git/sweeprun/cache/objects").exists()
    rec = next(r for r in sweepproject.records() if r["params"]["params.yaml"]["lr"] == 3)
    assert sweepproject.run("apply", rec["name"]).ret == 0
    assert sweepproject.read("model.bin") == f"model 3 {rec['params']['params.yaml']['depth']}\n"
    assert sweepproject.read("data.txt") == "10\n"


def start_slow_sweep(
    sp: SweepProject, tmp_path: Path, c: LoopbackCluster, seconds: float
) -> tuple[subprocess.Popen[str], Path]:
    """Start ``--run-all`` of the six points, each taking ``seconds``; return once two
    jobs are in their commands (the runner, and the file the commands note starts in)."""
    _, trains = project(sp, tmp_path)
    (tmp_path / "sleep").write_text(str(seconds))
    runner = sp.popen(*run_all(sp, c))
    deadline = time.monotonic() + 60
    while len(trains.read_text().split() if trains.exists() else []) < 2:
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.05)
    return runner, trains


def test_a_worker_killed_mid_job_reruns_it_elsewhere_recorded_once(
    sweepproject: SweepProject, tmp_path: Path, cluster: LoopbackCluster
) -> None:
    runner, trains = start_slow_sweep(sweepproject, tmp_path, cluster, seconds=2)
    cluster.kill_worker(busy_worker(cluster))  # mid-job: in its 2 s sleep
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, out + err
    check_six(sweepproject)
    started = trains.read_text().split()
    assert len(started) == 7 and len(set(started)) == 6  # the killed one ran again


def test_a_killed_runner_leaves_nothing_running_and_the_next_one_records_once(
    sweepproject: SweepProject, tmp_path: Path, cluster: LoopbackCluster
) -> None:
    runner, trains = start_slow_sweep(sweepproject, tmp_path, cluster, seconds=5)
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    # The cluster drops the dead runner's tasks: their commands are killed (within about
    # a second), not finished.
    time.sleep(6)
    done = Path(str(trains) + ".done")
    assert not done.exists(), done.read_text()
    (tmp_path / "sleep").unlink()
    res = sweepproject.run_subprocess(*run_all(sweepproject, cluster))
    assert res.ret == 0, res.stdout + res.stderr
    check_six(sweepproject)
    assert sorted(done.read_text().split()) == sorted(
        f"{lr}-{d}" for lr in (1, 2, 3) for d in (1, 2)
    )


def test_checkpoints_reach_the_runner_and_resume_on_another_worker(
    sweepproject: SweepProject, tmp_path: Path, cluster: LoopbackCluster
) -> None:
    steps = tmp_path / "steps.txt"
    sweepproject.write("params.yaml", "lr: 1\n")
    sweepproject.write("steps.py", STEPS)
    sweepproject.write(
        "sweeps.yaml",
        f"""
        params: params.yaml
        stages:
          train:
            cmd: {sys.executable} steps.py {steps}
            params: [lr]
            outs:
              - state.txt: {{checkpoint: true}}
            metrics: [m.json]
        """,
    )
    sweepproject.commit()
    sweepproject.git("config", "sweeprun.cacheRemote", str(tmp_path / "cache-remote"))
    assert sweepproject.run().ret == 0
    runner = sweepproject.popen(*run_all(sweepproject, cluster))
    deadline = time.monotonic() + 60
    # Checkpoints reach the runner's repository while the job runs.
    while (
        len(sweepproject.refs("refs/sweeprun/checkpoints/")) < 1
        or len(steps.read_text().split() if steps.exists() else []) < 2
    ):
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.05)
    cluster.kill_worker(busy_worker(cluster))  # the one running the job
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, out + err
    (rec,) = sweepproject.records()
    assert rec["state"] == "success" and rec["metrics"]["m.json"] == {"step": 4}
    ran = [int(s) for s in steps.read_text().split()]
    assert ran[:2] == [1, 2] and ran[-1] == 4 and 1 not in ran[2:]  # resumed, not restarted
    log = Path(sweepproject.path / ".git/sweeprun/logs" / f"{rec['key']}.log").read_text()
    assert "resuming from checkpoint" in log
    chain = sweepproject.git("rev-list", "--first-parent", rec["commit"]).split()
    assert len(chain) >= 6  # result, 4 checkpoints, baseline
    lock = json.loads(sweepproject.git("show", f"{chain[1]}:sweeprun.lock"))
    assert lock["checkpoint"] == 4


def busy_worker(cluster: LoopbackCluster) -> int:
    """A worker that runs a job's command now: its pooled slot's pid file names it
    (``KEY PID START [TOKEN]``; ``KEY exit …`` once it exited)."""
    for i in range(cluster.workers):
        for pid in (cluster.base / f"worker{i}").glob("**/sweeprun/ws/w*.pid"):
            words = pid.read_text().split()
            if len(words) >= 3 and words[1] != "exit":
                return i
    raise AssertionError("no worker is running a command")


def test_a_url_the_workers_cannot_reach_fails_the_experiment_in_one_line(
    sweepproject: SweepProject, tmp_path: Path, cluster: LoopbackCluster
) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml").ret == 0
    # The runner reaches this bare repository; the workers cannot (it is inside the
    # runner's repository, which they do not see).
    hidden = sweepproject.path / ".git" / "only-here.git"
    sweepproject.git("init", "-q", "--bare", str(hidden))
    res = sweepproject.run_subprocess(
        *("--run-all", "-j", "2", "--backend", "dask", "--scheduler", cluster.scheduler),
        *("--worker-url", str(hidden), "-x"),
    )
    assert res.ret == 1, res.stdout + res.stderr
    lines = [
        ln
        for ln in res.stdout.splitlines()
        if f"could not fetch the experiment from {hidden}" in ln
    ]
    assert lines and "Traceback" not in res.stdout + res.stderr
    assert len(sweepproject.refs("refs/sweeprun/queue/")) == 6  # still queued, nothing lost


def test_worker_url_needs_the_dask_backend(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml").ret == 0
    res = sweepproject.run("--run-all", "--worker-url", "git://127.0.0.1/x.git")
    assert res.ret == 4
    assert res.stderr.strip().splitlines() == [
        "sweeprun: error: --worker-url git://127.0.0.1/x.git: git-only workers are Dask "
        "workers (add --backend dask --scheduler ADDRESS)"
    ]


def test_a_worker_url_that_git_would_read_as_an_option_is_refused(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("sweeps.yaml").ret == 0
    queued = sweepproject.refs("refs/sweeprun/queue/")
    marker = tmp_path / "ran"
    url = f"--upload-pack=touch {marker}"
    res = sweepproject.run(
        *("--run-all", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"),
        f"--worker-url={url}",
    )
    assert res.ret == 4
    assert res.stderr.strip().splitlines() == [
        f"sweeprun: error: --worker-url {url}: not a git URL (valid: a path, file://, "
        "git://, ssh:// or https:// URL)"
    ]
    assert not marker.exists() and sweepproject.refs("refs/sweeprun/queue/") == queued


def test_cached_outs_without_a_cache_remote_are_refused_before_anything_is_claimed(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    project(sweepproject, tmp_path)
    sweepproject.git("config", "--unset", "sweeprun.cacheRemote")
    served = tmp_path / "served.git"
    sweepproject.git("init", "-q", "--bare", str(served))
    queued = sweepproject.refs("refs/sweeprun/queue/")
    res = sweepproject.run(
        *("--run-all", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"),
        *("--worker-url", str(served)),
    )
    assert res.ret == 4
    (line,) = res.stderr.strip().splitlines()
    assert "has cached outs" in line and "git config sweeprun.cacheRemote" in line
    assert sweepproject.refs("refs/sweeprun/queue/") == queued  # nothing claimed
    assert not sweepproject.git("--git-dir", str(served), "for-each-ref").strip()


# A worker killed right after a job finished, before the scheduler heard of it (the
# 116-152 ms window of issue 24): a Dask worker plugin kills its worker process the
# moment the first task's result is in its memory, once.
DIE_AFTER_FIRST = """
import os, signal
from distributed import WorkerPlugin

MARK = {mark!r}

class DieAfterFirst(WorkerPlugin):
    def transition(self, key, start, finish, **kwargs):
        if finish != "memory":
            return
        try:  # one worker dies, whichever finishes first: O_EXCL, not exists-then-open
            os.close(os.open(MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # (two workers finishing at once both died before: the run hung)
        os.kill(os.getpid(), signal.SIGKILL)

async def dask_setup(worker):
    await worker.plugin_add(DieAfterFirst(), name="die-after-first")
"""


def test_a_worker_killed_after_its_job_finished_does_not_run_it_again(
    sweepproject: SweepProject, tmp_path: Path
) -> None:
    if WHY:
        pytest.skip(WHY)
    mark = tmp_path / "died"
    preload = tmp_path / "die_after_first.py"
    preload.write_text(DIE_AFTER_FIRST.format(mark=str(mark)))
    with LoopbackCluster(
        tmp_path / "cluster", hidden=[sweepproject.path], preload=str(preload)
    ) as cluster:
        _, trains = project(sweepproject, tmp_path)
        # No run-cache answer for train: a second run of a point would run its command.
        sp = sweepproject
        assert sp.run("queue", "remove", "--all").ret == 0
        sp.write("sweeps.yaml", sp.read("sweeps.yaml").replace("outs: [model.bin]",
                 "outs: [model.bin]\n    always_changed: true"))  # fmt: skip
        sp.commit("train always runs")
        assert sp.run().ret == 0
        res = sweepproject.run_subprocess(*run_all(sweepproject, cluster), timeout=180)
        assert mark.exists(), "the fault did not happen"
        assert res.ret == 0, res.stdout + res.stderr + cluster.log("worker0")
        check_six(sweepproject)
        done = Path(str(trains) + ".done").read_text().split()
        assert sorted(done) == sorted(f"{lr}-{d}" for lr in (1, 2, 3) for d in (1, 2)), done
        assert "adopted on" in "".join(
            sweepproject.run("queue", "logs", r["name"]).stdout for r in sweepproject.records()
        )
        assert not sweepproject.git("--git-dir", str(cluster.served), "for-each-ref").strip()
