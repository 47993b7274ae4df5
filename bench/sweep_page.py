"""The same sensitivity sweep from the CLI and from the Sensitivity page with the page open in a real browser.

`python -m bench.sweep_page [--model mnist-resnet] [--rounds 2]`: each round times `prunelab sensitivity` (fresh
workspace, so nothing is cached) and then the page: `prunelab dashboard` in another fresh workspace, Debian's
chromium on /sensitivity, click "Run sensitivity sweep", time until the heatmap's "accuracy drop" control shows,
with the page (and its once-a-second progress poll) open throughout. Both use the page's default sweep (channel,
L1, ratios 0.1-0.9, 1,000 evaluation and 512 calibration images, seed 0). Writes a table into
docs/benchmarks.md (section sweep-page). The target (issue 12): page time within 1.5x the CLI time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.docs import write_section
from tests.e2e.test_browser import free_port
from tests.e2e.test_no_outside_requests import browser_page, serve, stop


def cli_seconds(model: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "core.cli", "--home", home, "sensitivity", model,
                        "--out", str(Path(home) / "sweep.csv")], check=True, capture_output=True)
        return time.perf_counter() - start


def page_seconds(model: str) -> float:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        proc = serve([sys.executable, "-m", "core.cli", "dashboard", "--model", model, "--port", str(port)],
                     Path(home), port)
        try:
            with sync_playwright() as pw:
                browser, page = browser_page(pw)
                page.goto(f"http://127.0.0.1:{port}/sensitivity")
                button = page.get_by_role("button", name="Run sensitivity sweep")
                button.wait_for(timeout=180_000)
                start = time.perf_counter()
                button.click()
                expect(page.get_by_text("accuracy drop").first).to_be_visible(timeout=3_600_000)
                seconds = time.perf_counter() - start
                browser.close()
                return seconds
        finally:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-resnet")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for i in range(args.rounds):  # alternate, so both see the same machine load over the run
        cli, page = cli_seconds(args.model), page_seconds(args.model)
        rows.append((cli, page))
        print(f"round {i + 1}: CLI {cli:.1f} s, page {page:.1f} s, ratio {page / cli:.2f}", flush=True)
    cli_med, page_med = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    table = "\n".join(f"| {i + 1} | {c:.1f} | {p:.1f} | {p / c:.2f} |" for i, (c, p) in enumerate(rows))
    write_section("sweep-page", f"""## A sweep from the Sensitivity page vs the CLI ({args.model})

`python -m bench.sweep_page --model {args.model} --rounds {args.rounds}` — the page's default sweep (channel, L1,
ratios 0.1-0.9, 1,000 evaluation / 512 calibration images). CLI: `prunelab sensitivity` wall time, process start
included. Page: from the click on "Run sensitivity sweep" to the heatmap, the page open in chromium and polling
its progress once a second; the sweep runs in a worker process (core.jobs). Fresh workspaces: nothing cached.
Target: page within 1.5x the CLI.

| round | CLI s | page s | page / CLI |
|---|---|---|---|
{table}
| median | {cli_med:.1f} | {page_med:.1f} | {page_med / cli_med:.2f} |
""")


if __name__ == "__main__":
    main()
