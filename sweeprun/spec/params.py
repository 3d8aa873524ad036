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
from sweeprun.spec import pyparams, yamlio
from sweeprun.spec.overrides import DELETE
from sweeprun.spec.paramsedit import (
    delete_copy,
    find_node,
    json_dump_like,
    set_copy,
    split_key,
    yaml_structural,
)

_MISSING = object()
_NO_DEFAULT = object()


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
    if suffix == ".py":
        return "py"
    raise UsageError(
        f"{path}: unsupported params file type (use .yaml, .yml, .json, .toml or DVC's .py)"
    )


@dataclass
class ParamsFile:
    """One params file as it is in the workspace being queued."""

    path: str  # relative to the repository root, POSIX separators
    text: str
    fmt: str
    data: dict[str, Any]
    _node: yaml.Node | None = field(default=None, repr=False)
    _interpolates: bool | None = field(default=None, repr=False)

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
        elif fmt == "py":
            data = pyparams.parse(rel, text)
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
        if self.fmt == "py":
            return pyparams.render(self.path, self.text, real, DELETE)
        replace = {k: v for k, v in real.items() if v is not DELETE and has_path(self.data, k)}
        text = self._splice(replace) if replace else self.text
        structural = {k: v for k, v in real.items() if k not in replace}
        if not structural:
            return text
        if self.fmt == "json":
            return json_dump_like(self.text, self.apply(real))
        for key, value in structural.items():
            text = yaml_structural(text, split_key(key), value)
        return text

    def merged(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The params an experiment records: OmegaConf's merge of this file with ``changes``.

        Struct mode (a key the file lacks must have been asked for with ``+``, which the
        override checks did before), typed values, and interpolations (``${model.lr}``)
        resolved. A file without ``${`` has nothing for OmegaConf to resolve, and its merge
        is then exactly :meth:`apply` (``tests/test_omegaconf.py`` checks this on random
        points), which costs 1 µs instead of OmegaConf's 0.6 ms per point.
        """
        if self._interpolates is None:  # once per file, not once per point
            self._interpolates = "${" in self.text
        if not self._interpolates:
            return self.apply(changes)
        return omegaconf_merge(self.path, self.data, changes)

    def apply(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The parsed data with ``changes`` applied (no text involved)."""
        data: Any = self.data
        for key, value in changes.items():
            if value is DELETE:
                data = delete_copy(data, split_key(key))
            else:
                data = set_copy(data, split_key(key), value)
        return dict(data)

    # -- YAML / JSON splicing -------------------------------------------------------------

    def _splice(self, changes: Mapping[str, Any]) -> str:
        if self._node is None:
            self._node = yamlio.compose(self.text)
        spans: list[tuple[int, int, str]] = []
        for key, value in changes.items():
            node = find_node(self._node, split_key(key))
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


def omegaconf_merge(path: str, data: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` merged with ``changes`` by OmegaConf in struct mode, interpolations resolved.

    ``changes`` maps dotted keys to values (:data:`DELETE` removes a key); a key ``data``
    lacks is added (the override checks have made sure ``+`` asked for it).
    """
    from omegaconf import OmegaConf, open_dict  # deferred: ~60 ms to import
    from omegaconf.errors import OmegaConfBaseException

    cfg = OmegaConf.create(data)
    OmegaConf.set_struct(cfg, True)
    for key, value in changes.items():
        try:
            if value is DELETE:
                parent, _, last = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if node is not None and last in node:
                    with open_dict(node):
                        del node[last]
            else:
                OmegaConf.update(cfg, key, value, force_add=not has_path(data, key))
        except OmegaConfBaseException as exc:
            first = str(exc).splitlines()[0]
            raise UsageError(f"{path}: cannot set {key!r}: {first}") from None
    try:
        out = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        # Text that only looks like an interpolation (or a resolver of the program's own):
        # recorded as written, as the program will read it.
        out = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(out, dict)  # created from a mapping
    return {str(k): v for k, v in out.items()}


def _same(old: Any, new: Any) -> bool:
    return old is not _MISSING and type(old) is type(new) and old == new


class ParamsSet:
    """All params files of a spec; the first one is the default for bare keys.

    ``declared`` counts the files the spec itself declares (the rest are files that only
    a stage names, ``{other.yaml: [x]}``): with none declared, there is no default, and a
    bare key is an error rather than a key of whichever file a stage happened to name.
    """

    def __init__(self, files: list[ParamsFile], declared: int | None = None) -> None:
        self.files = files
        self.by_path = {f.path: f for f in files}
        self.declared = len(files) if declared is None else declared

    @property
    def default(self) -> ParamsFile | None:
        return self.files[0] if self.files and self.declared else None

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
