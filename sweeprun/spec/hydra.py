"""Hydra apps: overrides with Hydra's meaning, checked by composing the app's config.

A spec declares its program a Hydra app with ``params: {hydra: conf/config.yaml}`` (the
primary config; its directory is the config directory). Then a point's keys are Hydra
overrides as written — a group choice (``model=svm``), a key (``model.C=0.1``), ``+key``,
``++key``, ``~key`` — and they reach the program as its command-line overrides, one
argument each, never through a shell. No file is edited. Each point is checked at queue
time by composing the config with Hydra's compose API: an unknown group option or key is
a one-line error naming the override. The composed config (interpolations resolved) is the
experiment's recorded params, beside the group choices (``hydra`` in ``show``), so a group
is one column, not a ``defaults`` list.

``hydra.run.dir=.`` is passed too: Hydra's own output (``.hydra/``, the job log) goes into
the experiment's workspace, which is already private to it, and the app's working
directory stays the workspace, where the spec's paths point.
"""

from __future__ import annotations

import contextlib
import copy
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeprun.exceptions import UsageError
from sweeprun.spec.overrides import DELETE, Override, combine, parse_value

#: The pseudo params file under which an experiment records its group choices.
CHOICES = "hydra"
#: Extra overrides every run of a Hydra app gets (see the module docstring).
RUN_OVERRIDES = ("hydra.run.dir=.",)
_PREFIX = {"set": "", "add": "+", "force": "++", "delete": "~"}


@dataclass(frozen=True)
class HydraApp:
    """A Hydra app's primary config, relative to the repository root."""

    config: str

    @property
    def config_dir(self) -> str:
        return posixpath.dirname(self.config)

    @property
    def config_name(self) -> str:
        return posixpath.splitext(posixpath.basename(self.config))[0]


def resolve_overrides(overrides: list[Override]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``-S`` as Hydra overrides: (fixed, sweep points), keys with their prefix (``+seed``)."""
    fixed: dict[str, Any] = {}
    axes: list[list[dict[str, Any]]] = []
    for ov in overrides:
        if ":" in ov.key:
            raise UsageError(
                f"-S {ov.text}: a Hydra app's overrides name config keys or groups, not files"
            )
        key = _PREFIX[ov.kind] + ov.key
        if ov.is_sweep:
            axes.append([{key: v} for v in ov.values])
        else:
            if ov.kind == "delete":  # ~key, or ~key=value (only if it has that value)
                fixed[key] = DELETE if ov.match is None else ov.match
            else:
                fixed[key] = ov.value
    return fixed, combine(axes)


def override_words(point: Mapping[str, Any]) -> list[str]:
    """The point as Hydra command-line overrides (``model=svm``, ``+seed=1``, ``~x``)."""
    words = []
    for key, value in point.items():
        if value is DELETE:
            words.append(key if key.startswith("~") else f"~{key}")
        else:
            words.append(f"{key}={hydra_value(value)}")
    return words


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "_-./:@" for c in value)
        # Unquoted only when Hydra reads it back as this string ('1' stays a string).
        if plain and parse_value(value) == value:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


class Composer:
    """Composes the app's config for points (one Hydra initialisation for many)."""

    def __init__(self, app: HydraApp, root: Path, spec: str) -> None:
        self.app = app
        self.root = root
        self.spec = spec  # the spec's path, for errors
        self._bases: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._groups: dict[str, bool] = {}

    @contextlib.contextmanager
    def session(self) -> Iterator[Composer]:
        try:
            # deferred: an optional extra (sweeprun[hydra]), ~300 ms to import
            from hydra import initialize_config_dir
            from hydra.core.global_hydra import GlobalHydra
        except ImportError:
            raise UsageError(
                f"{self.app.config}: a Hydra app needs hydra-core (pip install 'sweeprun[hydra]')"
            ) from None
        GlobalHydra.instance().clear()
        config_dir = str((self.root / self.app.config_dir).resolve())
        try:
            with initialize_config_dir(config_dir=config_dir, version_base=None):
                yield self
        finally:
            GlobalHydra.instance().clear()

    def compose(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The params to record for ``point``: the composed config and the group choices.

        A ``UsageError`` quoting Hydra when the point does not compose. Hydra composes in
        two steps: the defaults tree (chosen by group overrides and ``+``/``~``), then each
        ``key=value`` set into the result in struct mode. The first step is done once per
        distinct set of group choices (Hydra's compose, ~45 ms); the second per point, as
        Hydra does it, on a copy (~1 ms). A point whose values do not go in is composed
        whole by Hydra, so its error is Hydra's own.
        """
        # deferred: omegaconf costs ~60 ms to import (hydra-core is imported by session())
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        structural = {k: v for k, v in point.items() if k[0] in "+~" or self._is_group(k)}
        values = {k: v for k, v in point.items() if k not in structural}
        signature = repr(sorted(structural.items(), key=lambda kv: kv[0]))
        if signature not in self._bases:
            self._bases[signature] = self._compose(structural)
        base, choices = self._bases[signature]
        cfg = copy.deepcopy(base)
        try:
            for key, value in values.items():
                if value is DELETE:
                    raise KeyError(key)  # ~key has a prefix: never here
                OmegaConf.update(cfg, key, value, merge=True)
            data = _plain(cfg)
        except (OmegaConfBaseException, KeyError, ValueError):
            cfg, choices = self._compose(point)
            data = _plain(cfg)
        return {self.app.config: data, **({CHOICES: choices} if choices else {})}

    def _is_group(self, key: str) -> bool:
        if key not in self._groups:
            from hydra.core.global_hydra import GlobalHydra  # deferred: an optional extra

            loader = GlobalHydra.instance().config_loader()
            self._groups[key] = bool(loader.get_group_options(key))
        return self._groups[key]

    def _compose(self, point: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Hydra's compose of ``point``: (config without ``hydra``, group choices)."""
        # deferred: hydra-core is an optional extra; omegaconf costs ~60 ms to import
        from hydra import compose
        from omegaconf import OmegaConf, open_dict

        words = override_words(point)
        try:
            cfg = compose(self.app.config_name, overrides=words, return_hydra_config=True)
        except Exception as exc:  # Hydra's own errors have no common base class
            why = _one_line(str(exc)) or type(exc).__name__
            raise UsageError(
                f"{self.spec}: overrides {' '.join(words)!r} do not compose "
                f"{self.app.config}: Hydra: {why}"
            ) from None
        choices = {
            str(k): v
            for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()  # type: ignore[union-attr]
            if not str(k).startswith("hydra/")
        }
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg, choices


def _plain(cfg: Any) -> Any:
    """The config as plain data, interpolations resolved where they can be outside the app."""
    from omegaconf import OmegaConf  # deferred: ~60 ms to import
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # ${hydra:…} and the like resolve only in the app
        return OmegaConf.to_container(cfg, resolve=False)


def _one_line(message: str) -> str:
    """Hydra's message on one line: "Available options in 'model':" and its list joined."""
    parts: list[str] = []
    for line in (ln.strip().rstrip(".") for ln in message.splitlines() if ln.strip()):
        if line.startswith("Config search path"):
            break  # where Hydra looked: long, and the same for every error
        if parts and parts[-1].endswith(":"):
            parts[-1] += " " + line
        elif parts and parts[-1].startswith("Available options") and ":" in parts[-1]:
            parts[-1] += ", " + line
        else:
            parts.append(line)
    return "; ".join(parts)
