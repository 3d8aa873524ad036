"""The pipeline as a graph: stage order, target selection, what each stage produces.

Pure functions of the stages (no files, no processes): the loader checks the DAG with
them, and the runner orders and selects stages with them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sweeprun.model import Stage

#: The lock file every result commit carries (what each stage ran with and produced).
LOCK_FILE = "sweeprun.lock"


class PipelineError(ValueError):
    """An invalid DAG: ``stage`` names the stage to point the error at."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(message)


def inside(path: str, parent: str) -> bool:
    """Whether ``path`` is ``parent`` or below it (POSIX paths, relative to the root)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def order_stages(stages: Sequence[Stage]) -> list[Stage]:
    """Stages in dependency order (declaration order among independent ones)."""
    producers: dict[str, str] = {}
    for s in stages:
        for o in s.outs:
            for other_path, other in producers.items():
                if o.path == other_path:
                    raise PipelineError(
                        s.name, f"stages {other!r} and {s.name!r} both write {o.path!r}"
                    )
                if inside(o.path, other_path) or inside(other_path, o.path):
                    raise PipelineError(
                        s.name,
                        f"out {o.path!r} of stage {s.name!r} overlaps "
                        f"out {other_path!r} of stage {other!r}",
                    )
            producers[o.path] = s.name
    upstream: dict[str, list[str]] = {s.name: [] for s in stages}
    for s in stages:
        for dep in s.deps:
            for out, producer in producers.items():
                if (inside(dep, out) or inside(out, dep)) and producer != s.name:
                    upstream[s.name].append(producer)
                elif producer == s.name and inside(dep, out):
                    raise PipelineError(s.name, f"stage {s.name!r} depends on its own out {out!r}")
    by_name = {s.name: s for s in stages}
    done: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise PipelineError(name, f"the pipeline has a cycle: {cycle}")
        state[name] = 1
        for up in upstream[name]:
            visit(up, [*path, name])
        state[name] = 2
        done.append(name)

    for s in stages:
        visit(s.name, [])
    return [by_name[n] for n in done]


def select(stages: Sequence[Stage], targets: Sequence[str], single: bool) -> list[Stage]:
    """The targets and (unless ``single``) everything upstream of them, in order."""
    names = {s.name for s in stages}
    for t in targets:
        if t not in names:
            raise PipelineError(t, f"no stage named {t!r} (stages: {', '.join(sorted(names))})")
    if not targets:
        return list(stages)
    if single:
        return [s for s in stages if s.name in targets]
    outs = {o.path: s.name for s in stages for o in s.outs}
    wanted = set(targets)
    for s in reversed(stages):  # stages are ordered: walk upstream once
        if s.name in wanted:
            for dep in s.deps:
                wanted.update(p for o, p in outs.items() if inside(dep, o) or inside(o, dep))
    return [s for s in stages if s.name in wanted]


def committed_results(stages: Sequence[Stage]) -> list[str]:
    """What every result commit keeps, even where git ignores it: metrics, plots, outs
    with ``cache: false`` and the lock file. (Cached outs go to the cache instead; a
    result inside a cached out is kept there.)"""
    cached = [o.path for s in stages for o in s.outs if o.cache]
    paths = {
        p
        for s in stages
        for p in (*s.metrics, *s.plots, *(o.path for o in s.outs if not o.cache))
        if not any(inside(p, c) for c in cached)
    }
    return sorted(paths | {LOCK_FILE})


def outputs(stage: Stage) -> list[str]:
    """Every path a stage produces: cached outs, metrics and plots."""
    return [o.path for o in stage.outs] + list(stage.metrics) + list(stage.plots)
