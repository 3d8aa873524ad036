"""Render reference docs from the code, so they cannot drift from it.

``python -m sweeprun.docgen > docs/reference/hooks.md`` regenerates the hooks reference;
a test fails when the checked-in file is out of date.
"""

from __future__ import annotations

import inspect

from sweeprun import hookspec


def render_hooks() -> str:
    """Markdown for every hook in :mod:`sweeprun.hookspec`, in source order."""
    source = inspect.getsource(hookspec)
    lines = [
        "# Hooks reference",
        "",
        "Generated from `sweeprun/hookspec.py` by `python -m sweeprun.docgen`.",
        "",
        inspect.cleandoc(hookspec.__doc__ or ""),
        "",
    ]
    hooks = [
        (name, obj)
        for name, obj in vars(hookspec).items()
        if name.startswith("sweeprun_") and callable(obj)
    ]
    hooks.sort(key=lambda item: source.index(f"def {item[0]}("))
    for name, func in hooks:
        opts = getattr(func, "sweeprun_spec", {}) or {}
        flags = [k for k in ("firstresult", "historic") if opts.get(k)]
        sig = str(inspect.signature(func)).replace("'", "")
        lines.append(f"## `{name}{sig}`")
        lines.append("")
        if flags:
            lines.append("*" + ", ".join(flags) + "*")
            lines.append("")
        lines.append(inspect.cleandoc(func.__doc__ or "(undocumented)"))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(render_hooks(), end="")
