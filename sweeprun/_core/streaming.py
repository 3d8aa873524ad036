"""``--collect-only`` of sweeps too big to hold: each point made as it is printed.

Collection proper builds an :class:`~sweeprun.spec.collect.Experiment` per point (params
merged, stages interpolated, name rendered): some 30 µs and several KB a point, half a
minute and gigabytes at 10⁶. Listing needs none of that. A sweep's points are the product
of its blocks' parts (each key of a ``matrix:`` block is an axis of its own), and a
point's id joins its parts' ``key=value`` texts (:func:`sweeprun.spec.names.make_id`), so
each part is qualified, checked and formatted once, and points are made as they are
printed: 10⁶ in seconds, 10⁷ in constant memory.

It is used when nothing needs every experiment at once — no ``-k``, ``--deselect``,
``--lf``/``--ff``, ``-n``, ``-S``, ``--shard``, ``--json`` or ``--ci-matrix``, no
``SPEC::ID``, no plugin of one's own that expands blocks, names, reorders or reads the
collected items, and only sweeps without a ``name:`` template, a Hydra app or
``optimize:`` — and then it prints what collection would (``tests/test_streaming.py``
compares the two on many specs). Otherwise collection runs as usual.

The checks collection makes on every point are made on every part: its keys against the
params files, its values (``check_overlap``), and the stages interpolated with it in the
context of the other axes' first parts (a value no argument can carry, a ``${key}`` its
structure lacks).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from sweeprun._core import expansion
from sweeprun.spec import yamlio
from sweeprun.spec.collect import Experiment, check_overlap, interpolate_stages, params_of
from sweeprun.spec.names import id_text
from sweeprun.sweepers.grid import MATRIX_RESERVED, matrix_axes

if TYPE_CHECKING:
    from sweeprun._core.session import Session
    from sweeprun.spec.loader import Spec
    from sweeprun.spec.params import ParamsSet
    from sweeprun.spec.sweeps import Sweep

#: Options that select, rename or reorder experiments: collection runs as usual.
SELECTING = ("keyword", "deselect", "lf", "ff", "name", "set_params", "shard", "json", "ci_matrix")
#: Hooks whose implementations of one's own see or make the experiments themselves.
ITEM_HOOKS = (
    "sweeprun_expand_block",
    "sweeprun_count_block",
    "sweeprun_make_name",
    "sweeprun_collection_modifyitems",
    "sweeprun_collection_finish",
)
#: Block kinds of the built-in expander (``sweepers/grid.py``).
KINDS = ("matrix", "zip", "values", "random")


class Part(NamedTuple):
    """One axis value: its keys and values, and their text in an id and in the listing."""

    point: dict[str, Any]
    id_text: str  # ``k=v,k2=v2`` as make_id writes it; "" for an empty point
    shown: str  # ``k=v!r, …`` as ``--collect-only`` prints params


class Listed:
    """One point of a streamed sweep: what ``--collect-only`` prints of an experiment."""

    __slots__ = ("id", "parts", "spec", "sweep")
    name = None  # no name: template (such sweeps are not streamed)

    def __init__(self, spec: Spec, sweep: str, id: str, parts: tuple[Part, ...]) -> None:
        self.spec = spec
        self.sweep = sweep
        self.id = id
        self.parts = parts

    @property
    def point(self) -> dict[str, Any]:
        """The point's keys and values, as collection would have them."""
        merged: dict[str, Any] = {}
        for part in self.parts:
            merged.update(part.point)
        return merged

    @property
    def params_text(self) -> str:
        return ", ".join(p.shown for p in self.parts if p.shown)


class StreamedSweep:
    """A sweep's points as groups of axes (their product, group after group)."""

    def __init__(self, spec: Spec, sweep: str, groups: list[list[list[Part]]]) -> None:
        self.spec = spec
        self.sweep = sweep
        self.groups = groups

    def __len__(self) -> int:
        return sum(math.prod(len(axis) for axis in axes) for axes in self.groups)

    def __iter__(self) -> Iterator[Listed]:
        spec, sweep, prefix = self.spec, self.sweep, self.sweep + "["
        for axes in self.groups:
            for parts in itertools.product(*axes):
                texts = [p.id_text for p in parts if p.id_text]
                yield Listed(spec, sweep, prefix + ",".join(texts) + "]" if texts else sweep, parts)


class Listing:
    """Every streamed sweep, in collection order."""

    def __init__(self, sweeps: list[StreamedSweep]) -> None:
        self.sweeps = sweeps

    def __len__(self) -> int:
        return sum(len(s) for s in self.sweeps)

    def __iter__(self) -> Iterator[Listed]:
        for sweep in self.sweeps:
            yield from sweep


def collect(session: Session) -> Listing | None:
    """The collection as a stream, or ``None`` when it must be collected as usual."""
    config = session.config
    if any(config.getoption(o) for o in SELECTING):
        return None
    paths = session.spec_paths()
    if len({p for p, _ in paths}) != len(paths):  # the same spec twice: deduplicated
        return None
    streamed: list[StreamedSweep] = []
    specs: list[Spec] = []
    for path, selector in paths:
        config.pluginmanager.load_conftests(config.repo.root, path.parent)
        spec = session.load_spec(path)
        specs.append(spec)
        if not all(_built_in(config.hook, name) for name in ITEM_HOOKS):
            return None
        sweeps = [s for s in spec.sweeps if selector in (None, s.name)]
        if not sweeps:  # no sweeps, or SPEC::ID (or an unknown name: said as usual)
            return None
        params = params_of(spec)
        for sweep in sweeps:
            got = stream_sweep(session, spec, sweep, params)
            if got is None:
                return None
            streamed.append(got)
    session.specs += specs
    return Listing(streamed)


def stream_sweep(
    session: Session, spec: Spec, sweep: Sweep, params: ParamsSet
) -> StreamedSweep | None:
    """``sweep`` as axes of parts, every part checked; ``None`` if it cannot stream."""
    blocks = [b for group in sweep.groups for b in group]
    if sweep.name_template or spec.hydra is not None or not blocks:
        return None
    if any(kind not in KINDS for kind, _, _ in blocks):
        return None
    config = session.config
    expansion.check_size(config, spec, sweep, 1)
    qualify = expansion.qualifier(spec, sweep, params)
    groups: list[list[list[Part]]] = []
    for group in sweep.groups:
        axes: list[list[Part]] = []
        for kind, block, mark in group:
            if kind == "matrix" and isinstance(block, Mapping):
                if any(word in block for word in MATRIX_RESERVED):
                    return None  # include/exclude/zip: its points are not a plain product
                with expansion.located(spec, sweep, block, mark):
                    found = matrix_axes(block)
                axes += [[_part({key: yamlio.plain(v)}, qualify) for v in vs] for key, vs in found]
            else:
                points = expansion.expand_block(config, spec, sweep, kind, block, mark)
                axes.append([_part(p, qualify) for p in points])
        axes = [axis for axis in axes if axis]  # an empty block multiplies by nothing
        if axes:
            if not _independent(axes):
                return None
            groups.append(axes)
    _check(session, spec, sweep, params, groups)
    return StreamedSweep(spec, sweep.name, groups)


def _part(point: Mapping[str, Any], qualify: Callable[[str], str]) -> Part:
    got = {qualify(k): v for k, v in point.items()}
    return Part(got, id_text(got), ", ".join(f"{k}={v!r}" for k, v in got.items()))


def _independent(axes: list[list[Part]]) -> bool:
    """Whether the axes' points are all different and their keys apart (no key of one
    axis is, or lies inside, a key of another), so that the product of their parts is what
    merging points gives, with ids that collection would not deduplicate."""
    keys: list[str] = []
    for axis in axes:
        if len({p.id_text for p in axis}) != len(axis):
            return False
        mine = {k for p in axis for k in p.point}
        for k in mine:
            if any(k == o or k.startswith(o + ".") or o.startswith(k + ".") for o in keys):
                return False
        keys += mine
    return True


def _check(
    session: Session, spec: Spec, sweep: Sweep, params: ParamsSet, groups: list[list[list[Part]]]
) -> None:
    """What collection checks on each point, on each part: its values, and the stages
    interpolated with it beside the other axes' first parts."""
    check_overlap(spec, sweep, [p.point for axes in groups for axis in axes for p in axis], set())
    for axes in groups:
        first = [axis[0] for axis in axes]
        for i, axis in enumerate(axes):
            for part in axis:
                point: dict[str, Any] = {}
                for p in [*first[:i], part, *first[i + 1 :]]:
                    point.update(p.point)
                exp = Experiment(
                    id="", sweep=sweep.name, spec=spec, params=params, point=point,
                    stages=[], name_mark=None, expect=sweep.expect,
                )  # fmt: skip
                interpolate_stages(spec, exp)


def _built_in(hook: Any, name: str) -> bool:
    """Whether every implementation of hook ``name`` is sweeprun's own."""
    for impl in getattr(hook, name).get_hookimpls():
        plugin = impl.plugin
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        if not module.startswith("sweeprun."):
            return False
    return True
