"""Why workers and the dashboard server wait passively: a sweep with torch's OpenMP threads spinning vs sleeping
while another process keeps one core busy (as a browser and a Streamlit server do beside a job on 2 cores).

`python -m bench.omp_wait [--rounds 1]`: `prunelab sensitivity mnist-resnet --grid 0.3,0.6` (18 pruned and
evaluated models, fresh workspace each time) under OMP_NUM_THREADS=1, =2, and =2 with OMP_WAIT_POLICY=PASSIVE,
each beside one busy Python process. Writes a table into docs/benchmarks.md (section omp-wait).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.docs import write_section

SETTINGS = {"1 thread": {"OMP_NUM_THREADS": "1"}, "2 threads, spinning (default)": {"OMP_NUM_THREADS": "2"},
            "2 threads, passive": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}}
BUSY = "while True: pass"


def sweep_seconds(env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "core.cli", "--home", home, "sensitivity", "mnist-resnet",
                        "--grid", "0.3,0.6", "--out", os.path.join(home, "s.csv")],
                       check=True, capture_output=True, env={**os.environ, **env})
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        for _ in range(args.rounds):
            for name, env in SETTINGS.items():
                times[name].append(sweep_seconds(env))
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    finally:
        busy.kill()
    rows = "\n".join(f"| {name} | {statistics.median(t):.1f} |" for name, t in times.items())
    write_section("omp-wait", f"""## OpenMP threads that wait passively (beside one busy process)

`python -m bench.omp_wait --rounds {args.rounds}` — `prunelab sensitivity mnist-resnet --grid 0.3,0.6` (18
pruned and evaluated models) while another process keeps one of the 2 cores busy, as a browser and the
Streamlit server do beside a background job. Median wall seconds of {args.rounds} round(s):

| torch OpenMP setting | sweep s |
|---|---|
{rows}

Hence core.jobs starts workers, and `prunelab dashboard` its server, with OMP_WAIT_POLICY=PASSIVE (unless set).
""")


if __name__ == "__main__":
    main()
