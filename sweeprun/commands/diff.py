"""``sweeprun diff [A] [B]``: params and metrics side by side, with deltas.

Without arguments: the workspace against its baseline (``HEAD``); with one experiment: it
against its baseline; with two: the first against the second.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun._core.exitcode import ExitCode
from sweeprun.commands.results import resolve
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import CheckpointRecord
from sweeprun.report.safe import for_stream, shown
from sweeprun.run.metrics import parse_metrics_file
from sweeprun.spec.collect import composer, hydra_composer
from sweeprun.spec.loader import Spec, default_spec
from sweeprun.spec.params import ParamsFile, flatten
from sweeprun.store.git import run_git
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry

Side = tuple[str, dict[str, Any], dict[str, Any]]  # (label, params by file, metrics by file)


def _spec(config: Config) -> Spec | None:
    """The workspace's spec (``sweeps.yaml``, else ``dvc.yaml``), if it has one."""
    path = default_spec(config.repo.root)
    return None if path is None else config.hook.sweeprun_load_spec(path=path, config=config)


def _spec_files(config: Config, spec: Spec | None) -> tuple[list[str], list[str]]:
    """Params and metrics files of the workspace's spec (without one: ``params.yaml``)."""
    if spec is not None:
        return spec.all_params_files, [m for s in spec.stages for m in s.metrics]
    return (["params.yaml"] if (config.repo.root / "params.yaml").is_file() else []), []


def _workspace(config: Config) -> Side:
    """The workspace's params (a Hydra app's: its config composed as it is) and metrics."""
    root = config.repo.root
    spec = _spec(config)
    params_files, metrics_files = _spec_files(config, spec)
    metrics = {m: parse_metrics_file(root / m) for m in metrics_files if (root / m).is_file()}
    if spec is not None and spec.hydra is not None:
        with composer(spec) as app:
            assert app is not None  # a Hydra app's spec
            return "workspace", app.compose({}), metrics
    params = {p: ParamsFile.load(root, p).data for p in params_files if (root / p).is_file()}
    return "workspace", params, metrics


def _hydra_at(config: Config, spec: Spec, rev: str) -> dict[str, Any]:
    """A Hydra app's config composed as it is at ``rev`` (its config directory, read there)."""
    assert spec.hydra is not None
    conf = spec.hydra.config_dir or "."
    with tempfile.TemporaryDirectory(prefix="sweeprun-diff-") as tmp:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, "--", conf],
            cwd=config.repo.root,
            capture_output=True,
            check=False,
        )
        if archive.returncode:
            return {}
        # git archive's paths are the repository's own, relative: extracted below tmp only.
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuse odd members
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - git archive of our own repository
                tar.extractall(tmp)
        with (
            contextlib.suppress(UsageError),
            hydra_composer(spec, Path(tmp)).session() as app,
        ):
            return app.compose({})
    return {}


def _commit(config: Config, rev: str, label: str) -> Side:
    spec = _spec(config)
    params_files, metrics_files = _spec_files(config, spec)
    params: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if spec is not None and spec.hydra is not None:
        params = _hydra_at(config, spec, rev)
    for files, into in ((params_files, params), (metrics_files, metrics)):
        for path in files:
            text = run_git(["show", f"{rev}:{path}"], config.repo.root, check=False)
            if text:
                try:
                    into[path] = ParamsFile.from_text(path, text).data
                except Exception:
                    into[path] = None
    return label, params, metrics


def rows(a: Side, b: Side, everything: bool) -> list[dict[str, Any]]:
    """One row per differing (or, with ``everything``, every) param and metric."""
    out = []
    for section, da, db in (("params", a[1], b[1]), ("metrics", a[2], b[2])):
        fa = {f"{p}:{k}": v for p, d in da.items() for k, v in flatten(d).items()}
        fb = {f"{p}:{k}": v for p, d in db.items() for k, v in flatten(d).items()}
        for key in sorted(set(fa) | set(fb)):
            va, vb = fa.get(key), fb.get(key)
            if va == vb and not everything:
                continue
            delta = None
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb)):
                delta = va - vb  # type: ignore[operator]
            out.append({"section": section, "key": key, a[0]: va, b[0]: vb, "delta": delta})
    return out


def _run(config: Config) -> int:

    store = ExpStore(config.repo)
    try:
        names = [n for n in (config.getoption("a"), config.getoption("b")) if n]
        recs = resolve(store, names) if names else []
        sides: list[Side] = []
        for rec in recs:
            # A checkpoint (NAME@N) is labelled as it was named, not as its experiment.
            step = rec.data.step if isinstance(rec.data, CheckpointRecord) else None
            label = rec.name if step is None else f"{rec.name}@{step}"
            sides.append((label, rec.meta.get("params", {}), rec.meta.get("metrics", {})))
        if not recs:
            sides = [_workspace(config), _commit(config, "HEAD", "baseline")]
        elif len(recs) == 1:
            sides.append(_commit(config, recs[0].baseline, f"baseline {recs[0].baseline[:7]}"))
    finally:
        store.close()
    table = rows(sides[0], sides[1], bool(config.getoption("all")))
    a, b = sides[0][0], sides[1][0]
    out = config.stdout
    if config.getoption("json"):
        out.write(json.dumps(table, indent=2, default=str) + "\n")
        return ExitCode.OK
    if not table:
        out.write(f"no differences between {shown(a)} and {shown(b)}\n")
        return ExitCode.OK

    def fmt(v: Any) -> str:
        return "-" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    header = [shown(h) for h in ("Path:key", a, b, "Change")]
    body = [
        [r["key"], fmt(r[a]), fmt(r[b]), "" if r["delta"] is None else f"{r['delta']:+.6g}"]
        for r in table
    ]
    if config.getoption("md"):
        cell = for_stream(out)  # a file gets the exact text; a terminal no escape codes
        out.write("| " + " | ".join(cell(h) for h in header) + " |\n|" + "---|" * 4 + "\n")
        out.writelines("| " + " | ".join(cell(c) for c in row) + " |\n" for row in body)
        return ExitCode.OK
    body = [[shown(c) for c in row] for row in body]  # the table is for a person
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    for row in [header, *body]:
        out.write(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    return ExitCode.OK


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", nargs="?", help="experiment (default: the workspace)")
    p.add_argument("b", nargs="?", help="experiment to compare with (default: A's baseline)")
    p.add_argument("--all", action="store_true", help="unchanged values too")
    p.add_argument("--json", action="store_true", help="JSON rows")
    p.add_argument("--md", action="store_true", help="a Markdown table")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun diff``."""
    commands.add(
        "diff",
        "params and metrics of two experiments side by side",
        _args,
        _run,
        examples=(
            "sweeprun diff                          # the workspace against its baseline",
            "sweeprun diff exp-1a2b3c4 exp-5d6e7f8",
            "sweeprun diff best --md                # a Markdown table",
        ),
    )
