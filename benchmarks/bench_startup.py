"""Benchmark 6: start-up. ``gdlab --help`` and a whole ``gdlab fit`` beside bare Python and bare imports.

Each command runs as a fresh process (its wall time includes the interpreter's start), interleaved
with the others, after a warm-up run of each (the file cache).

    .venv/bin/python benchmarks/bench_startup.py [--quick]
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys
from pathlib import Path

import harness

GDLAB = str(Path(sys.executable).parent / "gdlab")
GOALS_S = {"gdlab --help": 0.3, "gdlab fit": 1.5, "gdlab fit (first run, empty cache)": 1.5}
FIT = [GDLAB, "fit", "--target", "N(2, 1)", "--init", "N(0, 5)", "--lr", "0.5"]


def command(argv: list[str], cache: str | None = None):
    """A case that runs ``argv`` as a fresh process; ``cache`` is its GDLAB_COMPILATION_CACHE, where
    "empty" makes a new empty folder for every run (a first run: every program compiled)."""
    def run() -> float:
        env = dict(os.environ)
        if cache == "empty":
            env["GDLAB_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="gdlab-bench-cache-")
        elif cache is not None:
            env["GDLAB_COMPILATION_CACHE"] = cache
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        return float(len(proc.stdout))
    return run


def main() -> None:
    args = harness.parser(__doc__.splitlines()[0]).parse_args()
    repeats = args.repeats or (1 if args.quick else 7)
    cases = [
        harness.Case("python -c pass", command([sys.executable, "-c", "pass"])),
        harness.Case("python -c 'import jax, optax'", command([sys.executable, "-c", "import jax, optax"])),
        harness.Case("gdlab --help", command([GDLAB, "--help"])),
        harness.Case("gdlab fit", command(FIT, cache=tempfile.mkdtemp(prefix="gdlab-bench-cache-")),
                     note='--target "N(2, 1)" --init "N(0, 5)" --lr 0.5, to convergence; compiled programs '
                          'from the cache the warm-up run filled'),
        harness.Case("gdlab fit (first run, empty cache)", command(FIT, cache="empty"),
                     note="the same with a new, empty compilation cache: every program compiled"),
    ]
    rows = harness.timing_rows(harness.measure(cases, repeats), reference="python -c pass")
    for row in rows:
        goal = GOALS_S.get(row["name"])
        row["goal_s"] = goal
        row["meets_goal"] = None if goal is None else row["median_s"] <= goal
    harness.print_table("start-up, wall seconds per process (ratio = median / bare python's)", rows,
                        ["name", "median_s", "min_s", "max_s", "ratio_to_python -c pass", "goal_s", "meets_goal"])
    print(harness.write("startup", {"repeats": repeats, "rows": rows}, quick=args.quick))


if __name__ == "__main__":
    main()
