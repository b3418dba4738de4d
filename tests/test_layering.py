"""Imports point inward only: core <- store <- service <- server; cli talks HTTP only."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "store", "service", "server"]
FORBIDDEN_IN_CORE = {"asyncio", "aiosqlite", "quart", "hypercorn", "sqlite3"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files_in(layer: str):
    return sorted((ROOT / "app" / layer).rglob("*.py"))


def test_layers_import_inward_only():
    problems = []
    for i, layer in enumerate(LAYERS):
        outer = LAYERS[i + 1:] + ["cli"]
        for path in files_in(layer):
            for name in imports_of(path):
                parts = name.split(".")
                if parts[0] == "app" and len(parts) > 1 and parts[1] in outer:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []


def test_core_is_sans_io():
    problems = []
    for path in files_in("core"):
        for name in imports_of(path):
            if name.split(".")[0] in FORBIDDEN_IN_CORE:
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []


def test_cli_uses_only_the_http_api():
    problems = []
    for path in files_in("cli"):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "app" and len(parts) > 1 and parts[1] in ("store", "service", "server"):
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []
