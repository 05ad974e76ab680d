"""Structure figures of a source tree: layer cycles, imports against the layers, function-local
imports, largest function, lines per module.

    PYTHONPATH=$PWD python scripts/arch_metrics.py [ROOT ...]    # default ROOT: this checkout

Prints one JSON object per root. Layers and rules: ``tests/import_graph.py`` (the same ones
``tests/test_architecture.py`` asserts). Before ``sims/infra`` existed, the run store and executors
lived in ``sims``; their imports count as ``sims`` imports there.
"""

from __future__ import annotations

import ast
import json
import statistics
import sys
from pathlib import Path

from tests.import_graph import check_module, cycles, imports_of, layer_edges, package_modules


def metrics(root: Path) -> dict:
    """The figures of one source root (see module docstring)."""
    sources = [(name, path.read_text()) for name, path in package_modules(root)]
    edges = layer_edges(sources)
    violations = [str(v) for name, src in sources for v in check_module(name, src)]
    local = {}
    largest = (0, "")
    lines = {}
    for name, src in sources:
        lines[name] = len(src.splitlines())
        n_local = sum(1 for imp in imports_of(src, name) if imp.local)
        if n_local:
            local[name] = n_local
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > largest[0]:
                    largest = (size, f"{name}.{node.name}")
    return {
        "root": str(root),
        "modules": len(sources),
        "layer_cycles": [list(c) for c in cycles(edges)],
        "layer_edges": {f"{a} -> {b}": len(s) for (a, b), s in sorted(edges.items())},
        "imports_against_layers": len(violations),
        "violations": violations,
        "function_local_imports": sum(local.values()),
        "function_local_imports_by_package": {
            pkg: sum(n for m, n in local.items() if m.split(".")[0] == pkg)
            for pkg in ("twolayer", "sims", "realdata", "paper_figures")},
        "largest_function_lines": largest[0],
        "largest_function": largest[1],
        "module_lines_max": max(lines.values()),
        "module_lines_max_module": max(lines, key=lines.get),
        "module_lines_median": statistics.median(lines.values()),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: one JSON object per root."""
    roots = [Path(a) for a in (sys.argv[1:] if argv is None else argv)] or [Path.cwd()]
    for root in roots:
        print(json.dumps(metrics(root), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
