"""The Python API for notebooks and programs.

Light on purpose: a training script imports it for :func:`make_checkpoint`, so it loads
nothing of sweeprun's but the model; the others load what they need when called:
:func:`experiments` (records), :func:`dataframe` (pandas), :func:`queue` and :func:`run`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sweeprun.model import CHECKPOINT_ENV


def experiments(
    repo: str | os.PathLike[str] = ".", all_baselines: bool = False
) -> list[dict[str, Any]]:
    """Records of the experiments of ``repo`` (what ``show --json`` prints).

    ``pandas.DataFrame(experiments())`` gives a table; ``params`` and ``metrics`` are
    nested per file, as in the JSON output.
    """
    # Deferred: a script that only checkpoints must not load the store and its commands.
    from sweeprun.commands.listing import load_records
    from sweeprun.store.git import discover

    return load_records(discover(repo), all_baselines=all_baselines)


def columns(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """``show``'s table as data: the column names ``show`` prints (file-qualified only where
    a key is in several files), every param and metric (constant ones too), typed values
    (``None`` for a missing value or a ``null``), ``Created`` as a UNIX time and
    ``Duration`` in seconds."""
    # Deferred: a script that only checkpoints must not load the commands.
    from sweeprun.report.table import MISSING, column, flat_columns, forget

    params = flat_columns(records, "params")
    metrics = flat_columns(records, "metrics")
    names = ["Experiment", "State", "Sweep", "Created", "Duration", *params, *metrics]
    values = [
        *(column(records, "params", c) for c in params),
        *(column(records, "metrics", c) for c in metrics),
    ]
    fixed = [
        [
            r.get("name"),
            getattr(r.get("state"), "value", r.get("state")),  # an enum: its text
            r.get("sweep"),
            r.get("started") or r.get("queued_at"),
            r.get("duration"),
        ]
        for r in records
    ]
    forget(records)  # the table's cache: not part of the records
    rows = [
        [*first, *(None if v is MISSING else v for v in rest)]
        for first, *rest in zip(fixed, *values, strict=True)
    ]
    return names, rows


def dataframe(
    repo: str | os.PathLike[str] = ".", all_baselines: bool = False, sweep: str | None = None
) -> Any:
    """The experiments as a ``pandas.DataFrame`` with ``show``'s column names.

    One row per experiment (the workspace is not a row), every param and metric a column;
    ``Created`` is a UTC ``Timestamp``. Needs pandas (``pip install 'sweeprun[pandas]'``).
    """
    try:
        import pandas as pd  # deferred: an optional extra, ~300 ms to import
    except ImportError:
        raise ImportError("sweeprun.api.dataframe needs pandas: pip install pandas") from None
    # Deferred: a script that only checkpoints must not load the store and its commands.
    from sweeprun.commands import listing
    from sweeprun.report.table import subset
    from sweeprun.store.git import discover

    # The index's columns: no record of 100,000 decoded or flattened.
    records = listing.frame(*listing.rows(discover(repo), all_baselines))
    if sweep is not None:
        records = subset(records, (i for i, r in enumerate(records) if r.get("sweep") == sweep))
    names, rows = columns(records)
    frame = pd.DataFrame(rows, columns=names)
    frame["Created"] = pd.to_datetime(frame["Created"], unit="s", utc=True)
    return frame


def queue(
    spec: str = "sweeps.yaml",
    overrides: list[str] | tuple[str, ...] = (),
    repo: str | os.PathLike[str] = ".",
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Queue the experiments of ``spec`` (with ``-S`` ``overrides``); their records.

    As on the command line, ``overrides`` make points against the base params, unless
    ``spec`` names a sweep (``sweeps.yaml::grid``): then they apply inside it.
    """
    return _invoke(spec, overrides, repo, name, [])


def run(
    spec: str = "sweeps.yaml",
    overrides: list[str] | tuple[str, ...] = (),
    repo: str | os.PathLike[str] = ".",
    jobs: int = 1,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Queue and run the experiments of ``spec`` now (``sweeprun SPEC --run -j JOBS``) and
    return their records: a failed experiment is a record with its state, not an error."""
    return _invoke(spec, overrides, repo, name, ["--run", "-j", str(jobs)])


def _invoke(
    spec: str,
    overrides: list[str] | tuple[str, ...],
    repo: str | os.PathLike[str],
    name: str | None,
    extra: list[str],
) -> list[dict[str, Any]]:
    import contextlib  # deferred: see experiments()
    import io
    import json
    from pathlib import Path

    # deferred: the CLI loads every plugin, which a checkpointing script must not pay for
    from sweeprun._core.cli import main
    from sweeprun.exceptions import UsageError

    base = [spec, *(a for o in overrides for a in ("-S", o)), *(["-n", name] if name else [])]
    cwd = Path(repo).resolve()

    def call(args: list[str]) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(args, stdout=out, cwd=cwd)
        if code in (3, 4):  # internal or usage error: the one-line message says what
            raise UsageError(err.getvalue().strip().removeprefix("sweeprun: error: "))
        return out.getvalue()

    wanted = {(e["spec"], e["id"]) for e in json.loads(call([*base, "--collect-only", "--json"]))}
    call([*base, "-q", *extra])
    return [r for r in experiments(cwd) if (r.get("spec"), r.get("id")) in wanted]


def make_checkpoint(timeout: float | None = None) -> bool:
    """Ask sweeprun to checkpoint now; return once the snapshot is taken.

    Creates the signal file named by ``SWEEPRUN_CHECKPOINT``, makes sure it is on disk and
    waits until sweeprun removes it. Outside sweeprun (no such variable) it does nothing
    and returns ``False``.
    """
    path = os.environ.get(CHECKPOINT_ENV)
    if not path:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    deadline = None if timeout is None else time.monotonic() + timeout
    while os.path.exists(path):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"sweeprun did not take the checkpoint within {timeout} s")
        time.sleep(0.002)
    return True
