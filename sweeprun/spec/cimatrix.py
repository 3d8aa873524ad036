"""Spreading a sweep over a CI system's own parallel jobs: shards and matrices.

Pure functions of the collected experiments (collection is deterministic, so every CI job
that collects the same commit agrees on who runs what): ``--shard I/N`` picks the I-th of
N round-robin shards; ``--ci-matrix github|gitlab`` prints the matrix a workflow feeds to
``strategy.matrix`` / ``parallel:matrix`` — one entry per experiment (its node id, for
``sweeprun NODE --run``) or, with ``--shard-size K``, one per shard of about K.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from sweeprun.exceptions import UsageError

FORMATS = ("github", "gitlab")
#: GitLab refuses a ``parallel:matrix`` of more jobs than this; GitHub a matrix of 256.
MAX_JOBS = {"github": 256, "gitlab": 200}
_SHARD = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*)")


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` → (I, N), 1 ≤ I ≤ N; a ``UsageError`` naming the option otherwise."""
    match = _SHARD.fullmatch(text.strip())
    if not match or int(match.group(1)) > int(match.group(2)):
        raise UsageError(f"--shard {text}: expected I/N with 1 <= I <= N, e.g. --shard 2/4")
    return int(match.group(1)), int(match.group(2))


def shard(items: Sequence[Any], index: int, total: int) -> list[Any]:
    """The ``index``-th (1-based) of ``total`` round-robin shards of ``items``."""
    return [item for i, item in enumerate(items) if i % total == index - 1]


def matrix(fmt: str, nodes: Sequence[str], shard_size: int | None) -> dict[str, Any]:
    """The matrix of a CI system for these experiment node ids (``SPEC::ID``)."""
    if shard_size:
        total = max(1, math.ceil(len(nodes) / shard_size))
        key, values = "shard", [f"{i}/{total}" for i in range(1, total + 1)]
    else:
        key, values = "node", list(nodes)
    if len(values) > MAX_JOBS[fmt]:
        raise UsageError(
            f"--ci-matrix {fmt}: {len(values)} jobs, more than {fmt} allows "
            f"({MAX_JOBS[fmt]}); use --shard-size K for fewer, larger jobs"
        )
    if fmt == "github":
        return {"include": [{key: v} for v in values]}
    return {"parallel": {"matrix": [{f"SWEEPRUN_{key.upper()}": values}]}}
