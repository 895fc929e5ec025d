"""Benchmark 4: L2-penalised logistic regression on N = 10⁶ rows, d = 100 features, float64.

The objective every contender minimises (scikit-learn's with C = 1, written per row):

    J(w, b) = (1/n) Σᵢ log(1 + exp(−sᵢ(xᵢ·w + b))) + ‖w‖² / (2 C n),   sᵢ = ±1,

on seeded synthetic data: xᵢ ~ N(0, I_d), labels drawn from the logistic model with weights
~ N(0, 4/d) and bias 0.3 (classes overlap, so the minimiser is finite). The reference J* comes
from a Newton (IRLS) solve in NumPy run until ‖∇J‖ < 1e-13. Each contender's time is the wall
time of its whole fit; its answer is J at the weights it returns, and ``reached`` says whether
(J − J*)/J* ≤ 1e-9, the accuracy the goal asks for: a fast run that stops short is a failure.

Contenders: ``gdlab natural`` (:func:`gdlab.train` with ``optim.natural()``: Fisher scoring,
full batch), scikit-learn ``LogisticRegression`` (``lbfgs`` and ``newton-cholesky``, tol 1e-10),
``SGDClassifier`` (log loss, 5 epochs: it shows where SGD stops, far from 1e-9),
``scipy.optimize.minimize`` (L-BFGS-B with the exact gradient) and a torch full-batch L-BFGS
loop; plus the memory floor, ``X.sum()`` (one pass over the 800 MB of X).

    .venv/bin/python benchmarks/bench_logistic.py [--quick]
"""

from __future__ import annotations

import warnings

import harness
import numpy as np

C = 1.0
TARGET_GAP = 1e-9


def aligned_copy(a: np.ndarray, align: int = 64, offset: int = 0) -> np.ndarray:
    """``a`` copied into a buffer that starts ``offset`` bytes past a multiple of ``align`` (offset 0:
    aligned, as pyarrow and most SIMD code allocate; NumPy's own allocator aligns to 16)."""
    buf = np.empty(a.size + 2 * align // a.itemsize, a.dtype)
    start = (-buf.ctypes.data % align + offset) // a.itemsize
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X (64-byte aligned, the same array for every contender) and labels y."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.normal(0.0, 2.0 / np.sqrt(d), d)
    p = 1.0 / (1.0 + np.exp(-(X @ w + 0.3)))
    return aligned_copy(X), (rng.random(n) < p).astype(np.float64)


def objective(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """J(w, b) in NumPy: the mean log loss, computed stably, plus the penalty."""
    z = X @ w + b
    s = 2.0 * y - 1.0
    return float(np.mean(np.logaddexp(0.0, -s * z)) + w @ w / (2.0 * C * len(y)))


def objective_and_grad(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    w, b = theta[:-1], theta[-1]
    n = len(y)
    z = X @ w + b
    s = 2.0 * y - 1.0
    value = np.mean(np.logaddexp(0.0, -s * z)) + w @ w / (2.0 * C * n)
    r = (1.0 / (1.0 + np.exp(-z)) - y) / n           # dJ/dz
    return float(value), np.concatenate([X.T @ r + w / (C * n), [r.sum()]])


def newton_reference(X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """J* by Newton's method (IRLS) in NumPy, to ‖∇J‖ < 1e-13."""
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    ridge = np.full(d + 1, 1.0 / (C * n))
    ridge[-1] = 0.0
    for _ in range(50):
        _, g = objective_and_grad(theta, X, y)
        if np.linalg.norm(g) < 1e-13:
            break
        p = 1.0 / (1.0 + np.exp(-(A @ theta)))
        H = (A * (p * (1 - p) / n)[:, None]).T @ A + np.diag(ridge)
        theta = theta - np.linalg.solve(H, g)
    return objective(X, y, theta[:-1], theta[-1]), theta


def cases(X: np.ndarray, y: np.ndarray) -> tuple[list[harness.Case], list[harness.Missing]]:
    from gdlab import optim, train

    n = len(y)
    out = [harness.Case("memory floor: X.sum()", lambda: float(X.sum()), note="one pass over X, not a fit")]

    def gdlab_natural(data: np.ndarray):
        def fit() -> float:
            res = train((data, y), "logistic", optimizer=optim.natural(), test_size=0.0, standardize=False, C=C)
            return objective(X, y, np.asarray(res.weights).ravel(), float(np.asarray(res.bias).ravel()[0]))
        return fit

    out.append(harness.Case("gdlab natural (Fisher scoring)", gdlab_natural(X),
                            note="X aligned to 64 bytes: JAX reads it in place"))
    # the same X in a buffer from NumPy's allocator (16-byte aligned): JAX copies it once per call
    X16 = aligned_copy(X, offset=16)
    out.append(harness.Case("gdlab natural, X copied", gdlab_natural(X16),
                            note="X from NumPy's allocator (aligned to 16 bytes): one copy of X per call"))
    missing = []
    sklearn, why = harness.optional_import("sklearn")
    if sklearn is None:
        missing.append(harness.Missing("scikit-learn", why))
    else:
        from sklearn.linear_model import LogisticRegression, SGDClassifier

        def sk(solver):
            def fit() -> float:
                m = LogisticRegression(C=C, solver=solver, tol=1e-10, max_iter=1000).fit(X, y)
                return objective(X, y, m.coef_.ravel(), float(m.intercept_[0]))
            return fit

        def sgd() -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")           # it warns that 5 epochs did not converge
                m = SGDClassifier(loss="log_loss", alpha=1.0 / (C * n), max_iter=5, tol=None, random_state=0).fit(X, y)
            return objective(X, y, m.coef_.ravel(), float(m.intercept_[0]))

        out += [harness.Case("sklearn lbfgs", sk("lbfgs")), harness.Case("sklearn newton-cholesky", sk("newton-cholesky")),
                harness.Case("sklearn SGDClassifier (5 epochs)", sgd)]
    scipy_opt, why = harness.optional_import("scipy.optimize")
    if scipy_opt is None:
        missing.append(harness.Missing("scipy", why))
    else:
        from scipy.optimize import minimize

        def lbfgsb() -> float:
            res = minimize(objective_and_grad, np.zeros(X.shape[1] + 1), args=(X, y), jac=True, method="L-BFGS-B",
                           options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 1000})
            return objective(X, y, res.x[:-1], res.x[-1])

        out.append(harness.Case("scipy L-BFGS-B", lbfgsb))
    torch, why = harness.optional_import("torch")
    if torch is None:
        missing.append(harness.Missing("torch full-batch L-BFGS", why))
    else:
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_lbfgs() -> float:
            theta = torch.zeros(X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
            opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-15,
                                    history_size=20, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                z = Xt @ theta[:-1] + theta[-1]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt) + theta[:-1] @ theta[:-1] / (2 * C * n)
                loss.backward()
                return loss

            opt.step(closure)
            w = theta.detach().numpy()
            return objective(X, y, w[:-1], w[-1])

        out.append(harness.Case("torch full-batch L-BFGS", torch_lbfgs))
    return out, missing


def main() -> None:
    args = harness.parser(__doc__.splitlines()[0]).parse_args()
    n, d = (20_000, 10) if args.quick else (1_000_000, 100)
    X, y = make_data(n, d)
    j_star, _ = newton_reference(X, y)
    case_list, missing = cases(X, y)
    timings = harness.measure(case_list, repeats=args.repeats or (2 if args.quick else 5))
    rows = harness.timing_rows(timings, reference="sklearn lbfgs")
    floor = next(r for r in rows if r["name"].startswith("memory floor"))
    for r in rows:
        fit = not r["name"].startswith("memory floor")
        r["gap"] = (r["answer"] - j_star) / abs(j_star) if fit else None
        r["reached"] = bool(r["gap"] <= TARGET_GAP) if fit else None
        r["ratio_to_floor"] = r["median_s"] / floor["median_s"]
    harness.print_table(f"logistic regression, N = {n:,}, d = {d}: J* = {j_star:.12g}", rows,
                        ["name", "median_s", "min_s", "max_s", "ratio_to_sklearn lbfgs", "ratio_to_floor", "gap",
                         "reached"])
    for m in missing:
        print(f"missing: {m.name}: {m.reason}")
    by = {r["name"]: r for r in rows}
    ours = by["gdlab natural (Fisher scoring)"]
    lbfgs = by.get("sklearn lbfgs")
    summary = (f"gdlab natural {ours['median_s']:.3g} s (gap {ours['gap']:.1e}), "
               + (f"{ours['median_s'] / lbfgs['median_s']:.2f}x sklearn lbfgs ({lbfgs['median_s']:.3g} s, "
                  f"gap {lbfgs['gap']:.1e}), " if lbfgs else "sklearn missing, ")
               + f"{ours['ratio_to_floor']:.0f}x the memory floor")
    print("ratio: " + summary)
    path = harness.write("logistic", {"n": n, "d": d, "j_star": j_star, "rows": rows, "summary": summary,
                                      "missing": [m.__dict__ for m in missing]}, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
