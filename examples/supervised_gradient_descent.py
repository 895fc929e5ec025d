"""Gradient descent for supervised learning

The second source text: a supervised model is labelled data, features, a weight per feature and an
objective (cross-entropy, RMSE) that measures how poorly the predictions match the labels; training
is finding the weights that minimise the objective, and gradient descent does it iteratively until a
convergence criterion holds. This guide runs each of its ideas with `gdlab.train` on scikit-learn's
bundled datasets (no download) and with `gdlab.minimize` / `gdlab.multistart` on a function with a
local and a global minimum, and checks what the text says against independent computations:
scikit-learn's solvers, NumPy's least squares, and the curvature of the objective.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")                    # figures go to files; no display is needed
import numpy as np
import optax
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression

import gdlab
from gdlab import optim, plots, schedules


def standardized(X: np.ndarray) -> np.ndarray:
    """Features scaled to mean 0 and population standard deviation 1, as ``gdlab.train`` scales them."""
    return (X - X.mean(0)) / X.std(0)


def main(out_dir: Path, quick: bool = False) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = (600, 400) if quick else (1200, 800)
    epochs = 5 if quick else 30                      # mini-batch passes over the data

    # %% Features, weights, labels and an objective
    # Logistic regression on breast_cancer: 569 labelled rows, 30 features, a weight per feature and
    # a bias, and the cross-entropy objective J(w, b) = (1/n) Σ log(1 + e^z) − y z with z = x·w + b,
    # plus scikit-learn's default penalty (C = 1, i.e. λ = 1/n). Fisher scoring (the natural
    # gradient, `optim.natural()`) finds the minimum in a handful of steps; scikit-learn's own
    # solver on the same standardised features must agree with it.
    X, y = load_breast_cancer(return_X_y=True)
    Xs = standardized(X)
    best = gdlab.train("breast_cancer", "logistic", optimizer=optim.natural(), test_size=0)
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(Xs, y)
    z = Xs @ sk.coef_[0] + sk.intercept_[0]
    sk_objective = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(sk.coef_ ** 2) / len(y)
    print(f"cross-entropy + penalty: gdlab {best.loss:.10f} after {best.steps} steps, scikit-learn {sk_objective:.10f}; "
          f"accuracy {best.metrics['accuracy']:.4f}")
    assert best.stop_reason == "converged" and abs(best.loss - sk_objective) < 1e-8
    assert np.allclose(best.weights, sk.coef_[0], atol=1e-4)

    # The other objective of the text, RMSE, for linear regression on diabetes (442 rows, 10 features):
    # its minimiser is the least-squares fit, which NumPy computes directly.
    Xd, yd = load_diabetes(return_X_y=True)
    Xd1 = np.column_stack([standardized(Xd), np.ones(len(yd))])
    lstsq = np.linalg.lstsq(Xd1, yd, rcond=None)[0]
    rmse_star = np.sqrt(np.mean((yd - Xd1 @ lstsq) ** 2))
    linear = gdlab.train("diabetes", "linear", "rmse", optim.gd(lr=5.0), test_size=0, max_steps=20_000)
    print(f"RMSE: gdlab {linear.metrics['rmse']:.8f} ({linear.stop_reason}, {linear.steps} steps), least squares "
          f"{rmse_star:.8f}")
    assert abs(linear.metrics["rmse"] - rmse_star) < 1e-6

    # %% Convergence criteria
    # gdlab stops when the loss has stopped changing (over `patience` steps it moved by at most
    # tol·max(1, |J|)) or when the gradient norm falls below `grad_tol`. A looser tolerance stops
    # sooner, further from the minimum; the distance left is what the criterion trades for steps.
    loose = gdlab.train("breast_cancer", "logistic", optimizer=optim.gd(lr=1.0), test_size=0, tol=1e-6, grad_tol=0)
    tight = gdlab.train("breast_cancer", "logistic", optimizer=optim.gd(lr=1.0), test_size=0, tol=1e-10, grad_tol=0,
                        max_steps=4_000 if quick else 40_000)
    for name, res in (("tol 1e-6", loose), ("tol 1e-10", tight)):
        print(f"{name:9s}: {res.stop_reason} after {res.steps:5d} steps, J − J* = {res.loss - best.loss:.2e}")
    assert loose.stop_reason == "converged" and loose.steps < tight.steps
    assert 0 <= tight.loss - best.loss < loose.loss - best.loss

    # %% Step size: too small, too large, steps counted
    # For the mean squared error the objective is a quadratic with Hessian H = (2/n) X̃ᵀX̃ (X̃: the
    # standardised features and a column of ones). Gradient descent converges for lr < 2/λ_max(H)
    # and runs away above it; the best constant step is 2/(λ_min + λ_max). NumPy gives the
    # eigenvalues, gdlab the runs: steps are counted to the same stopping rule.
    hess = 2 * Xd1.T @ Xd1 / len(yd)
    lam = np.linalg.eigvalsh(hess)
    limit, best_lr = 2 / lam.max(), 2 / (lam.min() + lam.max())
    print(f"Hessian eigenvalues {lam.min():.4f} … {lam.max():.4f}: converges for lr < {limit:.4f}")
    steps = {}
    for name, lr in (("too small", 0.1 * best_lr), ("good", best_lr), ("too large", 1.05 * limit)):
        res = gdlab.train("diabetes", "linear", "mse", optim.gd(lr=float(lr)), test_size=0, max_steps=50_000)
        steps[name] = res
        print(f"lr {lr:.4f} ({name:9s}): {res.stop_reason:9s} after {res.steps:5d} steps, RMSE {res.metrics['rmse']:.4g}")
    assert steps["too small"].stop_reason == steps["good"].stop_reason == "converged"
    assert steps["too small"].steps > 5 * steps["good"].steps
    assert steps["too large"].stop_reason == "diverged"

    # %% Annealing
    # Learning-rate annealing starts large and shrinks the step as it goes. Starting 1.2 times above
    # the limit would run away at a constant rate; decayed by 0.95 a step (any optax schedule is a
    # learning rate), the rate falls below the limit after log(1.2)/−log(0.95) ≈ 4 steps, before
    # the growth has got far, and the run converges to the least-squares fit. The decay stops at
    # half the limit: a rate that decays to nothing would make the loss stop changing, and the
    # convergence criterion fire, before the minimum.
    annealed_lr = optax.exponential_decay(float(1.2 * limit), transition_steps=1, decay_rate=0.95,
                                          end_value=float(0.5 * limit))
    annealed = gdlab.train("diabetes", "linear", "mse", optim.gd(lr=annealed_lr), test_size=0, max_steps=50_000)
    constant = gdlab.train("diabetes", "linear", "mse", optim.gd(lr=float(1.2 * limit)), test_size=0, max_steps=50_000)
    print(f"annealed from lr {1.2 * limit:.3f}: {annealed.stop_reason} after {annealed.steps} steps, "
          f"RMSE {annealed.metrics['rmse']:.8f}; constant: {constant.stop_reason}")
    assert annealed.stop_reason == "converged" and abs(annealed.metrics["rmse"] - rmse_star) < 1e-6
    assert constant.stop_reason == "diverged"
    plots.save_figure(plots.train_result_figure(annealed, size=size), str(out_dir / "annealing.png"))

    # %% Local vs global minima, warm restarts and multistart
    # The double well f(x) has its deep global minimum at x = −1.5 and a shallow local one at
    # x = 1.2. From x = 1.5 a small constant step slides into the local valley and stays. "Gradient
    # descent with restarts" (SGDR: the rate jumps back up every 50, 100, 200, … steps and anneals
    # down) leaves it: the local well is sharp (f'' = 40.5), so no step above 2/40.5 can stay in it,
    # while the wide global well keeps steps up to about 0.34. Multistart is the other kind of
    # restart: many random starts, run together, and the best kept.
    well = gdlab.landscapes.get_landscape("double-well")
    (x_global,), (x_local,) = well.global_minima[0].x, well.local_minima[0].x
    small = gdlab.minimize("double-well", 1.5, optim.gd(0.01))
    restarts = gdlab.minimize("double-well", 1.5, optim.gd(schedules.warm_restarts(0.1, period=50, period_mult=2)))
    many = gdlab.multistart("double-well", 16, optim.gd(0.01), seed=0)
    print(f"constant lr 0.01 → x = {small.x[0]:.6f}; warm restarts → x = {restarts.x[0]:.6f}; "
          f"multistart: {many.reached_global} of 16 runs reach the global minimum, best x = {many.x[many.best][0]:.6f}")
    assert abs(small.x[0] - x_local) < 1e-6 and abs(restarts.x[0] - x_global) < 1e-6
    assert abs(many.x[many.best][0] - x_global) < 1e-6 and 0 < many.reached_global < 16
    fig = plots.landscape_figure(well, [plots.path_from_trace("gd, lr 0.01", small.trace),
                                        plots.path_from_trace("gd, warm restarts", restarts.trace)], size=size)
    plots.save_figure(fig, str(out_dir / "restarts.png"))

    # %% Batch vs mini-batch stochastic gradient descent
    # Batch gradient descent uses every row for every step; mini-batch SGD uses 32 rows, reshuffled
    # each epoch: each step reads 32 rows instead of all of them (the memory the text mentions), and
    # its loss is noisy. With a step below 2/L (L bounds the curvature of the cross-entropy:
    # λ_max(X̃ᵀX̃)/(4n) + λ) batch descent lowers the loss at every step; SGD does not.
    Xb1 = np.column_stack([Xs, np.ones(len(y))])
    lipschitz = np.linalg.eigvalsh(Xb1.T @ Xb1).max() / (4 * len(y)) + 1 / len(y)
    lr = float(1.0 / lipschitz)
    batch = gdlab.train("breast_cancer", "logistic", optimizer=optim.gd(lr), test_size=0, max_steps=epochs * 17)
    sgd = gdlab.train("breast_cancer", "logistic", optimizer=optim.gd(lr), test_size=0, batch_size=32, epochs=epochs)
    rows_per_step = 32
    print(f"lr {lr:.3f} (< 2/L = {2 / lipschitz:.3f}); per step: batch reads {len(y)} rows, SGD {rows_per_step}")
    print(f"after {sgd.steps} SGD steps ({sgd.epochs} epochs): J = {sgd.loss:.5f}; after {batch.steps} batch steps: "
          f"J = {batch.loss:.5f}; optimum {best.loss:.5f}")
    assert np.all(np.diff(batch.trace.loss) <= 1e-12)              # monotone: the descent lemma
    assert np.any(np.diff(sgd.trace.loss) > 0)                     # the noise of mini-batches
    assert sgd.loss < batch.trace.loss[0]
    plots.save_figure(plots.train_result_figure(sgd, size=size), str(out_dir / "sgd.png"))

    # %% Momentum
    # Momentum carries part of the previous step into the next, so progress along a long, shallow
    # direction adds up (an effective step of lr/(1 − β)): at the same step size, β = 0.9 needs
    # fewer steps than plain descent to the same stopping rule.
    plain = gdlab.train("breast_cancer", "logistic", optimizer=optim.gd(lr), test_size=0, tol=1e-10, grad_tol=0,
                        max_steps=100_000)
    heavy = gdlab.train("breast_cancer", "logistic", optimizer=optim.momentum(lr, 0.9), test_size=0, tol=1e-10,
                        grad_tol=0, max_steps=100_000)
    print(f"to tol 1e-10: gd {plain.steps} steps, momentum 0.9 {heavy.steps} steps; "
          f"J − J* = {plain.loss - best.loss:.1e} and {heavy.loss - best.loss:.1e}")
    assert heavy.stop_reason == plain.stop_reason == "converged" and heavy.steps < plain.steps


# %% Running it
# From the command line: `--out DIR` is where the figures go, `--quick` runs at the small size the
# test suite uses (the docs build runs it at full size).
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG figures")
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds (the test suite's size)")
    args = parser.parse_args()
    main(args.out, args.quick)
