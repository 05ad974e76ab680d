"""The layer picture of docs/ARCHITECTURE.md as a test: every module's imports (AST, function-local
ones included) obey the layer rules of :mod:`tests.import_graph`, packages form no import cycle, and
the two CLIs load only their own framework."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.import_graph import (
    check_module,
    cycles,
    imports_of,
    layer_edges,
    layer_of,
    package_modules,
)

ROOT = Path(__file__).resolve().parents[1]
MODULES = [(name, path.read_text()) for name, path in package_modules(ROOT)]


@pytest.mark.parametrize(("name", "source"), [pytest.param(n, s, id=n) for n, s in MODULES])
def test_module_obeys_layer_rules(name, source):
    bad = check_module(name, source)
    assert not bad, "layer rules broken:\n" + "\n".join(map(str, bad))


def test_every_package_module_is_scanned():
    layers = {layer_of(name) for name, _ in MODULES}
    assert layers == {"twolayer", "sims.infra", "sims", "realdata", "paper_figures"}
    assert len(MODULES) > 40


def test_no_import_cycle_between_packages():
    edges = layer_edges(MODULES)
    assert cycles(edges) == [], {f"{a} -> {b}": sites for (a, b), sites in edges.items()}


def test_no_package_imports_paper_figures():
    sites = [f"{n}:{i.line}" for n, src in MODULES if layer_of(n) != "paper_figures"
             for i in imports_of(src, n) if layer_of(i.module) == "paper_figures"]
    assert sites == []


def test_no_private_cross_module_imports_in_sims_and_twolayer():
    bad = []
    for name, src in MODULES:
        if layer_of(name) not in ("twolayer", "sims", "sims.infra"):
            continue
        for imp in imports_of(src, name):
            if layer_of(imp.module) is None:
                continue
            private = [n for n in imp.names if n.startswith("_")]
            if layer_of(imp.module) != layer_of(name):  # private modules serve their own package
                private += [p for p in imp.module.split(".") if p.startswith("_")]
            if private:
                bad.append(f"{name}:{imp.line} {imp.module} {private}")
    assert bad == []


# --- the checker itself can fail (mutation tests on synthetic sources) -------------------------

@pytest.mark.parametrize(("module", "source", "target"), [
    ("twolayer.model", "import torch\n", "torch"),
    ("twolayer.model", "def f():\n    from sims.config import SweepConfig\n", "sims.config"),
    ("sims.infra.store", "import jax\n", "jax"),
    ("sims.infra.store", "from twolayer import make_problem\n", "twolayer"),
    ("sims.infra.ids", "from .. import engine\n", "sims"),
    ("sims.sweep", "def f():\n    import paper_figures.theory\n", "paper_figures.theory"),
    ("sims.grid", "import realdata.tasks\n", "realdata.tasks"),
    ("realdata.train", "from sims.config import SweepConfig\n", "sims.config"),
    ("realdata.data.cifar", "from realdata.train import finetune\n", "realdata.train"),
    ("realdata.data.cifar", "from sims.infra import RunStore\n", "sims.infra"),
])
def test_checker_reports_a_forbidden_import(module, source, target):
    bad = check_module(module, source)
    assert [v.target for v in bad] == [target], bad
    assert target in str(bad[0]) and module in str(bad[0])


def test_checker_allows_the_permitted_imports():
    assert check_module("twolayer.model", "import jax\nimport numpy as np\nimport functools\n") == []
    assert check_module("sims.engine", "import twolayer\nfrom sims.infra import RunStore\n") == []
    assert check_module("realdata.data.cifar", "from sims.infra import write_json_atomic\n") == []
    assert check_module("paper_figures.theory", "from sims.records import read_records\n") == []


def test_cycle_finder_finds_a_package_cycle():
    edges = layer_edges([("sims.sweep", "import paper_figures.theory\n"),
                         ("paper_figures.theory", "import sims.records\n"),
                         ("sims.grid", "import twolayer\n")])
    assert cycles(edges) == [("paper_figures", "sims")]


# --- what the CLIs load -----------------------------------------------------------------------

def _loaded(module: str, probe: str) -> bool:
    code = f"import sys, {module}; print({probe!r} in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True, timeout=120)
    return out.stdout.strip() == "True"


def test_import_sims_sweep_loads_no_torch():
    assert not _loaded("sims.sweep", "torch")
    assert _loaded("sims.sweep", "jax")  # the probe can see a loaded framework


def test_import_realdata_benchmark_loads_no_jax():
    assert not _loaded("realdata.benchmark", "jax")
    assert _loaded("realdata.benchmark", "torch")
