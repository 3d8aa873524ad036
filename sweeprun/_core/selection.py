"""The built-in ``selection`` plugin: naming experiments and choosing which to run
(``name:`` templates, ``--deselect``, ``-k``, ``--lf``/``--ff``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeprun.exceptions import SweepValueError, UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import FAILED_STATES
from sweeprun.spec import names
from sweeprun.spec.cimatrix import parse_shard, shard
from sweeprun.spec.collect import Experiment
from sweeprun.spec.keyword import compile_keyword
from sweeprun.spec.params import flatten

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.session import Session


@hookimpl(trylast=True)
def sweeprun_make_name(experiment: Experiment, template: str | None, config: Config) -> str | None:
    """Render the sweep's ``name:`` template, if any."""
    if not template:
        return None
    flat: dict[str, Any] = {}
    for path, data in experiment.full_params().items():
        flat.update(flatten(data))
        flat.update({f"{path}:{k}": v for k, v in flatten(data).items()})
    try:
        return names.render_name(template, experiment.point, flat)
    except SweepValueError as exc:
        raise experiment.name_error(exc.message) from None


@hookimpl(trylast=True)
def sweeprun_collection_modifyitems(
    session: Session, config: Config, items: list[Experiment]
) -> None:
    """``--deselect`` and ``-k EXPR`` (words of the id, name or sweep; see keyword.py)."""
    deselect = config.getoption("deselect") or []
    if deselect:

        def dropped(item: Experiment) -> bool:
            for node in deselect:
                spec, sep, rest = node.rpartition("::")
                if sep and spec and item.spec.path != spec.lstrip("./"):
                    continue
                target = rest if sep else node
                if item.id == target or item.sweep == target:
                    return True
            return False

        unknown = [
            node
            for node in deselect
            if not any(node.rpartition("::")[2] in (i.id, i.sweep) for i in items)
        ]
        if unknown:
            raise UsageError(
                f"--deselect {unknown[0]}: no such experiment or sweep (see --collect-only)"
            )
        items[:] = [i for i in items if not dropped(i)]
    expr = config.getoption("keyword")
    if expr:
        match = compile_keyword(expr)
        items[:] = [i for i in items if match(i)]
    if config.getoption("lf") or config.getoption("ff"):
        _last_failed(session, config, items)
    spec = config.getoption("shard")
    if spec:
        items[:] = shard(items, *parse_shard(spec))


def _last_failed(session: Session, config: Config, items: list[Experiment]) -> None:
    """``--lf``: only what failed last at this baseline; ``--ff``: that first, then the rest.

    Failed experiments are queued again (as with ``--force``): their earlier result is
    replaced by the new run's.
    """
    head = session.store.head()
    failed = {
        (r.meta.get("spec"), r.id): r
        for r in session.store.records("refs/sweeprun/exps")
        if r.baseline == head and r.state in FAILED_STATES
    }
    hit = [i for i in items if (i.spec.path, i.id) in failed]
    for item in hit:
        # The same experiment again: its name (one row per point), its result replaced.
        item.retries = failed[(item.spec.path, item.id)]
        item.name = item.retries.name
    session.force_keys = {id(i) for i in hit}
    if config.getoption("lf"):
        if hit:
            items[:] = hit
        # nothing failed last time: run everything selected, as pytest does
    else:
        items[:] = hit + [i for i in items if id(i) not in session.force_keys]


def check_fan_out(config: Config) -> None:
    """``--ci-matrix``/``--shard-size``/``--shard`` only where they mean something."""
    if config.getoption("ci_matrix") and not config.getoption("collect_only"):
        raise UsageError("--ci-matrix: prints the matrix of what is collected; add --collect-only")
    if config.getoption("shard_size") and not config.getoption("ci_matrix"):
        raise UsageError("--shard-size: sizes the shards of --ci-matrix; add --ci-matrix FORMAT")
    if config.getoption("shard"):
        parse_shard(config.getoption("shard"))  # a bad I/N fails before anything is queued
        if config.getoption("run_all") and not config.getoption("specs"):
            raise UsageError("--shard: shards the experiments of SPEC; name the SPEC to shard")
