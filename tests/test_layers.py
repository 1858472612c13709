"""The layering of src/hiwater stays true: no import cycle, and no import running back up.

Every ``import`` and ``from … import`` in the package is read with ``ast`` (top-level and inside
functions alike, relative imports resolved), so an import moved into a function to dodge a
cycle is still seen. Each module has one layer (LAYER; a package's modules share its layer). A
module may import a lower layer; the same layer only inside its own package (``sources/*``
among themselves); never a higher one. docs: the architecture review, §4.1.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "hiwater"
ROOT = "hiwater"  # the package itself (__init__.py): the façade that re-exports the API

# One table: the layer of every top-level module or sub-package of src/hiwater.
LAYER = {
    # L0, the ground: pure helpers and records, importing only each other
    "decide": 0, "values": 0, "types": 0, "durations": 0, "options": 0, "state": 0, "summary": 0,
    "errors": 0, "events": 0, "urls": 0, "netguard": 0, "extras": 0, "keyhash": 0, "deathsig": 0, "encode": 0, "jsontext": 0, "terminal": 0,
    # L1: pure builders, the readers and the stores (each package may import itself)
    "window": 1, "report": 1, "project": 1, "freshness": 1, "sources": 1, "targets": 1,
    # L2: one batch checked (prepare); one stream resolved (spec)
    "prepare": 2, "spec": 2,
    # L3: one batch applied; L4: one run; L5: one stream opened and run; L6: specs in processes
    "apply": 3, "loader": 4, "stream": 5, "executor": 6,
    # L5 too: a bucketed file stream's read phase planned (its splits, spill folder, each bucket's share)
    "shuffle": 5,
    # L7: which specs, in what order (never each other); L8: the Python API; L9: the command line
    "pipeline": 7, "buckets": 7, "rebucket": 7, "status": 7, "verify": 7, "api": 8,
    # L9: the front ends over the API (the status page) and the options the commands share; L10: the
    # command line and the package façade
    "ui": 9, "clioptions": 9, "cli": 10, ROOT: 10,
    # `hiwater simulate` runs real loads through the API (hiwater.load, hiwater.state_show): a client
    # of the package, above it; the command line reaches it only by name (importlib), never by import
    "simulate": 11,
}
CLI_MAY_IMPORT = {"api", "ui", "clioptions"} | {m for m, layer in LAYER.items() if layer == 0}


def _module_of(path: Path) -> str:
    """``hiwater.sources.sql`` for src/hiwater/sources/sql.py; ``hiwater.sources`` for its __init__."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(module: str) -> bool:
    p = SRC.parent.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def hiwater_imports():
    """``(module, imported module, line)`` for every import of a hiwater module in src/hiwater."""
    for path in sorted(SRC.rglob("*.py")):
        mod = _module_of(path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from . import values`: the module hiwater.values; `from .x import name`: hiwater.x
                targets = [f"{base}.{a.name}" if _exists(f"{base}.{a.name}") else base for a in node.names]
            else:
                continue
            for imported in dict.fromkeys(targets):
                if imported == ROOT or imported.startswith(ROOT + "."):
                    yield mod, imported, node.lineno


def top(module: str) -> str:
    """The table's name for a module: its top-level module or sub-package under hiwater."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def test_every_module_has_a_layer():
    missing = sorted({_module_of(p) for p in SRC.rglob("*.py") if top(_module_of(p)) not in LAYER})
    assert not missing, f"place these modules in tests/test_layers.py LAYER: {missing}"


def test_no_module_imports_upward_or_sideways():
    bad = []
    for mod, imported, line in hiwater_imports():
        a, b = LAYER[top(mod)], LAYER[top(imported)]
        if b > a or (b == a > 0 and top(mod) != top(imported)):
            bad.append(f"{mod}:{line} imports {imported}: layer {a} may not import layer {b}")
    if bad:
        pytest.fail("\n".join(bad))


def test_the_command_line_goes_through_the_api():
    bad = [f"{mod}:{line} imports {imported}" for mod, imported, line in hiwater_imports()
           if top(mod) == "cli" and top(imported) not in CLI_MAY_IMPORT]
    assert not bad, "cli.py may import hiwater.api and the ground (layer 0) only:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph: dict = {}
    for mod, imported, _ in hiwater_imports():
        if imported != mod:
            graph.setdefault(mod, set()).add(imported)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _strongly_connected(graph: dict) -> list:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict = {}
    low: dict = {}
    on_stack: set = set()
    stack: list = []
    out: list = []
    nodes = set(graph) | {m for targets in graph.values() for m in targets}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                out.append(component)
    return out
