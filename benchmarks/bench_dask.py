"""Dask benchmark: the sweep of issue 5 on a Dask LocalCluster of 1 and 2 workers vs the local vmapped sweep.

The workload is bench_sweep.py's ``fit`` sweep: q fitted to p = 0.5·N(−2, 0.25) + 0.5·N(2, 0.25)
from N(0.5, 5) by reverse KL, heavy-ball momentum, a grid of lr (40 values, log-spaced from 0.001
to 1) × momentum ∈ {0, 0.5, 0.9, 0.99}, at most 2,000 steps per cell (``--quick``: 4 × 2 cells,
200 steps), tol = 1e-10 (so that every stop is decided above the rounding level and the tables
can be compared number by number).

Contenders, all computing the same cells:

- ``local vmapped sweep``: :func:`gdlab.sweep.sweep_fit` in this process, one compiled program;
- ``dask, 1 worker`` and ``dask, 2 workers``: :func:`gdlab.distributed.distributed_sweep` on a
  loopback ``LocalCluster`` of that many single-threaded worker processes, started once before
  the timing (its start-up is reported apart), the grid cut into its default blocks
  (:func:`gdlab.distributed.default_blocks`: 4 blocks of 40 cells on 1 or 2 workers).

Each runs once as a warm-up (JAX's start and the compilations in each worker process), then the
repeats run interleaved (benchmarks/harness.py). Reported: seconds, throughput in cell-steps per
second (the steps every cell took, summed, over the seconds), the ratios 2 workers / 1 worker
(the speed-up) and dask / local (the overhead of shipping blocks, compiling in each worker and
gathering), and the largest difference of any number in the tables from the local sweep's.
On a machine with 2 cores the 2 workers share them with the client and the scheduler.

    .venv/bin/python benchmarks/bench_dask.py [--quick]
"""

from __future__ import annotations

import time

import harness
import numpy as np

TARGET = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"
INIT = "N(0.5, 5)"
GRID = {"full": ["lr=0.001:1:40:log", "momentum=0,0.5,0.9,0.99"], "quick": ["lr=0.01:1:4:log", "momentum=0,0.9"]}


def table_gap(local, remote) -> float:
    """The largest |a − b| / max(1, |a|) over every number of two sweep tables (inf if their cells differ)."""
    if list(local.columns) != list(remote.columns) or local.columns["stop_reason"] != remote.columns["stop_reason"]:
        return float("inf")
    gap = 0.0
    for name, values in local.columns.items():
        for a, b in zip(values, remote.columns[name]):
            if isinstance(a, float) and isinstance(b, float):
                gap = max(gap, abs(a - b) / max(1.0, abs(a)))
            elif a != b:
                return float("inf")
    return gap


def main() -> None:
    args = harness.parser(__doc__.splitlines()[0]).parse_args()
    from gdlab import distributed
    from gdlab.sweep import sweep_fit

    grid = GRID["quick" if args.quick else "full"]
    settings = dict(max_steps=200 if args.quick else 2000, tol=1e-10)
    call = (TARGET, INIT, "reverse", "momentum", grid)
    repeats = args.repeats or (2 if args.quick else 3)
    tables: dict = {}

    def local():
        tables["local vmapped sweep"] = sweep_fit(*call, **settings)
        return float(np.nansum(np.asarray(tables["local vmapped sweep"].columns["loss"], dtype=float)))

    clusters, starts, cases = [], {}, [harness.Case("local vmapped sweep", local)]
    try:
        for workers in (1, 2):
            name = f"dask, {workers} worker{'s' if workers > 1 else ''}"
            start = time.perf_counter()
            context = distributed.dask_client(workers=workers)
            client = context.__enter__()
            clusters.append(context)
            starts[name] = time.perf_counter() - start

            def remote(client=client, name=name):
                tables[name] = distributed.distributed_sweep("fit", *call, client=client, **settings)
                return float(np.nansum(np.asarray(tables[name].columns["loss"], dtype=float)))

            cases.append(harness.Case(name, remote))
        timings = harness.measure(cases, repeats=repeats)
    finally:
        for context in reversed(clusters):
            context.__exit__(None, None, None)

    reference = tables["local vmapped sweep"]
    cell_steps = int(sum(reference.columns["steps"]))
    for t in timings:
        t.units = cell_steps
        t.extra = {"cell_steps_per_s": cell_steps / t.median_s,
                   "max_rel_gap_to_local": table_gap(reference, tables[t.name]),
                   "cluster_start_s": starts.get(t.name)}
    rows = harness.timing_rows(timings, reference="local vmapped sweep")
    by = {r["name"]: r for r in rows}
    speedup = by["dask, 1 worker"]["median_s"] / by["dask, 2 workers"]["median_s"]
    overhead = {name: by[name]["median_s"] / by["local vmapped sweep"]["median_s"]
                for name in ("dask, 1 worker", "dask, 2 workers")}
    agree = all(r["max_rel_gap_to_local"] <= 1e-12 for r in rows)
    harness.print_table(f"sweep fit on Dask: {len(reference)} cells, {cell_steps:,} cell-steps "
                        f"(median of {repeats}, after a warm-up)", rows,
                        ["name", "median_s", "min_s", "max_s", "cell_steps_per_s", "ratio_to_local vmapped sweep",
                         "max_rel_gap_to_local", "cluster_start_s"])
    summary = (f"2 workers {speedup:.2f}x the throughput of 1; overhead against the local vmapped sweep: "
               f"1 worker {overhead['dask, 1 worker']:.2f}x, 2 workers {overhead['dask, 2 workers']:.2f}x the time; "
               f"tables {'agree' if agree else 'DIFFER'} (to 1e-12)")
    print(summary)
    if not agree:
        raise SystemExit("the Dask sweep's table differs from the local sweep's")
    path = harness.write("dask", {"grid": grid, "cells": len(reference), "cell_steps": cell_steps,
                                  "repeats": repeats, "rows": rows, "speedup_2_over_1_worker": speedup,
                                  "overhead_over_local": overhead, "answers_agree": agree, "summary": summary},
                         quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
