"""Charts drawn to SVG and PNG by a helper process (``python -m sweeprun.report.draw``).

vl-convert's JavaScript engine takes ~0.4 s to start and holds the GIL while it does, so a
thread cannot hide it. A helper process, started before the command reads any result,
starts it on the other core meanwhile; the command then hands it the charts, one JSON line
each (``{"spec": …, "svg": path, "png": path}``), and it answers one line per chart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from sweeprun.report.safe import deep

#: The least chart there is: drawing it starts the engine.
_WARM_UP = {"mark": "point", "data": {"values": []}}


class Drawer:
    """The helper process: :meth:`send` charts as they are made, then :meth:`finish`; leaving
    the ``with`` block stops it (an error on the way)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sweeprun.report.draw"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._sent = 0

    def send(self, spec: dict[str, Any], svg: Path, png: Path) -> None:
        """Have one chart drawn (the helper answers only at the end: no pipe fills up)."""
        assert self._proc.stdin is not None
        # No control character reaches the engine: in a field name (a metric called
        # "acc\x1b[31m") vl-convert's renderer aborts the whole process.
        line = json.dumps({"spec": deep(spec), "svg": str(svg), "png": str(png)}, default=str)
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the helper died: finish() says why
        self._sent += 1

    def finish(self) -> None:
        """Wait for every chart; raise with vl-convert's message if one could not be drawn."""
        out, err = self._proc.communicate()
        answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        failed = [a["error"] for a in answers if "error" in a]
        if failed:
            raise RuntimeError(f"vl-convert could not draw {failed[0]}")
        if self._proc.returncode != 0 or len(answers) != self._sent:
            raise RuntimeError(f"the chart drawing process failed: {err.strip()[-2000:]}")

    def __enter__(self) -> Drawer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc.poll() is None:  # not finished (an error on the way): stop it
            self._proc.kill()
            self._proc.communicate()


def main() -> None:
    """The helper: start the engine, then draw each chart read from stdin."""
    import vl_convert  # deferred: only this process loads the engine

    vl_convert.vegalite_to_svg(_WARM_UP)
    answers = []
    for line in sys.stdin:
        job = json.loads(line)
        try:
            svg = vl_convert.vegalite_to_svg(job["spec"])
            Path(job["svg"]).write_text(svg)
            # From the SVG: the same picture, without running the chart's JavaScript again.
            Path(job["png"]).write_bytes(vl_convert.svg_to_png(svg, scale=2))
            answers.append({"ok": job["svg"]})
        except Exception as exc:  # a spec vl-convert rejects: said, not a crash
            answers.append({"error": f"{Path(job['svg']).name}: {exc}"})
    sys.stdout.write("".join(json.dumps(a) + "\n" for a in answers))


if __name__ == "__main__":
    main()
