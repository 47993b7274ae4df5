"""Long work (prune, fine-tune, export, measure) runs in a background thread, not in the script run.

A Streamlit script run stops whenever the user touches a widget; a job started from it would die
with it. The thread instead reports progress into its Job object (kept in the session's state) and
writes its results to the workspace, so neither a slider move nor a page refresh loses a run.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import PruneLabError


@dataclass
class Job:
    """Progress and outcome of one background run; written by the worker, read by the page."""

    stage: str = "starting"
    done: int = 0
    total: int = 1
    run_dir: Path | None = None
    error: str | None = None
    finished: bool = False
    _thread: threading.Thread | None = field(default=None, repr=False)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, max(total, 1)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total)


def start(work: Callable[[Callable[[str, int, int], None]], Path]) -> Job:
    """Run work(progress) -> run folder in a daemon thread; return its Job at once."""
    job = Job()

    def target() -> None:
        try:
            job.run_dir = work(job.progress)
        except PruneLabError as e:
            job.error = str(e)
        except Exception as e:  # a bug: keep the app alive, show what happened
            job.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            job.finished = True

    job._thread = threading.Thread(target=target, name="prunelab-run", daemon=True)
    job._thread.start()
    return job
