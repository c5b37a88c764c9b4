"""The package's import graph, read from its sources with ``ast`` (module-level and function-level imports)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# where each subpackage's files live (pyproject.toml's package-dir)
FOLDERS = {"ieadapt_jax": ROOT / "ieadapt_jax", "ieadapt_jax.models": ROOT / "models",
           "ieadapt_jax.convert": ROOT / "convert"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    found = {}
    for package, folder in FOLDERS.items():
        for file in sorted(folder.rglob("*.py")):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package] + parts)] = file
    return found


def _package_of(name: str, file: Path) -> str:
    return name if file.name == "__init__.py" else name.rpartition(".")[0]


def imports(name: str, file: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module of the package, line, at module level) for each import in ``file``."""
    tree = ast.parse(file.read_text(), str(file))
    package = _package_of(name, file)
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are not run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            top_level.discard(id(node))
    checking = {id(n) for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
                for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from a import b` imports the module a.b where one exists, else the names of module a
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.append((target, node.lineno, id(node) in top_level))
    return sorted(set(out))


def graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in the file)."""
    found = modules()
    known = set(found)
    edges = {name: {t for t, _, _ in imports(name, file, known)} for name, file in found.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    for name in list(edges):
        for target in list(edges[name]):
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in known and not name.startswith(parent + ".") and parent != name:
                    edges[name].add(parent)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    e = graph()
    for c in cycles(e):
        print(len(c), c)
