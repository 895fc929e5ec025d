"""Benchmark 2: a 100 × 100 grid of (lr, momentum) × 1,000 steps on Rosenbrock, as one sweep.

The workload: heavy-ball momentum (v ← βv + ∇f, x ← x − ηv, optax's ``sgd(momentum=β)``) on
f(x, y) = (1 − x)² + 100 (y − x²)² from (−1.2, 1), float64, for every cell of
η ∈ 1e-5 … 2e-3 (100 values, log-spaced) × β ∈ 0 … 0.99 (100 values): 10⁴ cells × 1,000 steps
= 10⁷ optimizer steps. Small step sizes crawl along the valley, the largest with β near 1
diverge: the grid holds every kind of cell.

Contenders, all on the same 10,000 cells:

- ``gdlab.sweep``: :func:`gdlab.sweep.sweep_landscape`, one compiled ``vmap``-ed program with
  stopping checked at every step and the results table built (its compilation included, as a
  user's sweep pays it);
- ``bare jit(vmap(scan))``: optax's momentum inside ``lax.scan`` for 1,000 steps, ``vmap``-ed
  over the cells, nothing recorded, no stopping (the floor; compiled in the warm-up);
- ``numpy (vectorised)``: the same update on (10⁴, 2) arrays, 1,000 Python-level steps;
- ``torch (vectorised)``: the same on torch tensors (``torch.no_grad``, analytic gradient).

Steps per second count the grid's 10⁷ steps for every contender (a cell that gdlab stops early
at convergence or divergence still counts 1,000: that is the work asked for). Every
contender's final f is compared cell by cell with the bare run on the cells where both are
finite; a cell that diverges must diverge in both.

    .venv/bin/python benchmarks/bench_grid.py [--quick]
"""

from __future__ import annotations

import harness
import numpy as np

X0 = (-1.2, 1.0)
GOAL_STEPS_PER_S = 5e8


def grid(quick: bool) -> tuple[list[str], int]:
    n = 10 if quick else 100
    return [f"lr=1e-5:2e-3:{n}:log", f"momentum=0:0.99:{n}"], (100 if quick else 1000)


def cell_values(spec: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from gdlab.sweep import grid_cells, parse_grid

    cells = grid_cells([parse_grid(g) for g in spec])
    return np.asarray(cells["lr"]), np.asarray(cells["momentum"])


def rosenbrock_grad(x, y):
    return -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


FINAL_F: dict[str, np.ndarray] = {}     # contender → its last run's final f per cell


def kept(name: str, run):
    """``run`` returning its per-cell answers, kept in FINAL_F; the harness gets their median."""
    def call() -> float:
        FINAL_F[name] = np.asarray(run(), dtype=float)
        finite = FINAL_F[name][np.isfinite(FINAL_F[name])]
        return float(np.median(finite)) if finite.size else float("nan")
    return call


def cases(spec: list[str], steps: int) -> tuple[list[harness.Case], list[harness.Missing]]:
    import jax
    import jax.numpy as jnp
    import optax

    from gdlab.sweep import sweep_landscape

    lr, beta = cell_values(spec)
    n = len(lr)

    def gdlab_sweep() -> np.ndarray:
        res = sweep_landscape("rosenbrock", list(X0), "momentum", spec, max_steps=steps)
        # a cell stopped as diverged (f grew past 1e3 times its start) counts as non-finite, as
        # the peers' runs of it end at inf or NaN
        return np.array([np.nan if v is None or why == "diverged" else v
                         for v, why in zip(res.columns["f"], res.columns["stop_reason"])])

    with jax.enable_x64(True):
        def one_cell(eta, b):
            opt = optax.sgd(eta, momentum=b)
            x = jnp.asarray(X0)

            def step(carry, _):
                p, s = carry
                g = jax.grad(lambda q: rosenbrock(q[0], q[1]))(p)
                u, s = opt.update(g, s, p)
                return (optax.apply_updates(p, u), s), None

            (p, _), _ = jax.lax.scan(step, (x, opt.init(x)), None, length=steps)
            return rosenbrock(p[0], p[1])

        bare_program = jax.jit(jax.vmap(one_cell))
        lr_j, beta_j = jnp.asarray(lr), jnp.asarray(beta)

    def bare() -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(bare_program(lr_j, beta_j))

    def numpy_vectorised() -> np.ndarray:
        x, y = np.full(n, X0[0]), np.full(n, X0[1])
        vx, vy = np.zeros(n), np.zeros(n)
        with np.errstate(all="ignore"):
            for _ in range(steps):
                gx, gy = rosenbrock_grad(x, y)
                vx, vy = beta * vx + gx, beta * vy + gy
                x, y = x - lr * vx, y - lr * vy
            return rosenbrock(x, y)

    out = [harness.Case("gdlab.sweep", kept("gdlab.sweep", gdlab_sweep), units=n * steps,
                        note="stopping checked, table built"),
           harness.Case("bare jit(vmap(scan))", kept("bare jit(vmap(scan))", bare), units=n * steps,
                        note="the floor: nothing recorded"),
           harness.Case("numpy (vectorised)", kept("numpy (vectorised)", numpy_vectorised), units=n * steps)]
    missing = []
    torch, why = harness.optional_import("torch")
    if torch is None:
        missing.append(harness.Missing("torch (vectorised)", why))
    else:
        lr_t, beta_t = torch.tensor(lr, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64)

        def torch_vectorised() -> np.ndarray:
            with torch.no_grad():
                x = torch.full((n,), X0[0], dtype=torch.float64)
                y = torch.full((n,), X0[1], dtype=torch.float64)
                vx, vy = torch.zeros_like(x), torch.zeros_like(y)
                for _ in range(steps):
                    gx, gy = rosenbrock_grad(x, y)
                    vx, vy = beta_t * vx + gx, beta_t * vy + gy
                    x, y = x - lr_t * vx, y - lr_t * vy
                return rosenbrock(x, y).numpy()

        out.append(harness.Case("torch (vectorised)", kept("torch (vectorised)", torch_vectorised), units=n * steps))
    return out, missing


def agreement(answers: dict[str, np.ndarray], reference: str) -> dict[str, dict]:
    """Per contender: the largest relative gap in final f to the reference on cells finite in both,
    and the cells finite in one but not the other (diverged in one only)."""
    ref = answers[reference]
    out = {}
    for name, f in answers.items():
        both = np.isfinite(f) & np.isfinite(ref)
        gap = np.abs(f[both] - ref[both]) / np.maximum(1.0, np.abs(ref[both]))
        out[name] = {"max_rel_gap": float(gap.max()) if both.any() else 0.0,
                     "finite_cells": int(np.isfinite(f).sum()),
                     "cells_diverged_in_one_only": int(np.sum(np.isfinite(f) != np.isfinite(ref)))}
    return out


def main() -> None:
    args = harness.parser(__doc__.splitlines()[0]).parse_args()
    spec, steps = grid(args.quick)
    case_list, missing = cases(spec, steps)
    timings = harness.measure(case_list, repeats=args.repeats or (2 if args.quick else 5))
    answers = FINAL_F
    checks = agreement(answers, "bare jit(vmap(scan))")
    rows = harness.timing_rows(timings, reference="gdlab.sweep")
    for r in rows:
        r["steps_per_s"] = r["units"] / r["median_s"]
        r.update(checks[r["name"]])
    harness.print_table(f"{len(answers['gdlab.sweep']):,} cells x {steps:,} steps of momentum on Rosenbrock",
                        rows, ["name", "median_s", "min_s", "max_s", "steps_per_s", "ratio_to_gdlab.sweep",
                               "max_rel_gap", "cells_diverged_in_one_only"])
    for m in missing:
        print(f"missing: {m.name}: {m.reason}")
    by = {r["name"]: r for r in rows}
    rate = by["gdlab.sweep"]["steps_per_s"]
    over_numpy = rate / by["numpy (vectorised)"]["steps_per_s"]
    over_bare = by["gdlab.sweep"]["median_s"] / by["bare jit(vmap(scan))"]["median_s"]
    summary = (f"{rate:.3g} steps/s ({rate / GOAL_STEPS_PER_S:.2f}x the 5e8 goal), {over_numpy:.1f}x NumPy, "
               f"{over_bare:.2f}x the bare program's time")
    print("ratio: " + summary)
    path = harness.write("grid", {"grid": spec, "steps": steps, "rows": rows,
                                  "missing": [m.__dict__ for m in missing], "summary": summary,
                                  "steps_per_s": rate, "over_numpy": over_numpy, "time_over_bare": over_bare},
                         quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
