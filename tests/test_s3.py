"""Issue 27: a cache remote in an object store — a real S3 server (moto's ``moto_server``)
on 127.0.0.1: push, pull into a fresh clone, apply; git-only Dask workers that share
nothing but git and the bucket; a stage lock whose dead holder is taken over; wrong
credentials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sweeprun.loopback import LoopbackCluster, unavailable
from sweeprun.testing import SweepProject

MOTO = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
TRAIN = """
import json, yaml
p = yaml.safe_load(open("params.yaml"))
open("model.bin", "w").write(f"model {p['lr']}\\n" * 1000)
json.dump({"score": p["lr"] * 2}, open("metrics.json", "w"))
"""


def _server(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``moto_server`` on a free loopback port, answering; (process, endpoint URL)."""
    if not Path(MOTO).exists():
        pytest.skip("needs moto[server] (a test extra): pip install -e '.[test]'")
    pytest.importorskip("s3fs", reason="needs s3fs (a test extra)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            return proc, url
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """One S3 server for the module's tests (each test has a bucket of its own)."""
    proc, url = _server()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3(moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the AWS_* environment pointing at the loopback server (the
    standard places: sweeprun has no settings of its own for it). Its URL prefix."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    bucket = f"sweeps-{uuid.uuid4().hex[:12]}"
    _fs().mkdir(bucket)
    return f"s3://{bucket}/cache"


def _fs() -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def _project(sp: SweepProject) -> None:
    sp.write("params.yaml", "lr: 1\n")
    sp.write("train.py", TRAIN)
    sp.write(
        "sweeps.yaml",
        "params: params.yaml\nstages:\n  train:\n    cmd: python3 train.py\n"
        "    deps: [train.py]\n    outs: [model.bin]\n    metrics: [metrics.json]\n"
        "sweeps:\n  g:\n    values: [{lr: 1}, {lr: 2}]\n",
    )
    sp.write(".gitignore", "model.bin\n__pycache__/\n")
    sp.commit()
    res = sp.run("--run", "-q")
    assert res.ret == 0, res.stdout + res.stderr


def _sweeprun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeprun", *args], cwd=cwd, capture_output=True, text=True
    )


def test_push_pull_into_a_fresh_clone_and_apply(
    sweepproject: SweepProject, s3: str, tmp_path: Path
) -> None:
    sp = sweepproject
    _project(sp)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    sp.git("remote", "add", "origin", str(origin))
    branch = sp.git("symbolic-ref", "--short", "HEAD").strip()
    sp.git("push", "-q", "origin", branch)
    sp.git("config", "sweeprun.cacheRemote", s3)
    res = sp.run("push", "origin")
    assert res.ret == 0, res.stdout + res.stderr
    stored = {"".join(k.split("/")[-2:]) for k in _fs().find(s3.removeprefix("s3://") + "/objects")}
    locks = [json.loads(sp.git("show", f"{r['commit']}:sweeprun.lock")) for r in sp.records()]
    wanted = {d for lock in locks for st in lock["stages"].values() for d in st["outs"].values()}
    assert stored == wanted and len(wanted) >= 2  # every out, under its digest
    assert f"2 ref update(s), {len(wanted)} cache object(s)" in res.stdout
    # Another machine: a clone, the same bucket, nothing of this one's disk.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(origin), str(clone)], check=True)
    subprocess.run(["git", "config", "sweeprun.cacheRemote", s3], cwd=clone, check=True)
    got = _sweeprun(clone, "pull", "origin")
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"{len(wanted)} cache object(s)" in got.stdout
    name = next(r["name"] for r in sp.records() if r["params"]["params.yaml"]["lr"] == 2)
    got = _sweeprun(clone, "apply", name)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (clone / "model.bin").read_text() == "model 2\n" * 1000
    # apply without pull: the object comes from the bucket when it is needed.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(origin), str(other)], check=True)
    subprocess.run(["git", "config", "sweeprun.cacheRemote", s3], cwd=other, check=True)
    subprocess.run(
        ["git", "fetch", "-q", "origin", "refs/sweeprun/exps/*:refs/sweeprun/exps/*"],
        cwd=other,
        check=True,
    )
    got = _sweeprun(other, "apply", name)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (other / "model.bin").read_text() == "model 2\n" * 1000


def test_a_missing_object_is_one_line_naming_it(
    sweepproject: SweepProject, s3: str, tmp_path: Path
) -> None:
    sp = sweepproject
    _project(sp)
    sp.git("config", "sweeprun.cacheRemote", s3)
    name = sp.records()[0]["name"]
    shutil.rmtree(sp.path / ".git/sweeprun/cache")  # this machine's copy is gone too
    res = sp.run("apply", name)
    assert res.ret == 4, res.stdout + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert f"is missing from {s3}" in res.stderr


def test_wrong_credentials_are_one_line_and_nothing_is_half_written(
    sweepproject: SweepProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that checks credentials (moto with authentication on from its first
    request): the upload is refused, so the refs are not pushed either."""
    proc, url = _server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        sp = sweepproject
        _project(sp)
        origin = tmp_path / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
        sp.git("remote", "add", "origin", str(origin))
        res = sp.run("push", "origin", "--cache-remote", "s3://sweeps/cache")
        assert res.ret == 4, res.stdout + res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("sweeprun: error: cache remote s3://sweeps/cache:")
        listed = subprocess.run(
            ["git", "--git-dir", str(origin), "for-each-ref"], capture_output=True, text=True
        )
        assert listed.stdout == ""  # no ref names objects the bucket lacks
    finally:
        proc.terminate()
        proc.wait(timeout=30)


HOLDER = """
import sys, time
from sweeprun.store.remotes import open_remote
with open_remote(sys.argv[1]).stage_lock("shared-stage"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_stage_lock_of_a_killed_holder_is_taken_over(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While its holder lives (and renews its lease), nobody takes the lock; once the
    holder is killed with -9, the lease runs out and the next one takes it over."""
    from sweeprun.store.remotes import open_remote

    monkeypatch.setenv("SWEEPRUN_LOCK_LEASE", "3")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, s3], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        got = threading.Event()

        def take() -> None:
            with open_remote(s3).stage_lock("shared-stage"):
                got.set()

        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        # Longer than a lease (it would have expired by then): the living holder renews it,
        # every second, so it is not taken (2 s of slack for a busy machine).
        assert not got.wait(4.0)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        killed = time.monotonic()
        assert got.wait(30)
        assert time.monotonic() - killed < 10  # the lease (3 s) ran out, then taken
        taker.join(timeout=30)
        assert not _fs().exists(s3.removeprefix("s3://") + "/locks/shared-stage")  # released
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=30)


WHY = unavailable()


def test_git_only_dask_workers_share_a_stage_through_the_bucket(
    sweepproject: SweepProject, tmp_path: Path, s3: str
) -> None:
    """The loopback cluster of test_dask_git.py, its cache remote a bucket: workers that
    cannot see the runner's disk compute the shared stage once, and apply on the runner's
    machine brings an out it never computed from the bucket."""
    if WHY:
        pytest.skip(WHY)
    from test_dask_git import check_six, project, run_all

    with LoopbackCluster(tmp_path / "cluster", hidden=[sweepproject.path]) as cluster:
        preps, _ = project(sweepproject, tmp_path)
        sweepproject.git("config", "sweeprun.cacheRemote", s3)
        res = sweepproject.run_subprocess(*run_all(sweepproject, cluster))
        assert res.ret == 0, res.stdout + res.stderr + cluster.log("worker0")
        check_six(sweepproject)
        assert preps.read_text() == "prep\n"  # the shared stage: once, both workers
    assert _fs().find(s3.removeprefix("s3://") + "/runs")  # its run-cache entry, shared
    assert not (sweepproject.path / ".git/sweeprun/cache/objects").exists()
    rec = sweepproject.records()[0]
    assert sweepproject.run("apply", rec["name"]).ret == 0
    assert sweepproject.read("data.txt") == "10\n"
