"""The package's layering, read from its sources: no import cycles, a leaf core, deferred imports only where
they defer a heavy optional dependency, and pyproject.toml shipping every folder."""
from __future__ import annotations

import ast
import sys
import tomllib

import import_graph as graph
import pytest

# what the core may import: JAX, NumPy and the standard library
CORE_ALLOWED = {"jax", "jaxlib", "numpy"}
# third-party packages a function may import lazily (each with a "# deferred: reason" comment)
HEAVY = {"torch", "matplotlib", "transformers", "pandas", "pyarrow", "orbax", "diffusers", "optax", "dm_pix"}


def test_the_import_graph_has_no_cycles():
    found = graph.cycles(graph.graph())
    assert not found, "import cycles (module-level and function-level imports):\n" + "\n".join(map(str, found))


def test_the_cycle_finder_finds_a_cycle():
    assert graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _imports(file):
    tree = ast.parse(file.read_text(), str(file))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node, node.module or "", node.level


def test_the_core_imports_only_jax_numpy_and_the_standard_library():
    core = {name: file for name, file in graph.modules().items() if name.startswith("ieadapt_jax.core")}
    assert "ieadapt_jax.core.attention" in core and "ieadapt_jax.core.rewiring" in core
    for name, file in core.items():
        for node, module, level in _imports(file):
            where = f"{file.relative_to(graph.ROOT)}:{node.lineno}"
            if level:  # relative: must stay inside the core
                depth = len(name.split(".")) - (0 if file.name == "__init__.py" else 1)
                assert level <= depth - 1, f"{where} imports outside the core: {'.' * level}{module}"
                continue
            top = module.split(".")[0]
            assert top in CORE_ALLOWED or top in sys.stdlib_module_names or top == "__future__", (
                f"{where}: the core imports {module}")
            assert not module.startswith("ieadapt_jax") or module.startswith("ieadapt_jax.core"), where


def test_models_never_import_converters_loaders_or_the_package_face():
    for name, file in graph.modules().items():
        if not name.startswith("ieadapt_jax.models"):
            continue
        package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
        for node, module, level in _imports(file):
            target = module if not level else ".".join(package[: len(package) - (level - 1)] + [module])
            assert not target.startswith("ieadapt_jax.convert"), f"{file}:{node.lineno} imports {module}"
            inside = target.startswith(("ieadapt_jax.core", "ieadapt_jax.models"))
            assert inside or not (target == "ieadapt_jax" or target.startswith("ieadapt_jax.")), (
                f"{file}:{node.lineno} imports {target}")


def test_function_level_imports_only_defer_heavy_dependencies_and_say_why():
    problems = []
    for name, file in graph.modules().items():
        tree = ast.parse(file.read_text())
        lines = file.read_text().splitlines()
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                module = node.names[0].name if isinstance(node, ast.Import) else (node.module or "")
                top = module.split(".")[0]
                where = f"{file.relative_to(graph.ROOT)}:{node.lineno}"
                if getattr(node, "level", 0) or top not in HEAVY:
                    problems.append(f"{where}: function-level import of {module} (import it at module level)")
                elif "# deferred:" not in lines[node.lineno - 1]:
                    problems.append(f"{where}: deferred import of {module} without a '# deferred: reason' comment")
    assert not problems, "\n".join(problems)


def test_pyproject_ships_every_folder_of_the_package():
    config = tomllib.loads((graph.ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert config["package-dir"] == {"ieadapt_jax.models": "models", "ieadapt_jax.convert": "convert"}
    folders = set()
    for package, root in graph.FOLDERS.items():
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or "__pycache__" in folder.parts:
                continue
            folders.add(".".join([package, *folder.relative_to(root).parts]))
    assert folders == listed, f"missing from pyproject: {sorted(folders - listed)}; not folders: {sorted(listed - folders)}"


@pytest.mark.parametrize("top", ["models", "convert"])
def test_models_and_convert_are_not_top_level_packages(top):
    config = tomllib.loads((graph.ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert top not in config["packages"]
