"""The architecture as tests: the layers contract, module size, deferred imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sweeprun"
#: Top-level public modules that may defer an import of sweeprun's own (said why inline):
#: the package __init__ runs for every submodule import, and a training script imports
#: the api for make_checkpoint.
# pytest_plugin.py is imported by every pytest run where sweeprun is installed.
MAY_DEFER_OWN = {"__init__.py", "api.py", "pytest_plugin.py"}
MAX_LINES = 420  # "~400"


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is a test extra: pip install -e '.[test]'"
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_is_much_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _deferred_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, explained) of each import inside a function; a block of imports is
    explained by a comment on the line above it or on one of its lines."""
    lines = path.read_text().splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for n in ast.walk(node):
            if isinstance(n, ast.Import | ast.ImportFrom):
                module = n.module or "" if isinstance(n, ast.ImportFrom) else n.names[0].name
                if isinstance(n, ast.ImportFrom) and n.level:
                    module = "sweeprun." + module
                first = n.lineno - 1
                while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
                    first -= 1  # the top of this block of imports
                block = lines[first - 1 : n.end_lineno]
                explained = any("#" in line for line in block)
                out.append((n.lineno, module, explained))
    return out


def test_imports_inside_functions_only_defer_heavy_dependencies_and_say_why() -> None:
    problems = []
    for path in _modules():
        rel = str(path.relative_to(PACKAGE))
        for line, module, explained in _deferred_imports(path):
            own = module == "sweeprun" or module.startswith("sweeprun.")
            if own and path.name not in MAY_DEFER_OWN:
                problems.append(f"{rel}:{line}: {module} (import it at the top)")
            elif not explained:
                problems.append(f"{rel}:{line}: {module} (say why it is deferred)")
    assert problems == []


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, under ``TYPE_CHECKING`` too."""
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom) and n.module:
            out.add(("sweeprun." if n.level else "") + n.module)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
    return out


def test_the_run_layer_knows_no_session() -> None:
    """The runner gets run options, the store, a stop token, an event sink and a source:
    nothing of ``_core`` — not even for type hints (which the import contract ignores)."""
    knows = {
        str(p.relative_to(PACKAGE)): sorted(
            m for m in _imported(p) if m.startswith("sweeprun._core")
        )
        for p in _modules()
        if p.parent.name == "run"
    }
    assert {k: v for k, v in knows.items() if v} == {}


def test_only_the_store_writes_ref_transactions() -> None:
    """Commands and the runner ask the store for a transition by name (see
    ``store/transitions.py``); none builds an ``update-ref`` transaction itself."""
    words = ("RefOp", ".updater", "RefUpdater", '"update-ref"')
    found = {
        str(p.relative_to(PACKAGE)): [w for w in words if w in p.read_text()]
        for p in _modules()
        if p.parent.name != "store"
    }
    assert {k: v for k, v in found.items() if v} == {}
