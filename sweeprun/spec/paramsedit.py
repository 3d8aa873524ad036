"""Editing params text with minimal diffs: values spliced in, keys added or removed by line.

A queued experiment's params file must differ from the baseline only where its point
differs, so ``git diff`` shows the sweep and nothing else. Pure functions on text and data;
:class:`sweeprun.spec.params.ParamsFile` uses them.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from sweeprun.spec import yamlio
from sweeprun.spec.overrides import DELETE


def split_key(key: str) -> list[str | int]:
    """``"train.layers.0"`` → ``["train", "layers", 0]``."""
    parts: list[str | int] = []
    for part in key.split("."):
        parts.append(int(part) if part.isdigit() else part)
    return parts


def set_copy(node: Any, parts: list[str | int], value: Any) -> Any:
    """``node`` with ``parts`` set to ``value``, copying only the containers on the path.

    Points of a sweep share everything they do not change, which keeps expanding
    100,000 points cheap.
    """
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        key: Any = head if head in node or str(head) not in node else str(head)
        copy = dict(node)
        copy[key] = set_copy(node.get(key), rest, value)
        return copy
    if isinstance(node, list) and isinstance(head, int):
        items = list(node)
        items[head] = set_copy(items[head], rest, value)
        return items
    return {head: set_copy(None, rest, value)}


def delete_copy(node: Any, parts: list[str | int]) -> Any:
    """``node`` without the key at ``parts`` (containers on the path copied)."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        key: Any = head if head in node or str(head) not in node else str(head)
        if key not in node:
            return node
        copy = dict(node)
        if rest:
            copy[key] = delete_copy(node[key], rest)
        else:
            del copy[key]
        return copy
    if isinstance(node, list) and isinstance(head, int) and head < len(node):
        items = list(node)
        if rest:
            items[head] = delete_copy(items[head], rest)
        else:
            del items[head]
        return items
    return node


def json_dump_like(original: str, data: Any) -> str:
    """Re-serialise JSON with the original's indentation (JSON has no comments to keep)."""
    indent: int | None = None
    for line in original.splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            indent = len(line) - len(stripped)
            break
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    return text + "\n" if original.endswith("\n") else text


def yaml_structural(text: str, parts: list[str | int], value: Any) -> str:
    """Add (``value``) or delete (``DELETE``) one key in YAML text, touching only its lines.

    Block mappings are edited line by line; anything else (flow style, sequences on the
    path) falls back to re-dumping the file, which loses its comments.
    """
    root = yamlio.compose(text)
    if value is DELETE:
        edited = _yaml_delete_lines(text, root, parts)
    else:
        edited = _yaml_add_lines(text, root, parts, value)
    if edited is not None:
        return edited
    data = yamlio.plain(yamlio.load_located(text, "params")) or {}
    data = delete_copy(data, parts) if value is DELETE else set_copy(data, parts, value)
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True))


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _after_line(text: str, index: int) -> int:
    """Index just past the line containing position ``index`` (a node's end)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def _yaml_delete_lines(text: str, root: yaml.Node | None, parts: list[str | int]) -> str | None:
    parent = find_node(root, parts[:-1])
    if not isinstance(parent, yaml.MappingNode) or parent.flow_style:
        return None
    for i, (k, v) in enumerate(parent.value):
        if k.value == str(parts[-1]):
            if len(parent.value) == 1:
                return None  # the mapping would become empty: let the dump decide
            start = _line_start(text, k.start_mark.index)
            end = _after_line(text, v.end_mark.index)
            if i + 1 < len(parent.value):
                end = min(end, _line_start(text, parent.value[i + 1][0].start_mark.index))
            return text[:start] + text[end:]
    return text


def _yaml_add_lines(
    text: str, root: yaml.Node | None, parts: list[str | int], value: Any
) -> str | None:
    node = root
    depth = 0
    while depth < len(parts) - 1:
        child = find_node(node, [parts[depth]])
        if not isinstance(child, yaml.MappingNode):
            break
        node, depth = child, depth + 1
    if root is None:
        body = yaml.safe_dump(
            _nest(parts, value), sort_keys=False, default_flow_style=False, allow_unicode=True
        )
        return text + ("" if not text or text.endswith("\n") else "\n") + body
    if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
        return None
    if find_node(node, [parts[depth]]) is not None:
        return None  # a non-mapping is in the way
    indent = node.value[0][0].start_mark.column
    body = yaml.safe_dump(
        _nest(parts[depth:], value), sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    lines = "".join(" " * indent + line + "\n" for line in body.splitlines())
    at = _after_line(text, node.value[-1][1].end_mark.index)
    prefix = text[:at] if at == 0 or text[at - 1] == "\n" else text[:at] + "\n"
    return prefix + lines + text[at:]


def _nest(parts: list[str | int], value: Any) -> Any:
    for part in reversed(parts):
        value = {part: value}
    return value


def find_node(node: yaml.Node | None, parts: list[str | int]) -> yaml.Node | None:
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    node = v
                    break
            else:
                return None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return None
            node = node.value[part]
        else:
            return None
    return node
