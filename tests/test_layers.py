"""The layers of DESIGN.md §8: imports go one way, and no module imports its importers back.

Rooms, from the floor up; a module may import its own room and any room below it:
base < kernels < data < model < theory < engine < estimators < advisor < cli.
The package's ``__init__`` (the public names) and ``__main__`` may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "kronsgd"
ORDER = ["base", "kernels", "data", "model", "theory", "engine", "estimators", "advisor", "cli"]
TOP_LEVEL = {"__init__", "__main__", "_version"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, mod: str | None = None) -> list[tuple[str, int, bool]]:
    """(kronsgd module imported, line, at module level) for every import in ``path`` (module ``mod``)."""
    mod = _module(path) if mod is None else mod
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}".strip(".") for a in node.names]
            elif node.module and node.module.split(".")[0] == "kronsgd":
                names = [node.module.removeprefix("kronsgd").strip(".")]
            else:
                continue
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("kronsgd").strip(".") for a in node.names if a.name.split(".")[0] == "kronsgd"]
        else:
            continue
        found += [(name, node.lineno, id(node) in top) for name in names]
    return found


def _room(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


SOURCES = sorted(PKG.rglob("*.py"))


def test_every_module_sits_in_a_room():
    loose = [_module(p) for p in SOURCES if _room(_module(p)) not in ORDER and _module(p) not in TOP_LEVEL | {""}]
    assert loose == [], f"modules outside the rooms {ORDER}: {loose}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module(p) or "kronsgd")
def test_imports_point_down(path):
    mod = _module(path)
    room = _room(mod)
    if room not in ORDER:
        return  # the package's own __init__ and __main__ gather the public names
    bad = []
    for target, line, _ in _imports(path):
        other = _room(target)
        if other in ORDER and ORDER.index(other) > ORDER.index(room):
            bad.append(f"line {line}: {mod} ({room}) imports {target} ({other})")
        if other == "__init__" and target == "":
            bad.append(f"line {line}: {mod} imports the package's public namespace")
    assert bad == []


def test_kernels_import_only_kernels():
    for path in (PKG / "kernels").rglob("*.py"):
        rooms = {_room(t) for t, _, _ in _imports(path)}
        assert rooms <= {"kernels"}, f"{_module(path)} imports {rooms - {'kernels'}}"


def test_no_import_cycles():
    """Module-level and deferred imports together form no cycle between modules."""
    graph = {}
    for path in SOURCES:
        mod = _module(path)
        known = {_module(p) for p in SOURCES}
        graph[mod] = {t if t in known else t.rpartition(".")[0] for t, _, _ in _imports(path)} - {mod}
    for room in ORDER:  # a room's __init__ that re-exports its modules is not an edge back
        graph.get(room, set()).clear()
    graph[""] = set()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, stack + [nxt]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, [node]):
            break
    assert cycle == [], " -> ".join(cycle)


def test_the_checker_sees_upward_and_deferred_imports(tmp_path):
    """The checker itself can fail: a deferred upward import inside a kernel module is found."""
    probe = tmp_path / "probe.py"
    source = "import numpy\nfrom .step import forward_batch\n\n\ndef f():\n    from ..engine.trainer import KronSGD\n"
    probe.write_text(source)
    found = _imports(probe, "kernels.probe")
    assert found == [("kernels.step", 2, True), ("engine.trainer", 6, False)]
    assert ORDER.index(_room(found[1][0])) > ORDER.index("kernels")
