"""Benchmark 1: the cost of one optimizer step, gdlab's engine beside its peers.

Workloads (each 10,000 steps of heavy-ball momentum, float64):

- ``rosenbrock``: f(x, y) = (1 − x)² + 100 (y − x²)² from (−1.2, 1), lr 0.001, momentum 0.9;
- ``kl_fit``: the source text's fit, q = N(m, v) from N(0, 5) to p = N(2, 1) by forward KL
  in (mean, variance), lr 0.05, momentum 0.9.

Contenders: ``gdlab`` (``engine.run``: trace recorded, stopping checked at every step), the
floor ``bare_scan`` (optax momentum inside one ``lax.scan``, nothing recorded), ``optax_loop``
(a jitted optax step called from a Python loop), ``numpy_loop`` and ``torch_loop``
(``torch.optim.SGD``). Every contender reports its final loss: they must agree.

    .venv/bin/python benchmarks/bench_step_cost.py [--quick]
"""

from __future__ import annotations

import math

import harness
import numpy as np

GOAL_US = 0.05


def rosenbrock_np(p):
    x, y = p
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_grad_np(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def kl_np(p):
    m, v = p
    return 0.5 * (math.log(v / 1.0) + (1.0 + (m - 2.0) ** 2) / v - 1.0)


def kl_grad_np(p):
    m, v = p
    return np.array([(m - 2.0) / v, 0.5 / v - 0.5 * (1.0 + (m - 2.0) ** 2) / v**2])


WORKLOADS = {
    "rosenbrock": dict(x0=(-1.2, 1.0), lr=0.001, f_np=rosenbrock_np, g_np=rosenbrock_grad_np),
    "kl_fit": dict(x0=(0.0, 5.0), lr=0.05, f_np=kl_np, g_np=kl_grad_np),
}


def jax_loss(name):
    import jax.numpy as jnp

    if name == "rosenbrock":
        return lambda p, _=None: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
    return lambda p, _=None: 0.5 * (jnp.log(p[1]) + (1.0 + (p[0] - 2.0) ** 2) / p[1] - 1.0)


def torch_loss(name, torch):
    if name == "rosenbrock":
        return lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
    return lambda p: 0.5 * (torch.log(p[1]) + (1.0 + (p[0] - 2.0) ** 2) / p[1] - 1.0)


def cases(name: str, steps: int) -> tuple[list[harness.Case], list[harness.Missing]]:
    import jax
    import jax.numpy as jnp
    import optax

    from gdlab import engine, optim, stopping

    w = WORKLOADS[name]
    x0 = np.array(w["x0"])
    loss = jax_loss(name)
    beta = 0.9

    objective = engine.Objective(loss=loss)
    gd_opt = optim.momentum(w["lr"], beta)
    criteria = stopping.StopCriteria(max_steps=steps, tol=0.0)

    def gdlab_run():
        res = engine.run(objective, gd_opt, jnp.asarray(x0), criteria)
        assert res.steps == steps and len(res.trace) == steps + 1
        return res.trace.loss[-1]

    bare_opt = optax.sgd(w["lr"], beta)

    @jax.jit
    def bare(x):
        def step(carry, _):
            p, s = carry
            u, s = bare_opt.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (x, bare_opt.init(x)), None, length=steps)
        return loss(p)

    def bare_run():
        return float(bare(jnp.asarray(x0)))

    @jax.jit
    def one_step(p, s):
        u, s = bare_opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    def optax_loop():
        p = jnp.asarray(x0)
        s = bare_opt.init(p)
        for _ in range(steps):
            p, s = one_step(p, s)
        return float(loss(p))

    def numpy_loop():
        p, v = x0.copy(), np.zeros(2)
        for _ in range(steps):
            v = beta * v + w["g_np"](p)
            p = p - w["lr"] * v
        return w["f_np"](p)

    out = [harness.Case("gdlab", gdlab_run, steps, "engine.run: trace + stopping every step"),
           harness.Case("bare_scan", bare_run, steps, "optax in one lax.scan, nothing recorded (floor)"),
           harness.Case("optax_loop", optax_loop, steps, "jitted optax step in a Python loop"),
           harness.Case("numpy_loop", numpy_loop, steps, "hand-written momentum in NumPy")]
    missing = []
    torch, why = harness.optional_import("torch")
    if torch is None:
        missing.append(harness.Missing("torch_loop", why))
    else:
        f = torch_loss(name, torch)

        def torch_loop():
            p = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
            opt = torch.optim.SGD([p], lr=w["lr"], momentum=beta)
            for _ in range(steps):
                opt.zero_grad()
                f(p).backward()
                opt.step()
            return float(f(p).detach())

        out.append(harness.Case("torch_loop", torch_loop, steps, f"torch.optim.SGD (torch {torch.__version__})"))
    return out, missing


def main() -> None:
    args = harness.parser(__doc__.splitlines()[0]).parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    steps = 200 if args.quick else 10_000
    repeats = args.repeats or (2 if args.quick else 5)
    payload = {"steps": steps, "repeats": repeats, "goal_us_per_step": GOAL_US, "workloads": {}}
    for name in WORKLOADS:
        contenders, missing = cases(name, steps)
        timings = harness.measure(contenders, repeats)
        rows = harness.timing_rows(timings, reference="gdlab")
        answers = [r["answer"] for r in rows]
        agree = max(answers) - min(answers) <= 1e-9 * max(1.0, abs(answers[0]))
        gdlab = rows[0]["per_unit_us"]
        floor = next(r["per_unit_us"] for r in rows if r["name"] == "bare_scan")
        payload["workloads"][name] = {
            "rows": rows, "missing": [vars(m) for m in missing], "answers_agree": agree,
            "gdlab_us_per_step": gdlab, "gdlab_over_floor": gdlab / floor, "meets_goal": gdlab <= GOAL_US,
        }
        harness.print_table(f"{name}: {steps} momentum steps (µs per step; ratio = median / gdlab's)",
                            rows, ["name", "per_unit_us", "ratio_to_gdlab", "answer", "note"])
        for m in missing:
            print(f"{m.name}: missing: {m.reason}")
        print(f"answers agree: {agree}; gdlab {gdlab:.3g} µs/step, {gdlab / floor:.1f}x the bare scan; "
              f"goal <= {GOAL_US} µs/step: {'met' if gdlab <= GOAL_US else 'NOT met'}")
    print(harness.write("step_cost", payload, quick=args.quick))


if __name__ == "__main__":
    main()
