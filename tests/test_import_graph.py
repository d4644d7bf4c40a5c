"""The import graph stays honest: no module-level import cycles inside interp and rl, and interp imports rl at
module level only in the pipeline (which drives it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_imports(root: Path = ROOT, packages=("interp", "rl")) -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level (imports inside functions are lazy: left out)."""
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
        for node in tree.body:  # module level only
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


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


def test_no_import_cycles():
    graph = module_imports()
    assert len(graph) > 40
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_interp_imports_rl_only_in_the_pipeline():
    graph = module_imports()
    bad = {m: sorted(t for t in ts if t.split(".")[0] == "rl") for m, ts in graph.items()
           if m.startswith("interp") and not m.startswith("interp.pipeline")}
    assert not {m: t for m, t in bad.items() if t}, bad
