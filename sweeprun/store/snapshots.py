"""A work tree as a git tree, without touching its index or ``HEAD``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from sweeprun.store.git import run_git
from sweeprun.store.objects import read_index


def force_add_results(
    ws: Path, results: list[str], index: Path, env: dict[str, str] | None = None
) -> None:
    """``git add -f`` the declared results that exist but are not staged (ignored ones)."""
    present = [p for p in results if (ws / p).is_file()]
    if not present:
        return
    entries = read_index(index)
    staged = {e.path for e in entries} if entries is not None else set()
    missing = [p for p in present if os.fsencode(p) not in staged]
    if missing:
        run_git(["add", "-f", "--", *missing], ws, env=env)


def snapshot_tree(
    root: Path,
    results: Sequence[str],
    index: Path,
    exclude: Sequence[str] = (),
    overlay: Mapping[str, bytes] | None = None,
) -> str:
    """Tree of the work tree at ``root`` as it is: HEAD + tracked changes + untracked, not
    ignored (and the declared ``results``, ignored or not). ``overlay`` files stand in
    for what the work tree holds at their paths (what is about to be written there).

    Uses a throwaway copy of the real ``index`` (for its stat cache), so the user's
    index, HEAD and files are never touched. The copy keeps the index's modification
    time: git hashes an entry not older than its index ("racily clean"), and a copy made
    now would make a same-size edit from the index's timestamp granule look unchanged.
    """
    with tempfile.TemporaryDirectory(prefix="sweeprun-index-") as tmp:
        scratch = Path(tmp) / "index"
        if index.exists():
            shutil.copy2(index, scratch)
        env = {"GIT_INDEX_FILE": str(scratch)}
        if not index.exists():
            run_git(["read-tree", "HEAD"], root, env=env)
        add = ["add", "-A", "--", "."]
        if exclude:
            # Untracked ``exclude`` paths stay out, as if ignored (a pathspec exclusion
            # would fail where a .gitignore names them too).
            excludes = Path(tmp) / "excludes"
            excludes.write_text("".join(f"/{p}\n" for p in exclude))
            add = ["-c", f"core.excludesFile={excludes}", *add]
        run_git(add, root, env=env)
        if results:
            force_add_results(root, list(results), scratch, env)
        for path, data in (overlay or {}).items():
            blob = run_git(["hash-object", "-w", "--stdin"], root, input=data).strip()
            run_git(
                ["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], root, env=env
            )
        return run_git(["write-tree"], root, env=env).strip()
