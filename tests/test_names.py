"""Ids and names: unique, selectable, and always safe as git ref components."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeprun.spec.names import is_ref_safe, make_id, render_name, sanitize
from sweeprun.sweepers.grid import expand_matrix

scalars = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.sampled_from(["1", "1.0", "true", "null", "a,b=c", "x]", "'q'", " ", ""]),
)


@given(st.text(max_size=60))
def test_sanitize_is_always_ref_safe(text: str) -> None:
    name = sanitize(text)
    assert is_ref_safe(name)
    assert sanitize(name) == name  # idempotent


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=30))
def test_ref_safe_agrees_with_git(text: str) -> None:
    name = sanitize(text)
    proc = subprocess.run(
        ["git", "check-ref-format", f"refs/sweeprun/exps/x/{name}"],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, name


@given(
    st.lists(scalars, min_size=1, max_size=6, unique_by=lambda v: (type(v), repr(v))),
    st.lists(st.integers(), min_size=1, max_size=4, unique=True),
)
def test_ids_are_unique_within_a_sweep(a: list[Any], b: list[int]) -> None:
    points = expand_matrix({"a": a, "b": b})
    ids = [make_id("s", p) for p in points]
    assert len(set(ids)) == len(ids)


@given(st.dictionaries(st.sampled_from(["x", "y"]), scalars, min_size=1))
def test_rendered_names_are_ref_safe(point: dict[str, Any]) -> None:
    assert is_ref_safe(render_name("n-{x}-{y}", {"x": 0, "y": 0, **point}, {}))


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("exp-1", True),
        ("a.b", True),
        ("a..b", False),
        ("-a", False),
        (".a", False),
        ("a.lock", False),
        ("a b", False),
        ("a/b", False),
        ("a:b", False),
        ("a@{b", False),
        ("@", False),
        ("", False),
        ("a~", False),
        ("é", True),
    ],
)
def test_is_ref_safe_table(name: str, ok: bool) -> None:
    assert is_ref_safe(name) is ok


def test_template_braces_follow_str_format() -> None:
    from sweeprun.spec.names import render_name

    assert render_name("{{{x}", {"x": 1}, {}) == "{1"
    assert render_name("a{{b}}-{x}", {"x": 2}, {}) == "a{b}-2"
