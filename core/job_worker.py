"""`python -m core.job_worker FOLDER`: run one background job (see core.jobs) and exit.

The task, its model and its arguments arrive as a pickle on stdin from the server that started this process
(never from a file); progress and the outcome go to FOLDER. A PruneLabError becomes the job's one-line error;
any other exception is a bug, reported with its type and logged in full to FOLDER/log.txt. The worker ends
with the server that started it: nobody could watch or cancel it any more."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

from core.errors import PruneLabError
from core.job_tasks import TASKS, load_model
from core.jobs import Reporter

PARENT_CHECK_S = 1.0  # how often the worker checks that its server still runs


def _end_with_parent(parent: int) -> None:
    """Stop when the server that started this job is gone (this process is then re-parented): a worker nobody
    can watch or cancel must not keep two cores busy. SIGTERM, so the job unwinds as on Cancel."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


def main(folder: Path) -> int:
    task, model, kwargs, threads, server = pickle.loads(sys.stdin.buffer.read())
    torch.set_num_threads(threads)  # as the process that asked: figures match work done there
    reporter = Reporter(folder)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cancel: unwind, so a run's record says cancelled
    threading.Thread(target=_end_with_parent, args=(server,), daemon=True).start()
    try:
        reporter("loading the model", 0, 1)
        spec = load_model(model)
        result = TASKS[task](spec, reporter, **kwargs)
    except PruneLabError as e:
        reporter.finish(error=str(e))
        return 1
    except Exception as e:  # a bug: keep the message short for the page, the traceback in the log
        traceback.print_exc()
        reporter.finish(error=f"{type(e).__name__}: {e}")
        return 1
    reporter.finish(result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
