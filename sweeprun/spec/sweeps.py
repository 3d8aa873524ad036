"""The ``sweeps:`` section of a spec: named sweeps, their blocks and options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeprun.spec.expect import parse_expectation
from sweeprun.spec.names import is_ref_safe
from sweeprun.spec.reader import Loader
from sweeprun.spec.wandb import is_wandb, translate
from sweeprun.spec.yamlio import LocatedDict, LocatedList, Mark

#: Keys of a sweep mapping besides its blocks; block types come from the expander plugins.
SWEEP_META_KEYS = ("blocks", "name", "expect")
#: Blocks whose value is a list rather than a mapping.
LIST_BLOCKS = ("values",)


@dataclass
class Sweep:
    """A named sweep: its blocks (raw, located mappings) and options."""

    name: str
    #: Groups of blocks: the points of a group are the product of its blocks' points, and
    #: the sweep's points are its groups' points concatenated. Each block is
    #: (block type, block value, position).
    groups: list[list[tuple[str, Any, Mark]]]
    name_template: str | None = None
    expect: dict[str, str] = field(default_factory=dict)
    raw: Any = field(default_factory=LocatedDict)
    mark: Mark = (0, 0)


def load_sweep(ld: Loader, name: str, sd: Any, mark: Mark, block_types: tuple[str, ...]) -> Sweep:
    """Validate one named sweep mapping and return it as a :class:`Sweep`."""

    if not is_ref_safe(name) or "[" in name or "]" in name or "," in name:
        raise ld.err(
            mark,
            f"sweep name {name!r} is not usable in ids and refs (letters, digits, '-', '_', '.')",
        )
    kinds = ", ".join(block_types)
    if is_wandb(sd):  # a W&B sweep config, as it is: the block that does the same
        sd = translate(ld, name, sd)

    def group(d: Any, gmark: Mark, meta: bool) -> list[tuple[str, Any, Mark]]:
        if not isinstance(d, LocatedDict):
            raise ld.err(gmark, f"a block of sweep {name!r} must be a mapping with one of: {kinds}")
        ld.check_keys(
            d, (*block_types, *SWEEP_META_KEYS) if meta else block_types, f"sweep {name!r}"
        )
        blocks = [(k, v, d.value_marks[k]) for k, v in d.items() if k in block_types]
        if not blocks and not (meta and "blocks" in d):
            raise ld.err(gmark, f"sweep {name!r} has no block (one of: {kinds})")
        for kind, value, bmark in blocks:
            want_list = kind in LIST_BLOCKS
            if want_list != isinstance(value, LocatedList):
                raise ld.err(
                    bmark,
                    f"'{kind}' of sweep {name!r} must be a {'list' if want_list else 'mapping'}",
                )
        return blocks

    groups: list[list[tuple[str, Any, Mark]]] = []
    template = None
    expect: dict[str, str] = {}
    if isinstance(sd, LocatedList):
        groups = [group(item, m, meta=False) for item, m in zip(sd, sd.marks, strict=True)]
        if not groups:
            raise ld.err(mark, f"sweep {name!r} is an empty list of blocks")
    elif isinstance(sd, LocatedDict):
        direct = group(sd, mark, meta=True)
        if "blocks" in sd:
            if direct:
                raise ld.err(
                    sd.key_marks["blocks"],
                    f"sweep {name!r}: use either 'blocks:' or blocks directly, not both",
                )
            items = sd["blocks"]
            if not isinstance(items, LocatedList) or not items:
                raise ld.err(sd.value_marks["blocks"], "'blocks' must be a non-empty list")
            groups = [group(i, m, meta=False) for i, m in zip(items, items.marks, strict=True)]
        else:
            groups = [direct]
        template = ld.string(sd, "name")
        raw_expect = sd.get("expect")
        if raw_expect is not None:
            if not isinstance(raw_expect, LocatedDict) or not raw_expect:
                raise ld.err(
                    sd.value_marks["expect"],
                    "'expect' must map metric names to conditions like '>= 0.8'",
                )
            for metric, cond in raw_expect.items():
                try:
                    parse_expectation(str(metric), cond)
                except ValueError as exc:
                    raise ld.err(raw_expect.value_marks[metric], str(exc)) from None
                expect[str(metric)] = str(cond)
    else:
        raise ld.err(mark, f"sweep {name!r} must be a mapping or a list of blocks")
    return Sweep(name=name, groups=groups, name_template=template, expect=expect, raw=sd, mark=mark)


def locate(value: Any, keypath: tuple[str | int, ...], fallback: Mark) -> Mark:
    """The source position of ``keypath`` inside located ``value`` (best effort)."""
    mark = fallback
    cur = value
    for part in keypath:
        if isinstance(cur, LocatedDict) and part in cur:
            mark = cur.key_marks[part]
            cur = cur[part]
        elif isinstance(cur, LocatedList) and isinstance(part, int) and part < len(cur):
            mark = cur.marks[part]
            cur = cur[part]
        else:
            break
    return mark


# -- plugin -------------------------------------------------------------------------------
