"""Params files: read them, look keys up by dotted path, write points with minimal diffs.

A queued experiment's params file must differ from the baseline only where its point
differs, so ``git diff`` shows the sweep and nothing else. YAML and JSON values are
spliced into the original text at the positions the parser reports (comments, order,
quoting and layout untouched); TOML goes through tomlkit, which preserves formatting.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweeprun.exceptions import SpecError, UsageError
from sweeprun.spec import yamlio
from sweeprun.spec.overrides import DELETE

_MISSING = object()
_NO_DEFAULT = object()


def split_key(key: str) -> list[str | int]:
    """``"train.layers.0"`` → ``["train", "layers", 0]``."""
    parts: list[str | int] = []
    for part in key.split("."):
        parts.append(int(part) if part.isdigit() else part)
    return parts


def get_path(data: Any, key: str, default: Any = _NO_DEFAULT) -> Any:
    """Value at dotted ``key`` in nested dicts/lists; ``KeyError`` if absent and no default."""
    cur = data
    for part in split_key(key):
        if isinstance(cur, Mapping) and (part in cur or str(part) in cur):
            cur = cur[part] if part in cur else cur[str(part)]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            if default is _NO_DEFAULT:
                raise KeyError(key)
            return default
    return cur


def has_path(data: Any, key: str) -> bool:
    """Whether dotted ``key`` exists in ``data``."""
    absent = object()
    return get_path(data, key, absent) is not absent


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (lists are leaves, as in DVC's tables)."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    elif prefix:
        out[prefix] = data
    return out


def suggest(key: str, candidates: list[str]) -> str:
    """A ``" (did you mean 'x'?)"`` hint, or ``""``."""
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fmt_of(path: str) -> str:
    """Params format from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml"
    raise UsageError(f"{path}: unsupported params file type (use .yaml, .yml, .json or .toml)")


@dataclass
class ParamsFile:
    """One params file as it is in the workspace being queued."""

    path: str  # relative to the repository root, POSIX separators
    text: str
    fmt: str
    data: dict[str, Any]
    _node: yaml.Node | None = field(default=None, repr=False)

    @classmethod
    def load(cls, root: Path, rel: str) -> ParamsFile:
        """Read and parse ``rel`` below ``root``; parse errors are located ``SpecError``s."""
        full = root / rel
        try:
            text = full.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{rel}: params file not found") from None
        return cls.from_text(rel, text)

    @classmethod
    def from_text(cls, rel: str, text: str) -> ParamsFile:
        """Parse params file text (``rel`` names it and sets its format)."""
        fmt = fmt_of(rel)
        data: Any
        if fmt == "yaml":
            data = yamlio.plain(yamlio.load_located(text, rel)) if text.strip() else {}
        elif fmt == "json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SpecError(rel, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}") from None
        else:
            # Deferred: tomlkit costs ~25 ms to import and most params files are YAML.
            import tomlkit  # deferred: ~25 ms to import, for TOML params files only
            import tomlkit.exceptions

            try:
                data = tomlkit.parse(text).unwrap()
            except tomlkit.exceptions.ParseError as exc:
                raise SpecError(rel, exc.line, exc.col, f"invalid TOML: {exc}") from None
        if not isinstance(data, dict):
            raise SpecError(rel, 1, 1, "a params file must hold a mapping at the top level")
        return cls(path=rel, text=text, fmt=fmt, data=data)

    def keys(self) -> list[str]:
        """Every dotted key (leaves and sub-trees)."""
        out: list[str] = []

        def walk(d: Any, prefix: str) -> None:
            if isinstance(d, Mapping):
                for k, v in d.items():
                    key = f"{prefix}.{k}" if prefix else str(k)
                    out.append(key)
                    walk(v, key)

        walk(self.data, "")
        return out

    def check_key(self, key: str, where: str, add_hint: bool = True) -> None:
        """Raise a ``UsageError`` naming ``where`` if ``key`` does not exist here."""
        if not has_path(self.data, key):
            hint = " (prefix it with '+' to add a new key)" if add_hint else ""
            raise UsageError(
                f"{where}: unknown param key {key!r} in {self.path}"
                f"{suggest(key, self.keys())}{hint}"
            )

    def render(self, changes: Mapping[str, Any]) -> str:
        """Text of this file with ``changes`` (dotted key → value) applied minimally.

        A value of :data:`sweeprun.spec.overrides.DELETE` removes the key; a key that does not
        exist is added (callers check that adding was asked for).
        """
        real = {k: v for k, v in changes.items() if not _same(get_path(self.data, k, _MISSING), v)}
        real = {k: v for k, v in real.items() if not (v is DELETE and not has_path(self.data, k))}
        if not real:
            return self.text
        if self.fmt == "toml":
            return self._render_toml(real)
        replace = {k: v for k, v in real.items() if v is not DELETE and has_path(self.data, k)}
        text = self._splice(replace) if replace else self.text
        structural = {k: v for k, v in real.items() if k not in replace}
        if not structural:
            return text
        if self.fmt == "json":
            return _json_dump_like(self.text, self.apply(real))
        for key, value in structural.items():
            text = _yaml_structural(text, split_key(key), value)
        return text

    def apply(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The parsed data with ``changes`` applied (no text involved)."""
        data: Any = self.data
        for key, value in changes.items():
            if value is DELETE:
                data = _delete_copy(data, split_key(key))
            else:
                data = _set_copy(data, split_key(key), value)
        return dict(data)

    # -- YAML / JSON splicing -------------------------------------------------------------

    def _splice(self, changes: Mapping[str, Any]) -> str:
        if self._node is None:
            self._node = yamlio.compose(self.text)
        spans: list[tuple[int, int, str]] = []
        for key, value in changes.items():
            node = _find_node(self._node, split_key(key))
            if node is None:
                raise UsageError(f"{self.path}: cannot locate {key!r} to change it")
            new = json.dumps(value) if self.fmt == "json" else yamlio.dump_scalar(value)
            spans.append((node.start_mark.index, node.end_mark.index, new))
        text = self.text
        for start, end, new in sorted(spans, reverse=True):
            text = text[:start] + new + text[end:]
        return text

    def _render_toml(self, changes: Mapping[str, Any]) -> str:
        import tomlkit  # deferred: ~25 ms to import, for TOML params files only

        doc = tomlkit.parse(self.text)
        for key, value in changes.items():
            parts = split_key(key)
            cur: Any = doc
            for part in parts[:-1]:
                if part not in cur:
                    cur[part] = tomlkit.table()
                cur = cur[part]
            if value is DELETE:
                del cur[parts[-1]]
            else:
                cur[parts[-1]] = value
        return tomlkit.dumps(doc)


def _set_copy(node: Any, parts: list[str | int], value: Any) -> Any:
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
        copy[key] = _set_copy(node.get(key), rest, value)
        return copy
    if isinstance(node, list) and isinstance(head, int):
        items = list(node)
        items[head] = _set_copy(items[head], rest, value)
        return items
    return {head: _set_copy(None, rest, value)}


def _delete_copy(node: Any, parts: list[str | int]) -> Any:
    """``node`` without the key at ``parts`` (containers on the path copied)."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        key: Any = head if head in node or str(head) not in node else str(head)
        if key not in node:
            return node
        copy = dict(node)
        if rest:
            copy[key] = _delete_copy(node[key], rest)
        else:
            del copy[key]
        return copy
    if isinstance(node, list) and isinstance(head, int) and head < len(node):
        items = list(node)
        if rest:
            items[head] = _delete_copy(items[head], rest)
        else:
            del items[head]
        return items
    return node


def _json_dump_like(original: str, data: Any) -> str:
    """Re-serialise JSON with the original's indentation (JSON has no comments to keep)."""
    indent: int | None = None
    for line in original.splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            indent = len(line) - len(stripped)
            break
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    return text + "\n" if original.endswith("\n") else text


def _yaml_structural(text: str, parts: list[str | int], value: Any) -> str:
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
    data = _delete_copy(data, parts) if value is DELETE else _set_copy(data, parts, value)
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
    parent = _find_node(root, parts[:-1])
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
        child = _find_node(node, [parts[depth]])
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
    if _find_node(node, [parts[depth]]) is not None:
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


def _same(old: Any, new: Any) -> bool:
    return old is not _MISSING and type(old) is type(new) and old == new


def _find_node(node: yaml.Node | None, parts: list[str | int]) -> yaml.Node | None:
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


class ParamsSet:
    """All params files of a spec; the first one is the default for bare keys."""

    def __init__(self, files: list[ParamsFile]) -> None:
        self.files = files
        self.by_path = {f.path: f for f in files}

    @property
    def default(self) -> ParamsFile | None:
        return self.files[0] if self.files else None

    def __iter__(self) -> Iterator[ParamsFile]:
        return iter(self.files)

    def resolve(self, key: str) -> tuple[ParamsFile, str]:
        """Split ``[file:]key`` into the params file and the dotted key inside it."""
        if ":" in key:
            fname, _, inner = key.rpartition(":")
            pf = self.by_path.get(fname)
            if pf is None:
                known = ", ".join(self.by_path) or "none"
                raise UsageError(f"{key!r}: {fname!r} is not a params file of the spec ({known})")
            return pf, inner
        if self.default is None:
            raise UsageError(f"{key!r}: the spec declares no params file (add 'params:')")
        return self.default, key

    def qualify(self, key: str) -> str:
        """Canonical form of a point key: bare for the default file, ``file:key`` else."""
        pf, inner = self.resolve(key)
        return inner if pf is self.default else f"{pf.path}:{inner}"
