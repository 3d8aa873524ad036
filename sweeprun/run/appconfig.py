"""The config a Hydra app really ran with, read back from what Hydra wrote.

The queued record holds the config as sweeprun composed it at queue time. What the app
ran with is what Hydra saved in ``.hydra/config.yaml`` of its run directory (the stage's
working directory: ``hydra.run.dir=.``); they differ when a preset or a later config of
the defaults list overwrites a swept choice, or when the app's interpreter composes
differently. The result records what ran, and the log says where it differs.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sweeprun.model import Stage
from sweeprun.spec.params import flatten

#: The stage values that carry a Hydra app's overrides (see ``spec.collect``).
_OVERRIDE = "hydra.override."


def ran_config(ws: Path, stages: Sequence[Stage], ran: set[str]) -> dict[str, Any] | None:
    """The config the last Hydra stage that ran wrote (interpolations resolved where they
    can be), or ``None`` when no such stage ran or it wrote none that reads."""
    for stage in reversed(stages):
        if stage.name not in ran or not any(k.startswith(_OVERRIDE) for k, _ in stage.values):
            continue
        path = ws / posixpath.normpath(posixpath.join(stage.wdir, ".hydra", "config.yaml"))
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return _resolved(data) if isinstance(data, dict) else None
    return None


def _resolved(data: dict[str, Any]) -> dict[str, Any]:
    # deferred: omegaconf costs ~60 ms to import and only Hydra apps' results need it
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        out = OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    except OmegaConfBaseException:  # ${hydra:…} and the like resolve only in the app
        return data
    return {str(k): v for k, v in out.items()} if isinstance(out, dict) else data


def differences(queued: Mapping[str, Any], ran: Mapping[str, Any], limit: int = 5) -> str:
    """Where the config that ran differs from the queued one: ``key: queued → ran`` list."""
    a, b = flatten(dict(queued)), flatten(dict(ran))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    shown = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:limit]]
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return "; ".join(shown) + more
