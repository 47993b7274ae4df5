"""Running a user's code and quoting what went wrong: a .py file imported by path, its folder on sys.path
while it runs, and any exception or list of names shortened to one line for a PruneLabError."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import sys
from collections.abc import Iterable
from pathlib import Path

from core.errors import PruneLabError

_imports = itertools.count()  # a fresh suffix per import: the same file imported twice is two modules


def one_line(e: BaseException) -> str:
    """'Type: first line of the message', at most 300 characters: an exception on one line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__



def some(keys: Iterable[str], n: int = 5) -> str:
    """Up to n of the names, sorted, and how many more there are."""
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


@contextlib.contextmanager
def on_sys_path(folder: Path):
    """folder first on sys.path for the duration (so a model file can import its neighbours)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def import_file(path: Path):
    """Import a .py file by path under a fresh, unique module name (kept in sys.modules: tracing, export and
    deep copies may look a class's module up)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    name = f"prunelab_user_{stem}_{digest}_{next(_imports)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PruneLabError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with on_sys_path(path.resolve().parent):
            spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PruneLabError(f"importing {path} failed: {one_line(e)}") from None
    return module
