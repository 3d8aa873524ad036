"""Composes a Hydra app's config inside the app's own interpreter.

sweeprun runs this file with the ``python`` the app runs with (through ``runpy`` from
``python -c``, so no directory of sweeprun's shadows a module of the app's), because only
there are the app's Hydra plugins importable (``hydra/job_logging: colorlog``) and only
after the app's module is imported do its ``ConfigStore`` registrations exist. So this
module imports nothing of sweeprun's and nothing but the standard library, ``hydra-core``
and ``omegaconf`` (what any Hydra app has); sweeprun's side is
:class:`sweeprun.spec.hydra.Composer`.

The protocol, one JSON document per line: ``argv[1]`` is the setup (``config_dir``,
``config_name``, ``script`` or ``module``, ``path``); the first reply is ``{"ready":
VERSION}`` or ``{"error": TEXT}``. Each request is ``{"point": [[KEY, VALUE, OVERRIDE],
…]}`` and its reply ``{"params": …, "choices": …, "shadows": […]}`` (with ``"warning"``
when importing the app failed) or ``{"error": TEXT}``. The app's module is imported at the
first point that does not compose without it. Replies go to the original stdout; whatever
the app's module prints goes to stderr.
"""

from __future__ import annotations

import copy
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

#: Stands for "delete this key" (``~key``) in a point.
DELETE = object()


class Composer:
    """Composes points of one app (one Hydra initialisation for many)."""

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        self._bases: dict[str, tuple[Any, dict[str, Any], list[str]]] = {}
        self._groups: dict[str, bool] = {}

    def compose(self, point: Mapping[str, tuple[Any, str]]) -> dict[str, Any]:
        """``{"params", "choices", "shadows"}`` of ``point`` (key → (value, override as
        sweeprun wrote it)); ``ValueError(why)`` if it does not compose.

        Hydra composes in two steps: the defaults tree (chosen by group overrides and
        ``+``/``~``), then each ``key=value`` set into the result in struct mode. The first
        step is done once per distinct set of group choices (Hydra's compose, ~45 ms); the
        second per point, as Hydra does it, on a copy (~1 ms). A point whose values do not
        go in is composed whole by Hydra, so its error is Hydra's own.
        """
        # deferred: the app's hydra, found once serve() put the app's paths first
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        structural = {k: v for k, v in point.items() if k[0] in "+~" or self._is_group(k)}
        values = {k: v for k, v in point.items() if k not in structural}
        signature = repr(sorted(w for _, w in structural.values()))
        if signature not in self._bases:
            cfg, choices = self.compose_whole(structural)
            self._bases[signature] = (cfg, choices, self._shadows(structural))
        base, choices, shadows = self._bases[signature]
        cfg = copy.deepcopy(base)
        try:
            for key, (value, _) in values.items():
                if value is DELETE:
                    raise KeyError(key)  # ~key has a prefix: never here
                OmegaConf.update(cfg, key, value, merge=True)
            data = plain(cfg)
        except (OmegaConfBaseException, KeyError, ValueError):
            cfg, choices = self.compose_whole(point)
            data = plain(cfg)
        return {"params": data, "choices": choices, "shadows": shadows}

    def _is_group(self, key: str) -> bool:
        if key not in self._groups:
            # deferred: the app's hydra, found once serve() put the app's paths first
            from hydra.core.global_hydra import GlobalHydra

            loader = GlobalHydra.instance().config_loader()
            self._groups[key] = bool(loader.get_group_options(key))
        return self._groups[key]

    def compose_whole(self, point: Mapping[str, tuple[Any, str]]) -> tuple[Any, dict[str, Any]]:
        """Hydra's compose of ``point``: (config without ``hydra``, group choices)."""
        # deferred: the app's hydra, found once serve() put the app's paths first
        from hydra import compose
        from omegaconf import OmegaConf, open_dict

        try:
            cfg = compose(self.config_name, overrides=words(point), return_hydra_config=True)
        except Exception as exc:  # Hydra's own errors have no common base class
            raise ValueError(one_line(str(exc)) or type(exc).__name__) from None
        choices = {
            str(k): v
            for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()  # type: ignore[union-attr]
            if not str(k).startswith("hydra/")
        }
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg, choices

    def _shadows(self, structural: Mapping[str, tuple[Any, str]]) -> list[str]:
        """Swept group options whose keys a later config of the defaults list overwrites
        (a preset in ``@package _global_``, say): each as one line naming the winner."""
        chosen = {k.lstrip("+"): v for k, (v, _) in structural.items() if k[0] != "~"}
        if not chosen:
            return []
        try:  # Hydra's defaults list: not a documented API, so a failure only skips this
            # deferred: the app's hydra, found once serve() put the app's paths first
            from hydra.core.global_hydra import GlobalHydra
            from hydra.types import RunMode

            loader = GlobalHydra.instance().config_loader()
            listed = loader.compute_defaults_list(
                self.config_name, words(structural), RunMode.RUN
            ).defaults
            order = [
                (str(d.config_path), _leaves(d, loader))
                for d in listed
                if not str(d.config_path).startswith("hydra/")
            ]
        except Exception:
            return []
        out = []
        for group, option in chosen.items():
            path = f"{group}/{option}"
            at = next((i for i, (p, _) in enumerate(order) if p == path), None)
            if at is None:
                continue
            for key, value in order[at][1].items():
                setters = [(p, leaves[key]) for p, leaves in order[at + 1 :] if key in leaves]
                if setters and setters[-1][1] != value:
                    winner, theirs = setters[-1]
                    out.append(
                        f"{group}={option}: its {key} ({value!r}) is overwritten by "
                        f"{winner} ({theirs!r}), so every such point runs with {theirs!r}"
                    )
        return out


def _leaves(default: Any, loader: Any) -> dict[str, Any]:
    """A defaults-list entry's own keys, dotted from the config root, with their values."""
    # deferred: the app's hydra, found once serve() put the app's paths first
    from omegaconf import OmegaConf

    try:
        loaded = loader.repository.load_config(default.config_path)
    except Exception:
        return {}
    if loaded is None:
        return {}
    data = OmegaConf.to_container(loaded.config, resolve=False)
    if not isinstance(data, dict):
        return {}
    data.pop("defaults", None)
    prefix = default.package or ""
    out: dict[str, Any] = {}

    def walk(node: Any, at: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{at}.{k}" if at else str(k))
        elif at:
            out[at] = node

    walk(data, prefix)
    return out


def words(point: Mapping[str, tuple[Any, str]]) -> list[str]:
    """The point as Hydra command-line overrides (sweeprun wrote each one)."""
    return [word for _, word in point.values()]


def plain(cfg: Any) -> Any:
    """The config as plain data, interpolations resolved where they can be outside the app."""
    # deferred: the app's hydra, found once serve() put the app's paths first
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # ${hydra:…} and the like resolve only in the app
        return OmegaConf.to_container(cfg, resolve=False)


def one_line(message: str) -> str:
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


def import_app(setup: Mapping[str, Any]) -> str:
    """Import the app's module as its ``python`` would (so its ``ConfigStore``
    registrations run) without running the app: ``hydra.main`` becomes a decorator that
    does nothing, for a script that calls its main function unguarded. "" or why not."""
    # deferred: the app's hydra, found once serve() put the app's paths first
    import hydra

    def main(*_a: Any, **_k: Any) -> Callable[[Callable[..., Any]], Callable[..., None]]:
        return lambda _f: lambda *_x, **_y: None

    real, hydra.main = hydra.main, main
    try:
        if setup.get("module"):
            runpy.run_module(str(setup["module"]), run_name="__sweeprun_compose__")
        elif setup.get("script"):
            runpy.run_path(str(setup["script"]), run_name="__sweeprun_compose__")
    except BaseException as exc:  # the app's own code: anything, even SystemExit
        return f"importing {setup.get('module') or setup.get('script')} failed: {exc!r}"
    finally:
        hydra.main = real
    return ""


def _point(request: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """A request's point: key → (value, override); ``~key`` overrides delete."""
    return {
        key: (DELETE if word.startswith("~") else value, word)
        for key, value, word in request.get("point", [])
    }


def _requests(stream: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stream:
        if line.strip():
            yield json.loads(line)


def serve(argv: list[str]) -> int:
    """The helper's main loop (see the module docstring)."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the app's module may print: never into the replies

    def reply(doc: Mapping[str, Any]) -> None:
        replies.write(json.dumps(doc, default=repr) + "\n")
        replies.flush()

    setup = json.loads(argv[1])
    sys.path[:0] = [str(p) for p in setup.get("path", [])]
    try:
        # deferred: the app's hydra, found once serve() put the app's paths first
        import hydra
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
    except ImportError as exc:
        reply({"error": f"it cannot import hydra ({exc})"})
        return 1
    GlobalHydra.instance().clear()
    composer = Composer(str(setup["config_name"]))
    imported = not (setup.get("module") or setup.get("script"))
    with initialize_config_dir(config_dir=str(setup["config_dir"]), version_base=None):
        reply({"ready": hydra.__version__})
        for request in _requests(sys.stdin):
            point = _point(request)
            try:
                reply(composer.compose(point))
                continue
            except ValueError as exc:
                if imported:
                    reply({"error": str(exc)})
                    continue
            # Only now the app's module is imported (a torch or scikit-learn app takes
            # seconds to import): a config it registers in Hydra's ConfigStore is missing
            # until then, and nothing composes differently without it but by an error.
            imported, warning = True, import_app(setup)
            composer = Composer(str(setup["config_name"]))
            try:
                reply({**composer.compose(point), **({"warning": warning} if warning else {})})
            except ValueError as exc:
                reply({"error": str(exc) + (f" ({warning})" if warning else "")})
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv))
