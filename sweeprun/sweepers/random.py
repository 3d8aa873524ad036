"""``random:`` blocks: seeded random search that gives the same points everywhere.

Only ``random.Random(seed).random()`` is used — the Mersenne Twister's 53-bit floats, which
are identical on every platform and Python version — and every distribution is derived from
it here, because ``randrange``/``choice``/``gauss`` have changed between Python versions.
Continuous samples are rounded to 6 significant digits so ids and names stay readable.
Discrete spaces (only ``choice``/``randint``/lists) are sampled without replacement.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sweeprun.exceptions import SweepValueError
from sweeprun.spec.overrides import parse_value, split_top

Point = dict[str, Any]
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "normal")
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)
RANDOM_KEYS = ("n", "seed", "space")


def _sig(x: float) -> float:
    return float(f"{x:.6g}")


class Dimension:
    """One axis of a search space: draws a value from a uniform number in [0, 1)."""

    def __init__(self, key: str, kind: str, args: list[Any]) -> None:
        self.key, self.kind, self.args = key, kind, args

    @property
    def discrete(self) -> bool:
        return self.kind in ("choice", "randint")

    @property
    def size(self) -> int:
        if self.kind == "choice":
            return len(self.args)
        return int(self.args[1]) - int(self.args[0]) + 1

    def value_at(self, i: int) -> Any:
        """The i-th value of a discrete dimension."""
        return self.args[i] if self.kind == "choice" else int(self.args[0]) + i

    def draw(self, u: Callable[[], float]) -> Any:
        a = self.args
        if self.discrete:
            return self.value_at(min(int(u() * self.size), self.size - 1))
        if self.kind == "uniform":
            return _sig(a[0] + (a[1] - a[0]) * u())
        if self.kind == "loguniform":
            lo, hi = math.log(a[0]), math.log(a[1])
            return _sig(math.exp(lo + (hi - lo) * u()))
        # normal: Box-Muller on two uniforms (1 - u keeps log away from 0)
        r = math.sqrt(-2.0 * math.log(1.0 - u()))
        return _sig(a[0] + a[1] * r * math.cos(2 * math.pi * u()))


def parse_dimension(key: str, spec: Any) -> Dimension:
    """``loguniform(1e-4, 1e-1)`` / ``choice(32, 64)`` / a list (= choice) → a dimension."""
    where = ("space", key)
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if not spec:
            raise SweepValueError(f"space key {key!r}: an empty list", where)
        return Dimension(key, "choice", list(spec))
    if not isinstance(spec, str):
        raise SweepValueError(
            f"space key {key!r}: expected a list or one of "
            f"{', '.join(d + '(...)' for d in DISTRIBUTIONS)}",
            where,
        )
    m = _CALL.match(spec)
    if not m:
        if "(" in spec and ")" not in spec:
            # YAML's flow style ({a: choice(1,2)}) splits at the comma before we see it.
            raise SweepValueError(
                f"space key {key!r}: {spec!r} was cut at a comma; inside {{…}} quote the "
                f"whole call: '{spec}, …)'",
                where,
            )
        raise SweepValueError(
            f"space key {key!r}: cannot parse {spec!r} (e.g. uniform(0, 1))", where
        )
    kind = m.group(1)
    if kind not in DISTRIBUTIONS:
        raise SweepValueError(
            f"space key {key!r}: unknown distribution {kind!r} (valid: {', '.join(DISTRIBUTIONS)})",
            where,
        )
    try:
        args = [parse_value(a) for a in split_top(m.group(2))] if m.group(2).strip() else []
    except ValueError as exc:
        raise SweepValueError(f"space key {key!r}: {exc}", where) from None
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in args)
    if kind == "choice":
        if not args:
            raise SweepValueError(f"space key {key!r}: choice() needs values", where)
        return Dimension(key, kind, args)
    if len(args) != 2 or not numeric:
        raise SweepValueError(f"space key {key!r}: {kind}() takes two numbers", where)
    a, b = args
    if kind == "randint" and not (isinstance(a, int) and isinstance(b, int)):
        raise SweepValueError(f"space key {key!r}: randint() takes two integers", where)
    if (kind == "uniform" and not a < b) or (kind == "randint" and a > b):
        raise SweepValueError(f"space key {key!r}: {kind}({a}, {b}) needs low < high", where)
    if kind == "loguniform" and not 0 < a < b:
        raise SweepValueError(
            f"space key {key!r}: loguniform({a}, {b}) needs 0 < low < high", where
        )
    if kind == "normal" and b <= 0:
        raise SweepValueError(f"space key {key!r}: normal({a}, {b}) needs sigma > 0", where)
    return Dimension(key, kind, [float(a), float(b)] if kind != "randint" else [a, b])


def expand_random(block: Mapping[str, Any]) -> list[Point]:
    """Sample ``n`` points of ``space`` with ``seed`` (default 0)."""
    for key in block:
        if key not in RANDOM_KEYS:
            raise SweepValueError(
                f"unknown key {key!r} in 'random' (valid: {', '.join(RANDOM_KEYS)})", (key,)
            )
    n = block.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SweepValueError(
            "'random' needs 'n', a positive integer", ("n",) if "n" in block else ()
        )
    seed = block.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepValueError("'seed' must be an integer", ("seed",))
    space = block.get("space")
    if not isinstance(space, Mapping) or not space:
        raise SweepValueError(
            "'random' needs 'space', a mapping of param → distribution",
            ("space",) if "space" in block else (),
        )
    dims = [parse_dimension(str(k), v) for k, v in space.items()]
    rng = random.Random(seed)
    u = rng.random
    if all(d.discrete for d in dims):
        size = math.prod(d.size for d in dims)
        if n > size:
            raise SweepValueError(
                f"'n' is {n} but the discrete space has only {size} points", ("n",)
            )
        # Without replacement: a partial Fisher-Yates shuffle of the flat index space,
        # kept sparse so huge spaces cost O(n).
        swapped: dict[int, int] = {}
        indices = []
        for i in range(n):
            j = i + min(int(u() * (size - i)), size - i - 1)
            indices.append(swapped.get(j, j))
            swapped[j] = swapped.get(i, i)
        points = []
        for flat in indices:
            point: Point = {}
            for d in reversed(dims):
                flat, r = divmod(flat, d.size)
                point[d.key] = d.value_at(r)
            points.append({d.key: point[d.key] for d in dims})
        return points
    seen: set[str] = set()
    points = []
    attempts = 0
    while len(points) < n:
        attempts += 1
        if attempts > n * 100:
            raise SweepValueError(f"could not draw {n} distinct points from the space", ("n",))
        point = {d.key: d.draw(u) for d in dims}
        sig = repr(sorted(point.items()))
        if sig in seen:
            continue
        seen.add(sig)
        points.append(point)
    return points
