"""The package's shape (issue #18): no import cycle between voxplane's modules, no private name
taken from another module, and a top level that stays short.

Read from the source with `ast`, every import counts, those inside functions too: a cycle that
only a deferred import keeps from failing is still two modules that each need the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .support.repo import REPO

ROOTS = {"voxplane": REPO / "voxplane"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def _imports(module: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(module imported, (name, bound as) taken from it, line) for every import statement of `module`."""
    tree = ast.parse(MODULES[module].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names if alias.asname is None]
            out += [(alias.name.rpartition(".")[0], [(alias.name.rpartition(".")[2], alias.asname)], node.lineno)
                    for alias in node.names if alias.asname is not None]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [(alias.name, alias.asname or alias.name) for alias in node.names], node.lineno))
    return out


def _edges(module: str) -> set[str]:
    """The voxplane modules that importing `module` (or calling into it) runs: each module
    imported, the submodules taken by name, and the packages above them that are not already
    above `module` (their __init__ runs first)."""
    own = _package_of(module).split(".")
    own_packages = {".".join(own[:i]) for i in range(1, len(own) + 1)}
    out: set[str] = set()
    for target, names, _ in _imports(module):
        hits = [f"{target}.{n}" for n, _ in names if f"{target}.{n}" in MODULES] or [target]
        for hit in hits:
            parts = hit.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in MODULES and name != module and (name == hit or name not in own_packages):
                    out.add(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back():
    """Data flows one way: no set of voxplane modules imports each other round in a circle."""
    graph = {m: _edges(m) for m in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    """The check above on a graph with one: it is not blind."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_taken_from_another_module():
    """A leading underscore means "this module's own": no other module imports it or reaches
    it through the module (`render._secret_config_keys`)."""
    taken = []
    for module, path in MODULES.items():
        bound: set[str] = set()  # names this module binds to a voxplane module
        for target, names, line in _imports(module):
            if not target.startswith("voxplane"):
                continue
            for name, as_name in names:
                if name.startswith("_") and not name.startswith("__"):
                    taken.append(f"{path.relative_to(REPO)}:{line}: {target}.{name}")
                if f"{target}.{name}" in MODULES:
                    bound.add(as_name)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                taken.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert taken == []


def test_only_the_command_line_imports_the_command_line():
    """The CLI parses options and calls the stages; no stage reaches back into it."""
    outside = sorted(f"{m} -> {e}" for m in MODULES if not m.startswith("voxplane.cli")
                     for e in _edges(m) if e.startswith("voxplane.cli"))
    assert outside == []


def test_the_top_of_the_package_is_short():
    """At most a dozen modules stand at the top of voxplane/; the rest is in the stage packages."""
    top = sorted(p.name for p in (REPO / "voxplane").glob("*.py"))
    assert len(top) <= 12, top
