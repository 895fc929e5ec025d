"""Natural gradient and the Fisher information

The third source text: plain gradient descent takes the steepest step in Euclidean distance between
*parameters*, so it depends on how the distribution is parameterized (variance or precision); the
natural gradient takes the steepest step in KL divergence between *distributions*. The Fisher
information F is the curvature of KL, \\(\\mathrm{KL}(q_\\theta\\,\\|\\,q_{\\theta+\\delta}) \\approx
\\tfrac12 \\delta^\\top F \\delta\\), and minimising the linearised loss under the constraint
\\(\\tfrac12\\delta^\\top F\\delta = \\epsilon\\) with a Lagrangian gives the step
\\(\\delta \\propto -F^{-1}\\nabla L\\). This guide checks each step of that derivation numerically
with gdlab and then shows what it buys: invariance to the parameterization, and Fisher scoring.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")                    # figures go to files; no display is needed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import gdlab
from gdlab import divergences, optim, plots

# gdlab.fit and gdlab.train compute in float64 on their own; the building blocks called directly
# below (families, fisher_information, divergences) compute in JAX's precision: make it 64-bit.
jax.config.update("jax_enable_x64", True)


def main(out_dir: Path, quick: bool = False) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = (600, 300) if quick else (1200, 600)
    steps = 60 if quick else 200                     # steps of each run in the invariance comparison

    # %% The Fisher information, three ways
    # F is the covariance of the score E[∇log q ∇log qᵀ], the negative expected Hessian of the log
    # density −E[∇² log q], and the Hessian of KL(q_θ‖q_θ′) at θ′ = θ. For q = N(m, v) in (mean,
    # variance) coordinates all of them are the closed form diag(1/v, 1/(2v²)).
    family = gdlab.make_family("gaussian", 1, "mean_var")
    theta = jnp.array([1.0, 2.0])                                    # q = N(1, 2)
    closed_form = np.diag([1 / 2.0, 1 / (2 * 2.0 ** 2)])
    for method in ("analytic", "kl_hessian", "score", "neg_hessian"):
        F = np.asarray(gdlab.fisher_information(family, theta, method=method))
        print(f"{method:11s}: {F.tolist()}")
        assert np.allclose(F, closed_form, atol=1e-12)
    F = closed_form

    # %% KL ≈ ½ δᵀFδ
    # The second-order Taylor expansion of KL around δ = 0 has no constant or linear term (KL is 0
    # and minimal there), so KL(q_θ‖q_θ+δ) / (½δᵀFδ) → 1, with an error that shrinks in proportion
    # to |δ| (the third-order term).
    m0, c0 = jnp.array([1.0]), jnp.array([[2.0]])
    direction = np.array([0.6, 0.8])
    sizes = np.logspace(-1, -4, 7)
    ratios = []
    for h in sizes:
        d = h * direction
        kl = float(divergences.kl_gaussian(m0, c0, m0 + d[0], c0 + d[1]))
        ratios.append(kl / (0.5 * d @ F @ d))
    errors = np.abs(np.array(ratios) - 1)
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    print("|δ|: " + ", ".join(f"{h:.0e}" for h in sizes))
    print("KL / ½δᵀFδ − 1: " + ", ".join(f"{e:.1e}" for e in errors) + f"  (log-log slope {slope:.3f})")
    assert abs(slope - 1) < 0.05
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax.loglog(sizes, errors, "o-", label="|KL(q_θ‖q_θ+δ) / (½δᵀFδ) − 1|")
    ax.loglog(sizes, errors[0] * sizes / sizes[0], "k--", label="∝ |δ|")
    ax.set(xlabel="|δ|", title="KL is ½δᵀFδ to second order")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "kl_quadratic.png")
    plt.close(fig)

    # %% The KL-constrained step
    # Minimise the linearised loss gᵀδ subject to ½δᵀFδ = ε. The Lagrangian gᵀδ + λ(½δᵀFδ − ε)
    # is stationary at δ = −F⁻¹g/λ, and the constraint fixes λ: δ* = −√(2ε / gᵀF⁻¹g) F⁻¹g.
    # Checked by brute force: no other δ on the ellipse ½δᵀFδ = ε lowers gᵀδ further. Then gdlab's
    # trust-region optimizer (`optim.natural(trust_region=ε)`) takes such steps, refined on the
    # exact KL: the first step of a fit moves q by KL(q₀‖q₁) = ε.
    target, start, eps = "N(3, 0.5)", "N(0, 5)", 0.01
    p_mean, p_cov = jnp.array([3.0]), jnp.array([[0.5]])
    theta0 = jnp.array([0.0, 5.0])
    F0 = np.asarray(gdlab.fisher_information(family, theta0))

    def forward_kl(th):                                       # KL(p‖q_θ), closed form
        return divergences.kl_gaussian(p_mean, p_cov, th[:1], th[1:].reshape(1, 1))

    g = np.asarray(jax.grad(forward_kl)(theta0))
    natural_dir = np.linalg.solve(F0, g)
    delta = -np.sqrt(2 * eps / (g @ natural_dir)) * natural_dir
    angles = np.linspace(0, 2 * np.pi, 20_001)
    circle = np.stack([np.cos(angles), np.sin(angles)], 1)
    on_ellipse = circle / np.sqrt(0.5 * np.einsum("ni,ij,nj->n", circle, F0, circle))[:, None] * np.sqrt(eps)
    best_sampled = (on_ellipse @ g).min()
    print(f"gᵀδ*: {g @ delta:.8f}; best of 20,001 directions on the ellipse: {best_sampled:.8f}")
    assert abs(0.5 * delta @ F0 @ delta - eps) < 1e-12 and g @ delta <= best_sampled + 1e-12
    trust = gdlab.fit(target, start, "forward", optim.natural(trust_region=eps), max_steps=400)
    print(f"trust region ε = {eps}: first step moved q by KL = {trust.trace.step_kl[0]:.10f}; "
          f"{trust.stop_reason} after {trust.steps} steps at N({trust.q.mean:.6f}, {trust.q.var:.6f})")
    assert abs(trust.trace.step_kl[0] - eps) < 1e-6 * eps          # refined to ε, not just its quadratic model
    assert trust.stop_reason == "converged" and abs(trust.q.mean - 3) < 1e-6 and abs(trust.q.var - 0.5) < 1e-6

    # %% Natural and plain gradient in several parameterizations
    # The source's example: describe q by its variance, or by its precision 1/v (or its log standard
    # deviation). Plain gradient descent takes different paths in each; the natural gradient
    # follows one path in distribution space whatever the coordinates (up to terms of order lr² per
    # step). `gdlab.compare_params` runs both from the same q and measures, step by step, the
    # largest symmetric KL between the q's that two parameterizations reach.
    params = ("mean_var", "mean_precision", "mean_logstd")
    comparison = gdlab.compare_params(target, start, "forward", lr=0.01, steps=steps, params=params)
    gap_natural, gap_gd = comparison.max_gap("natural"), comparison.max_gap("gd")
    print(f"largest KL between parameterizations over {steps} steps: natural {gap_natural:.2e}, plain {gap_gd:.2e}")
    assert gap_natural < 1e-4 and gap_gd > 100 * gap_natural
    plots.save_figure(plots.param_comparison_figure(comparison, size=size), str(out_dir / "invariance.png"))

    # %% Fisher scoring for logistic regression
    # For logistic regression (a canonical link) the Fisher information of the model equals the
    # Hessian of the cross-entropy, so the natural gradient with a full step is Newton's method,
    # known in statistics as Fisher scoring or IRLS. Its first step is computed below by hand with
    # NumPy, F = X̃ᵀWX̃/n + λ (W = diag(p(1 − p))), δ = −F⁻¹∇J, and must be gdlab's first step; the
    # run then converges in a handful of steps to scikit-learn's optimum.
    X, y = load_breast_cancer(return_X_y=True)
    Xs = (X - X.mean(0)) / X.std(0)
    n = len(y)
    scoring = gdlab.train("breast_cancer", "logistic", optimizer=optim.natural(), test_size=0)
    X1 = np.column_stack([Xs, np.ones(n)])
    theta_start = np.asarray(scoring.trace.params[0])
    prob = 1 / (1 + np.exp(-X1 @ theta_start))
    lam = np.r_[np.full(Xs.shape[1], 1 / n), 0.0]                  # C = 1 → λ = 1/n; bias not penalised
    grad = X1.T @ (prob - y) / n + lam * theta_start
    fisher = X1.T @ (X1 * (prob * (1 - prob))[:, None]) / n + np.diag(lam)
    newton = theta_start - np.linalg.solve(fisher, grad)
    print(f"first step: gdlab vs hand-made Fisher scoring, largest difference "
          f"{np.abs(np.asarray(scoring.trace.params[1]) - newton).max():.1e}")
    assert np.allclose(scoring.trace.params[1], newton, atol=1e-10)
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(Xs, y)
    z = Xs @ sk.coef_[0] + sk.intercept_[0]
    sk_objective = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(sk.coef_ ** 2) / n
    gaps = np.asarray(scoring.trace.loss) - sk_objective
    print("J − J*(scikit-learn) per step: " + ", ".join(f"{v:.1e}" for v in gaps))
    assert scoring.stop_reason == "converged" and scoring.steps <= 12 and abs(gaps[-1]) < 1e-8

    # Newton's method converges quadratically near the optimum: e_{k+1} ≈ C e_k², so the ratio
    # e_{k+1} / e_k² settles to a constant (about the same for every step once e_k is small)
    # while the error itself squares away, the digits doubling per step.
    pairs = [(a, b) for a, b in zip(gaps[:-1], gaps[1:]) if a < 1e-2 and b > 1e-12]
    ratios = [b / a ** 2 for a, b in pairs]
    print("e_{k+1} / e_k²: " + ", ".join(f"{r:.1f}" for r in ratios))
    assert len(ratios) >= 3 and max(ratios) < 5 * min(ratios)
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax.semilogy(np.arange(len(gaps)), np.maximum(gaps, 1e-16), "o-", label="Fisher scoring (natural gradient, lr 1)")
    ax.set(xlabel="step", ylabel="J − J* (scikit-learn's optimum)", title="Fisher scoring on breast_cancer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "fisher_scoring.png")
    plt.close(fig)


# %% Running it
# From the command line: `--out DIR` is where the figures go, `--quick` runs at the small size the
# test suite uses (the docs build runs it at full size).
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG figures")
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds (the test suite's size)")
    args = parser.parse_args()
    main(args.out, args.quick)
