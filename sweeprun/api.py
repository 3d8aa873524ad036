"""The Python API for notebooks and programs."""

from __future__ import annotations

import os
from typing import Any

from sweeprun.store.git import discover


def experiments(
    repo: str | os.PathLike[str] = ".", all_baselines: bool = False
) -> list[dict[str, Any]]:
    """Records of the experiments of ``repo`` (what ``show --json`` prints).

    ``pandas.DataFrame(experiments())`` gives a table; ``params`` and ``metrics`` are
    nested per file, as in the JSON output.
    """
    from sweeprun.commands.show import load_records

    return load_records(discover(repo), all_baselines=all_baselines)


def make_checkpoint(timeout: float | None = None) -> bool:
    """Checkpoint now (see :func:`sweeprun.run.checkpoint.make_checkpoint`).

    A no-op outside sweeprun.
    """
    from sweeprun.run.checkpoint import make_checkpoint as _make

    return _make(timeout)
