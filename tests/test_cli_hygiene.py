"""Small CLI faults: a closed stdout, an unreachable Dask scheduler, numeric sorting."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time

import pytest

from sweeprun._core.cli import main
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
    # Its own exit code: who reads the output (and when they stop) changes nothing.
    assert proc.stderr.strip().endswith("status=0")


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
    from sweeprun.run.runner import Runner
    from sweeprun.run.sources import QueueSource

    p = sweepproject
    p.quickstart()
    monkeypatch.chdir(p.path)
    session = Session(_prepare(["--run-all"], io.StringIO()))
    key = "k" * 20
    session.runner = Runner(session.options, session.store, QueueSource([]))
    session.runner.running[key] = Record(
        RUNNING + key, "0" * 40, QueueRecord(key=key, name="exp-x", id="run", baseline="")
    )
    logs = p.path / ".git" / "sweeprun" / "logs"
    logs.mkdir(parents=True)
    (logs / f"{key}.log").write_text("[epoch 2/10] loss [bold red]0.3[/] + [main]\n")
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(LiveProgress(session, out, 1))
    session.close()
    assert "[epoch 2/10] loss [bold red]0.3[/] + [main]" in out.getvalue()


def test_a_run_piped_into_head_still_runs_everything(sweepproject: SweepProject) -> None:
    """Issue 22, item 10: `sweeprun -S seed=31 --run -j 2 | head -3` ended with exit 1,
    nothing on stderr, nothing run."""
    p = sweepproject
    p.quickstart()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweeprun",
            "sweeps.yaml::grid",
            "-S",
            "seed=31",
            "--run",
            "-j",
            "2",
        ],
        cwd=p.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()  # head exits
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err
    assert [r["state"] for r in p.records()] == ["success"] * 6


ESC_PROGRAM = """
import json
json.dump({"acc\\x1b[31mRED": 0.5, "note": "v\\x1b]0;pwned\\x07x"}, open("m.json", "w"))
"""


def _odd_names_project(p: SweepProject, sweep: str) -> None:
    """A project whose metrics and values hold escape codes, its sweep ``g`` recorded."""
    p.write("params.yaml", "lr: 0.3\n")
    p.write("train.py", ESC_PROGRAM)
    p.write(
        "sweeps.yaml",
        "params: params.yaml\ncmd: python3 train.py\nmetrics: [m.json]\n"
        f"sweeps:\n  g:\n    {sweep}\n",
    )
    p.write(".gitignore", "m.json\n")
    p.commit()
    assert p.run("--run", "-q").ret == 0


def _tty_output(p: SweepProject, *args: str) -> str:
    """What ``sweeprun ARGS`` writes to a terminal (a real pseudo-terminal)."""
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeprun", *args],
        cwd=p.path,
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    if proc.stderr is not None:
        proc.stderr.close()
    os.close(leader)
    return b"".join(chunks).decode()


def test_no_escape_code_reaches_a_terminal(sweepproject: SweepProject) -> None:
    p = sweepproject
    _odd_names_project(p, 'values: [{lr: 0.1}, {lr: "a\\e[2Jb"}]')
    name = p.records()[0]["name"]
    assert p.run("-S", "lr='q\x1b[2Jq'").ret == 0  # queued: for queue status
    for args in (
        ("show",),
        ("show", "--csv"),
        ("show", "--md"),
        ("diff", name),
        ("diff", name, "--md"),
        ("queue", "status"),
        ("--collect-only",),
    ):
        out = _tty_output(p, *args)
        assert "\x1b]" not in out and "\x1b[2J" not in out and "\x1b[31m" not in out, (args, out)
        assert "\\x1b" in out, (args, out)  # shown, as an escape
    # Files and --json keep the exact text.
    csv_text = subprocess.run(
        [sys.executable, "-m", "sweeprun", "show", "--csv"],
        cwd=p.path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "acc\x1b[31mRED" in csv_text
    assert any("acc\x1b[31mRED" in r["metrics"].get("m.json", {}) for r in p.records())


def test_plots_of_odd_names_are_drawn(sweepproject: SweepProject) -> None:
    p = sweepproject
    _odd_names_project(p, "matrix: {lr: [0.1, 0.2]}")
    res = p.run_subprocess("plots")
    assert res.ret == 0, res.stdout + res.stderr
    svg = next((p.path / ".git" / "sweeprun" / "plots").glob("*acc*.svg")).read_text()
    assert "\u241b" in svg  # ESC drawn as its picture


def _help_pages() -> list[tuple[str, ...]]:
    from sweeprun._core.cli import _prepare

    config = _prepare(["show"], sys.stdout)
    pages: list[tuple[str, ...]] = [()]
    pages += [(c.name,) for c in config.commands]
    pages += [("queue", a) for a in ("status", "logs", "kill", "remove", "retry")]
    return pages


@pytest.mark.parametrize("page", _help_pages(), ids=lambda p: " ".join(p) or "sweeprun")
def test_every_help_page_ends_with_examples(page: tuple[str, ...]) -> None:
    """Issue 22, item 11: no --help page had an example; every option says what it does."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main([*page, "--help"])  # in-process: argparse prints the page and exits 0
    assert exited.value.code == 0
    lines = out.getvalue().rstrip("\n").splitlines()
    stdout = out.getvalue()
    start = lines.index("examples:")
    examples = lines[start + 1 :]
    assert 2 <= len(examples) <= 3, stdout
    assert all(e.startswith("  sweeprun ") for e in examples), stdout
    # Every option has a help text: beside it, or on the next line, indented deeper.
    body = lines[:start]
    bare = [
        ln
        for i, ln in enumerate(body)
        if ln.startswith("  -")
        and "  " not in ln.strip()
        and not (i + 1 < len(body) and body[i + 1].startswith("   ") and body[i + 1].strip())
    ]
    assert not bare, bare
