"""Where a model's searches lie (core.search writes each into its own folder under the workspace's runs, named
<UTC time>-<model>-search[-n], with its search.json) and how a background search job names the search it runs.

A page that shows a search finds it again after a refresh: the job running it (core.jobs) holds a link file,
written by the job as soon as its search folder exists; a finished search is one of `folders(model)`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.files import write_atomic
from core.search_report import SEARCH_FILE
from core.workspace import safe_name, workspace

LINK_FILE = "search.txt"  # in a job's folder: the path of the search folder the job runs


def folders(model: str) -> list[Path]:
    """The search folders of `model` in the workspace, newest first (their names start with the UTC time)."""
    runs = workspace(create=False) / "runs"
    found = [p.parent for p in runs.glob(f"*-{safe_name(model)}-search*/{SEARCH_FILE}")]
    return sorted((f for f in found if (read(f) or {}).get("spec", {}).get("model") == model),
                  key=lambda f: f.name, reverse=True)


def read(folder: Path) -> dict[str, Any] | None:
    """A search's search.json (written atomically), or None when it is missing or not a search record."""
    try:
        data = json.loads((folder / SEARCH_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("spec"), dict) and isinstance(data.get("trials"), list)
    return data if ok else None


def link(job_folder: Path, search_folder: Path) -> None:
    write_atomic(job_folder / LINK_FILE, str(search_folder).encode())


def linked(job_folder: Path) -> Path | None:
    """The search folder a job's link names (None before the job has made it)."""
    try:
        text = (job_folder / LINK_FILE).read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None
