"""Test support: the ``sweepproject`` fixture, sweeprun's answer to pytest's ``pytester``.

Enable it with ``pytest_plugins = ["sweeprun.testing"]`` in a ``conftest.py``. Each test
gets an isolated git repository (own HOME, no system config, fixed author) and runs the
CLI in-process or as a real subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sweeprun._core.cli import main
from sweeprun.commands.demo import example_dir

ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Sweep Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Sweep Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+0000",
    "SWEEPRUN_ADDOPTS": "",
    "CI": "true",
}
_SUMMARY = re.compile(r"(\d+) (expect-failed|passed|failed|error|skipped)")


@dataclass
class RunResult:
    """Outcome of one ``sweeprun`` invocation."""

    ret: int
    stdout: str
    stderr: str

    @property
    def outlines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def errlines(self) -> list[str]:
        return self.stderr.splitlines()

    def parseoutcomes(self) -> dict[str, int]:
        """Counts from the final ``=== 5 passed, 1 failed in 1.2s ===`` line."""
        for line in reversed(self.outlines):
            if line.startswith("=") and " in " in line:
                return {word: int(n) for n, word in _SUMMARY.findall(line)}
        return {}

    def assert_outcomes(
        self,
        passed: int = 0,
        failed: int = 0,
        error: int = 0,
        skipped: int = 0,
        expect_failed: int = 0,
    ) -> None:
        """Assert the summary line's counts (missing words count as 0)."""
        got = self.parseoutcomes()
        want = {
            "passed": passed,
            "failed": failed,
            "error": error,
            "skipped": skipped,
            "expect-failed": expect_failed,
        }
        assert {k: got.get(k, 0) for k in want} == want, self.stdout + self.stderr

    def fnmatch_lines(self, patterns: Sequence[str], stream: str = "stdout") -> None:
        """Assert every pattern matches a line, in order.

        ``*`` and ``?`` are wildcards; everything else, brackets included (ids have them),
        is literal.
        """
        lines = (self.stdout if stream == "stdout" else self.stderr).splitlines()
        i = 0
        for pat in patterns:
            rx = re.compile(
                "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pat)
                + r"\Z"
            )
            while i < len(lines) and not rx.match(lines[i]):
                i += 1
            if i == len(lines):
                raise AssertionError(f"no line matches {pat!r} (in order) in:\n" + "\n".join(lines))
            i += 1


class SweepProject:
    """An isolated git repository to run sweeprun in."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.base = tmp_path
        self.path = tmp_path / "repo"
        self.path.mkdir()
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.monkeypatch = monkeypatch
        env = dict(ENV, HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"))
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("GIT_DIR", raising=False)
        monkeypatch.delenv("GIT_WORK_TREE", raising=False)
        self.git("init", "-q", "-b", "main")

    # -- files and git ----------------------------------------------------------------------

    def write(self, rel: str, text: str) -> Path:
        """Write ``text`` (dedented) to ``rel`` below the repository."""
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return p

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def git(self, *args: str, check: bool = True) -> str:
        """Run git in the repository; return stdout."""
        proc = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, check=False
        )
        if check and proc.returncode:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def commit(self, message: str = "baseline") -> str:
        """Commit everything; return the new HEAD."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def refs(self, prefix: str = "refs/sweeprun/") -> dict[str, str]:
        """Every ref under ``prefix``: name → sha."""
        out = self.git("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines())

    def trace_git(self) -> Path:
        """Log every later ``git`` process (one line of arguments each) to the returned file.

        A wrapper first on ``PATH`` records the call and runs the real git, so a test can
        see which git commands sweeprun really spawned.
        """
        real = shutil.which("git")
        assert real, "git is not on PATH"
        bindir = self.base / "git-trace-bin"
        bindir.mkdir(exist_ok=True)
        log = self.base / "git-trace.log"
        log.touch()
        wrapper = bindir / "git"
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)
        self.monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        return log

    def status(self) -> str:
        """``git status --porcelain`` (untracked included)."""
        return self.git("status", "--porcelain", "--untracked-files=all")

    def copy_example(self, name: str) -> None:
        """Copy ``examples/NAME`` of the sweeprun source tree into the repository."""

        shutil.copytree(example_dir(name), self.path, dirs_exist_ok=True)

    def quickstart(self, cmd: str = "python3 train.py") -> None:
        """A tiny committed project: params.yaml, a train script writing metrics, a spec.

        Another ``cmd`` declares no metrics file (a declared one that is not written
        fails the experiment).
        """
        metrics = "metrics: [metrics.json]" if cmd == "python3 train.py" else ""
        self.write(
            "params.yaml",
            """
            # training settings
            model:
              alpha: 0.1   # penalty
              degree: 1
            seed: 0
        """,
        )
        self.write(
            "train.py",
            """
            import json, yaml
            p = yaml.safe_load(open("params.yaml"))
            m = p["model"]
            json.dump({"score": m["alpha"] * 10 + m["degree"]}, open("metrics.json", "w"))
            print("trained", m["alpha"], m["degree"])
        """,
        )
        self.write(
            "sweeps.yaml",
            f"""
            params: params.yaml
            cmd: {cmd}
            deps: [train.py]
            {metrics}
            sweeps:
              grid:
                matrix:
                  model.alpha: [0.5, 1.5]
                  model.degree: [1, 2, 3]
        """,
        )
        self.write(".gitignore", "__pycache__/\n")
        self.commit()

    # -- running ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _cwd(self) -> Iterator[None]:
        old = Path.cwd()
        self.monkeypatch.chdir(self.path)
        try:
            yield
        finally:
            self.monkeypatch.chdir(old)

    def run(self, *args: str) -> RunResult:
        """Run ``sweeprun ARGS`` in-process in the repository."""

        out, err = io.StringIO(), io.StringIO()
        with self._cwd(), contextlib.redirect_stderr(err):
            ret = main(list(args), stdout=out)
        return RunResult(int(ret), out.getvalue(), err.getvalue())

    def run_subprocess(
        self,
        *args: str,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> RunResult:
        """Run ``python -m sweeprun ARGS`` as a real process in the repository (or in
        ``cwd``, a directory of it)."""
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            [sys.executable, "-m", "sweeprun", *args],
            cwd=cwd or self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
        return RunResult(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``python -m sweeprun ARGS`` in the background (for signal tests)."""
        return subprocess.Popen(
            [sys.executable, "-m", "sweeprun", *args],
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )

    def records(self, *args: str) -> list[dict[str, Any]]:
        """``sweeprun show --json`` parsed."""
        res = self.run("show", "--json", *args)
        assert res.ret == 0, res.stderr
        data: list[dict[str, Any]] = json.loads(res.stdout)
        return data


@pytest.fixture(autouse=True)
def git_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``fast`` (the default) or ``git``: the in-process git fast paths turned off
    (``SWEEPRUN_FAST_GIT=0``), for tests marked ``both_git_modes``."""
    mode = getattr(request, "param", None)
    if mode is None:  # not a both-modes test: as the environment says
        return "git" if os.environ.get("SWEEPRUN_FAST_GIT", "1") in ("0", "false") else "fast"
    if mode == "git":
        monkeypatch.setenv("SWEEPRUN_FAST_GIT", "0")
    else:
        monkeypatch.delenv("SWEEPRUN_FAST_GIT", raising=False)
    return str(mode)


@pytest.fixture
def sweepproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SweepProject:
    """An isolated git repository with sweeprun helpers (see :class:`SweepProject`)."""
    return SweepProject(tmp_path, monkeypatch)
