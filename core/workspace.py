"""The workspace: the folder PruneLab keeps its runs, caches and experiment store in ($PRUNELAB_HOME, or
~/.prunelab), and the folder-safe names of files in it. Its own module so that the store, the caches and
the runs each find it without importing one another."""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import PruneLabError


def workspace(create: bool = True) -> Path:
    """The folder PruneLab keeps its runs in (created on first use; not by callers that only name a path in it,
    such as a cache, which must work in a workspace that cannot be created)."""
    root = Path(os.environ.get("PRUNELAB_HOME") or Path.home() / ".prunelab")
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PruneLabError(f"cannot create the workspace {root}: {e.strerror or e}") from None
    return root


def safe_name(text: str, limit: int = 40) -> str:
    """A folder-name-safe version of a model name (a user model's name is a path): letters, digits, dot,
    dash and underscore only, no leading dots, at most `limit` characters — run folders stay in runs/."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")[-limit:]
    return cleaned or "model"
