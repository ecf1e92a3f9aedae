"""The architecture's rules, as tests: import-linter's contracts (pyproject.toml) and no import cycles.

The contracts: the core's layers import downward only (cli -> api -> cluster
-> plugins machinery -> transport -> security -> wasm -> state -> util ->
errors); the core never imports a plugin; the ``essa`` command is built on
the public Python API; plugins use the core only through :mod:`essa.plugin`
and never import another plugin's modules. A change that breaks one fails
here, naming the import that did it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["essa", "essa_wasmtime", "essa_wasmer", "essa_lmdb", "essa_anna", "essa_http", "essa_redis"]


def _source_path(root: Path) -> str:
    """PYTHONPATH that finds the core and every plugin from ``root``'s sources (installed or not)."""
    return os.pathsep.join([str(root / "core"), *(str(p) for p in sorted((root / "plugins").iterdir()) if p.is_dir())])


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": _source_path(root)}
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", command, "--no-cache", "--no-logo"],  # reads root/pyproject.toml
                          capture_output=True, text=True, env=env, cwd=root, timeout=300)


def test_the_architecture_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract_and_is_named(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "core", copy / "core", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copytree(ROOT / "plugins", copy / "plugins", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    lattice = copy / "core" / "essa" / "state" / "lattice.py"
    lattice.write_text(lattice.read_text() + "\nfrom essa.cluster import client  # noqa: E402,F401\n")
    store = copy / "plugins" / "store_anna" / "essa_anna" / "store.py"
    store.write_text(store.read_text() + "\nfrom essa_lmdb import layout  # noqa: E402,F401\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "essa.state is not allowed to import essa.cluster" in result.stdout
    assert "essa.state.lattice -> essa.cluster.client" in result.stdout
    assert "essa_anna.store -> essa_lmdb.layout" in result.stdout


CYCLES = """
import sys
import grimp

graph = grimp.build_graph(*sys.argv[1:], cache_dir=None)
index, low, stack, on_stack, cycles = {}, {}, [], set(), []
sys.setrecursionlimit(100000)


def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for imported in graph.find_modules_directly_imported_by(module):
        if imported not in index:
            visit(imported)
            low[module] = min(low[module], low[imported])
        elif imported in on_stack:
            low[module] = min(low[module], index[imported])
    if low[module] == index[module]:
        component = []
        while True:
            top = stack.pop()
            on_stack.discard(top)
            component.append(top)
            if top == module:
                break
        if len(component) > 1:
            cycles.append(sorted(component))


for module in sorted(graph.modules):
    if module not in index:
        visit(module)
for cycle in cycles:
    print(" <-> ".join(cycle))
"""


def test_no_modules_import_each_other_in_a_cycle():
    # Every import counts: at module level, inside functions (lazy), and for type hints only.
    env = {**os.environ, "PYTHONPATH": _source_path(ROOT)}
    result = subprocess.run([sys.executable, "-c", CYCLES, *PACKAGES], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"import cycles:\n{result.stdout}"
