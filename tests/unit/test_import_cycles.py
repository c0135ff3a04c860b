"""No import cycles in p2pci: no module imports (lazily, for type checking or not) a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import p2pci

ROOT = Path(p2pci.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(tree: ast.AST, mods: set[str], me: str) -> set[str]:
    """Modules of p2pci this one imports anywhere (function bodies and TYPE_CHECKING blocks too:
    a cycle hidden from the interpreter is still two modules that know each other)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in mods)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in mods:
                out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(me)
    return out


def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(ast.parse(p.read_text()), set(mods), m) for m, p in mods.items()}


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    g = graph()
    assert "p2pci.daemon.node" in g and "p2pci.core.node" in g["p2pci.daemon.node"]  # the graph is real
    pairs = sorted({tuple(sorted((a, b))) for a, deps in g.items() for b in deps if a in g.get(b, set())})
    assert pairs == [], pairs


def test_no_longer_cycles_either() -> None:
    g = graph()
    # packages import their own submodules (re-exports): not a cycle of the code
    deps = {m: {d for d in ds if not m.startswith(d + ".") and not d.startswith(m + ".")} for m, ds in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(deps.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(deps):
        if m not in state:
            dfs(m)
    assert cycles == [], cycles[:5]


def test_the_daemon_points_at_core_never_back() -> None:
    g = graph()
    core = [m for m in g if m.startswith("p2pci.core.")]
    assert all(not d.startswith(("p2pci.daemon", "p2pci.net", "p2pci.cli", "p2pci.tui")) for m in core for d in g[m])
    for m in ("p2pci.daemon.builds", "p2pci.daemon.api", "p2pci.daemon.artifacts", "p2pci.daemon.livelog"):
        assert "p2pci.daemon.node" not in g[m], m
