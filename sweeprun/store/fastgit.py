"""The in-process git fast paths, behind one interface and one switch.

sweeprun re-implements a few of git's internals where a process per experiment would
cost more than the work: staging a pooled workspace's result without ``git add``
(:func:`staged_entries`), writing its tree and commit (:func:`commit_entries`), switching
a slot between sibling experiments without ``git checkout`` (:func:`switch`, after
:func:`remember_checkout`) and cleaning it without ``git clean``
(:func:`untracked_outputs`); the object and index formats they read and write are in
:mod:`sweeprun.store.objects`. They are the riskiest code here, so they live in this one
module, are decided once per run (:func:`resolve`), and can be turned off::

    git config sweeprun.fastGit false      # or: SWEEPRUN_FAST_GIT=0

With them off, git itself does every checkout, add, clean and write-tree. The test suite
runs the end-to-end tests both ways (the ``both_git_modes`` marker).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweeprun.store import objects
from sweeprun.store.git import run_git
from sweeprun.system.paths import reason_outside

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


#: Indexes larger than this go to git (reading them is no longer the cheap part).
FAST_CLEAN_MAX_ENTRIES = 5000


def untracked_outputs(ws: Path, git_dir: Path) -> list[Path] | None:
    """What ``git clean -ffdx`` would remove from a pooled workspace, found in-process.

    After the previous experiment's ``git add -A`` the index holds every file that is not
    ignored, so what is left untracked is exactly its ignored output. ``None``: let git
    do it (an unreadable or large index).
    """
    entries = objects.read_index(git_dir / "index")
    if entries is None or len(entries) > FAST_CLEAN_MAX_ENTRIES:
        return None
    return list(objects.untracked_paths(ws, {e.path for e in entries}))


def pristine_index(state: Path) -> Path:
    """Where a slot keeps the index of its last real checkout."""
    return state.with_suffix(".index")


def remember_checkout(git_dir: Path, state: Path, base_tree: str, files: dict[str, bytes]) -> None:
    """Record what a fresh checkout holds, so the next sibling can switch fast."""
    if not base_tree or not files:
        state.unlink(missing_ok=True)
        return
    shutil.copyfile(git_dir / "index", pristine_index(state))
    state.write_text(json.dumps({"base_tree": base_tree, "files": sorted(files)}))


def switch(
    ws: Path, git_dir: Path, state: Path, commit: str, base_tree: str, files: dict[str, bytes]
) -> bool:
    """Turn the slot into ``commit`` without git, when it last held a sibling of it.

    Siblings share the workspace snapshot and differ only in the same params files.
    The pristine index saved at checkout time tells what the last command changed:
    files it added (tracked by ``git add -A``, or ignored) are removed, the params files
    rewritten, and the index and HEAD set as ``git checkout`` would set them. If the
    command modified or deleted a tracked file, this returns ``False`` and the caller
    does a real checkout. Saves the most expensive process of an experiment.
    """
    try:
        old = json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    if old.get("base_tree") != base_tree or old.get("files") != sorted(files):
        return False
    gd = git_dir
    pristine = objects.read_index(pristine_index(state))
    current = objects.read_index(gd / "index")
    if pristine is None or current is None or len(pristine) > FAST_CLEAN_MAX_ENTRIES:
        return False
    params = {p.encode() for p in files}
    now = {e.path: e for e in current}
    for e in pristine:
        if e.path in params:
            continue
        c = now.get(e.path)
        if c is None or c.sha != e.sha or c.mode != e.mode:
            return False
    if not params <= {e.path for e in pristine}:
        return False
    for path in objects.untracked_paths(ws, {e.path for e in pristine}):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    entries = []
    for e in pristine:
        if e.path in params:
            content = files[e.path.decode()]
            target = ws / e.path.decode()
            if target.is_symlink() or not target.is_file() or reason_outside(ws, e.path.decode()):
                return False  # git checks out through links safely; we do not try
            objects.overwrite(target, content)
            # The blob is in the object store already: it is part of ``commit``.
            sha = objects.blob_id(content)
            e = objects.IndexEntry(e.path, e.mode, sha, objects.stat_fields(target, e.mode))
        entries.append(e)
    data = objects.write_index(gd / "index", entries)
    objects.overwrite(pristine_index(state), data)
    objects.overwrite(gd / "HEAD", f"{commit}\n".encode())
    return True


FAST_ADD_MAX_ENTRIES = 2000


def staged_entries(
    ws: Path,
    git_dir: Path,
    objects_dir: Path,
    allowed_new: Sequence[str],
    cached_outs: Sequence[str],
) -> tuple[list[objects.IndexEntry] | None, bool]:
    """What ``git add -A`` would stage in a pooled workspace, computed in-process, and
    whether a tracked file changed or went away (the slot's index then no longer tells a
    fast switch what to restore). ``None`` entries: let git do it.

    Only when nothing needs git's judgement: no attributes or filters (see
    :func:`resolve`), no symlinks or submodules, and every file that is not tracked is one
    of ``allowed_new`` (the declared results). Anything else — a stray ``__pycache__``, an
    unknown new file — goes to ``git add -A``. ``cached_outs`` never enter git.
    """
    if not allowed_new:
        return None, False
    index = git_dir / "index"
    entries = objects.read_index(index)
    if entries is None or len(entries) > FAST_ADD_MAX_ENTRIES:
        return None, False
    if any(
        e.mode not in (0o100644, 0o100755) or e.path.endswith(b".gitattributes") for e in entries
    ):
        return None, False
    racy = index.stat().st_mtime_ns
    by_path = {e.path: e for e in entries}
    allowed = {p.encode() for p in allowed_new}
    outs = [o.encode() for o in cached_outs]
    out: list[objects.IndexEntry] = []
    seen = 0
    changed = False
    for full in objects.walk_files(ws):
        rel = os.fsencode(os.path.relpath(full, ws))
        if any(rel == o or rel.startswith(o + b"/") for o in outs):
            continue
        st = os.lstat(full)
        if not stat.S_ISREG(st.st_mode):
            return None, False
        mode = 0o100755 if st.st_mode & 0o100 else 0o100644
        old = by_path.get(rel)
        if old is None and rel not in allowed:
            return None, False
        if old is not None:
            seen += 1
            s = old.stat
            if (
                old.mode == mode
                and s[9] == st.st_size & 0xFFFFFFFF
                and s[5] == st.st_ino & 0xFFFFFFFF
                and s[2] * 10**9 + s[3] == st.st_mtime_ns
                and st.st_mtime_ns < racy
            ):
                out.append(old)
                continue
        content = Path(full).read_bytes()
        sha = objects.write_object(objects_dir, "blob", content)
        if old is not None and (sha != old.sha or mode != old.mode):
            changed = True
        out.append(objects.IndexEntry(rel, mode, sha))
    return out, changed or seen != len(by_path)


def commit_entries(
    objects_dir: Path,
    entries: list[objects.IndexEntry],
    extra: dict[str, bytes],
    parents: list[str],
    author: str,
    committer: str,
    message: str,
) -> str:
    """Write the tree of ``entries`` (plus ``extra`` files, straight into the object
    store) and a commit of it, in-process; return the commit's id."""
    virtual = {p.encode(): data for p, data in extra.items()}
    entries = [e for e in entries if e.path not in virtual]
    for path, data in virtual.items():
        blob = objects.write_object(objects_dir, "blob", data)
        entries.append(objects.IndexEntry(path, 0o100644, blob))
    tree = objects.write_tree(objects_dir, entries)
    return objects.write_commit(
        objects_dir,
        tree,
        parents,
        objects.format_ident(author),
        objects.format_ident(committer),
        message,
    )
