"""Reading what a run left: declared metrics files and the log's last lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from sweeprun.model import Stage

LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 8192


def log_tail(path: str | os.PathLike[str]) -> str:
    """The last lines of a log file (bounded in lines and bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()
    if size > LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-LOG_TAIL_LINES:])


def read_metrics(ws: Path, stages: tuple[Stage, ...]) -> dict[str, Any]:
    """Parse every declared metrics file present in the workspace (path → data)."""
    out: dict[str, Any] = {}
    for stage in stages:
        for rel in stage.metrics:
            path = ws / rel
            if not path.is_file():
                continue
            out[rel] = parse_metrics_file(path)
    return out


def parse_metrics_file(path: Path) -> Any:
    """JSON, YAML or TOML by suffix; an unreadable file yields ``None``."""
    try:
        return load_metrics_file(path)
    except ValueError:
        return None


def load_metrics_file(path: Path) -> Any:
    """JSON, YAML or TOML by suffix; ``ValueError`` saying why a file does not parse."""
    text = path.read_text(encoding="utf-8", errors="replace")
    kind = {".json": "JSON", ".toml": "TOML"}.get(path.suffix, "YAML")
    try:
        if kind == "JSON":
            return json.loads(text)
        if kind == "TOML":
            import tomlkit  # deferred: ~25 ms to import, for TOML metrics files only

            return tomlkit.parse(text).unwrap()
        return yaml.safe_load(text)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"is not {kind} ({first})") from None


def unparseable_metrics(ws: Path, stages: tuple[Stage, ...]) -> str:
    """Why the first declared metrics file that exists does not parse, or ``""``."""
    for rel in (m for s in stages for m in s.metrics):
        path = ws / rel
        if path.is_file():
            try:
                load_metrics_file(path)
            except ValueError as exc:
                return f"metrics file {rel!r} {exc}"
    return ""
