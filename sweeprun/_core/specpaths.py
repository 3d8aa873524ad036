"""SPEC arguments resolved to spec files: files, ``FILE::SWEEP`` selectors, directories.

A directory collects every ``sweeps.yaml``/``*.sweeps.yaml`` below it; one that has none
but holds ``dvc.yaml`` files is a DVC project, collected as DVC does (every ``dvc.yaml``
below it, one pipeline). DVC's spellings are accepted: ``-R DIR`` (``--recursive``: a
directory is always searched) and ``--all-pipelines`` (every ``dvc.yaml`` of the
repository).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweeprun.exceptions import UsageError
from sweeprun.spec.dvcproject import find_pipelines
from sweeprun.spec.loader import SPEC_NAMES, Spec, default_spec

if TYPE_CHECKING:
    from sweeprun._core.config import Config

SPEC_GLOBS = ("*.sweeps.yaml", "*.sweeps.yml")


def spec_paths(config: Config) -> list[tuple[Path, str | None]]:
    """(spec file or DVC project directory, sweep/experiment selector) of each SPEC.

    ``sweeps.yaml::grid`` and ``sweeps.yaml::grid[a=1]`` select one sweep or one
    experiment, as pytest node ids do.
    """
    args: list[str] = config.getoption("specs") or []
    base = config.invocation_dir
    root = config.repo.root
    if config.getoption("all_pipelines"):
        if args:
            raise UsageError("--all-pipelines: give it without SPEC (it means every dvc.yaml)")
        if not find_pipelines(root, root):
            raise UsageError(f"--all-pipelines: no dvc.yaml in the repository {root}")
        return [(root, None)]
    if not args:
        default = default_spec(base)
        if default is None:
            raise UsageError(
                f"no sweeps.yaml or dvc.yaml in {base} (pass a spec file or directory as "
                "SPEC, or write one with 'sweeprun init')"
            )
        return [(default, None)]
    paths: list[tuple[Path, str | None]] = []
    for arg in args:
        file_part, sep, selector = arg.partition("::")
        p = (base / file_part).resolve()
        if sep and not p.is_file():
            raise UsageError(f"{arg}: {file_part!r} is not a spec file")
        if p.is_dir():
            paths.extend((f, None) for f in _below(root, p, arg))
        elif p.is_file():
            paths.append((p, selector if sep else None))
        else:
            raise UsageError(f"{arg}: no such spec file or directory")
    for p, _ in paths:
        try:
            p.relative_to(root)
        except ValueError:
            raise UsageError(f"{p}: outside the repository {root}") from None
    return list(dict.fromkeys(paths))


def _below(root: Path, directory: Path, arg: str) -> list[Path]:
    """The specs a directory collects (itself, when it is a DVC project without any)."""
    found = [
        f
        for f in sorted(directory.rglob("*"))
        if f.is_file()
        and ".git" not in f.relative_to(directory).parts
        and (f.name in SPEC_NAMES or any(f.match(g) for g in SPEC_GLOBS))
    ]
    if not found and find_pipelines(root, directory):
        found = [directory]  # a DVC project as it is: every dvc.yaml below it
    if not found:
        raise UsageError(f"{arg}: no sweeps.yaml, *.sweeps.yaml or dvc.yaml below it")
    return found


def set_origin(spec: Spec, adhoc: bool) -> str:
    """Where -S points of ``spec`` came from, for the "collected" line."""
    if not adhoc:
        return f"-S inside the selected sweeps of {spec.path}"
    if not spec.sweeps:
        return f"-S against the params of {spec.path}"
    return (
        f"-S against the base params of {spec.path}, not inside its sweeps; to set it "
        f"inside one: {spec.path}::{spec.sweeps[0].name} -S …"
    )
