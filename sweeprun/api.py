"""The Python API for notebooks and programs.

Light on purpose: a training script imports it for :func:`make_checkpoint`, so it loads
nothing of sweeprun's but the model; :func:`experiments` loads the store when called.
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
