"""What ``sweeprun ui`` serves: the experiments as columns, what runs now, step curves,
parameter importance, and a stamp that changes when any of them may have.

The state is columnar (one list per field and per params/metrics column) and built from
the results index (``commands.listing``), so it stays small and quick at 100,000 results.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun.commands import listing
from sweeprun.commands.plots import curve_charts
from sweeprun.model import CHECKPOINTS, parse_message
from sweeprun.report.live import last_line
from sweeprun.report.table import MISSING, RecordList, subset
from sweeprun.spec.loader import default_spec
from sweeprun.store.git import RepoPaths, for_each_ref, run_git
from sweeprun.sweepers.optimize import parse_optimize

if TYPE_CHECKING:
    from sweeprun._core.config import Config

#: The record fields the page shows or needs.
FIELDS = (
    "name", "state", "sweep", "baseline", "queued_at", "started", "duration", "commit", "key",
)  # fmt: skip


def _plain(v: Any) -> Any:
    """A JSON value a browser parses: no NaN or infinity, no missing marker."""
    if v is MISSING or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v


def frame(repo: RepoPaths) -> list[dict[str, Any]]:
    """Every experiment of every baseline (the index's columns)."""
    return listing.frame(*listing.rows(repo, all_baselines=True))


def state(config: Config) -> dict[str, Any]:
    """The page's state: fields and columns of every experiment, baselines, what runs."""
    return state_of(config, frame(config.repo))


def state_of(config: Config, recs: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's state of the experiments ``recs`` (as :func:`frame` gives them)."""
    repo = config.repo
    head = run_git(["rev-parse", "-q", "--verify", "HEAD^{commit}"], repo.root, check=False)
    columns = (
        [
            {"section": s, "file": f, "key": k, "values": [_plain(v) for v in values]}
            for (s, f, k), values in recs.columns.items()
        ]
        if isinstance(recs, RecordList)
        else []
    )
    studies, directions = _declared(config)
    return {
        "stamp": stamp(repo),
        "n": len(recs),
        "head": head.strip(),
        "fields": {f: [_plain(r.get(f)) for r in recs] for f in FIELDS},
        "columns": columns,
        "baselines": _baselines(repo, recs),
        "running": _running(repo, [r["key"] for r in recs if r.get("state") == "running"]),
        "studies": studies,
        "directions": directions,
    }


def _baselines(repo: RepoPaths, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for r in recs:
        sha = str(r.get("baseline") or "")
        counts[sha] = counts.get(sha, 0) + 1
    shas = [s for s in counts if s]
    subjects: dict[str, str] = {}
    if shas:
        out = run_git(["show", "-s", "--format=%H%x00%s", *shas], repo.root, check=False)
        for line in out.splitlines():
            sha, _, subject = line.partition("\x00")
            subjects[sha] = subject
    return [{"sha": s, "subject": subjects.get(s, ""), "count": counts[s]} for s in shas]


def _running(repo: RepoPaths, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Each running experiment's latest log line and checkpoint (step, metrics)."""
    if not keys:
        return {}
    out: dict[str, dict[str, Any]] = {
        k: {"log": last_line(repo.state_dir / "logs" / f"{k}.log")} for k in keys
    }
    wanted = set(keys)
    for ref, _sha, message in for_each_ref(repo.root, [CHECKPOINTS.rstrip("/")]):
        key = ref.removeprefix(CHECKPOINTS)
        meta = parse_message(message) if key in wanted else None
        if meta is not None:
            out[key]["step"] = meta.get("step")
            out[key]["metrics"] = meta.get("metrics") or {}
    return out


def _declared(config: Config) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``optimize:`` sweeps of the spec (metric, direction) and each metric's declared
    direction (from ``optimize:`` and ``expect:``); a spec that does not load: none."""
    studies: dict[str, Any] = {}
    directions: dict[str, str] = {}
    path = default_spec(config.repo.root)
    if path is None or not path.is_file():
        return studies, directions
    try:
        spec = config.hook.sweeprun_load_spec(path=path, config=config)
    except Exception:  # a broken spec: the page still shows every result
        return studies, directions
    for sweep in spec.sweeps:
        for kind, block, _ in (b for group in sweep.groups for b in group):
            if kind != "optimize":
                continue
            try:
                opt = parse_optimize(block)
            except Exception:  # reported where it runs; the page shows no history
                continue
            goal = opt.directions[0][:3]
            studies[sweep.name] = {"metric": opt.metrics[0], "direction": goal}
            directions[opt.metrics[0]] = goal
        for metric, rule in sweep.expect.items():
            op = str(rule).strip()[:1]
            if op in "<>":
                directions.setdefault(metric, "min" if op == "<" else "max")
    return studies, directions


def stamp(repo: RepoPaths) -> str:
    """Changes when a ref under ``refs/sweeprun`` moves, ``HEAD`` moves, or a running
    experiment writes to its log: a handful of ``stat`` calls (the page's server asks
    twice a second; an idle one costs nothing to speak of)."""
    common = Path(repo.common_dir)
    paths = [common / p for p in ("HEAD", "logs/HEAD", "packed-refs", "refs/sweeprun")]
    for sub in ("queue", "running", "checkpoints", "exps"):
        top = common / "refs/sweeprun" / sub
        paths.append(top)
        if sub == "exps":
            paths += _dirs(top)
        if sub == "running":
            paths += [repo.state_dir / "logs" / f"{e}.log" for e in _names(top)]
    h = hashlib.sha1()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            h.update(b"-")
            continue
        h.update(f"{st.st_ino}.{st.st_size}.{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _dirs(top: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(top) if e.is_dir()]
    except OSError:
        return []


def _names(top: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(top)]
    except OSError:
        return []


def curves(config: Config, keys: list[str]) -> list[dict[str, Any]]:
    """Step curves (plots files, checkpoint metrics) of the experiments of ``keys``."""
    recs = frame(config.repo)
    wanted = set(keys)  # (curve_charts draws the first MAX_CURVES of them)
    picked = subset(recs, [i for i, r in enumerate(recs) if r.get("key") in wanted])
    return curve_charts(config, picked) if picked else []


def importance(
    config: Config, metric: str, baseline: str, recs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Each varying param's importance for ``metric`` (``file:key``) over the finished
    experiments of ``baseline`` ("*": all) among ``recs`` (default: every experiment, as
    :func:`frame` reads them): Optuna's fANOVA evaluator."""
    try:
        import optuna  # deferred: an optional extra, ~0.5 s to import
    except ImportError:
        return {"error": "parameter importance needs Optuna: pip install 'sweeprun[optimize]'"}
    recs = frame(config.repo) if recs is None else recs
    if not isinstance(recs, RecordList):
        return {"error": "no finished experiments"}
    cols = {f"{f}:{k}" if f else k: (s, v) for (s, f, k), v in recs.columns.items()}
    if metric not in cols or cols[metric][0] != "metrics":
        return {"error": f"no metric {metric!r}"}
    ys = cols[metric][1]
    rows = [
        i
        for i, r in enumerate(recs)
        if (baseline == "*" or r.get("baseline") == baseline)
        and r.get("state") == "success"
        and isinstance(ys[i], (int, float))
        and not isinstance(ys[i], bool)
        and math.isfinite(ys[i])
    ]
    params = {}
    for name, (section, values) in cols.items():
        got = [values[i] for i in rows]
        if section == "params" and MISSING not in got and len({repr(v) for v in got}) > 1:
            params[name] = got
    if len(rows) < 3 or not params:
        return {"error": "needs 3 or more finished experiments whose params vary"}
    dists: dict[str, Any] = {}
    for name, got in params.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in got):
            dists[name] = optuna.distributions.FloatDistribution(min(got), max(got))
        else:
            params[name] = [str(v) for v in got]
            dists[name] = optuna.distributions.CategoricalDistribution(sorted(set(params[name])))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={n: params[n][k] for n in dists}, distributions=dists, value=float(ys[i])
            )
            for k, i in enumerate(rows)
        ]
    )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    ranked = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {
        "method": f"fANOVA (Optuna's FanovaImportanceEvaluator, seed 0) over {len(rows)} "
        "finished experiments",
        "importances": {k: round(float(v), 4) for k, v in ranked.items()},
    }
