"""YAML loading that remembers where every key and value came from.

Errors must say ``file:line:col``, so the spec loader builds :class:`LocatedDict` and
:class:`LocatedList` values whose marks point back into the source. Floats follow YAML
1.2 (``1e-3`` is a float, as users expect), not PyYAML's YAML 1.1 default.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

from sweeprun.exceptions import SpecError

Mark = tuple[int, int]  # 1-based (line, col)


class LocatedDict(dict[Any, Any]):
    """A dict that knows the source position of each key and value."""

    key_marks: dict[Any, Mark]
    value_marks: dict[Any, Mark]
    mark: Mark

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_marks = {}
        self.value_marks = {}
        self.mark = (0, 0)


class LocatedList(list[Any]):
    """A list that knows the source position of each item."""

    marks: list[Mark]
    mark: Mark

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.marks = []
        self.mark = (0, 0)


def _m(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class LocatedLoader(yaml.SafeLoader):
    """SafeLoader that builds located containers, rejects duplicate keys, YAML 1.2 floats."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LocatedDict:
        result = LocatedDict()
        result.mark = _m(node)
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in result:
                line, col = _m(key_node)
                raise SpecError(self.name, line, col, f"duplicate key {key!r}")
            result[key] = self.construct_object(value_node, deep=True)
            result.key_marks[key] = _m(key_node)
            result.value_marks[key] = _m(value_node)
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LocatedList:
        result = LocatedList()
        result.mark = _m(node)
        for child in node.value:
            result.append(self.construct_object(child, deep=True))
            result.marks.append(_m(child))
        return result


# Replace the YAML 1.1 float resolver with a YAML 1.2 one on our loader only.
LocatedLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
LocatedLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
LocatedLoader.add_constructor("tag:yaml.org,2002:map", LocatedLoader.construct_mapping)
LocatedLoader.add_constructor("tag:yaml.org,2002:seq", LocatedLoader.construct_sequence)


#: A spec larger than this is refused before it is parsed (parsing is slow: ~3 s a MB).
MAX_SPEC_BYTES = 4 << 20
#: The most nodes a document may have once its aliases are expanded (an "anchor bomb"
#: of nine nested lists of nine aliases is 9**9 nodes in a few hundred bytes).
MAX_NODES = 1_000_000


def load_located(text: str, path: str) -> Any:
    """Parse YAML ``text``; a syntax error becomes a located :class:`SpecError`."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            path,
            0,
            0,
            f"{len(text):,} characters, more than {MAX_SPEC_BYTES:,}: too large for a spec "
            "(generate the values with a sweep block instead of listing them)",
        )
    try:
        loader = LocatedLoader(text)
    except yaml.reader.ReaderError as exc:  # a NUL or other unprintable character
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise SpecError(
            path, line, col, f"invalid YAML: character #x{exc.character:04x} is not allowed"
        ) from None
    loader.name = path
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise SpecError(
                path,
                0,
                0,
                f"the document expands (through YAML aliases) to more than {MAX_NODES:,} "
                "values: refused",
            )
        return loader.construct_document(node)
    except RecursionError:
        raise SpecError(path, 0, 0, "invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(path, line, col, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(path, 0, 0, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in ``node`` with every alias expanded; counted once per node (memo), capped."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_NODES + 1  # a cycle (a recursive alias) counts as too large
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[key] = min(size, MAX_NODES + 1)
    return memo[key]


def plain(value: Any) -> Any:
    """Strip location info: LocatedDict/LocatedList become plain dict/list, recursively."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def compose(text: str) -> yaml.Node | None:
    """Compose ``text`` into a node graph (for text splicing) with YAML 1.2 floats."""
    return yaml.compose(text, Loader=LocatedLoader)


def dump_scalar(value: Any) -> str:
    """Render ``value`` as a one-line YAML flow value that round-trips to the same value."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        # A sweep's values repeat over its points (100,000 points, a few hundred values):
        # each is rendered once. The type is part of the key (1, 1.0 and True are equal).
        return _dump_plain(type(value).__name__, value)
    return _dump(value)


@functools.lru_cache(maxsize=65536)
def _dump_plain(kind: str, value: Any) -> str:
    return _dump(value)


def _dump(value: Any) -> str:
    text: str = yaml.dump(
        plain(value),
        Dumper=yaml.SafeDumper,
        default_flow_style=True,
        width=2**31,
        allow_unicode=True,
    )
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    text = text.rstrip("\n")
    # PyYAML writes 1e-05 as "1.0e-05" which YAML 1.2 parses fine; keep it.
    return text
