"""The modules of core/ import one another without cycles, and only at module level.

Read from the source with `ast` (nothing is imported), so an import hidden inside a function
counts as an edge too: a cycle dodged by a function-level import is still a cycle, and the
function-level import itself is reported with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"


def module_name(path: Path) -> str:
    """Dotted name of a file under core/ (a package's __init__ is the package itself)."""
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    """Every module of core/, by dotted name."""
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names, resolving `from . import x` relative to `here`."""
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def targets(node: ast.AST, here: str, is_package: bool, known: set[str]) -> list[str]:
    """Core modules an import statement loads: `from core.x import name` counts as core.x.name
    when that is a module, else as core.x."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    source = absolute(node, here, is_package)
    found = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in known:
            found.append(sub)
        elif source in known:
            found.append(source)
    return list(dict.fromkeys(found))  # one entry per module, however many names it gives


class Walker(ast.NodeVisitor):
    """Collects (target, line, inside_function) for every core import of one module."""

    def __init__(self, here: str, is_package: bool, known: set[str]) -> None:
        self.here, self.is_package, self.known = here, is_package, known
        self.depth = 0  # how many function bodies enclose the current node
        self.found: list[tuple[str, int, bool]] = []

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.AST) -> None:
        for target in targets(node, self.here, self.is_package, self.known):
            self.found.append((target, node.lineno, self.depth > 0))

    visit_ImportFrom = visit_Import


def imports() -> dict[str, list[tuple[str, int, bool]]]:
    """For each core module, the core modules it imports: (target, line, inside a function)."""
    modules = core_modules()
    known = set(modules)
    result = {}
    for name, path in modules.items():
        walker = Walker(name, path.name == "__init__.py", known)
        walker.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        result[name] = walker.found
    return result


def parents(name: str) -> list[str]:
    """Packages that importing `name` runs first (core.prune.heads runs core and core.prune)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def graph() -> dict[str, set[str]]:
    """Module → modules it imports; a submodule import also runs its parent packages' __init__."""
    edges: dict[str, set[str]] = {}
    for name, found in imports().items():
        deps = set()
        for target, _, _ in found:
            deps.update([target, *parents(target)])
        deps.discard(name)
        deps.difference_update(parents(name))  # a package's own parents are already running
        edges[name] = deps
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first repeated at the end), or None. Depth-first, colours."""
    colour = dict.fromkeys(edges, 0)  # 0 unvisited, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == 0 and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(edges):
        if colour[start] == 0 and (cycle := visit(start)):
            return cycle
    return None


def test_walker_sees_function_level_and_submodule_imports(tmp_path: Path) -> None:
    """The walker itself: imports inside functions are found, `from core import x` resolves to core.x."""
    source = "from core import store\n\ndef f():\n    from core.prune import heads\n    import torch\n"
    walker = Walker("core.a", False, {"core", "core.store", "core.prune", "core.prune.heads", "core.a"})
    walker.visit(ast.parse(source))
    assert walker.found == [("core.store", 1, False), ("core.prune.heads", 4, True)]


def test_find_cycle_reports_the_loop() -> None:
    """A known loop is found and printed in order; an acyclic graph gives None."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_has_no_import_cycle() -> None:
    """Counting function-level imports as edges, the core module graph is acyclic."""
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_core_has_no_function_level_core_import() -> None:
    """No module of core/ imports another inside a function (third-party lazy imports are fine)."""
    modules = core_modules()
    hidden = [
        f"{modules[name].relative_to(CORE.parent)}:{line} imports {target}"
        for name, found in imports().items()
        for target, line, inside in found
        if inside
    ]
    assert not hidden, f"{len(hidden)} function-level core imports:\n" + "\n".join(hidden)
