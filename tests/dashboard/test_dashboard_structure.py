"""The dashboard's shape (issue 12): every Streamlit cache is declared in dashboard/cache.py, and no module keeps
mutable state at module level — a module-level dict, list or set that the code writes to (a module is shared by
every session of the server: such state would leak between users; constant tables that nothing writes are fine).
Checked on the source with ast, so a new file is covered the day it is added."""

from __future__ import annotations

import ast
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "setdefault", "add",
            "discard", "appendleft", "__setitem__"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(DASHBOARD.rglob("*.py"))]


def _is_cache(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource")


def test_every_streamlit_cache_is_in_cache_py():
    outside = [f"{p.relative_to(DASHBOARD)}:{node.lineno} {node.name}" for p, tree in _modules() if p.name != "cache.py"
               or p.parent != DASHBOARD for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(map(_is_cache, node.decorator_list))]
    assert not outside, f"caches outside dashboard/cache.py: {outside}"


def _mutable(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp):
        return True
    func = value.func if isinstance(value, ast.Call) else None
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name in MUTABLE_CALLS


def _written(tree: ast.Module, name: str) -> bool:
    """Whether the module writes into the object bound to `name` (item assignment/deletion or a mutating call)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name \
                and isinstance(node.ctx, ast.Store | ast.Del):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == name:
            return True
    return False


def _state(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        for target in targets:
            if isinstance(target, ast.Name) and _mutable(node.value) and _written(tree, target.id):
                found.append((node.lineno, target.id))
    return found


def test_no_module_level_mutable_state():
    found = [f"{p.relative_to(DASHBOARD)}:{line} {name}" for p, tree in _modules() for line, name in _state(tree)]
    assert not found, f"module-level state shared by every session: {found}"


def test_the_check_finds_a_written_module_dict():
    tree = ast.parse("_SEEN: dict[str, int] = {}\nTABLE = {'a': 1}\ndef f(k):\n    _SEEN[k] = TABLE['a']\n")
    assert _state(tree) == [(1, "_SEEN")]
