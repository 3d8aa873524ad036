"""``sweeprun init``: a starter ``sweeps.yaml`` from what the project already has.

It looks for, in order: a ``dvc.yaml`` (the pipeline is used as it is: ``pipeline:``), a
Hydra config directory (``conf/``, ``config/`` or ``configs/`` with a primary config that
has ``defaults:``; the script with ``@hydra.main`` is the command), a params file
(``params.yaml``/``.json``/``.toml``, else a lone ``config.yaml`` or ``conf/config.yaml``)
and a training script (else a Makefile's ``train`` target). It sweeps what looks like a
model's knob (``lr``, ``max_depth``, a ``model`` config group), never a seed, path,
backend or logging key. Every guess is written with a
comment saying what it was guessed from, and the sweep it proposes is small (two or three
values around the current ones), so ``sweeprun --collect-only`` shows it at once. The
result is loaded before it is written: ``init`` never leaves a spec that does not load.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sweeprun.exceptions import SpecError, UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.spec import names
from sweeprun.spec.dvcproject import find_pipelines, load_project
from sweeprun.spec.params import ParamsFile, flatten

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry

PARAMS_FILES = ("params.yaml", "params.yml", "params.json", "params.toml")
SCRIPTS = ("train.py", "main.py", "run.py", "src/train.py", "src/main.py")
METRICS = ("metrics.json", "metrics.yaml", "scores.json", "eval/metrics.json")
CONF_DIRS = ("conf", "config", "configs")
#: A lone config file used as the params file when there is no params.yaml.
CONFIG_FILES = ("config.yaml", "config.yml", *(f"{d}/config.yaml" for d in CONF_DIRS))
#: Words of a key (split at ``.``/``_``/``-``) that mark a knob a sweep is made of...
KNOBS = frozenset(
    [
        "lr",
        "learning_rate",
        "rate",
        "alpha",
        "beta",
        "gamma",
        "c",
        "lambda",
        "l1",
        "l2",
        "reg",
        "penalty",
        "degree",
        "depth",
        "max_depth",
        "estimators",
        "n_estimators",
        "dropout",
        "hidden",
        "layers",
        "units",
        "width",
        "epochs",
        "batch",
        "batch_size",
        "momentum",
        "decay",
        "weight_decay",
        "temperature",
        "k",
        "neighbors",
        "leaves",
        "min_samples",
        "split",
        "ratio",
        "size",
        "features",
        "components",
        "kernel",
    ]
)
#: ...and the words that mark machinery, never swept by a guess.
NOT_KNOBS = frozenset(
    [
        "seed",
        "random_state",
        "port",
        "host",
        "path",
        "dir",
        "file",
        "files",
        "root",
        "url",
        "uri",
        "backend",
        "storage",
        "device",
        "gpu",
        "gpus",
        "cuda",
        "workers",
        "num_workers",
        "jobs",
        "n_jobs",
        "threads",
        "verbose",
        "verbosity",
        "log",
        "logs",
        "logging",
        "logger",
        "debug",
        "version",
        "id",
        "timeout",
        "interval",
        "every",
        "save",
        "checkpoint",
        "print",
        "cache",
        "db",
        "database",
        "server",
    ]
)
_WORD = re.compile(r"[._\-]")
_CHOICES = frozenset({"model", "models", "estimator", "optimizer", "optim", "arch", "net"})
_TARGET = re.compile(r"^([A-Za-z0-9_.\-]+)\s*:(?!=)", re.M)
_CHORES = frozenset(
    [
        "clean",
        "install",
        "lint",
        "test",
        "tests",
        "help",
        "format",
        "setup",
        "requirements",
        "deps",
        "docs",
        "check",
    ]
)
#: Config groups that are machinery, not a choice of model (``hydra/…``, storage…).
_NOT_GROUPS = NOT_KNOBS | {"hydra", "callbacks", "launcher", "sweeper", "env", "paths", "output"}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace an existing sweeps.yaml")


def _around(value: Any) -> list[Any] | None:
    """Two or three values around a number (``None`` for anything else)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return [value, value * 2] if value else [0, 1]
    return [round(value / 2, 12), value, round(value * 2, 12)] if value else [0.0, 0.1]


def hyperparameters(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """Numeric keys that look like knobs of a model, the best-known names first; never a
    seed, path, port, backend, logging or other machinery key."""
    found = []
    for key, value in flatten(params).items():
        words = _words(key)
        if _around(value) is None or words & NOT_KNOBS:
            continue
        found.append((not words & KNOBS, key, value))
    return [(k, v) for _, k, v in sorted(found, key=lambda t: t[0])]


def _words(key: str) -> set[str]:
    """A key's words: each dotted part, and each part split at ``_``/``-`` too."""
    key = key.lower()
    return set(key.split(".")) | set(_WORD.split(key))


def choice_group(groups: list[str]) -> str | None:
    """The config group that is a choice of model (``model``, ``optimizer``…), never
    machinery (``hydra``, ``metrics_storage``, ``logger``…)."""
    usable = [g for g in groups if not _words(g) & _NOT_GROUPS]
    return min(usable, key=lambda g: (not _words(g) & _CHOICES, g), default=None)


def make_target(root: Path) -> str | None:
    """The Makefile target that trains (``train``, else the first that is no chore)."""
    path = root / "Makefile"
    if not path.is_file():
        return None
    targets = [
        m.group(1)
        for m in _TARGET.finditer(path.read_text(errors="replace"))
        if not m.group(1).startswith(".")
    ]
    for name in ("train", "experiment", "run", "all"):
        if name in targets:
            return name
    return next((t for t in targets if t not in _CHORES), None)


def _sweep_lines(params: dict[str, Any], source: str) -> list[str]:
    numbers = hyperparameters(params)[:2]
    if not numbers:
        return [
            f"# no numeric param in {source} to sweep: add a sweep under 'sweeps:'",
            "sweeps: {}",
        ]
    lines = [
        "sweeps:",
        f"  grid:  # guessed: numeric params of {source} that look like knobs, around their values",
        "    matrix:",
    ]
    for key, value in numbers:
        values = ", ".join(names.format_value(v) for v in _around(value) or [])
        lines.append(f"      {key}: [{values}]")
    return lines


def _hydra(root: Path) -> tuple[str, list[str]] | None:
    """(primary config, its groups) of a Hydra config directory, if there is one."""
    for d in CONF_DIRS:
        for primary in sorted((root / d).glob("*.yaml")) if (root / d).is_dir() else []:
            try:
                data = yaml.safe_load(primary.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and "defaults" in data:
                groups = sorted(p.name for p in (root / d).iterdir() if p.is_dir())
                return primary.relative_to(root).as_posix(), groups
    return None


def _hydra_script(root: Path) -> str | None:
    for path in sorted(root.rglob("*.py")):
        if ".git" in path.parts or "site-packages" in path.parts:
            continue
        try:
            if "@hydra.main" in path.read_text(errors="replace"):
                return path.relative_to(root).as_posix()
        except OSError:
            continue
    return None


def starter(root: Path) -> tuple[str, str]:
    """(text of a starter ``sweeps.yaml`` for the project at ``root``, what it is based on)."""
    metrics = next((m for m in METRICS if (root / m).is_file()), None)
    script = next((s for s in SCRIPTS if (root / s).is_file()), None)
    if (root / "dvc.yaml").is_file():
        nested = len(find_pipelines(root, root)) > 1
        if nested:  # every dvc.yaml below the root, as `dvc exp run` takes them
            files = load_project(root, root, {}).params_files
            pf = files[0] if files else None
        else:
            pf = next((p for p in PARAMS_FILES if (root / p).is_file()), None)
        data = ParamsFile.load(root, pf).data if pf else {}
        lines = [
            "# Sweeps over the DVC pipeline as it is (sweeprun reads dvc.yaml itself).",
            "pipeline: .  # guessed: every dvc.yaml below the root, as DVC runs them"
            if nested
            else "pipeline: dvc.yaml  # guessed: dvc.yaml is here",
            *_sweep_lines(data, pf or "params.yaml"),
        ]
        return "\n".join(lines) + "\n", "dvc.yaml"
    hydra = _hydra(root)
    if hydra is not None:
        config, groups = hydra
        app = _hydra_script(root) or script or "train.py"
        lines = [
            "# A Hydra app: each experiment's overrides are passed to it as Hydra overrides.",
            f"params: {{hydra: {config}}}  # guessed: {config} has a defaults list",
            f"cmd: python3 {app}  # guessed: "
            + ("it has @hydra.main" if _hydra_script(root) else "edit me"),
        ]
        if (root / app).is_file():
            lines.append(f"deps: [{app}]")
        lines.append(
            f"metrics: [{metrics or 'metrics.json'}]  # the file your app writes its scores to"
        )
        group = choice_group(groups)
        options = (
            sorted(p.stem for p in (root / Path(config).parent / group).glob("*.yaml"))
            if group
            else []
        )
        if group and len(options) > 1:
            lines += [
                "sweeps:",
                f"  {group}:  # guessed: the config group {group!r} and its options",
                "    matrix:",
                f"      {group}: [{', '.join(options)}]",
            ]
        return "\n".join(lines) + "\n", f"Hydra config {config}"
    pf = next((p for p in (*PARAMS_FILES, *CONFIG_FILES) if (root / p).is_file()), None)
    lines = ["# A one-stage project: one command, its params file and its metrics."]
    if pf:
        lines.append(f"params: {pf}  # guessed: {pf} is here")
    target = None if script else make_target(root)
    if target:
        lines.append(f"cmd: make {target}  # guessed: the Makefile's {target!r} target")
        lines.append("deps: [Makefile]")
    else:
        cmd = f"python3 {script}" if script else "python3 train.py"
        lines.append(f"cmd: {cmd}  # guessed: " + (f"{script} is here" if script else "edit me"))
    if script:
        lines.append(f"deps: [{script}]")
    lines.append(
        f"metrics: [{metrics or 'metrics.json'}]  # the file your command writes scores to"
    )
    lines += _sweep_lines(ParamsFile.load(root, pf).data if pf else {}, pf or "the params file")
    return "\n".join(lines) + "\n", pf or "nothing (a template)"


def _run(config: Config) -> int:
    root = config.invocation_dir
    target = root / "sweeps.yaml"
    if target.exists() and not config.getoption("force"):
        raise UsageError(f"{target}: exists already (--force replaces it)")
    text, basis = starter(root)
    existed = target.read_bytes() if target.exists() else None
    target.write_text(text)
    try:
        config.hook.sweeprun_load_spec(path=target, config=config)
    except (SpecError, UsageError) as exc:
        # Nothing half-done: the file as it was (or no file).
        if existed is None:
            target.unlink()
        else:
            target.write_bytes(existed)
        raise UsageError(
            f"init: the starter spec would not load ({exc}); nothing written"
        ) from None
    config.stdout.write(f"wrote {target.name} from {basis}:\n\n{text}\n")
    config.stdout.write("next: sweeprun --collect-only   (then: sweeprun --run -j 2)\n")
    return 0


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun init``."""
    commands.add(
        "init",
        "write a starter sweeps.yaml from dvc.yaml, params or a Hydra config",
        _add_arguments,
        _run,
        examples=(
            "sweeprun init",
            "sweeprun init --force                  # replace an existing sweeps.yaml",
        ),
    )
