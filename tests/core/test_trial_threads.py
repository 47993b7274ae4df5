"""Every trial runs torch on the same number of threads wherever it runs (core.trial.attempt), so a search's or a
sweep's figures do not depend on the executor or on the cores of the machine a trial lands on."""

from __future__ import annotations

import torch

from core.executors import LocalExecutor
from core.threads import torch_threads
from core.trial import TRIAL_THREADS


def _threads(_: object) -> int:
    return torch.get_num_threads()


def test_a_local_trial_runs_on_the_trial_threads_and_gives_the_driver_its_own_back() -> None:
    with torch_threads(2):
        outcomes = LocalExecutor().run(_threads, [("a", None), ("b", None)])
        assert [o.value for o in outcomes] == [TRIAL_THREADS, TRIAL_THREADS]
        assert torch.get_num_threads() == 2  # the driver's own setting, back after the batch
