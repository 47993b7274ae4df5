"""Each benchmark owns one section of docs/benchmarks.md, between markers, and rewrites only that."""

from __future__ import annotations

import subprocess
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def commit() -> str:
    """The short hash of the commit the benchmark ran on ("unknown" outside a git checkout)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=DOC.parents[1], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write_section(name: str, text: str) -> None:
    """Replace the section `name` of docs/benchmarks.md with text (appending it the first time)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(doc)
