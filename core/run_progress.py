"""One progress scale for a whole run: core.experiment.run reports each phase on its own (stage, done, total),
each counting from zero (the CLI draws one bar per stage); a page watching a run in a worker wants one bar that
only grows. overall_progress maps every phase report onto a fraction of the whole run, weighting each phase by
its expected share of the run's time, and passes it on as (stage, percent done, 100) with the stage's name."""

from __future__ import annotations

from collections.abc import Callable

from core.config import PruneConfig

StageProgress = Callable[[str, int, int], None]  # (stage, done, total), as core.experiment reports
TICKS = 100  # the overall scale: percent of the run

# Expected share of a run's time per phase (by the stage name's first word), from one channel run of mnist-resnet
# on this 2-core machine with the baseline already measured (as the dashboard runs it): with one fine-tuning epoch
# 6% setup, 12% pruning + 72% fine-tuning, 2% export, 9% measuring (132 s); one-shot 23%, 28%, 10%, 39% (32 s).
# "checking" (aligned widths) runs only with a width-latency table: a small share.
SHARES_TRAINING = {"measuring baseline": 0.06, "train": 0.82, "exporting": 0.02, "measuring": 0.08, "checking": 0.02}
SHARES_ONESHOT = {"measuring baseline": 0.23, "train": 0.28, "exporting": 0.10, "measuring": 0.37, "checking": 0.02}


class _Overall:
    """The stateful mapping: where each phase starts on the run's scale, and which pruning round is running."""

    def __init__(self, say: StageProgress, shares: dict[str, float]):
        self.say, self.shares, self.best = say, shares, 0
        self.starts = dict(zip(shares, _cumulative(list(shares.values())), strict=True))
        self.round, self.rounds = 0, 1  # of an iterative schedule: pruning reports (round - 1, rounds)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "done":
            self.best = TICKS
        else:
            phase, within = self._place(stage, done, max(total, 1))
            if phase in self.shares:  # a stage this table does not know keeps the bar where it is
                at = int(TICKS * (self.starts[phase] + self.shares[phase] * min(within, 1.0)))
                self.best = max(self.best, min(at, TICKS - 1))  # never back; full only when done
        self.say(stage, self.best, TICKS)

    def _place(self, stage: str, done: int, total: int) -> tuple[str, float]:
        """(phase, fraction of that phase done) for one report."""
        if stage.startswith("pruning"):  # core.schedule: (rounds done, rounds)
            self.round, self.rounds = done, total
            return "train", done / total
        if stage.startswith("fine-tuning"):  # the steps of the current round
            return "train", (self.round + done / total) / self.rounds
        phase = stage if stage in self.shares else stage.split()[0]
        return phase, done / total


def _cumulative(shares: list[float]) -> list[float]:
    starts, at = [], 0.0
    for share in shares:
        starts.append(at)
        at += share
    return starts


def overall_progress(say: StageProgress, config: PruneConfig) -> StageProgress:
    """A StageProgress for core.experiment.run that reports to `say` one growing percent of the whole run."""
    return _Overall(say, SHARES_TRAINING if config.finetune.epochs else SHARES_ONESHOT)
