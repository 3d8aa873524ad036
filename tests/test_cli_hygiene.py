"""Small CLI faults: a closed stdout, an unreachable Dask scheduler, numeric sorting."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sweeprun.testing import SweepProject


def test_a_closed_stdout_ends_quietly(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.write("params.yaml", "x: 0\n")
    p.write(
        "sweeps.yaml",
        "cmd: 'true'\nsweeps:\n  g:\n    matrix:\n      x: " + json.dumps(list(range(5000))) + "\n",
    )
    p.commit()
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m sweeprun --collect-only | head -c 100 > /dev/null;"
            ' echo "status=${PIPESTATUS[0]}" >&2',
        ],
        cwd=p.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().endswith("status=1")


def test_an_unreachable_dask_scheduler_is_one_line(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.quickstart()
    assert p.run("sweeps.yaml").ret == 0
    start = time.monotonic()
    res = p.run_subprocess(
        "--run-all",
        "--backend",
        "dask",
        "--scheduler",
        "tcp://127.0.0.1:9",
        "--connect-timeout",
        "1",
    )
    assert res.ret == 4, res.stdout + res.stderr
    assert time.monotonic() - start < 20
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("sweeprun: error: --scheduler tcp://127.0.0.1:9: no Dask scheduler")
    assert len(p.refs("refs/sweeprun/queue/")) == 6  # nothing claimed


def test_sort_by_orders_numbers_numerically_and_missing_last(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.write("params.yaml", "v: 0\n")
    p.write(
        "m.py",
        "import json, yaml\nv = yaml.safe_load(open('params.yaml'))['v']\n"
        "json.dump({} if v == 'none' else {'score': v}, open('m.json', 'w'))\n",
    )
    p.write(
        "sweeps.yaml",
        f"cmd: {sys.executable} m.py\nmetrics: [m.json]\n"
        "sweeps:\n  g:\n    values: [{v: 0.25}, {v: 0.5}, {v: 0}, {v: 2}, {v: none}]\n",
    )
    p.commit()
    assert p.run("sweeps.yaml", "--run").ret == 0

    def order(*args: str) -> list[object]:
        out = p.run("show", "--json", "--sort-by", "score", *args).stdout
        return [r["params"]["params.yaml"]["v"] for r in json.loads(out)]

    assert order() == [0, 0.25, 0.5, 2, "none"]
    assert order("--sort-order", "desc") == [2, 0.5, 0.25, 0, "none"]


def test_the_live_display_prints_log_lines_literally(
    sweepproject: SweepProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log line is text, not rich markup: '[epoch 2/10]' stays, '[bold red]' is shown."""
    import io

    from rich.console import Console

    from sweeprun._core.cli import _prepare
    from sweeprun._core.session import Session
    from sweeprun.model import RUNNING, QueueRecord, Record
    from sweeprun.report.live import LiveProgress

    p = sweepproject
    p.quickstart()
    monkeypatch.chdir(p.path)
    session = Session(_prepare(["--run-all"], io.StringIO()))
    key = "k" * 20
    session.running[key] = Record(
        RUNNING + key, "0" * 40, QueueRecord(key=key, name="exp-x", id="run", baseline="")
    )
    logs = p.path / ".git" / "sweeprun" / "logs"
    logs.mkdir(parents=True)
    (logs / f"{key}.log").write_text("[epoch 2/10] loss [bold red]0.3[/] + [main]\n")
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(LiveProgress(session, out, 1))
    session.close()
    assert "[epoch 2/10] loss [bold red]0.3[/] + [main]" in out.getvalue()
