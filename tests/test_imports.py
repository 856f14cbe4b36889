"""The packages import one way (mbgf_cli -> fusion -> clip) and no module imports itself back: the import
graph of clip, fusion and mbgf_cli, read from the source with ast, function-level and TYPE_CHECKING
imports included, has no cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clip", "fusion", "mbgf_cli")


def modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the packages (a package is its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(tree: ast.AST, name: str, is_package: bool, known: dict) -> set[str]:
    """The modules of ``known`` that the module ``name`` imports anywhere in its body: ``import a.b`` is
    ``a.b``; ``from a import b`` is the module ``a.b`` when there is one, else ``a``."""
    package = name if is_package else name.rpartition(".")[0]

    def nearest(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(nearest(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else nearest(base))
    return {t for t in targets if t is not None and t != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
            for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_dependencies_flow_from_the_application_to_fusion_to_clip():
    graph = import_graph()
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if (a.startswith("clip") and not b.startswith("clip"))
                    or (a.startswith("fusion") and b.startswith("mbgf_cli")))
    assert upward == []


def test_the_walk_sees_function_level_and_relative_imports():
    # A cycle hidden in a function body (how the old evaluation <-> training one was dodged) is found.
    known = {"pkg": Path("pkg/__init__.py"), "pkg.a": Path("pkg/a.py"), "pkg.b": Path("pkg/b.py")}
    a = ast.parse("import os\n\ndef f():\n    from pkg.b import g\n")
    b = ast.parse("from . import a\n")
    graph = {"pkg": set(), "pkg.a": imported(a, "pkg.a", False, known), "pkg.b": imported(b, "pkg.b", False, known)}
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": set()}) is None
