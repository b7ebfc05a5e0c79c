"""The pipeline's modules form layers: no import cycle, deferred imports included, and every
module imports on its own in a fresh interpreter (as pip-tools tests its package)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from monorepo import ROOT

PACKAGE = ROOT / "src" / "wheelpipe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """Every wheelpipe module the file imports, at its top or inside a function alike."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("wheelpipe")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("wheelpipe"):
                stem = node.module
            else:
                continue
            # `from . import x` imports the module x; `from .m import f` the module m.
            for alias in node.names:
                candidate = f"{stem}.{alias.name}"
                found.add(candidate if candidate in MODULES else stem)
    found.discard(name)
    # A package's modules import it (its __init__) first; that is no dependency on its siblings.
    return {m for m in found if m in MODULES and not name.startswith(m + ".")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_pipeline_is_part_of_an_import_cycle() -> None:
    graph = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# In one fresh interpreter, each module imported with no module of the pipeline loaded before
# it: what another module happened to import first cannot hide a broken import. (Third-party
# modules stay loaded between the imports; they cannot depend on the pipeline.)
_EACH_ON_ITS_OWN = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "wheelpipe" or m.startswith("wheelpipe.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    result = subprocess.run([sys.executable, "-c", _EACH_ON_ITS_OWN, *MODULES], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
