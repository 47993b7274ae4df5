"""What both front ends do, written once: the CLI (core.cli) and the dashboard's pages and jobs call these and only
parse, print or draw around them, so the same request gets the same answer from either.

- record.run_and_record: prune, fine-tune, measure, write the run's files and record it in the store;
- units.check_units: refuse unit names the model lacks;
- solve.solve: a budget (SolveRequest) to per-unit ratios (SolveOutcome), from one baseline latency;
- predict.predict_accuracy / predict.estimate_latency: the accuracy a sweep predicts, the latency a width
  table estimates;
- defaults: the default value of every option both front ends offer.
"""

from core.workflows.predict import estimate_latency, predict_accuracy
from core.workflows.record import record_output, run_and_record
from core.workflows.solve import SolveOutcome, SolveRequest, baseline_latency_ms, solve, swept_by
from core.workflows.units import check_units

__all__ = ["SolveOutcome", "SolveRequest", "baseline_latency_ms", "check_units", "estimate_latency",
           "predict_accuracy", "record_output", "run_and_record", "solve", "swept_by"]
