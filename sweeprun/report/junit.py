"""``--junitxml PATH``: one ``<testcase>`` per experiment, for CI dashboards."""

from __future__ import annotations

import argparse
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeprun.hookspec import hookimpl
from sweeprun.spec.params import flatten

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry
    from sweeprun._core.session import Session
    from sweeprun.model import JobReport


@hookimpl
def sweeprun_addoption(parser: argparse.ArgumentParser, commands: CommandRegistry) -> None:
    """``--junitxml``."""
    parser.add_argument(
        "--junitxml", metavar="PATH", help="write a JUnit XML report (one testcase per experiment)"
    )


def _props(case: ET.Element, record: dict[str, Any]) -> None:

    props = ET.SubElement(case, "properties")
    for section in ("params", "metrics"):
        for path, data in (record.get(section) or {}).items():
            for key, value in flatten(data).items():
                ET.SubElement(props, "property", name=f"{section}.{path}:{key}", value=str(value))


def write_report(path: Path, session: Session) -> None:
    """Write the JUnit XML for the session's reports."""
    reports: list[JobReport] = session.reports
    metas = {r.key: r.meta for r in session.store.records()}
    failures = sum(r.outcome == "failed" for r in reports)
    errors = sum(r.outcome == "error" for r in reports)
    total = sum(r.duration for r in reports)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="sweeprun",
        tests=str(len(reports)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{total:.3f}",
        hostname=socket.gethostname(),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(session.started)),
    )
    for r in reports:
        meta = metas.get(r.key, {})
        case = ET.SubElement(
            suite,
            "testcase",
            classname=str(meta.get("spec", "sweeps.yaml")).replace("/", ".").removesuffix(".yaml"),
            name=r.exp_id,
            time=f"{r.duration:.3f}",
        )
        _props(case, {"params": meta.get("params", {}), "metrics": r.metrics})
        if r.outcome != "passed":
            tag = "error" if r.outcome == "error" else "failure"
            el = ET.SubElement(
                case,
                tag,
                message=r.message or f"{r.outcome}",
                type=str(meta.get("state", r.outcome)),
            )
            el.text = r.log_tail
        out = ET.SubElement(case, "system-out")
        out.text = f"experiment {r.name}; full log: {r.log_path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


@hookimpl
def sweeprun_sessionfinish(session: Session, exitstatus: int) -> None:
    """Write the report when asked for (also after failures and interrupts)."""
    config: Config = session.config
    target = config.getoption("junitxml")
    if target and exitstatus != 4:
        write_report((config.invocation_dir / target).resolve(), session)
