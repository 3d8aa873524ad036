"""A sweep's points from its blocks: counted before anything is built (``--max-points``),
then expanded by the sweeper plugins (``sweeprun_count_block``, ``sweeprun_expand_block``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sweeprun.exceptions import SweepValueError, UsageError
from sweeprun.spec import yamlio
from sweeprun.spec.collect import find_key_mark
from sweeprun.spec.sweeps import Sweep, locate
from sweeprun.sweepers.grid import product

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun.spec.loader import Spec
    from sweeprun.spec.params import ParamsSet


def check_size(config: Config, spec: Spec, sweep: Sweep, times: int) -> None:
    """Refuse a sweep with more points than ``--max-points``, counted before it is
    expanded (sizes multiply; nothing is built), so that it fails in well under a second."""
    limit = int(config.getoption("max_points"))
    total = 0
    for group in sweep.groups:
        size = 1
        for kind, block, _ in group:
            n = config.hook.sweeprun_count_block(kind=kind, block=block)
            if n is None:
                return  # a plugin's kind: it bounds itself
            size *= n
        total += size
    total *= times
    if total > limit:
        raise spec.error(
            sweep.mark,
            f"sweep {sweep.name!r} has {total:,} points, more than --max-points "
            f"{limit:,} (narrow it, or raise the limit with --max-points N)",
        )


def expand(config: Config, spec: Spec, sweep: Sweep, params: ParamsSet) -> list[dict[str, Any]]:
    """The points of ``sweep``: each group's blocks expanded by their plugins
    (``sweeprun_expand_block``) and multiplied, keys qualified and checked against the
    params files (a located error for a key they do not have)."""
    points: list[dict[str, Any]] = []
    for group in sweep.groups:
        group_points: list[dict[str, Any]] = []
        for kind, block, mark in group:
            group_points = product(
                group_points, expand_block(config, spec, sweep, kind, block, mark)
            )
        points.extend(group_points)
    if spec.hydra is not None:  # Hydra's overrides, as written: composing checks them
        return points
    qualify = qualifier(spec, sweep, params)
    return [{qualify(key): value for key, value in point.items()} for point in points]


def expand_block(
    config: Config, spec: Spec, sweep: Sweep, kind: str, block: Any, mark: Any
) -> list[dict[str, Any]]:
    """One block's points, by its plugin; a plugin's refusal located in the spec."""
    with located(spec, sweep, block, mark):
        got = config.hook.sweeprun_expand_block(
            kind=kind, block=block, sweep=sweep, spec=spec, config=config
        )
    if got is None:
        raise spec.error(mark, f"no plugin expands '{kind}' blocks")
    # Values as plain data: a list or mapping read from the spec still carries its source
    # positions (a subclass no YAML or JSON writer knows).
    return [{k: yamlio.plain(v) for k, v in p.items()} for p in got]


@contextlib.contextmanager
def located(spec: Spec, sweep: Sweep, block: Any, mark: Any) -> Iterator[None]:
    """A block's :class:`SweepValueError` as a spec error at the place in ``block`` it
    names (``mark``: where the block starts)."""
    try:
        yield
    except SweepValueError as exc:
        where = locate(block, exc.keypath, mark)
        raise spec.error(where, f"sweep {sweep.name!r}: {exc.message}") from None


def qualifier(spec: Spec, sweep: Sweep, params: ParamsSet) -> Callable[[str], str]:
    """A point key as written → its canonical form (``key`` or ``file:key``), each key
    checked against the params files once (a located error for one they do not have)."""
    checked: dict[str, str] = {}

    def qualify(key: str) -> str:
        q = checked.get(key)
        if q is None:
            try:
                pf, inner = params.resolve(key)
                pf.check_key(inner, "", add_hint=False)
            except UsageError as exc:
                where = find_key_mark(sweep.raw, key) or sweep.mark
                detail = str(exc).lstrip(": ")
                raise spec.error(where, f"sweep {sweep.name!r}: {detail}") from None
            q = checked[key] = params.qualify(key)
        return q

    return qualify
