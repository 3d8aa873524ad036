"""Sweeps written for W&B, accepted as they are.

A ``sweeps:`` entry with ``method:`` and ``parameters:`` is a W&B sweep configuration; it
becomes the block that does the same here:

- ``method: grid``   → ``matrix:`` (every parameter must list ``values`` or one ``value``);
- ``method: random`` → ``random:`` with ``n: run_cap`` (W&B runs until stopped; here the
  count is said);
- ``method: bayes``  → ``optimize:`` with ``trials: run_cap``, the ``metric`` and its
  ``goal``, and ``early_terminate: {type: hyperband, min_iter: N}`` as
  ``prune: {pruner: hyperband, min_steps: N}``.

Parameters: ``values``, ``value``, ``min``/``max`` (integers: ``int_uniform``, else
``uniform``) and ``distribution`` among ``constant``, ``categorical``, ``int_uniform``,
``uniform``, ``log_uniform_values`` and ``log_uniform`` (whose bounds are exponents, as W&B
means them). Nested ``parameters:`` become dotted keys. Anything else — ``program``,
``command``, ``q_*`` and normal distributions, ``probabilities``, other ``early_terminate``
types — is a located one-line error naming what is supported.
"""

from __future__ import annotations

import math
from typing import Any

from sweeprun.spec.reader import Loader
from sweeprun.spec.yamlio import LocatedDict, Mark

#: Top-level keys of a W&B sweep configuration understood here (the last four are
#: W&B's bookkeeping, without effect here).
KEYS = (
    "method", "metric", "parameters", "early_terminate", "run_cap",
    "name", "description", "project", "entity",
)  # fmt: skip
DISTRIBUTIONS = (
    "constant", "categorical", "int_uniform", "uniform", "log_uniform_values", "log_uniform",
)  # fmt: skip


def is_wandb(sd: Any) -> bool:
    """Whether a sweep mapping is a W&B sweep configuration."""
    return isinstance(sd, LocatedDict) and "method" in sd and "parameters" in sd


def translate(ld: Loader, name: str, sd: LocatedDict) -> LocatedDict:
    """The sweep mapping with one block that does what ``sd`` asks W&B to do."""
    what = f"sweep {name!r} (a W&B sweep config)"
    for key in sd:
        if key not in KEYS:
            hint = " (the command is the spec's cmd:)" if key in ("program", "command") else ""
            raise ld.err(
                sd.key_marks[key], f"{what}: {key!r} is not supported{hint} (supported: "
                f"{', '.join(KEYS)})",
            )  # fmt: skip
    method = sd["method"]
    if method not in ("grid", "random", "bayes"):
        raise ld.err(sd.value_marks["method"], f"{what}: method must be grid, random or bayes")
    params = _parameters(ld, what, sd["parameters"], sd.value_marks["parameters"], "")
    out = LocatedDict()
    out.mark = sd.mark
    if method == "grid":
        block: dict[str, Any] = {}
        for key, (spec, mark) in params.items():
            if not isinstance(spec, list):
                raise ld.err(mark, f"{what}: method grid needs 'values' for {key!r}")
            block[key] = spec
        kind = "matrix"
    else:
        cap = sd.get("run_cap")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            where = sd.value_marks.get("run_cap", sd.key_marks["method"])
            raise ld.err(
                where, f"{what}: say how many runs with run_cap: N (W&B runs until stopped)"
            )
        space = {key: spec for key, (spec, _) in params.items()}
        if method == "random":
            kind, block = "random", {"n": cap, "seed": 0, "space": space}
        else:
            kind, block = "optimize", {"trials": cap, "seed": 0, "space": space}
            block.update(_metric(ld, what, sd))
            if "early_terminate" in sd:
                block["prune"] = _early_terminate(ld, what, sd)
    if method != "bayes" and "early_terminate" in sd:
        # (W&B also stops grid and random runs early; here pruning is an optimize: thing.)
        raise ld.err(
            sd.key_marks["early_terminate"], f"{what}: early_terminate needs method: bayes"
        )
    out[kind] = block
    out.key_marks[kind] = sd.key_marks["parameters"]
    out.value_marks[kind] = sd.value_marks["parameters"]
    return out


def _parameters(
    ld: Loader, what: str, node: Any, mark: Mark, prefix: str
) -> dict[str, tuple[Any, Mark]]:
    """Each parameter as a list of values or a distribution string, by dotted key."""
    if not isinstance(node, LocatedDict) or not node:
        raise ld.err(mark, f"{what}: 'parameters' must map names to their values")
    out: dict[str, tuple[Any, Mark]] = {}
    for key, spec in node.items():
        full = f"{prefix}{key}"
        where = node.value_marks[key]
        if not isinstance(spec, LocatedDict):
            raise ld.err(
                where, f"{what}: parameter {full!r} must be a mapping like {{values: [...]}}"
            )
        if "parameters" in spec:
            out.update(
                _parameters(
                    ld, what, spec["parameters"], spec.value_marks["parameters"], full + "."
                )
            )
            continue
        out[full] = (_one(ld, what, full, spec, where), where)
    return out


def _one(ld: Loader, what: str, key: str, spec: LocatedDict, where: Mark) -> Any:
    """One parameter: a list of values, or a distribution in the ``random:`` grammar."""
    for k in spec:
        if k not in ("values", "value", "distribution", "min", "max"):
            raise ld.err(
                spec.key_marks[k],
                f"{what}: parameter {key!r}: {k!r} is not supported (supported: values, "
                "value, distribution, min, max)",
            )
    dist = spec.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        raise ld.err(
            spec.value_marks["distribution"],
            f"{what}: parameter {key!r}: distribution {dist!r} is not supported (supported: "
            f"{', '.join(DISTRIBUTIONS)})",
        )
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ld.err(spec.value_marks["values"], f"{what}: parameter {key!r}: empty 'values'")
        return list(values)
    low, high = spec.get("min"), spec.get("max")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ld.err(where, f"{what}: parameter {key!r} needs values, value, or min and max")
    assert isinstance(low, (int, float)) and isinstance(high, (int, float))
    if dist is None:
        dist = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    if dist == "int_uniform":
        return f"randint({int(low)}, {int(high)})"
    if dist == "log_uniform":  # W&B: the bounds are natural logarithms
        return f"loguniform({math.exp(low)!r}, {math.exp(high)!r})"
    if dist == "log_uniform_values":
        return f"loguniform({low!r}, {high!r})"
    return f"uniform({low!r}, {high!r})"


def _metric(ld: Loader, what: str, sd: LocatedDict) -> dict[str, Any]:
    metric = sd.get("metric")
    where = sd.value_marks.get("metric", sd.key_marks["method"])
    if not isinstance(metric, LocatedDict) or not isinstance(metric.get("name"), str):
        raise ld.err(where, f"{what}: method bayes needs metric: {{name: ..., goal: minimize}}")
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise ld.err(where, f"{what}: metric goal must be minimize or maximize")
    return {"metric": metric["name"], "direction": goal}


def _early_terminate(ld: Loader, what: str, sd: LocatedDict) -> dict[str, Any]:
    et = sd["early_terminate"]
    where = sd.value_marks["early_terminate"]
    if not isinstance(et, LocatedDict) or et.get("type") != "hyperband":
        raise ld.err(where, f"{what}: early_terminate supports type: hyperband only")
    for key in et:
        if key not in ("type", "min_iter"):
            raise ld.err(
                et.key_marks[key],
                f"{what}: early_terminate: {key!r} is not supported (supported: type, min_iter)",
            )
    steps = et.get("min_iter", 1)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ld.err(where, f"{what}: early_terminate: min_iter must be a whole number >= 1")
    return {"pruner": "hyperband", "min_steps": steps}
