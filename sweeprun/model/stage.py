"""A pipeline stage as a queued experiment stores it (commands already interpolated)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Out:
    """A declared output of a stage (path relative to the repository root)."""

    path: str
    cache: bool = True
    checkpoint: bool = False
    persist: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON form (every field, as records have always stored outs)."""
        return {
            "path": self.path,
            "cache": self.cache,
            "checkpoint": self.checkpoint,
            "persist": self.persist,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Out:
        """Read :meth:`to_json`'s form."""
        return cls(
            path=str(data["path"]),
            cache=bool(data.get("cache", True)),
            checkpoint=bool(data.get("checkpoint", False)),
            persist=bool(data.get("persist", False)),
        )


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, with every path relative to the repository root."""

    name: str
    cmd: str
    wdir: str = "."
    deps: tuple[str, ...] = ()
    outs: tuple[Out, ...] = ()
    params: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()
    #: The experiment's value of each ``${expr}`` in ``cmd``, as text: bound to the
    #: command's words when it runs (never pasted into shell text).
    values: tuple[tuple[str, str], ...] = ()
    #: Extra environment variables of the stage's command (``env:`` of the spec and stage).
    env: tuple[tuple[str, str], ...] = ()
    #: DVC's ``frozen``: never run; its outs are used as they are in the workspace.
    frozen: bool = False
    #: DVC's ``always_changed``: never restored from the run-cache.
    always_changed: bool = False
    #: ``python -m MODULE`` run in a warm worker (``call:``, or ``warm: true``).
    warm: bool = False
    #: Reads no params (``params: []``; a ``dvc.yaml`` stage without ``params:``, as DVC
    #: means it). Without it, an empty ``params`` means every param (``sweeps.yaml``'s
    #: safe default).
    no_params: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in queue records (and hashed into the experiment's key)."""
        return {
            "name": self.name,
            "cmd": self.cmd,
            "wdir": self.wdir,
            "deps": list(self.deps),
            "outs": [o.to_json() for o in self.outs],
            "params": list(self.params),
            "metrics": list(self.metrics),
            "plots": list(self.plots),
            **({"values": dict(self.values)} if self.values else {}),
            # Only when set, so the records (and keys) of existing sweeps stay as they were.
            **({"env": dict(self.env)} if self.env else {}),
            **({"frozen": True} if self.frozen else {}),
            **({"always_changed": True} if self.always_changed else {}),
            **({"warm": True} if self.warm else {}),
            **({"no_params": True} if self.no_params else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stage:
        """Read :meth:`to_json`'s form."""
        return cls(
            name=str(data["name"]),
            cmd=str(data["cmd"]),
            wdir=str(data.get("wdir", ".")),
            deps=tuple(data.get("deps", ())),
            outs=tuple(Out.from_json(o) for o in data.get("outs", ())),
            params=tuple(data.get("params", ())),
            metrics=tuple(data.get("metrics", ())),
            plots=tuple(data.get("plots", ())),
            values=tuple(sorted(data.get("values", {}).items())),
            env=tuple(sorted(data.get("env", {}).items())),
            frozen=bool(data.get("frozen", False)),
            always_changed=bool(data.get("always_changed", False)),
            warm=bool(data.get("warm", False)),
            no_params=bool(data.get("no_params", False)),
        )

    @property
    def checkpoint_outs(self) -> list[str]:
        """Paths of the outs marked ``checkpoint: true``."""
        return [o.path for o in self.outs if o.checkpoint]
