"""KL divergence and gradient descent

The first source text matches a known Gaussian q to a hidden distribution p by gradient descent on
KL divergence, in either direction, and plays with the step size and momentum. This guide does the
same with gdlab: `gdlab.fit` runs the descent (exact gradients from JAX, the optimizers from optax),
and every claim below is checked by the script against a closed form or an independent quadrature.

`N(m, v)` is a normal with mean m and **variance** v. Forward KL is
\\(\\mathrm{KL}(p\\,\\|\\,q) = \\mathbb{E}_p[\\log p - \\log q]\\) (mass-covering); reverse KL is
\\(\\mathrm{KL}(q\\,\\|\\,p) = \\mathbb{E}_q[\\log q - \\log p]\\) (mode-seeking).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")                    # figures go to files; no display is needed
import jax
import matplotlib.pyplot as plt
import numpy as np
from scipy import integrate, stats

import gdlab
from gdlab import optim, plots

# gdlab.fit computes in float64 on its own; the building blocks called directly below
# (gdlab.fisher_information) compute in JAX's precision, so switch it to 64-bit first.
jax.config.update("jax_enable_x64", True)


def kl_quad(log_p, log_q, lo: float = -25.0, hi: float = 25.0) -> float:
    """∫ p log(p/q) by adaptive quadrature (from the log-densities, which do not underflow): an
    independent check of gdlab's KL values."""
    def integrand(x):
        return np.exp(log_p(x)) * (log_p(x) - log_q(x))
    return integrate.quad(integrand, lo, hi, points=[-2.0, 0.0, 2.0], limit=400, epsabs=1e-13)[0]


def save(fig, out_dir: Path, name: str) -> None:
    """Write a figure at its own pixel size, then free it (matplotlib keeps pyplot's figures alive)."""
    plots.save_figure(fig, str(out_dir / name))
    plt.close(fig)


def main(out_dir: Path, quick: bool = False) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolution = 24 if quick else 80          # contour grid of the KL landscape in the figures
    size = (600, 400) if quick else (1200, 800)

    # %% A hidden p and a known q
    # The source's demo: p = N(2, 1) is hidden, q starts at N(0, 5) and gradient descent moves q's
    # mean and variance downhill on the KL. Both directions reach p itself (a Gaussian q can match
    # a Gaussian p exactly, where both KLs are 0), but along different paths.
    p, q0 = "N(2, 1)", "N(0, 5)"
    forward = gdlab.fit(p, q0, "forward", optim.gd(lr=0.5))
    reverse = gdlab.fit(p, q0, "reverse", optim.gd(lr=0.5))
    for res in (forward, reverse):
        print(f"{res.divergence:8s} KL: {res.stop_reason} after {res.steps} steps at "
              f"N({res.q.mean:.6f}, {res.q.var:.6f})")
        assert res.stop_reason == "converged"
        assert abs(res.q.mean - 2) < 1e-6 and abs(res.q.var - 1) < 1e-6

    # The KL at the start, by gdlab (row 0 of the trace) and by quadrature of p log(p/q):
    # KL(N(2,1) ‖ N(0,5)) = ½(log 5 + (1 + 4)/5 − 1) = ½ log 5 in closed form.
    p_pdf, q0_pdf = stats.norm(2, 1).logpdf, stats.norm(0, np.sqrt(5)).logpdf
    start_fwd, start_rev = forward.trace.kl_forward[0], forward.trace.kl_reverse[0]
    print(f"at the start: KL(p‖q) = {start_fwd:.12f}, KL(q‖p) = {start_rev:.12f}")
    assert abs(start_fwd - 0.5 * np.log(5)) < 1e-12
    assert abs(start_fwd - kl_quad(p_pdf, q0_pdf)) < 1e-9
    assert abs(start_rev - kl_quad(q0_pdf, p_pdf)) < 1e-9
    save(plots.fit_figure(p, [plots.fit_run("forward KL", forward)], "forward", size=size,
                          resolution=resolution), out_dir, "forward.png")
    save(plots.fit_figure(p, [plots.fit_run("reverse KL", reverse)], "reverse", size=size,
                          resolution=resolution), out_dir, "reverse.png")

    # %% Step size: too small, good, too large, negative
    # Near the optimum forward KL is a quadratic whose Hessian is the Fisher information of q at p
    # (the curvature of KL; see the natural-gradient guide). Gradient descent on a quadratic is
    # stable only for lr < 2/λ_max, and its last phase shrinks the error by (1 − lr·λ_min) per step,
    # so a step 50 times smaller takes about −log(1 − 0.5λ)/−log(1 − 0.01λ) times more steps.
    # Above 2/λ_max the run oscillates around p without ever settling ("a giant may step over the
    # entire mountain"), and a negative step climbs: the source's "machine running away".
    theta_star = forward.family.from_moments(np.array([2.0]), np.array([[1.0]]))
    eigs = np.linalg.eigvalsh(np.asarray(gdlab.fisher_information(forward.family, theta_star)))
    lr_limit = float(2 / eigs.max())
    print(f"Fisher at p in (mean, variance): eigenvalues {eigs}; stable for lr < {lr_limit:g}")
    runs = {lr: gdlab.fit(p, q0, "forward", optim.gd(lr)) for lr in (0.01, 0.5, 1.5 * lr_limit, -0.02)}
    for lr, res in runs.items():
        print(f"lr {lr:6g}: {res.stop_reason:9s} after {res.steps:5d} steps, KL(p‖q) = {res.kl_forward:.3g}")
    small, good, large, negative = runs.values()
    predicted = np.log(1 - 0.5 * eigs.min()) / np.log(1 - 0.01 * eigs.min())
    print(f"steps at lr 0.01 / steps at lr 0.5 = {small.steps / good.steps:.1f} (last-phase rate predicts "
          f"{predicted:.1f})")
    assert small.stop_reason == good.stop_reason == "converged"
    assert 0.5 * predicted < small.steps / good.steps < 2 * predicted
    assert large.stop_reason == "max_steps" and large.kl_forward > 1e-3   # never settles at p
    assert negative.stop_reason == "diverged"
    climb = negative.trace.kl_forward[np.isfinite(negative.trace.kl_forward)]
    assert np.all(np.diff(climb) > 0)                                      # KL rises at every step
    fig = plots.fit_figure(p, [plots.fit_run(f"lr {lr:g}", res) for lr, res in runs.items()], "forward",
                           size=size, resolution=resolution)
    save(fig, out_dir, "step_sizes.png")

    # %% Momentum: 0, 0.9, 0.99
    # Heavy-ball momentum carries a fraction β of the previous step over. On a long, gentle slope
    # the steps add up to lr/(1 − β), so β = 0.9 gets there in fewer steps than plain descent at the
    # same small lr; β = 0.99 keeps so much that q overshoots and circles p for a long time.
    mom = {b: gdlab.fit(p, q0, "forward", optim.momentum(lr=0.05, momentum=b)) for b in (0.0, 0.9, 0.99)}
    for b, res in mom.items():
        print(f"momentum {b:4g}: {res.stop_reason} after {res.steps} steps at N({res.q.mean:.6f}, {res.q.var:.6f})")
        assert res.stop_reason == "converged" and abs(res.q.mean - 2) < 1e-5 and abs(res.q.var - 1) < 1e-5
    assert mom[0.9].steps < mom[0.0].steps and mom[0.9].steps < mom[0.99].steps
    fig = plots.fit_figure(p, [plots.fit_run(f"momentum {b:g}", res) for b, res in mom.items()], "forward",
                           size=size, resolution=resolution)
    save(fig, out_dir, "momentum.png")

    # %% Two modes: where the directions disagree
    # With p = ½N(−2, 0.25) + ½N(2, 0.25) no Gaussian matches p. Forward KL's minimum is the moment
    # match: mean 0 and variance 0.25 + 2² = 4.25, a q that covers both modes. Reverse KL has
    # several local minima: from a wide start it settles between the modes, from a start near a
    # mode it sits on that mode, where KL(q‖p) ≈ log 2 (q misses the other half of p's mass).
    bimodal = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"
    cover = gdlab.fit(bimodal, "N(0.5, 5)", "forward", optim.gd(lr=0.5))
    print(f"forward: N({cover.q.mean:.2e}, {cover.q.var:.6f})")
    assert abs(cover.q.mean) < 1e-6 and abs(cover.q.var - 4.25) < 1e-5
    starts = ("N(0.5, 5)", "N(1.5, 0.5)", "N(-1.5, 0.5)")
    seek = {s: gdlab.fit(bimodal, s, "reverse", optim.momentum(lr=0.05, momentum=0.9)) for s in starts}

    def p_mix(x):                        # log p, from scipy's normal densities
        return np.log(0.5) + np.logaddexp(stats.norm(-2, 0.5).logpdf(x), stats.norm(2, 0.5).logpdf(x))

    for s, res in seek.items():
        q_pdf = stats.norm(res.q.mean, np.sqrt(res.q.var)).logpdf
        print(f"reverse from {s:12s}: {res.stop_reason}, N({res.q.mean:.4f}, {res.q.var:.4f}), "
              f"KL(q‖p) = {res.kl_reverse:.6f}")
        assert res.stop_reason == "converged"
        assert abs(res.kl_reverse - kl_quad(q_pdf, p_mix)) < 1e-8         # gdlab's quadrature vs scipy's
    middle, right, left = seek.values()
    assert abs(middle.q.mean) < 1e-6 and middle.kl_reverse > right.kl_reverse + 0.5   # a worse local minimum
    assert abs(right.q.mean - 2) < 0.01 and abs(left.q.mean + 2) < 0.01
    assert abs(right.kl_reverse - np.log(2)) < 1e-3 and abs(left.kl_reverse - np.log(2)) < 1e-3
    fig = plots.fit_figure(bimodal, [plots.fit_run(f"from {s}", res) for s, res in seek.items()], "reverse",
                           size=size, resolution=resolution)
    save(fig, out_dir, "two_modes_reverse.png")
    save(plots.fit_figure(bimodal, [plots.fit_run("forward KL", cover)], "forward", size=size,
                          resolution=resolution), out_dir, "two_modes_forward.png")

    # %% Six parameters
    # The source's next installment fits more parameters. Here q is a 3-D Gaussian with a diagonal
    # covariance (`family="diag-gaussian"`): six parameters, three means and three log standard
    # deviations, fitted to a correlated 3-D Gaussian p. Theory says both directions find p's mean,
    # but they disagree on the variances: forward KL takes p's marginal variances Σᵢᵢ, reverse KL
    # the conditional ones 1/(Σ⁻¹)ᵢᵢ (smaller: q squeezes inside p).
    mean = np.array([1.0, -1.0, 2.0])
    cov = np.array([[2.0, 0.9, 0.3], [0.9, 1.0, 0.2], [0.3, 0.2, 0.5]])
    target = f"N({mean.tolist()}, {cov.tolist()})"
    six = {d: gdlab.fit(target, "N([0, 0, 0], [1, 1, 1])", d, optim.gd(lr=0.2), family="diag-gaussian")
           for d in ("forward", "reverse")}
    expected = {"forward": np.diag(cov), "reverse": 1 / np.diag(np.linalg.inv(cov))}
    for d, res in six.items():
        var = np.diag(res.q.var)
        print(f"{d:8s}: {res.family.n_params} parameters {', '.join(res.family.param_names)}; {res.stop_reason} after "
              f"{res.steps} steps; means {np.round(res.q.mean, 6)}, variances {np.round(var, 6)} "
              f"(theory {np.round(expected[d], 6)})")
        assert res.family.n_params == 6
        assert np.allclose(res.q.mean, mean, atol=1e-6) and np.allclose(var, expected[d], atol=1e-6)
    fig, axes = plt.subplots(1, 2, figsize=(size[0] / 80, size[1] / 160), dpi=80)
    for d, res in six.items():
        axes[0].semilogy(res.trace.step, res.trace.loss - res.loss + 1e-16, label=f"{d} KL − its minimum")
    axes[0].set(xlabel="step", title="six-parameter fit")
    axes[0].legend()
    angle = np.linspace(0, 2 * np.pi, 200)
    for label, m, c, style in [("p", mean, cov, "k-"), ("q, forward", six["forward"].q.mean, six["forward"].q.var, "C0--"),
                               ("q, reverse", six["reverse"].q.mean, six["reverse"].q.var, "C1--")]:
        vals, vecs = np.linalg.eigh(np.asarray(c)[:2, :2])
        ellipse = np.asarray(m)[:2, None] + vecs @ (np.sqrt(vals)[:, None] * np.array([np.cos(angle), np.sin(angle)]))
        axes[1].plot(*ellipse, style, label=label)
    axes[1].set(xlabel="x₁", ylabel="x₂", title="1-σ ellipses in (x₁, x₂)", aspect="equal")
    axes[1].legend()
    fig.tight_layout()
    save(fig, out_dir, "six_parameters.png")


# %% Running it
# From the command line: `--out DIR` is where the figures go, `--quick` runs at the small size the
# test suite uses (the docs build runs it at full size).
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG figures")
    parser.add_argument("--quick", action="store_true", help="small figures, seconds (the test suite's size)")
    args = parser.parse_args()
    main(args.out, args.quick)
