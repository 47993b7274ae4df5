"""bench.repair's results file: draws of one part measured in separate processes are merged, never dropped, each
with its own stamp; the table says when each part was measured (no model is pruned here)."""

from __future__ import annotations

import json
import multiprocessing

from bench import repair as bench


def _record_draw(path: str, seed: int) -> None:
    bench.RESULTS = bench.Path(path)
    bench._merge(lambda r: bench._record(r, "tiny-lm", {"metric": "perplexity", "higher_is_better": False},
                                         "structured", seed, {"ratio": 0.89, "none": 40.0 + seed, "bias": 30.0,
                                                              "lstsq": 15.0}, 128))


def test_draws_recorded_by_parallel_processes_are_all_kept(tmp_path):
    path = tmp_path / "repair.json"
    path.write_text(json.dumps({"models": {"tiny-lm": {"masks": {}, "structured": {},
                                                       "measured": "2026-11-30 07:50 UTC, commit 02988b2"}}}))
    context = multiprocessing.get_context("fork")  # the workers need no torch of their own
    workers = [context.Process(target=_record_draw, args=(str(path), seed)) for seed in (0, 1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    results = json.loads(path.read_text())
    entry = results["models"]["tiny-lm"]
    assert sorted(entry["structured"]) == ["0", "1", "2"] and results["seeds"] == [0, 1, 2]
    assert [entry["structured"][s]["none"] for s in "012"] == [40.0, 41.0, 42.0]
    assert entry["masks"] == {}  # the part not measured keeps its figures and its stamp
    assert entry["measured"] == "2026-11-30 07:50 UTC, commit 02988b2"
    assert all(entry["structured"][s]["measured"].split(", commit ")[1] in entry["structured_measured"] for s in "012")
    assert entry["structured_measured"] in bench.table(results)
