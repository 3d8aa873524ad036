"""The in-process git fast paths, behind one switch.

sweeprun re-implements a few of git's internals where a process per experiment would
cost more than the work (:mod:`sweeprun.store.objects`): writing result blobs, trees and
commits, staging declared results without ``git add``, switching a pooled workspace
between sibling experiments, and cleaning one. They are the riskiest code here, so they
are decided in one place, once per run, and can be turned off::

    git config sweeprun.fastGit false      # or: SWEEPRUN_FAST_GIT=0

With them off, git itself does every checkout, add, clean and write-tree. The test suite
runs both ways (``.ci/run``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sweeprun.store.git import run_git

ENV = "SWEEPRUN_FAST_GIT"


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths a run may take."""

    #: Write result objects (blobs, trees, commits) in-process: SHA-1 repositories only.
    objects: bool = False
    #: Stage declared results without ``git add`` (no filters, attributes, conversions).
    add: bool = False
    #: Switch and clean pooled workspaces without ``git checkout``/``git clean``.
    switch: bool = False

    @classmethod
    def off(cls) -> FastPaths:
        """Every fast path off: git does it all."""
        return cls()


def _config(root: Path) -> dict[str, str]:
    out = run_git(
        [
            "config",
            "-z",
            "--get-regexp",
            r"^(core\.(autocrlf|eol|filemode|ignorecase|attributesfile)|filter\..*"
            r"|sweeprun\.fastgit)$",
        ],
        root,
        check=False,
    )
    conf: dict[str, str] = {}
    for item in out.split("\0"):
        if item:
            key, newline, value = item.partition("\n")
            # The last one wins, as in git; a bare key (no "=") is a true boolean.
            conf[key] = value if newline else "true"
    return conf


def resolve(root: Path, common_dir: Path) -> FastPaths:
    """The fast paths this repository allows (two git calls, once per run)."""
    conf = _config(root)
    env = os.environ.get(ENV)
    wanted = _git_bool(env) if env is not None else _git_bool(conf.get("sweeprun.fastgit", "true"))
    if wanted is False:
        return FastPaths.off()
    fmt = run_git(["rev-parse", "--show-object-format"], root, check=False).strip() or "sha1"
    return FastPaths(objects=fmt == "sha1", add=_plain_add(conf, common_dir), switch=True)


def enabled(root: Path) -> bool:
    """Whether the switch is on (for code that has no run to ask)."""
    env = os.environ.get(ENV)
    if env is not None:
        return _git_bool(env) is not False
    value = run_git(["config", "--get", "sweeprun.fastGit"], root, check=False).strip()
    return _git_bool(value or "true") is not False


def _plain_add(conf: dict[str, str], common_dir: Path) -> bool:
    """Whether ``git add`` would store files byte for byte with their executable bit.

    Line-ending conversion, filters (they act through attributes, so any attributes file
    counts), ``core.filemode=false`` (git keeps the index's mode) and case folding all
    need git's judgement. ``git init`` writes ``core.filemode=true`` itself, which is the
    plain case.
    """
    if any(key.startswith("filter.") for key in conf):
        return False
    if _git_bool(conf.get("core.autocrlf", "false")) is not False or "core.eol" in conf:
        return False  # "input" is neither true nor false: a conversion too
    if _git_bool(conf.get("core.filemode", "true")) is not True:
        return False
    if _git_bool(conf.get("core.ignorecase", "false")) is not False:
        return False
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    attribute_files = [common_dir / "info" / "attributes", Path(xdg) / "git" / "attributes"]
    if conf.get("core.attributesfile"):
        attribute_files.append(Path(os.path.expanduser(conf["core.attributesfile"])))
    return not any(f.exists() for f in attribute_files)


def _git_bool(value: str) -> bool | None:
    """git's reading of a boolean config value; ``None`` when it is not one."""
    v = value.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0", ""):
        return False
    return None
