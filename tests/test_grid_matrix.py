"""Matrix expansion follows GitHub Actions semantics (table-driven + properties)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeprun.exceptions import SweepValueError
from sweeprun.sweepers.grid import expand_matrix

CASES: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
    ({"a": [1, 2]}, [{"a": 1}, {"a": 2}]),
    (
        {"a": [1, 2], "b": ["x", "y"]},
        [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}],
    ),
    # exclude: partial match removes every matching combination
    (
        {"a": [1, 2], "b": ["x", "y"], "exclude": [{"a": 1}]},
        [{"a": 2, "b": "x"}, {"a": 2, "b": "y"}],
    ),
    (
        {"a": [1, 2], "b": ["x", "y"], "exclude": [{"a": 1, "b": "y"}]},
        [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}],
    ),
    # include: extends combinations whose original values it does not overwrite ...
    ({"a": [1, 2], "include": [{"a": 1, "c": True}]}, [{"a": 1, "c": True}, {"a": 2}]),
    ({"a": [1, 2], "include": [{"c": 0}]}, [{"a": 1, "c": 0}, {"a": 2, "c": 0}]),
    # ... else it becomes a new combination
    ({"a": [1, 2], "include": [{"a": 3, "c": 1}]}, [{"a": 1}, {"a": 2}, {"a": 3, "c": 1}]),
    # added values can be overwritten by a later include
    ({"a": [1], "include": [{"c": 1}, {"c": 2}]}, [{"a": 1, "c": 2}]),
    # exclude happens before include
    (
        {"a": [1, 2], "exclude": [{"a": 1}], "include": [{"a": 1, "c": 1}]},
        [{"a": 2}, {"a": 1, "c": 1}],
    ),
    # only include
    ({"include": [{"a": 1}, {"a": 2}]}, [{"a": 1}, {"a": 2}]),
    # True is not 1
    ({"a": [1, True], "exclude": [{"a": True}]}, [{"a": 1}]),
]


@pytest.mark.parametrize(("block", "expected"), CASES)
def test_matrix_semantics(block: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    assert expand_matrix(block) == expected


@pytest.mark.parametrize(
    ("block", "message", "keypath"),
    [
        ({"a": 1}, "matrix key 'a' must be a list of values", ("a",)),
        ({"a": []}, "matrix key 'a' has no values", ("a",)),
        ({"a": [1], "exclude": {"a": 1}}, "'exclude' must be a list of mappings", ("exclude",)),
        (
            {"a": [1], "include": [3]},
            "'include' entry 1 must be a non-empty mapping",
            ("include", 0),
        ),
        (
            {"a": [1], "exclude": [{"b": 1}]},
            "exclude entry 1 names 'b', which is not a matrix key",
            ("exclude", 0),
        ),
    ],
)
def test_matrix_errors(block: dict[str, Any], message: str, keypath: tuple[Any, ...]) -> None:
    with pytest.raises(SweepValueError) as info:
        expand_matrix(block)
    assert info.value.message == message
    assert info.value.keypath == keypath


axes = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
    min_size=1,
    max_size=3,
)


@given(axes)
def test_product_size_and_order(block: dict[str, list[int]]) -> None:
    points = expand_matrix(block)
    size = 1
    for values in block.values():
        size *= len(values)
    assert len(points) == size
    assert points == expand_matrix(dict(block))  # stable
    assert len({tuple(sorted(p.items())) for p in points}) == size  # distinct


@given(axes, st.data())
def test_exclude_removes_exactly_the_matches(
    block: dict[str, list[int]], data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(block)))
    value = data.draw(st.sampled_from(block[key]))
    points = expand_matrix({**block, "exclude": [{key: value}]})
    assert all(p[key] != value for p in points)
    assert points == [p for p in expand_matrix(block) if p[key] != value]
