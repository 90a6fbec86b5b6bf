"""Import circles between the package's modules, function-level imports included; private cross-module imports.

    python scripts/import_cycles.py            # prints every strongly connected group of modules, exit 1 if any

Reads the source with ``ast`` (nothing is imported). An edge A -> B is any ``import``/``from ... import`` in A,
at any depth, that names module B or a name B defines (``from pkg import mod`` counts as an edge to ``pkg.mod``).
Also lists ``from M import _private`` across modules (exit 1 if any).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "minimonkey_eval"


def module_files() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """(modules of the package ``name`` imports, private names it imports from other modules)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    edges, private = set(), []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    edges.add(_known(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in modules else _known(target, modules))
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append(f"{name}: from {target} import {alias.name}")
    edges.discard(name)
    edges.discard(None)
    return edges, private


def _known(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; groups of more than one module (or a module importing itself) are circles."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    modules = module_files()
    graph, private = {}, []
    for name, path in modules.items():
        edges, priv = imports_of(name, path, modules)
        # a package's __init__ importing its own sub-modules is not a circle with them
        graph[name] = {e for e in edges if not (e.startswith(name + ".") and path.name == "__init__.py")}
        private += priv
    cycles = strongly_connected(graph)
    for group in cycles:
        print("circle: " + " <-> ".join(group))
    for line in private:
        print("private import: " + line)
    print(f"{len(modules)} modules, {sum(map(len, graph.values()))} import edges, {len(cycles)} circles, "
          f"{len(private)} private cross-module imports")
    return 1 if cycles or private else 0


if __name__ == "__main__":
    sys.exit(main())
