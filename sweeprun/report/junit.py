"""``--junitxml PATH``: one ``<testcase>`` per experiment, for CI dashboards.

Written by a run (from its reports) and by ``sweeprun show --junitxml`` (from recorded
results: the summary job of a sweep fanned out over CI jobs).
"""

from __future__ import annotations

import argparse
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun.hookspec import hookimpl
from sweeprun.model import Record
from sweeprun.spec.params import flatten

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry
    from sweeprun._core.session import Session


@dataclass(frozen=True)
class Case:
    """One ``<testcase>``: an experiment's id, outcome and numbers."""

    spec: str
    name: str
    seconds: float
    outcome: str  # "passed", "failed" or "error"
    state: str
    message: str = ""
    tail: str = ""
    out: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)


@hookimpl
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """``--junitxml``."""
    parser.add_argument(
        "--junitxml", metavar="PATH", help="write a JUnit XML report (one testcase per experiment)"
    )


def _props(case: ET.Element, c: Case) -> None:
    props = ET.SubElement(case, "properties")
    for section, values in (("params", c.params), ("metrics", c.metrics)):
        for path, data in (values or {}).items():
            for key, value in flatten(data).items():
                ET.SubElement(props, "property", name=f"{section}.{path}:{key}", value=str(value))


def write_cases(path: Path, cases: Sequence[Case], started: float) -> None:
    """Write the JUnit XML of ``cases``."""
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="sweeprun",
        tests=str(len(cases)),
        failures=str(sum(c.outcome == "failed" for c in cases)),
        errors=str(sum(c.outcome == "error" for c in cases)),
        skipped=str(sum(c.state == "pruned" for c in cases)),
        time=f"{sum(c.seconds for c in cases):.3f}",
        hostname=socket.gethostname(),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    )
    for c in cases:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=c.spec.replace("/", ".").removesuffix(".yaml"),
            name=c.name,
            time=f"{c.seconds:.3f}",
        )
        _props(case, c)
        if c.state == "pruned":  # stopped early by design: neither passed nor failed
            ET.SubElement(case, "skipped", message=c.message or "pruned")
        elif c.outcome != "passed":
            tag = "error" if c.outcome == "error" else "failure"
            el = ET.SubElement(case, tag, message=c.message or c.outcome, type=c.state)
            el.text = c.tail
        if c.out:
            ET.SubElement(case, "system-out").text = c.out
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def report_cases(session: Session) -> list[Case]:
    """A case per report of this run."""
    metas = {r.key: r.meta for r in session.store.records()}
    cases = []
    for r in session.reports:
        meta = metas.get(r.key, {})
        cases.append(
            Case(
                spec=str(meta.get("spec", "sweeps.yaml")),
                name=r.exp_id,
                seconds=r.duration,
                outcome=str(r.outcome),
                state=str(meta.get("state", r.outcome)),
                message=r.message,
                tail=r.log_tail,
                out=f"experiment {r.name}; full log: {r.log_path}",
                params=meta.get("params", {}),
                metrics=r.metrics,
            )
        )
    return cases


def result_cases(records: Iterable[Record]) -> list[Case]:
    """A case per recorded result (queued and running experiments have none yet)."""
    cases = []
    for rec in records:
        result = rec.result
        if result is None:
            continue
        passed = result.state in ("success", "pruned")
        cases.append(
            Case(
                spec=result.spec or "sweeps.yaml",
                name=rec.id,
                seconds=result.duration,
                outcome="passed" if passed else "failed",
                state=str(result.state),
                message=result.message,
                tail=result.log_tail,
                out=f"experiment {rec.name} ({rec.commit[:12]}) on {result.host}",
                params=result.params,
                metrics=result.metrics,
            )
        )
    return cases


@hookimpl
def sweeprun_sessionfinish(session: Session, exitstatus: int) -> None:
    """Write the report when asked for (also after failures and interrupts)."""
    config: Config = session.config
    target = config.getoption("junitxml")
    if target and exitstatus != 4:
        path = (config.invocation_dir / target).resolve()
        write_cases(path, report_cases(session), session.started)
