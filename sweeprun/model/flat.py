"""Records' params and metrics as flat columns: ``a.b``, ``a.list[0]``, ``a.list[1].c``.

Here (pure, below the store) because the results index keeps the flattened columns of
every result, and ``show``'s table reads them (:mod:`sweeprun.report.table`).
"""

from __future__ import annotations

from typing import Any


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as columns: ``a.b``, ``a.list[0]``, ``a.list[1].c``."""
    out: dict[str, Any] = {}
    if data and (isinstance(data, dict) or (isinstance(data, list) and prefix)):
        _flat_into(out, data, prefix)
    elif prefix:
        out[prefix] = data
    return out


def _flat_into(out: dict[str, Any], data: dict[Any, Any] | list[Any], prefix: str) -> None:
    # One dict filled in place (show flattens every record of 100,000).
    if isinstance(data, dict):
        named = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in data.items()]
    else:
        named = [(f"{prefix}[{i}]", v) for i, v in enumerate(data)]
    for key, v in named:
        if isinstance(v, (dict, list)) and v:
            _flat_into(out, v, key)
        else:
            out[key] = v


def flatten_section(section: Any) -> dict[str, dict[str, Any]]:
    """``{file: {column: value}}`` of one record's ``params`` or ``metrics``."""
    got = {}
    for path, data in (section or {}).items():
        if type(data) is dict and not any(isinstance(v, (dict, list)) for v in data.values()):
            got[path] = {k if type(k) is str else str(k): v for k, v in data.items()}
        else:  # nested: the usual case is a flat file of scalars, above
            got[path] = flat(data)
    return got
