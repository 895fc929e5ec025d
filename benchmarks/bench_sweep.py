"""Sweep benchmark: a 40 × 4 grid of (lr, momentum) × 2,000 steps as one compiled program vs one cell at a time.

Two workloads, each a grid of lr (40 values, log-spaced) × momentum ∈ {0, 0.5, 0.9, 0.99}, heavy-ball
momentum, at most 2,000 steps per cell, the default stopping rules:

- ``fit`` (the sweep of issue 5): fit q to p = 0.5·N(−2, 0.25) + 0.5·N(2, 0.25) from N(0.5, 5) by
  reverse KL, lr from 0.001 to 1. Each step evaluates a 1,400-node quadrature (already
  vectorised within a cell);
- ``landscape``: Rosenbrock's valley from (−1.5, 2), lr from 1e-5 to 3e-3: a few flops a step.

Contenders, all computing the same 160 cells:

- ``sweep (vmap)``: :func:`gdlab.sweep.sweep_fit` / ``sweep_landscape``, one compiled
  ``jit(vmap(chunk))`` program for every cell (its compilation included: a sweep compiles once
  per call);
- ``sweep (exact)``: the same with ``vectorize=False``: the cells one after another inside one
  compiled program (``lax.map``), bit for bit the single runs;
- ``loop of single runs``: a Python loop calling :func:`gdlab.fit` / :func:`gdlab.landscapes.minimize`
  once per cell, as a user running ``gdlab fit`` per cell would (each call builds its optimizer,
  so each compiles its program);
- ``loop, compiled once``: a Python loop over the cells through one compiled single-cell program
  whose hyperparameters are set per call (no recompilation): it isolates what ``vmap`` gains over
  running the same compiled code cell by cell.

Each contender runs once, after a warm-up of JAX and the shared pieces (the loop of single runs
takes minutes); the answers are compared cell by cell with the loop of single runs: the largest
difference in final loss and how many cells stopped at another step (the default tol = 1e-15
decides a stop at the rounding level, where rounding noise, which vmap's vectorised arithmetic
changes, decides the step).

    .venv/bin/python benchmarks/bench_sweep.py [--quick]
"""

from __future__ import annotations

import time

import harness
import numpy as np

TARGET = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"
INIT = "N(0.5, 5)"
WORKLOADS = {
    "fit": {"grid": ["lr=0.001:1:40:log", "momentum=0,0.5,0.9,0.99"], "quick": ["lr=0.01:1:2:log", "momentum=0,0.9"]},
    "landscape": {"grid": ["lr=1e-5:3e-3:40:log", "momentum=0,0.5,0.9,0.99"],
                  "quick": ["lr=1e-4:1e-3:2:log", "momentum=0,0.9"]},
}


def contenders(kind: str, grid: list[str], max_steps: int):
    """(sweep(vectorize), single(lr, momentum), one compiled program per cell) for the workload."""
    import jax

    from gdlab import fit, optim, stopping
    from gdlab.families import make_family
    from gdlab.fitting import kl_objective
    from gdlab.landscapes import get_landscape, landscape_objective, minimize
    from gdlab.sweep import run_batch, sweep_fit, sweep_landscape

    if kind == "fit":
        def sweep(vectorize):
            return sweep_fit(TARGET, INIT, "reverse", "momentum", grid, max_steps=max_steps, vectorize=vectorize)

        def single(lr, m):
            res = fit(TARGET, INIT, "reverse", optim.momentum(lr, m), max_steps=max_steps)
            return res.loss, res.steps

        with jax.enable_x64(True):
            fam = make_family("gaussian", 1, "mean_var")
            objective = kl_objective(TARGET, fam, "reverse")._replace(metrics=None)
            theta0 = np.asarray(fam.from_moments(jax.numpy.array([0.5]), jax.numpy.array([[5.0]])))[None]
    else:
        def sweep(vectorize):
            return sweep_landscape("rosenbrock", None, "momentum", grid, max_steps=max_steps, vectorize=vectorize)

        def single(lr, m):
            res = minimize("rosenbrock", None, optim.momentum(lr, m), max_steps=max_steps)
            return res.f, res.steps

        objective = landscape_objective(get_landscape("rosenbrock"))
        theta0 = np.array([[-1.5, 2.0]])
    opt, criteria = optim.momentum(0.1, 0.9), stopping.StopCriteria(max_steps=max_steps)

    def compiled_once(lr, m):
        with jax.enable_x64(True):
            res = run_batch(objective, opt, theta0, criteria, hyperparams={"learning_rate": [lr], "momentum": [m]})
        return float(res.loss[0]), int(res.steps[0])

    return sweep, single, compiled_once


def run_workload(kind: str, quick: bool) -> dict:
    from gdlab.sweep import grid_cells, parse_grid

    grid = WORKLOADS[kind]["quick" if quick else "grid"]
    max_steps = 200 if quick else 2000
    cells = grid_cells([parse_grid(g) for g in grid])
    n = len(cells["lr"])
    pairs = [(float(lr), float(m)) for lr, m in zip(cells["lr"], cells["momentum"])]
    sweep, single, compiled_once = contenders(kind, grid, max_steps)
    print(f"\n[{kind}] {n} cells x at most {max_steps} steps")
    single(*pairs[0])                         # warm-up: JAX's start, the target's entropy, shared pieces
    compiled_once(*pairs[0])

    answers, timings = {}, {}
    for name, vectorize in (("sweep (vmap)", True), ("sweep (exact)", False)):
        start = time.perf_counter()
        res = sweep(vectorize)
        timings[name] = time.perf_counter() - start
        loss = res.columns[res.loss_name()]
        answers[name] = ([np.nan if v is None else v for v in loss], res.columns["steps"])
        counts = res.counts()
    for name, call in (("loop of single runs", single), ("loop, compiled once", compiled_once)):
        start = time.perf_counter()
        out = [call(lr, m) for lr, m in pairs]
        timings[name] = time.perf_counter() - start
        answers[name] = ([o[0] for o in out], [o[1] for o in out])

    reference = np.asarray(answers["loop of single runs"][0], dtype=float)
    ref_steps = np.asarray(answers["loop of single runs"][1])
    steps_total = int(ref_steps.sum())
    base = timings["sweep (vmap)"]
    rows = []
    for name, secs in timings.items():
        loss, steps = np.asarray(answers[name][0], dtype=float), np.asarray(answers[name][1])
        both = np.isfinite(loss) & np.isfinite(reference)
        rows.append({"workload": kind, "name": name, "seconds": secs, "ratio_to_sweep": secs / base, "cells": n,
                     "steps_total": steps_total, "us_per_cell_step": secs / max(steps_total, 1) * 1e6,
                     "max_abs_loss_difference": float(np.max(np.abs(loss[both] - reference[both]))) if both.any() else 0.0,
                     "same_nonfinite_cells": bool(np.all(np.isfinite(loss) == np.isfinite(reference))),
                     "cells_with_other_stop_step": int(np.sum(steps != ref_steps))})
    harness.print_table(f"[{kind}] {n} cells: one compiled program vs one cell at a time (compilation included)",
                        rows, ["name", "seconds", "ratio_to_sweep", "us_per_cell_step", "max_abs_loss_difference",
                               "cells_with_other_stop_step"])
    ratio = timings["loop of single runs"] / base
    print(f"ratio: the Python loop of single runs takes {ratio:.1f}x the vmapped sweep "
          f"({timings['loop of single runs']:.1f} s vs {base:.2f} s); the loop through one compiled program "
          f"{timings['loop, compiled once'] / base:.2f}x; the exact sweep {timings['sweep (exact)'] / base:.2f}x")
    return {"grid": grid, "cells": n, "max_steps": max_steps, "counts": counts, "rows": rows,
            "ratio_loop_over_sweep": ratio}


def main() -> None:
    args = harness.parser(__doc__.splitlines()[0]).parse_args()
    results = {kind: run_workload(kind, args.quick) for kind in WORKLOADS}
    path = harness.write("sweep", {
        "workloads": results,
        "rows": [r for w in results.values() for r in w["rows"]],
        "summary": "; ".join(f"{k}: loop of single runs {w['ratio_loop_over_sweep']:.1f}x the one-program sweep"
                             for k, w in results.items()),
    }, quick=args.quick)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
