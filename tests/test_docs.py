"""Docs that are generated from code must be up to date; the README's promises hold."""

from __future__ import annotations

from pathlib import Path

from sweeprun.docgen import render_hooks

ROOT = Path(__file__).resolve().parents[1]


def test_hooks_reference_is_current() -> None:
    current = (ROOT / "docs" / "reference" / "hooks.md").read_text()
    assert current == render_hooks(), "run: python -m sweeprun.docgen > docs/reference/hooks.md"


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    commands = [ln.strip() for ln in text.splitlines() if ln.startswith("    python3 -m venv")]
    assert commands[0].endswith("pip install . && sweeprun demo")
    assert commands[1].endswith('pip install -e ".[test]" && python -m pytest')
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
