"""Hydra apps: overrides with Hydra's meaning, checked by composing the app's config.

A spec declares its program a Hydra app with ``params: {hydra: conf/config.yaml}`` (the
primary config; its directory is the config directory). Then a point's keys are Hydra
overrides as written — a group choice (``model=svm``), a key (``model.C=0.1``), ``+key``,
``++key``, ``~key`` — and they reach the program as its command-line overrides, one
argument each, never through a shell. No file is edited. Each point is checked at queue
time by composing the config with Hydra's compose API: an unknown group option or key is
a one-line error naming the override. The composed config (interpolations resolved) is the
experiment's recorded params, beside the group choices (``hydra`` in ``show``), so a group
is one column, not a ``defaults`` list.

``hydra.run.dir=.`` is passed too: Hydra's own output (``.hydra/``, the job log) goes into
the experiment's workspace, which is already private to it, and the app's working
directory stays the workspace, where the spec's paths point.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sweeprun.exceptions import SpecError, UsageError
from sweeprun.model import Stage
from sweeprun.spec.overrides import DELETE, Override, combine, parse_value

#: The helper that composes in the app's interpreter, and how it is started there: by
#: ``runpy`` from ``-c`` (a script's own directory would come first on ``sys.path``, and
#: this one's ``hydra.py`` would shadow the app's ``hydra``).
HELPER = Path(__file__).parent / "hydracompose.py"
_RUN_HELPER = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)

#: The pseudo params file under which an experiment records its group choices.
CHOICES = "hydra"
#: Extra overrides every run of a Hydra app gets (see the module docstring).
RUN_OVERRIDES = ("hydra.run.dir=.",)
_PREFIX = {"set": "", "add": "+", "force": "++", "delete": "~"}


@dataclass(frozen=True)
class HydraApp:
    """A Hydra app's primary config, relative to the repository root."""

    config: str
    #: The app's interpreter when it is not the ``python`` its command names.
    python: str = ""

    @property
    def config_dir(self) -> str:
        return posixpath.dirname(self.config)

    @property
    def config_name(self) -> str:
        return posixpath.splitext(posixpath.basename(self.config))[0]


def resolve_overrides(overrides: list[Override]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``-S`` as Hydra overrides: (fixed, sweep points), keys with their prefix (``+seed``)."""
    fixed: dict[str, Any] = {}
    axes: list[list[dict[str, Any]]] = []
    for ov in overrides:
        if ":" in ov.key:
            raise UsageError(
                f"-S {ov.text}: a Hydra app's overrides name config keys or groups, not files"
            )
        key = _PREFIX[ov.kind] + ov.key
        if ov.is_sweep:
            axes.append([{key: v} for v in ov.values])
        else:
            if ov.kind == "delete":  # ~key, or ~key=value (only if it has that value)
                fixed[key] = DELETE if ov.match is None else ov.match
            else:
                fixed[key] = ov.value
    return fixed, combine(axes)


def override_words(point: Mapping[str, Any]) -> list[str]:
    """The point as Hydra command-line overrides (``model=svm``, ``+seed=1``, ``~x``)."""
    words = []
    for key, value in point.items():
        if value is DELETE:
            words.append(key if key.startswith("~") else f"~{key}")
        else:
            words.append(f"{key}={hydra_value(value)}")
    return words


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "_-./:@" for c in value)
        # Unquoted only when Hydra reads it back as this string ('1' stays a string).
        if plain and parse_value(value) == value:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


class Composer:
    """Composes the app's config for points, in the app's own interpreter.

    One helper process per session (:mod:`sweeprun.spec.hydracompose`, run with the
    ``python`` the app runs with): there the app's Hydra plugins are importable, and the
    app's module is imported as soon as a point does not compose without it, so what it
    registers in Hydra's ``ConfigStore`` exists.
    """

    def __init__(
        self,
        app: HydraApp,
        root: Path,
        spec: str,
        runs: AppProgram | None = None,
        config_root: Path | None = None,
        mark: tuple[int, int] | None = None,
    ) -> None:
        self.app = app
        self.root = root
        self.spec = spec  # the spec's path, for errors
        self.runs = runs or AppProgram(sys.executable, "", "", (), ".")
        #: Where the config directory is read (``diff``: extracted from another commit).
        self.config_root = config_root or root
        #: Where the spec names the interpreter (its ``cmd``, or ``python:``), for errors.
        self.mark = mark
        #: One line per swept group option a later config overwrites (said once each).
        self.shadows: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        #: Each distinct point's reply line, by its overrides (sweeps repeat points).
        self._replies: dict[tuple[str, ...], str] = {}
        self._warned: set[str] = set()
        self._stderr: IO[str] | None = None

    @contextlib.contextmanager
    def session(self) -> Iterator[Composer]:
        """The helper, started and (at the end) stopped."""
        setup = {
            "config_dir": str((self.config_root / self.app.config_dir).resolve()),
            "config_name": self.app.config_name,
            "script": self.runs.script and str(self.root / self.runs.wdir / self.runs.script),
            "module": self.runs.module,
            "path": [str(self.root / self.runs.wdir / (self.runs.script_dir or "."))],
        }
        env = {**os.environ, **dict(self.runs.env)}
        with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
            self._stderr = errors
            try:
                self._proc = subprocess.Popen(
                    [self.runs.python, "-c", _RUN_HELPER, str(HELPER), json.dumps(setup)],
                    cwd=self.root / self.runs.wdir,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                    encoding="utf-8",
                )
            except OSError as exc:
                raise self._cannot(f"it does not start ({exc.strerror or exc})") from None
            try:
                ready = self._read()
                if "error" in ready:
                    raise self._cannot(str(ready["error"]))
                yield self
            finally:
                self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _cannot(self, why: str) -> UsageError:
        message = (
            f"cannot compose {self.app.config} with {self.runs.python} (the app's "
            f"interpreter): {why} (set it with params: {{hydra: {self.app.config}, "
            "python: PATH})"
        )
        if self.mark is not None:
            return SpecError(self.spec, self.mark[0], self.mark[1], message)
        return UsageError(f"{self.spec}: {message}")

    def _read(self) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(self._line())
        return reply

    def _line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            raise self._cannot(f"it exited ({self._proc.returncode}): {self._last_error()}")
        return line

    def _last_error(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = [ln.strip() for ln in self._stderr.read().splitlines() if ln.strip()]
        return lines[-1] if lines else "no message"

    def compose(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The params to record for ``point``: the composed config and the group choices;
        a ``UsageError`` quoting Hydra when the point does not compose."""
        return self.compose_many([point])[0]

    def compose_many(self, points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`compose` of each point, the distinct ones sent to the helper at once (a
        thread writes the requests while this one reads the replies, so neither side
        waits on a full pipe)."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None, "outside session()"
        keys = [tuple(override_words(p)) for p in points]
        todo = {k: p for k, p in zip(keys, points, strict=True) if k not in self._replies}

        def send() -> None:
            assert proc.stdin is not None
            try:
                for point in todo.values():
                    request = [[k, None if v is DELETE else v, w] for (k, v), w in _words(point)]
                    proc.stdin.write(json.dumps({"point": request}) + "\n")
                proc.stdin.flush()
            except OSError:
                pass  # it exited: _read says why

        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        try:
            for key in todo:
                self._replies[key] = self._line()
        finally:
            writer.join()
        return [self._reply(key) for key in keys]

    def _reply(self, words: tuple[str, ...]) -> dict[str, Any]:
        reply = json.loads(self._replies[words])  # a fresh copy for each experiment
        if "error" in reply:
            raise UsageError(
                f"{self.spec}: overrides {' '.join(words)!r} do not compose "
                f"{self.app.config}: Hydra: {reply['error']}"
            )
        if reply.get("warning") and reply["warning"] not in self._warned:
            self._warned.add(reply["warning"])
            print(f"sweeprun: warning: {self.spec}: {reply['warning']}", file=sys.stderr)
        for line in reply.get("shadows", []):
            if line not in self.shadows:
                self.shadows.append(line)
        choices = reply.get("choices") or {}
        return {self.app.config: reply["params"], **({CHOICES: choices} if choices else {})}


def _words(point: Mapping[str, Any]) -> list[tuple[tuple[str, Any], str]]:
    return list(zip(point.items(), override_words(point), strict=True))


@dataclass(frozen=True)
class AppProgram:
    """How the app is started: its interpreter, its script or module, its environment."""

    python: str
    script: str  # relative to ``wdir``, or ""
    module: str  # ``python -m MODULE``, or ""
    env: tuple[tuple[str, str], ...]
    wdir: str

    @property
    def script_dir(self) -> str:
        """The directory Python puts first on ``sys.path`` for the script."""
        return posixpath.dirname(self.script) if self.script else ""


_PYTHON = re.compile(r"python(\d+(\.\d+)?)?$")


def app_program(app: HydraApp, stages: Sequence[Stage], root: Path) -> AppProgram:
    """The interpreter the app's command runs (``python3 train.py``, ``.venv/bin/python -m
    app``), found as the command would find it; the configured one (``python:``) first."""
    for stage in stages:
        try:
            words = shlex.split(stage.cmd)
        except ValueError:
            continue
        while words and "=" in words[0] and not words[0].startswith("="):
            words = words[1:]  # VAR=value before the program
        if words and words[0] == "env":
            words = [w for w in words[1:] if "=" not in w]
        if not words or not _PYTHON.match(posixpath.basename(words[0])):
            continue
        script, module = "", ""
        rest = words[1:]
        while rest:
            word = rest.pop(0)
            if word == "-m" and rest:
                module = rest[0]
                break
            if word in ("-X", "-W") and rest:
                rest.pop(0)
            elif not word.startswith("-"):
                script = word
                break
        python = app.python or _which(words[0], stage, root)
        return AppProgram(python, script, module, stage.env, stage.wdir)
    return AppProgram(app.python or sys.executable, "", "", (), ".")


def _which(word: str, stage: Stage, root: Path) -> str:
    """``word`` as the stage's shell would run it (a path relative to its directory)."""
    if "/" in word:
        return str((root / stage.wdir / word).resolve()) if not posixpath.isabs(word) else word
    env_path = dict(stage.env).get("PATH", os.environ.get("PATH", ""))
    return shutil.which(word, path=env_path) or word
