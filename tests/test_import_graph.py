"""The import graph stays honest, counting the imports inside functions too (they run, only later): no import
cycle between modules of interp and rl, and no import from a lower floor of the architecture to a higher one.
Imports under ``if TYPE_CHECKING:`` are annotations only and never run, so they are left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the floors, bottom up: a module may import its own floor and those below it
FLOORS = [
    {"interp.errors", "interp.version", "interp.paths", "interp.layers", "interp.meter", "interp.tables",
     "interp.figures", "interp.console"},
    {"interp.data"},
    {"interp.models"},
    {"interp.eval"},
    {"interp.store"},
    {"interp.methods"},
    {"interp.rm"},
    {"interp.organisms"},
    {"rl"},
    {"interp.pipeline"},
    {"interp.api", "interp"},
    {"interp.cli"},
]

# upward imports allowed: none (the test fails when one appears)
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node in ``tree``, at any depth, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def module_imports(root: Path = ROOT, packages=("interp", "rl"), module_level_only: bool = False
                   ) -> dict[str, set[str]]:
    """Module -> the project modules it imports (inside functions too, unless ``module_level_only``)."""
    mods = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = f.relative_to(root).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            mods[name] = f
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, f in mods.items():
        tree = ast.parse(f.read_text())
        is_pkg = f.name == "__init__.py"
        nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))] if module_level_only \
            else list(_imports(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(parts + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                # ``from pkg import module`` imports the module (and runs pkg/__init__, which the package's own
                # floor allows); ``from pkg import name`` imports pkg
                targets = [t for t in subs if t in mods] or [base]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def floor_of(module: str) -> int:
    """The floor of a module: that of the longest FLOORS entry it is, or lies under."""
    best, where = -1, None
    for i, floor in enumerate(FLOORS):
        for unit in floor:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > best:
                best, where = len(unit), i
    if where is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS")
    return where


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(m, t) for m, ts in graph.items() for t in ts if floor_of(t) > floor_of(m)}


def test_no_import_cycles_counting_imports_inside_functions():
    graph = module_imports()
    assert len(graph) > 40
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_upward_imports_beyond_the_known_ones():
    found = upward(module_imports())
    assert found - KNOWN_UPWARD == set(), f"new upward imports: {sorted(found - KNOWN_UPWARD)}"
    assert KNOWN_UPWARD - found == set(), f"fixed, remove from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - found)}"


def test_imports_inside_functions_are_seen():
    """A planted lazy import and a TYPE_CHECKING import: the first is an edge, the second is not."""
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n\ndef f():\n    import c\n"
    names = {a.name for n in _imports(ast.parse(src)) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"c"}


def test_cycle_finder_and_floors_find_planted_faults():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert upward({"interp.data.bbq": {"interp.eval.metrics"}, "interp.eval.metrics": {"interp.data.bbq"}}) == {
        ("interp.data.bbq", "interp.eval.metrics")}
    assert floor_of("interp.cli.commands.run") == len(FLOORS) - 1 and floor_of("interp.errors") == 0


def test_interp_imports_rl_only_in_the_pipeline():
    graph = module_imports()
    bad = {m: sorted(t for t in ts if t.split(".")[0] == "rl") for m, ts in graph.items()
           if m.startswith("interp") and not m.startswith("interp.pipeline")}
    assert not {m: t for m, t in bad.items() if t}, bad
