"""The package's import graph from source (AST, function-local imports included) and its layer rules.

Used by ``tests/test_architecture.py`` (the rules are a test) and ``scripts/arch_metrics.py`` (before /
after numbers for any source root). A module's *layer* is its top-level package, except that
``sims.infra`` (the science-free floor) is a layer of its own.

>>> imports_of("import os\\nfrom sims.infra import mean_se\\ndef f():\\n    import jax\\n")
[Import(module='os', line=1, local=False, names=()), \
Import(module='sims.infra', line=2, local=False, names=('mean_se',)), \
Import(module='jax', line=4, local=True, names=())]
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

PACKAGES = ("twolayer", "sims", "realdata", "paper_figures")
LAYERS = ("twolayer", "sims.infra", "sims", "realdata", "paper_figures")

# layer -> project layers it may import (the picture of docs/ARCHITECTURE.md)
ALLOWED_LAYERS: dict[str, frozenset[str]] = {
    "twolayer": frozenset(),
    "sims.infra": frozenset(),
    "sims": frozenset({"twolayer", "sims.infra"}),
    "realdata": frozenset({"sims.infra"}),
    "paper_figures": frozenset({"sims.infra", "sims", "realdata"}),
}
# layer -> third-party top-level modules it may import (None: any)
ALLOWED_THIRD_PARTY: dict[str, frozenset[str] | None] = {
    "twolayer": frozenset({"jax", "jaxlib", "numpy", "scipy"}),
    "sims.infra": frozenset({"tqdm", "dask", "distributed", "submitit", "numpy", "scipy"}),
    "sims": None,
    "realdata": None,
    "paper_figures": None,
}
# (importer prefix, forbidden module prefixes): finer rules inside a layer
FORBIDDEN_WITHIN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("realdata.data", ("realdata.train", "realdata.tasks", "realdata.benchmark", "sims.infra.store",
                       "sims.infra.executors", "sims.infra.RunStore", "sims.infra.run_units")),
)


class Import(NamedTuple):
    """One import statement's target: absolute module name, line, inside a function or not, and the
    names taken from it (``from M import a, b``)."""

    module: str
    line: int
    local: bool
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Violation:
    """A broken layer rule."""

    module: str
    line: int
    target: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}: {self.rule}"


def imports_of(source: str, module: str = "") -> list[Import]:
    """Every import in ``source`` (relative ones resolved against ``module``), in line order."""
    out: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(Import(a.name, child.lineno, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".")[: -child.level]
                    base = ".".join([*parts, base] if base else parts)
                if base != "__future__":
                    out.append(Import(base, child.lineno, local,
                                      tuple(a.name for a in child.names)))
            visit(child, inner)

    visit(ast.parse(source), False)
    return sorted(out, key=lambda i: i.line)


def layer_of(module: str) -> str | None:
    """The project layer of a dotted module name, or None for stdlib / third-party."""
    if module == "sims.infra" or module.startswith("sims.infra."):
        return "sims.infra"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def module_name(root: Path, path: Path) -> str:
    """Dotted name of ``path`` under ``root`` (``pkg/__init__.py`` -> ``pkg``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path) -> Iterator[tuple[str, Path]]:
    """(module name, path) of every module of the four packages under ``root``."""
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            yield module_name(root, path), path


def check_module(module: str, source: str) -> list[Violation]:
    """Layer-rule violations of one module's source (see :data:`ALLOWED_LAYERS`)."""
    layer = layer_of(module)
    if layer is None:
        return []
    found = []
    stdlib = sys.stdlib_module_names
    for imp in imports_of(source, module):
        target_layer = layer_of(imp.module)
        top = imp.module.split(".")[0]
        if target_layer is None:
            allowed = ALLOWED_THIRD_PARTY[layer]
            if allowed is not None and top not in stdlib and top not in allowed:
                found.append(Violation(module, imp.line, imp.module,
                                       f"{layer} may import only {sorted(allowed)} and the stdlib"))
        elif target_layer != layer and target_layer not in ALLOWED_LAYERS[layer]:
            found.append(Violation(module, imp.line, imp.module,
                                   f"{layer} may import only {sorted(ALLOWED_LAYERS[layer]) or 'no'}"
                                   " project layers"))
        for prefix, banned in FORBIDDEN_WITHIN:
            if module == prefix or module.startswith(prefix + "."):
                targets = [imp.module, *(f"{imp.module}.{n}" for n in imp.names)]
                for b in banned:
                    if any(t == b or t.startswith(b + ".") for t in targets):
                        found.append(Violation(module, imp.line, imp.module,
                                               f"{prefix} (pure readers) must not import {b}"))
                        break
    return found


def layer_edges(modules: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """(importer layer, imported layer) -> 'module:line' sites, over (module, source) pairs."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, source in modules:
        src = layer_of(module)
        for imp in imports_of(source, module):
            dst = layer_of(imp.module)
            if src and dst and src != dst:
                edges.setdefault((src, dst), []).append(f"{module}:{imp.line}")
    return edges


def cycles(edges: Iterable[tuple[str, str]]) -> list[tuple[str, ...]]:
    """Strongly connected sets of more than one node (each a sorted tuple) of a directed graph."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())

    def reach(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reachable = {n: reach(n) for n in graph}
    comps = {tuple(sorted(m for m in graph if m in reachable[n] and n in reachable[m]))
             for n in graph if n in reachable[n]}
    return sorted(c for c in comps if len(c) > 1)
