"""The plugin manager: built-ins, entry points, ``-p`` plugins and ``sweepconf.py`` files."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pluggy

from sweeprun import hookspec
from sweeprun.exceptions import UsageError

ENTRY_POINT_GROUP = "sweeprun"
CONFTEST = "sweepconf.py"

#: Built-in plugins, by the name ``-p no:NAME`` blocks them with.
BUILTIN_PLUGINS: dict[str, str] = {
    "session": "sweeprun._core.session",
    "options": "sweeprun._core.options",
    "selection": "sweeprun._core.selection",
    "spec": "sweeprun.spec.loader",
    "optimize": "sweeprun.sweepers.optimize",
    "grid": "sweeprun.sweepers.grid",
    "gitstore": "sweeprun._core.queueing",
    "scheduler": "sweeprun._core.runloop",
    "terminal": "sweeprun.report.terminal",
    "show": "sweeprun.commands.show",
    "demo": "sweeprun.commands.demo",
    "init": "sweeprun.commands.init",
    "plots": "sweeprun.commands.plots",
    "report": "sweeprun.commands.report",
    "ui": "sweeprun.commands.ui",
    "run": "sweeprun.commands.run",
    "results": "sweeprun.commands.results",
    "apply": "sweeprun.commands.apply",
    "diff": "sweeprun.commands.diff",
    "sync": "sweeprun.commands.sync",
    "gc": "sweeprun.commands.gc",
    "queue": "sweeprun.commands.queue",
    "junit": "sweeprun.report.junit",
}
#: Objects built-ins register at configure time; not worth listing in the header.
INTERNAL_OBJECTS = ("terminalreporter",)
#: Plugins the tool cannot work without.
ESSENTIAL = ("session",)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with sweeprun's hookspecs and plugin discovery."""

    def __init__(self) -> None:
        super().__init__("sweeprun")
        self.add_hookspecs(hookspec)
        self._conftests: dict[Path, ModuleType] = {}

    def consider_preparse(self, args: Sequence[str]) -> None:
        """Handle ``-p NAME`` / ``-p no:NAME`` before the full parse, like pytest."""
        it = iter(args)
        for arg in it:
            if arg == "-p":
                value = next(it, None)
                if value is None:
                    raise UsageError("-p: expected a plugin name (or no:NAME)")
            elif arg.startswith("-p") and len(arg) > 2:
                value = arg[2:]
            else:
                continue
            self.consider_pluginarg(value)

    def consider_pluginarg(self, value: str) -> None:
        """Block ``no:NAME`` or import and register module ``NAME``."""
        if value.startswith("no:"):
            name = value[3:]
            if name in ESSENTIAL:
                raise UsageError(f"-p no:{name}: the {name!r} plugin cannot be disabled")
            self.set_blocked(name)
            return
        if self.is_blocked(value) or self.get_plugin(value) is not None:
            return
        module = BUILTIN_PLUGINS.get(value, value)
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"-p {value}: cannot import plugin module ({exc})") from None
        self.register(mod, value)

    def register_builtins(self) -> None:
        """Register every built-in plugin that is not blocked."""
        for name, module in BUILTIN_PLUGINS.items():
            if self.is_blocked(name) or self.get_plugin(name) is not None:
                continue
            self.register(importlib.import_module(module), name)

    def load_entrypoints(self) -> None:
        """Register installed plugins from the ``sweeprun`` entry-point group."""
        self.load_setuptools_entrypoints(ENTRY_POINT_GROUP)

    def load_conftests(self, root: Path, directory: Path) -> None:
        """Load every ``sweepconf.py`` from ``root`` down to ``directory`` (once each)."""
        root = root.resolve()
        directory = directory.resolve()
        try:
            rel = directory.relative_to(root)
        except ValueError:
            return
        dirs = [root] + [root.joinpath(*rel.parts[: i + 1]) for i in range(len(rel.parts))]
        for d in dirs:
            path = d / CONFTEST
            if path.is_file() and path not in self._conftests:
                self._conftests[path] = self._import_conftest(path)

    def _import_conftest(self, path: Path) -> ModuleType:
        name = f"sweepconf_{abs(hash(str(path))):x}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a real file always loads
            raise UsageError(f"{path}: cannot load")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise UsageError(f"{path}: error while loading: {type(exc).__name__}: {exc}") from exc
        self.register(mod, str(path))
        self.check_pending()
        return mod

    def check_pending(self) -> None:
        """Fail on a hook implementation that matches no spec (a misspelled hook)."""

        known = [n for n in dir(hookspec) if n.startswith("sweeprun_")]
        for name in dir(self.hook):
            caller = getattr(self.hook, name)
            if name.startswith("_") or caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                where = getattr(impl.plugin, "__file__", None) or impl.plugin_name
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(f"{where}: unknown hook {name!r}{hint}")

    def plugin_names(self) -> list[str]:
        """Names of registered plugins that are not built in (for the header)."""
        names = []
        for name, plugin in self.list_name_plugin():
            if name in BUILTIN_PLUGINS or plugin is None or name in INTERNAL_OBJECTS:
                continue
            names.append(Path(name).name if name.endswith(".py") else name)
        return names
