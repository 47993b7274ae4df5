"""One owner of the dashboard's session state (issue 12): dashboard/state.py alone writes st.session_state and
alone spells session-key strings; every other module asks it. Checked on the source with ast (a new file is
covered the day it is added), plus one behavioural check of the one slider writer: a budget-solver fill, a config
import and a hardware-aware solution put the same rounded, capped values into the Tune sliders (a config's and a
solve's ratios kept to state.RATIO_DIGITS decimals, not moved to the slider grid: applying them must cut what they
say)."""

from __future__ import annotations

import ast
import importlib
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from core.allocate import Allocation
from core.config import PruneConfig
from core.graph import channel_units, kept_channels, ratio_for
from dashboard import state
from tests.conftest import get_spec
from tests.dashboard.nav import goto
from tests.dashboard.test_app import open_app
from tests.dashboard.test_hardware_ui import write_staircase_table

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
STATE = DASHBOARD / "state.py"
WRITERS = {"pop", "popitem", "setdefault", "update", "clear", "__setitem__", "__delitem__"}
READERS = {"get", "pop", "setdefault", "__getitem__", "__contains__"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(DASHBOARD.rglob("*.py")) if p != STATE]


def _aliases(tree: ast.Module) -> set[str]:
    """Names bound to the session state object: `state = st.session_state`, `from streamlit import session_state`."""
    names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for a in node.names if a.name == "session_state"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None and _is_state(node.value, set()):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _is_state(node: ast.expr, aliases: set[str]) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "session_state") or \
        (isinstance(node, ast.Name) and node.id in aliases)


def _targets(node: ast.AST) -> list[ast.expr]:
    """What an assignment, augmented assignment or del writes to (tuples unpacked)."""
    found = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target] \
        if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
    flat: list[ast.expr] = []
    for target in found:
        flat.extend(target.elts if isinstance(target, ast.Tuple | ast.List) else [target])
    return flat


def writes(tree: ast.Module) -> list[int]:
    """Lines writing the session state: item/attribute assignment or del, or a mutating method call."""
    aliases = _aliases(tree)
    lines = []
    for node in ast.walk(tree):
        for target in _targets(node):
            if isinstance(target, ast.Subscript | ast.Attribute) and _is_state(target.value, aliases):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITERS \
                and _is_state(node.func.value, aliases):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_only_state_py_writes_session_state():
    found = {str(p.relative_to(DASHBOARD)): lines for p, tree in _modules() if (lines := writes(tree))}
    assert not found, f"{len(found)} module(s) write st.session_state outside dashboard/state.py: {found}"


def test_the_write_check_finds_aliases_pops_and_dels():
    tree = ast.parse("import streamlit as st\nst.session_state['a'] = 1\ns = st.session_state\ns['b'] = 2\n"
                     "s.pop('c', None)\ndel st.session_state['d']\nst.session_state.update({})\nx = s.get('e')\n")
    assert writes(tree) == [2, 4, 5, 6, 7]


def _string_constants(trees: list[ast.Module]) -> set[str]:
    """Names of module-level string constants (`LOAD_MESSAGE = "exp-load-message"`) outside state.py."""
    return {t.id for tree in trees for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for t in node.targets if isinstance(t, ast.Name)}


def _spelled(node: ast.expr, constants: set[str]) -> bool:
    """Whether an expression spells a key itself: a string literal, an f-string, or a string constant of a module
    other than state.py (a lambda, as in sorted(key=...), is no key)."""
    if isinstance(node, ast.Lambda):
        return False
    for sub in ast.walk(node):
        if isinstance(sub, ast.JoinedStr) or (isinstance(sub, ast.Constant) and isinstance(sub.value, str)):
            return True
        name = sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute) else None
        if name in constants:
            return True
    return False


def _key_params(trees: list[ast.Module]) -> dict[str, list[tuple[int, str]]]:
    """Module-level functions of dashboard/ with parameters that take a session key (named key or *_key)."""
    found: dict[str, list[tuple[int, str]]] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                args = [a.arg for a in node.args.args]
                keyed = [(i, a) for i, a in enumerate(args) if a == "key" or a.endswith("_key")]
                if keyed:
                    found[node.name] = keyed
    return found


def key_spellings(tree: ast.Module, constants: set[str], key_params: dict[str, list[tuple[int, str]]]) -> list[int]:
    """Lines that spell a session key: in a widget's key=, a session_state subscript, get/pop/setdefault or `in`,
    or an argument given to a dashboard function's key parameter."""
    aliases = _aliases(tree)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_state(node.value, aliases) and _spelled(node.slice, constants):
            lines.append(node.lineno)
        if isinstance(node, ast.Compare) and any(_is_state(c, aliases) for c in node.comparators) \
                and _spelled(node.left, constants):
            lines.append(node.lineno)
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in READERS | WRITERS and _is_state(func.value, aliases) \
                and node.args and _spelled(node.args[0], constants):
            lines.append(node.lineno)
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        params = dict(key_params.get(name, []))
        keyed = [kw.value for kw in node.keywords if kw.arg == "key" or kw.arg in params.values()]
        keyed += [arg for i, arg in enumerate(node.args) if i in params]
        if any(_spelled(k, constants) for k in keyed):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_session_keys_are_spelled_only_in_state_py():
    modules = _modules()
    trees = [tree for _, tree in modules]
    constants, params = _string_constants(trees), _key_params(trees)
    found = {str(p.relative_to(DASHBOARD)): lines for p, tree in modules
             if (lines := key_spellings(tree, constants, params))}
    assert not found, f"session keys spelled outside dashboard/state.py (use its constants): {found}"


def test_the_key_check_finds_literals_fstrings_and_key_parameters():
    tree = ast.parse("import streamlit as st\nK = 'k'\ndef pick(label, key):\n    pass\n"
                     "st.slider('a', key='x')\nst.slider('b', key=f'y|{m}')\nst.slider('c', key=state.X)\n"
                     "v = st.session_state.get('z')\nv = 'w' in st.session_state\npick('l', 'q')\n"
                     "pick('l', key=state.Q)\nsorted(v, key=lambda x: x['a'])\nst.session_state[K] = 1\n")
    trees = [tree]
    assert key_spellings(tree, _string_constants(trees), _key_params(trees)) == [5, 6, 8, 9, 10, 13]


# --- the one slider writer, seen from three paths that fill the Tune sliders (AppTest on digits-mlp) ---

MODEL = "digits-mlp"
ASKED = {"fc1": 1 / 3, "fc2": 0.97}  # off the slider grid, and above the sliders' maximum
PLAIN = {"fc1": 0.333333, "fc2": 0.95}  # to state.RATIO_DIGITS decimals, capped at the sliders' maximum


def _sliders(at: AppTest, hw: bool = False) -> dict[str, float]:
    return {u: at.session_state[state.slider_key(MODEL, "channel", u, hw=hw)] for u in ASKED}


def _solver_fill(monkeypatch: pytest.MonkeyPatch, at: AppTest) -> AppTest:
    """Press Solve with the allocation patched to return ASKED: what the panel does with a solver's ratios."""
    def solved(strategy, cost_model, target, *args, **kwargs) -> Allocation:
        return Allocation(strategy, target, dict(ASKED), cost_model.estimate(ASKED), None, True)

    for where in ("core.allocate", "core.workflows.solve", "dashboard.components.solver"):  # whoever calls it
        with suppress(ImportError):
            monkeypatch.setattr(importlib.import_module(where), "allocate", solved, raising=False)
    at.button(key=state.SOLVE).click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    return at


def test_solver_fill_and_config_import_set_the_same_rounded_capped_values(monkeypatch, tmp_path):
    assert state.MAX_RATIO == PLAIN["fc2"]
    at = _solver_fill(monkeypatch, open_app(monkeypatch, MODEL, tmp_path, "tune"))
    assert _sliders(at) == PLAIN
    config = PruneConfig(MODEL, "channel", dict(ASKED), model_fingerprint=get_spec(MODEL).fingerprint)
    at = open_app(monkeypatch, MODEL, tmp_path / "import", "experiments")
    at.file_uploader(key=state.EXP_IMPORT).set_value(("config.json", config.to_json().encode(),
                                                      "application/json")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _sliders(goto(at, "tune")) == PLAIN


def test_hardware_aware_solution_and_solver_fill_snap_alike(monkeypatch, tmp_path):
    """With hardware-aware sliders shown, a solver fill and a finished hardware-aware solve take the same widths:
    the fast width at or below what the capped ratio keeps."""
    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path))
    table = write_staircase_table(MODEL)
    spec = get_spec(MODEL)
    units = {u.name: u for u in channel_units(spec.model, spec.example_input)}
    snapped = {u: ratio_for(units[u], table.snap(u, kept_channels(units[u], min(r, state.MAX_RATIO))))
               for u, r in ASKED.items()}
    assert snapped != ASKED
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")
    at.toggle(key=state.HW_AWARE).set_value(True).run()
    assert _sliders(_solver_fill(monkeypatch, at), hw=True) == snapped

    finished = SimpleNamespace(job_id="hw-1", active=False, error=None,
                               result={"ratios": dict(ASKED), "met": True, "report": []})
    monkeypatch.setattr("dashboard.jobs.current", lambda task, name, key="": finished if task == "hw-solve" else None)
    monkeypatch.setattr("dashboard.jobs.panel", lambda task, name, key="": (
        (finished.result, None) if task == "hw-solve" else (None, None)))
    at = open_app(monkeypatch, MODEL, tmp_path, "tune")  # a new session finds the solve finished
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[state.HW_AWARE] is True
    assert _sliders(at, hw=True) == snapped
