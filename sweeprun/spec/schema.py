"""The JSON Schema of ``sweeps.yaml`` (for editors: ``sweeprun --schema > sweeps.schema.json``).

The loader in :mod:`sweeprun.spec.loader` is the authority (it reports ``file:line:col``); this
schema describes the same language so editors can complete and check it. Tests validate
every example against it.
"""

from __future__ import annotations

import json
from typing import Any

_PATHS: dict[str, Any] = {
    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
}
# DVC's descriptive flags, accepted on outs, metrics and plots (see the loader).
_INFO: dict[str, Any] = {
    "desc": {"type": "string"},
    "type": {"type": "string"},
    "labels": {"type": "array", "items": {"type": "string"}},
    "meta": {},
    "push": {"type": "boolean"},
    "remote": {"type": "string"},
}
_PLOT_PROPS: dict[str, Any] = {
    "x": {},
    "y": {},
    "template": {"type": "string"},
    "title": {"type": "string"},
    "x_label": {"type": "string"},
    "y_label": {"type": "string"},
    "header": {"type": "boolean"},
}


def _outs(*bools: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    flags = {
        "type": "object",
        "additionalProperties": False,
        "properties": {**{f: {"type": "boolean"} for f in bools}, **_INFO, **(extra or {})},
    }
    return _entries(
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"oneOf": [flags, {"type": "null"}]},
        }
    )


def _entries(mapping: dict[str, Any]) -> dict[str, Any]:
    """A path, or a list of paths and ``mapping`` entries (DVC's ``- path: {…}`` form)."""
    return {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"oneOf": [{"type": "string"}, mapping]}},
        ]
    }


_ENV = {
    "type": "object",
    "description": "Environment variables of the commands.",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_PARAMS_REF: dict[str, Any] = _entries(
    {
        "type": "object",
        "description": "{file: [keys]} (null or []: the whole file)",
        "additionalProperties": {
            "oneOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]
        },
    }
)
_STAGE_PROPS: dict[str, Any] = {
    "cmd": {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ],
        "description": "Command; ${key} interpolates a param value, shell-quoted.",
    },
    "deps": _PATHS,
    "outs": _outs("cache", "persist", "checkpoint"),
    "metrics": _outs("cache", "persist"),
    "plots": _outs("cache", "persist", extra=_PLOT_PROPS),
    "wdir": {"type": "string"},
    "env": _ENV,
}
_DIST = "^\\s*(choice|uniform|loguniform|randint|normal)\\s*\\(.*\\)\\s*$"
_BLOCKS: dict[str, Any] = {
    "matrix": {
        "type": "object",
        "description": "Cartesian product (GitHub Actions semantics).",
        "properties": {
            "include": {"type": "array", "items": {"type": "object", "minProperties": 1}},
            "exclude": {"type": "array", "items": {"type": "object", "minProperties": 1}},
            "zip": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1}},
        },
        "additionalProperties": {"type": "array", "minItems": 1},
    },
    "zip": {
        "type": "object",
        "description": "Paired lists of equal length.",
        "minProperties": 1,
        "additionalProperties": {"type": "array", "minItems": 1},
    },
    "values": {
        "type": "array",
        "description": "An explicit list of points.",
        "minItems": 1,
        "items": {"type": "object", "minProperties": 1},
    },
    "random": {
        "type": "object",
        "description": "Seeded random search.",
        "required": ["n", "space"],
        "additionalProperties": False,
        "properties": {
            "n": {"type": "integer", "minimum": 1},
            "seed": {"type": "integer"},
            "space": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "oneOf": [
                        {"type": "array", "minItems": 1},
                        {"type": "string", "pattern": _DIST},
                    ]
                },
            },
        },
    },
    "optimize": {
        "type": "object",
        "description": "Adaptive search (Optuna): points proposed from recorded results.",
        "required": ["trials", "metric", "space"],
        "additionalProperties": False,
        "properties": {
            "trials": {"type": "integer", "minimum": 1},
            "seed": {"type": "integer"},
            "sampler": {"enum": ["tpe", "cmaes", "gp", "random", "qmc", "nsga2"]},
            "metric": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
            "direction": {
                "oneOf": [
                    {"enum": ["min", "max", "minimize", "maximize"]},
                    {
                        "type": "array",
                        "items": {"enum": ["min", "max", "minimize", "maximize"]},
                    },
                ]
            },
            "space": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "oneOf": [
                        {"type": "array", "minItems": 1},
                        {"type": "string", "pattern": _DIST},
                    ]
                },
            },
        },
    },
}
_BLOCK_GROUP = {
    "type": "object",
    "properties": _BLOCKS,
    "additionalProperties": False,
    "minProperties": 1,
}
_SWEEP = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                **_BLOCKS,
                "blocks": {"type": "array", "items": _BLOCK_GROUP, "minItems": 1},
                "name": {"type": "string", "description": "Name template: 'lr{train.lr}'."},
                "expect": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Metric assertions: {acc: '>= 0.8'}.",
                },
            },
            "additionalProperties": False,
        },
        {"type": "array", "items": _BLOCK_GROUP, "minItems": 1},
    ]
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://sweeprun.invalid/sweeps.schema.json",
    "title": "sweeprun sweeps.yaml",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "params": {
            "oneOf": [
                *_PATHS["oneOf"],
                {
                    "type": "object",
                    "description": (
                        "A Hydra app: {hydra: conf/config.yaml} (its primary config), "
                        "composed with the python its cmd runs (or python: PATH)."
                    ),
                    "required": ["hydra"],
                    "additionalProperties": False,
                    "properties": {"hydra": {"type": "string"}, "python": {"type": "string"}},
                },
            ]
        },
        **_STAGE_PROPS,
        "pipeline": {
            "type": "string",
            "description": (
                "A dvc.yaml whose stages this spec sweeps (instead of 'stages'), or a "
                "directory: every dvc.yaml below it."
            ),
        },
        "stages": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["cmd"],
                "additionalProperties": False,
                "properties": {
                    **_STAGE_PROPS,
                    "params": _PARAMS_REF,
                    "frozen": {"type": "boolean", "description": "Never run; outs as they are."},
                    "always_changed": {"type": "boolean", "description": "Never from cache."},
                    "desc": {"type": "string"},
                    "meta": {},
                },
            },
        },
        "sweeps": {"type": "object", "additionalProperties": _SWEEP},
    },
}


def schema_text() -> str:
    """The schema as pretty JSON text."""
    return json.dumps(SCHEMA, indent=2) + "\n"
