"""Docs that run: every ``console`` block of README.md and docs/ is executed as written.

Each Markdown file's blocks run in order in one ``bash`` session, in a fresh temporary
directory (so ``cd`` in one block holds for the next), as a reader would type them. Output
shown under a ``$`` line is checked loosely: each shown line must appear in the command's
output, in order, with whitespace collapsed and numbers and hashes free to differ (``...``
skips any lines). A command with no output shown must exit 0.

HTML comments steer it, invisible in the rendered page:

- ``<!-- doc-test: setup NAME -->`` (anywhere in a file): start from a prepared project
  (:data:`SETUPS`) instead of an empty directory;
- ``<!-- doc-test: skip REASON -->`` right before a block: not run here, and why (a real
  cluster, a package index).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sweeprun.testing import ENV

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"<!--\s*doc-test:\s*skip\s+(.+?)\s*-->")
_SETUP = re.compile(r"<!--\s*doc-test:\s*setup\s+([\w-]+)\s*-->")
_END = "@@doc-test-end@@"
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")

# Prepared projects a doc may start from (shell run in the empty directory).
QUICKSTART = f"""
cp -r {ROOT / "examples" / "quickstart"}/. . && git init -q && git add -A && git commit -qm baseline
"""


def _example(name: str) -> str:
    src = ROOT / "examples" / name
    return f"cp -r {src}/. . && git init -q && git add -A && git commit -qm baseline\n"


SETUPS = {
    "quickstart": QUICKSTART,
    "pipeline": _example("pipeline"),
    "dvc-project": _example("dvc-project"),
    "hydra-app": _example("hydra-app"),
}


@dataclass
class Command:
    line: int
    text: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    commands: list[Command]
    skip: str = ""


def blocks(path: Path) -> tuple[list[Block], str]:
    """The console blocks of ``path`` and its setup's name (``""``: an empty directory)."""
    lines = path.read_text().splitlines()
    setup = ""
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _SETUP.search(lines[i])
        if m:
            setup = m.group(1)
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        lang, start = fence.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if lang == "console":
            before = lines[start - 1] if start else ""
            skip = _SKIP.search(before)
            out.append(
                Block(
                    start + 1,
                    _commands(lines[start + 1 : j], start + 2),
                    skip.group(1) if skip else "",
                )
            )
        i = j + 1
    return out, setup


def _commands(body: list[str], first: int) -> list[Command]:
    cmds: list[Command] = []
    k = 0
    while k < len(body):
        line = body[k]
        if line.lstrip().startswith("$ "):
            text = line.lstrip()[2:]
            while text.endswith("\\") and k + 1 < len(body):
                k += 1
                text = text[:-1] + "\n" + body[k]
            heredoc = _HEREDOC.search(text)
            if heredoc:  # `cat > f <<'EOF'`: the lines up to EOF are the command's input
                while k + 1 < len(body):
                    k += 1
                    text += "\n" + body[k]
                    if body[k] == heredoc.group(1):
                        break
            cmds.append(Command(first + k, text))
        elif cmds and line.strip():
            cmds[-1].shown.append(line.strip())
        k += 1
    return cmds


def _loose(line: str) -> str:
    line = re.sub(r"\b[0-9a-f]{7,40}\b", "H", line)
    line = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", line)
    line = re.sub(r"([=_-])\1{2,}", r"\1\1", line)  # rules follow the terminal's width
    return " ".join(line.split())


def _matches(want: str, got: str) -> bool:
    """``got`` (loosened) is ``want`` (loosened), where ``...`` in ``want`` is any text."""
    if "..." not in want:
        return got == want
    return re.fullmatch(".*".join(re.escape(p) for p in want.split("...")), got) is not None


def check_shown(shown: list[str], output: str) -> str:
    """Why ``shown`` does not appear in ``output`` in order, or ``""``."""
    got = [_loose(x) for x in output.splitlines()]
    i = 0
    for want in shown:
        if want in ("...", "…"):
            continue
        w = _loose(want)
        while i < len(got) and not _matches(w, got[i]):
            i += 1
        if i == len(got):
            return f"the docs show {want!r}, not in the output (in order)"
        i += 1
    return ""


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, **ENV, HOME=str(home), COLUMNS="80", LC_ALL="C.UTF-8")
    env.pop("GIT_AUTHOR_DATE")
    env.pop("GIT_COMMITTER_DATE")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _run_file_at(path: Path, tmp: Path) -> list[str]:
    """Problems of running ``path``'s blocks (a doc anywhere; paths shown as given)."""
    return _run_file(path, tmp, relative=False)


def _run_file(path: Path, tmp: Path, relative: bool = True) -> list[str]:
    found, setup = blocks(path)
    runnable = [b for b in found if not b.skip]
    if not runnable:
        return []
    work = tmp / "work"
    work.mkdir()
    (tmp / "home").mkdir()
    script = ["exec 2>&1", "set +e"]  # what a terminal shows: both streams, interleaved
    if setup:
        script += ["set -e", SETUPS[setup], "set +e"]
    cmds = [c for b in runnable for c in b.commands]
    for c in cmds:
        script.append(f"{c.text}\n__rc=$?; echo; echo '{_END}' $__rc")
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=_env(tmp / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    parts = proc.stdout.split(_END)
    problems = []
    if len(parts) < len(cmds) + 1:
        return [
            f"the session stopped early (setup failed?): {proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        ]
    for c, before, after in zip(cmds, parts, parts[1:], strict=False):
        rc = int(after.split("\n", 1)[0].strip() or 0)
        output = before if c is cmds[0] else before.split("\n", 1)[1] if "\n" in before else ""
        why = check_shown(c.shown, output) if c.shown else ("" if rc == 0 else f"exit code {rc}")
        if why:
            where = path.relative_to(ROOT) if relative else path
            problems.append(f"{where}:{c.line}: $ {c.text}\n  {why}\n{output[-1200:]}")
    if problems:
        problems.append(f"(stderr of the session: {proc.stderr[-1500:]})")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_console_blocks_run_as_written(path: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    problems = _run_file(path, tmp_path)
    assert not problems, "\n\n".join(problems)


def test_skipped_blocks_say_why() -> None:
    for path in DOCS:
        found, setup = blocks(path)
        assert not setup or setup in SETUPS, f"{path}: unknown setup {setup!r}"
        for b in found:
            assert b.skip != "" or b.commands, f"{path}:{b.line}: a console block without $ lines"


def test_the_checker_catches_a_wrong_doc(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```console\n$ echo hello 123\nhello 456\n$ false\n$ echo a; echo b\nb\na\n```\n"
    )
    run = tmp_path / "run"
    run.mkdir()
    problems = _run_file_at(doc, run)
    joined = "\n".join(problems)
    assert "$ echo hello 123" not in joined  # numbers may differ: "hello 456" matches
    assert "$ false\n  exit code 1" in joined
    assert "$ echo a; echo b\n  the docs show 'a', not in the output (in order)" in joined
