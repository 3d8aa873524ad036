"""A job as it crosses to a worker: what every job of a run shares, and the picklable job
of one claimed record (see ``model.Job``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeprun.exceptions import UsageError
from sweeprun.model import Job, JobSetup, Record, RunOptions
from sweeprun.store import fastgit, leases
from sweeprun.store.cache import cache_config
from sweeprun.store.git import commit_identity
from sweeprun.store.records import ExpStore

#: ``--backend`` → joblib's backend name.
JOBLIB_BACKENDS = {"threads": "threading", "loky": "loky", "dask": "dask"}


def claim_token(lease: leases.Lease | None) -> str:
    """How a job and a later reclaimer name one claim of an experiment."""
    return "-" if lease is None else f"{lease.pid}.{lease.started!r}"


def job_setup(root: Path, common_dir: Path) -> tuple[JobSetup, dict[str, str]]:
    """What every job of a run shares, resolved once (a few git calls): the fast paths,
    the output cache, and the commit identity (also as environment, for git itself)."""
    fast = fastgit.resolve(root, common_dir)
    ident = commit_identity(root)
    cache_root, types = cache_config(common_dir)
    default = Path(common_dir) / "sweeprun" / "cache"
    setup = JobSetup(
        author=ident.author,
        committer=ident.committer,
        fast_objects=fast.objects,
        fast_add=fast.add,
        fast_switch=fast.switch,
        cache_dir="" if cache_root == default else str(cache_root),
        cache_types=types,
    )
    return setup, ident.env()


def make_job(
    store: ExpStore,
    record: Record,
    options: RunOptions,
    setup: JobSetup | None = None,
    env: Mapping[str, str] | None = None,
    url: str = "",
    in_place: bool = False,
) -> Job:
    """The picklable job for a claimed record: a reference to its queued commit (for a
    git-only worker, at ``url``: the job then names no path of this machine). ``env``:
    the commit identity's and the plugins' extra environment."""
    repo = store.repo
    journal = store.journal.path
    return Job(
        repo_root="" if url else str(repo.root),
        common_dir="" if url else str(repo.common_dir),
        commit=record.commit,
        key=record.key,
        options=options,
        setup=setup or JobSetup(),
        env=tuple(sorted((env or {}).items())),
        claim=claim_token(store.journal.lease(record.key)),
        journal=journal.name if journal is not None and not url else "",
        in_place=in_place,
        changed=record.data.changed,
        url=url,
        checkpoints=any(s.checkpoint_outs for s in record.data.stages),
    )


def dask_client(options: RunOptions) -> Any:
    """A client of ``--scheduler`` (or of an in-process cluster); a one-line error when
    no scheduler answers."""
    from distributed import Client  # an optional extra, and slow to import

    address, wait = options.scheduler, options.connect_timeout
    try:
        return (
            Client(address, timeout=wait)  # type: ignore[no-untyped-call]
            if address
            else Client(processes=False)  # type: ignore[no-untyped-call]
        )
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"--scheduler {address}: no Dask scheduler answered within {wait:g} s "
            f"({type(exc).__name__})"
        ) from None
