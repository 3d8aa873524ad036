"""Shared set-up of the benchmark scripts: an isolated git identity and a committed repo."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def compile_sweeprun() -> None:
    """Give sweeprun's modules bytecode, as ``pip install`` does.

    An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (set on some CI machines)
    would otherwise recompile every module in every process the benchmarks start: ~90 ms
    of start-up no installed copy pays.
    """
    import compileall

    import sweeprun

    compileall.compile_dir(Path(sweeprun.__file__).parent, quiet=1)


compile_sweeprun()

ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "SWEEPRUN_ADDOPTS": "",
}


def bench_env() -> dict[str, str]:
    """The environment benchmarks run git and sweeprun in."""
    return dict(os.environ, **ENV)


def commit_repo(repo: Path, files: dict[str, str]) -> None:
    """``git init`` ``repo``, write ``files`` and commit them as the baseline."""
    repo.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
        subprocess.run(cmd, cwd=repo, env=bench_env(), check=True, capture_output=True)


def store_results(repo: Path, head: str, tree: str, results: list[tuple[Any, bytes]]) -> None:
    """Write finished experiments as the store does, without running them: one
    ``fast-import`` for the commits (``(Result, params.yaml text)`` each, on ``head``'s
    ``tree``), one ``update-ref --stdin`` transaction for their refs."""
    from sweeprun.model import EXPS, format_message
    from sweeprun.store.git import ZERO, FastCommit, RefOp, RefUpdater, fast_import_commits

    commits = [
        FastCommit(
            parent=head,
            tree=tree,
            files={"params.yaml": text},
            message=format_message(f"sweeprun: success {meta.name}", meta),
            timestamp=int(meta.queued_at),
        )
        for meta, text in results
    ]
    shas = fast_import_commits(repo, commits, ("bench", "bench@example.com"))
    updater = RefUpdater(repo)
    updater.transaction(
        [
            RefOp(f"{EXPS}{head}/{meta.name}", sha, ZERO)
            for (meta, _), sha in zip(results, shas, strict=True)
        ]
    )
    updater.close()


def make_results(repo: Path, n: int, values: Any, files: dict[str, str] | None = None) -> None:
    """``git init`` ``repo`` with ``files`` (default: a ``params.yaml``) committed as the
    baseline, and ``n`` finished experiments of a sweep ``g`` on it, written through the
    store: experiment ``i`` has the params and metrics ``values(i)`` returns (each a flat
    mapping: ``params.yaml``'s keys, ``m.json``'s)."""
    from sweeprun.model import Result, State
    from sweeprun.store.git import run_git

    run_git(["init", "-q"], repo)
    for rel, text in (files or {"params.yaml": "lr: 0.1\nunits: 64\n"}).items():
        (repo / rel).write_text(text)
    run_git(["add", "-A"], repo)
    run_git(["commit", "-q", "-m", "baseline"], repo)
    head = run_git(["rev-parse", "HEAD"], repo).strip()
    tree = run_git(["rev-parse", "HEAD^{tree}"], repo).strip()
    results = []
    for i in range(n):
        params, metrics = values(i)
        point = ",".join(f"{k}={v}" for k, v in params.items())
        meta = Result(
            key=f"{i:020x}",
            name=f"exp-{i:05d}",
            id=f"g[{point},i={i}]",
            baseline=head,
            state=State.SUCCESS,
            params={"params.yaml": params},
            metrics={"m.json": metrics},
            point=dict(params),
            sweep="g",
            returncode=0,
            queued_at=1_700_000_000 + i,
            started=1_700_000_000 + i,
            finished=1_700_000_001 + i,
        )
        text = "".join(f"{k}: {v}\n" for k, v in params.items()).encode()
        results.append((meta, text))
    store_results(repo, head, tree, results)
