"""Live progress on a terminal (a real pseudo-terminal); plain lines when piped or in CI."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from sweeprun.testing import SweepProject


def spec(sp: SweepProject) -> None:
    sp.write("params.yaml", "i: 0\n")
    sp.write("job.py", "import time\nprint('working on it', flush=True)\ntime.sleep(1.2)\n")
    sp.write(
        "sweeps.yaml",
        f"""
        cmd: {sys.executable} job.py
        sweeps:
          g:
            matrix: {{i: [1, 2, 3]}}
    """,
    )
    sp.commit()


def test_live_display_on_a_terminal(sweepproject: SweepProject) -> None:
    spec(sweepproject)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(TERM="xterm", COLUMNS="100", LINES="30")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeprun", "--run", "-j", "2"],
        cwd=sweepproject.path,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait()
    os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "\x1b[" in out  # a live, redrawn display
    assert "done, 0 failed" in out and "latest log line" in out
    assert "working on it" in out  # each running job's latest log line
    assert "3 passed" in out


def test_plain_output_when_piped(sweepproject: SweepProject) -> None:
    spec(sweepproject)
    res = sweepproject.run_subprocess("--run", "-j", "2")
    assert res.ret == 0
    assert "\x1b" not in res.stdout and "latest log line" not in res.stdout
    res.fnmatch_lines(["...*[100%]", "*3 passed*"])
