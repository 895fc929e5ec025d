"""Tests for natural gradient descent: gdlab.optim.natural on its own, inside gdlab.fit, and the
claims of the source text (one-step fits, the KL trust region, invariance to the parameterization).

Expected values come from closed forms: the moment match of a forward-KL fit, the target itself
for reverse KL to a Gaussian, F⁻¹g written out in NumPy, KL between Gaussians by formula, and
scipy quadrature for reverse KL to a mixture (tests/reference.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import reverse_kl_and_grad

import gdlab
from gdlab import engine, optim, stopping
from gdlab.invariance import compare_params, gaussian_kl_1d

TARGET = "N(3, 0.5)"
INIT = "N(0, 5)"
MIXTURE = "0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)"
MIX_MEAN = 0.3 * -2 + 0.7 * 1.5
MIX_VAR = 0.3 * (0.36 + 4) + 0.7 * (0.16 + 2.25) - MIX_MEAN**2


# ---------------------------------------------------------------------------------------------
# The optimizer on its own
# ---------------------------------------------------------------------------------------------

A = np.array([[3.0, 1.0], [1.0, 2.0]])
B = np.array([1.0, -1.0])


def quadratic(theta):
    return 0.5 * theta @ A @ theta - B @ theta


def test_update_is_minus_lr_f_inverse_g():
    f = np.array([[2.0, 0.3], [0.3, 0.5]])
    g = np.array([0.7, -1.1])
    opt = optim.natural(lr=0.4, damping=0.1)
    u, _ = opt.update(jnp.asarray(g), opt.init(jnp.zeros(2)), jnp.zeros(2), fisher=jnp.asarray(f))
    np.testing.assert_allclose(np.asarray(u), -0.4 * np.linalg.solve(f + 0.1 * np.eye(2), g), rtol=1e-12)


def test_conjugate_gradient_with_fisher_vector_products_equals_cholesky():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(30, 30))
    f = m @ m.T + np.eye(30)
    g = rng.normal(size=30)
    dense = optim.natural(lr=1.0)
    matvec = optim.natural(lr=1.0, solver="cg", cg_maxiter=200)
    x = jnp.zeros(30)
    u1, _ = dense.update(jnp.asarray(g), dense.init(x), x, fisher=jnp.asarray(f))
    u2, _ = matvec.update(jnp.asarray(g), matvec.init(x), x, fisher=lambda v: jnp.asarray(f) @ v)
    np.testing.assert_allclose(np.asarray(u2), np.asarray(u1), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(u1), -np.linalg.solve(f, g), rtol=1e-10)


def test_natural_with_the_hessian_is_newton_one_step_on_a_quadratic():
    objective = engine.Objective(loss=lambda th, _: quadratic(th), fisher=lambda th, _: jnp.asarray(A))
    res = engine.run(objective, optim.natural(lr=1.0), jnp.zeros(2), stopping.StopCriteria(max_steps=1, tol=0))
    np.testing.assert_allclose(res.params, np.linalg.solve(A, B), rtol=1e-12)


def test_momentum_is_heavy_ball_on_the_natural_direction():
    f = np.array([[2.0, 0.5], [0.5, 1.0]])
    lr, beta = 0.1, 0.8
    opt = optim.natural(lr=lr, momentum=beta)
    x = jnp.asarray([2.0, 1.0])
    s = opt.init(x)
    theta, v = np.array([2.0, 1.0]), np.zeros(2)
    for _ in range(20):
        g = A @ theta - B
        v = beta * v + np.linalg.solve(f, g)
        theta = theta - lr * v
        u, s = opt.update(jax.grad(quadratic)(x), s, x, fisher=jnp.asarray(f))
        x = optax.apply_updates(x, u)
    np.testing.assert_allclose(np.asarray(x), theta, rtol=1e-12)


def test_schedule_and_injected_learning_rate():
    f = jnp.eye(2) * 2.0
    schedule = lambda t: 0.5 * 0.5 ** t  # noqa: E731
    opt = optim.natural(lr=schedule)
    x = jnp.zeros(2)
    s = opt.init(x)
    for t in range(4):
        u, s = opt.update(jnp.array([1.0, -2.0]), s, x, fisher=f)
        np.testing.assert_allclose(np.asarray(u), -0.5 * 0.5**t * np.array([0.5, -1.0]), rtol=1e-12)
    # lr is an injected hyperparameter: doubling it in the state doubles the step, one compilation
    opt = optim.natural(lr=0.25)
    update = jax.jit(opt.update)
    s_a = opt.init(x)
    s_b = s_a._replace(hyperparams={**s_a.hyperparams, "learning_rate": jnp.asarray(0.5, jnp.float64)})
    u_a, _ = update(jnp.array([1.0, 1.0]), s_a, x, fisher=f)
    u_b, _ = update(jnp.array([1.0, 1.0]), s_b, x, fisher=f)
    np.testing.assert_allclose(np.asarray(u_b), 2 * np.asarray(u_a), rtol=1e-12)
    assert update._cache_size() == 1


def test_jit_equals_eager_and_negative_lr_ascends():
    f = jnp.asarray(A)
    for lr in (0.3, -0.3):
        opt = optim.natural(lr=lr)
        x = jnp.array([0.5, 0.5])
        u_eager, _ = opt.update(jax.grad(quadratic)(x), opt.init(x), x, fisher=f)
        u_jit, _ = jax.jit(opt.update)(jax.grad(quadratic)(x), opt.init(x), x, fisher=f)
        np.testing.assert_allclose(np.asarray(u_jit), np.asarray(u_eager), rtol=1e-13)
        moved = quadratic(np.asarray(x) + np.asarray(u_eager)) - quadratic(np.asarray(x))
        assert (moved < 0) if lr > 0 else (moved > 0)


def test_trust_region_step_has_predicted_kl_epsilon():
    """Without the exact KL, ½ δᵀFδ = ε exactly (the Lagrangian's step), unless lr is shorter."""
    f = np.array([[2.0, 0.3], [0.3, 0.5]])
    g = np.array([3.0, -4.0])
    x = jnp.zeros(2)
    opt = optim.natural(lr=1.0, trust_region=0.01)
    u, _ = opt.update(jnp.asarray(g), opt.init(x), x, fisher=jnp.asarray(f))
    u = np.asarray(u)
    assert 0.5 * u @ f @ u == pytest.approx(0.01, rel=1e-12)
    np.testing.assert_allclose(u / np.linalg.norm(u), -np.linalg.solve(f, g) / np.linalg.norm(np.linalg.solve(f, g)))
    capped = optim.natural(lr=1e-4, trust_region=0.01)  # the lr step is shorter than the ε step
    u, _ = capped.update(jnp.asarray(g), capped.init(x), x, fisher=jnp.asarray(f))
    np.testing.assert_allclose(np.asarray(u), -1e-4 * np.linalg.solve(f, g), rtol=1e-12)


def test_a_step_out_of_the_domain_is_shortened():
    positive = lambda th: jnp.all(th > 0)  # noqa: E731
    opt = optim.natural(lr=1.0)
    x = jnp.array([1.0, 1.0])
    u, _ = opt.update(jnp.array([3.0, 0.5]), opt.init(x), x, fisher=jnp.eye(2), in_domain=positive)
    # the full step (−3, −0.5) leaves θ₁ > 0; halving twice, (−0.75, −0.125), is the first inside
    np.testing.assert_allclose(np.asarray(u), [-0.75, -0.125])


@pytest.mark.parametrize("kwargs, message", [
    (dict(damping=-1.0), "damping must be a finite number ≥ 0"),
    (dict(trust_region=0.0), "trust_region must be a positive KL"),
    (dict(trust_region=0.01, momentum=0.9), "cannot be combined"),
    (dict(momentum=1.0), r"momentum must be a number in \[0, 1\)"),
    (dict(solver="lu"), "solver must be one of auto, cholesky, cg"),
    (dict(lr=float("nan")), "lr must be a finite number"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.natural(**kwargs)


def test_missing_fisher_is_a_clear_error():
    opt = optim.natural()
    with pytest.raises(ValueError, match="needs the Fisher information"):
        opt.update(jnp.ones(2), opt.init(jnp.zeros(2)), jnp.zeros(2))


# ---------------------------------------------------------------------------------------------
# One- and two-step fits (the duality of natural and expectation parameters)
# ---------------------------------------------------------------------------------------------


def natural_fit(target, divergence, param, steps, lr=1.0, init=INIT):
    return gdlab.fit(target, init, divergence, optim.natural(lr=lr), param=param, max_steps=steps, tol=0.0)


@pytest.mark.parametrize("target, mean, var", [(TARGET, 3.0, 0.5), (MIXTURE, MIX_MEAN, MIX_VAR)])
def test_forward_kl_in_expectation_parameters_is_the_moment_match_after_one_step(target, mean, var):
    res = natural_fit(target, "forward", "expectation", 1)
    assert res.steps == 1
    assert res.q.mean == pytest.approx(mean, abs=1e-12)
    assert res.q.var == pytest.approx(var, abs=1e-12)


@pytest.mark.parametrize("target, mean, var", [(TARGET, 3.0, 0.5), (MIXTURE, MIX_MEAN, MIX_VAR)])
def test_forward_kl_in_mean_var_takes_two_steps_mean_first(target, mean, var):
    res = natural_fit(target, "forward", "mean_var", 2)
    m0, v0 = 0.0, 5.0
    # step 1: m ← E_p[x]; v ← Var_p(x) + (m0 − E_p[x])² (derivation in optim.natural's docstring)
    assert res.trace.mean[1] == pytest.approx(mean, abs=1e-12)
    assert res.trace.var[1] == pytest.approx(var + (m0 - mean) ** 2, abs=1e-12)
    assert res.trace.var[0] == v0
    assert res.q.mean == pytest.approx(mean, abs=1e-12)
    assert res.q.var == pytest.approx(var, abs=1e-12)


def test_reverse_kl_to_a_gaussian_in_natural_parameters_is_exact_after_one_step():
    res = natural_fit(TARGET, "reverse", "natural", 1)
    assert res.q.mean == pytest.approx(3.0, abs=1e-12)
    assert res.q.var == pytest.approx(0.5, abs=1e-12)
    assert res.kl_reverse == pytest.approx(0.0, abs=1e-12)


def test_a_natural_step_leaving_the_domain_is_shortened_not_accepted():
    """Forward KL in natural parameters at lr 1 from N(0, 5) to N(4, 0.5): the full step lands on
    η₂' = (v_p + m_p² − 2v)/(2v²) ≥ 0, outside the domain η₂ < 0.
    """
    m, v, mp, vp = 0.0, 5.0, 4.0, 0.5
    eta = np.array([m / v, -0.5 / v])
    grad = np.array([m - mp, (v + m * m) - (vp + mp * mp)])  # ∇_η KL(p‖q_η) = μ(η) − E_p[T]
    fisher = np.array([[v, 2 * m * v], [2 * m * v, 4 * m * m * v + 2 * v * v]])
    full = eta - np.linalg.solve(fisher, grad)
    assert full[1] >= 0  # the unshortened step leaves the domain
    res = natural_fit("N(4, 0.5)", "forward", "natural", 1)
    step = res.params - eta
    alpha = step[0] / (full - eta)[0]
    assert res.stop_reason == "max_steps" and res.params[1] < 0
    k = round(-np.log2(alpha))
    assert k >= 1 and alpha == pytest.approx(0.5**k, rel=1e-12)
    assert full[1] * 0.5 ** (k - 1) + eta[1] * (1 - 0.5 ** (k - 1)) >= 0  # the longer one was outside
    np.testing.assert_allclose(step, alpha * (full - eta), rtol=1e-12)


def test_reverse_kl_to_a_mixture_converges_to_a_stationary_point():
    res = gdlab.fit("0.5*N(-2, 0.25) + 0.5*N(2, 0.25)", "N(1.5, 1)", "reverse", optim.natural(lr=0.5))
    assert res.stop_reason == "converged"
    s = np.sqrt(res.q.var)
    value, grad = reverse_kl_and_grad([0.5, 0.5], [-2.0, 2.0], [0.25, 0.25], res.q.mean, s)
    assert value == pytest.approx(res.kl_reverse, abs=1e-10)
    assert np.abs(grad).max() < 1e-7
    assert res.q.mean == pytest.approx(2.0, abs=0.01)


def test_multivariate_forward_fit_is_the_moment_match():
    target = "N([1, -1], [[2, 0.6], [0.6, 1]])"
    res = gdlab.fit(target, None, "forward", optim.natural(lr=1.0), max_steps=200)
    assert res.stop_reason == "converged"
    np.testing.assert_allclose(res.q.mean, [1.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(res.q.var, [[2.0, 0.6], [0.6, 1.0]], atol=1e-9)
    gd = gdlab.fit(target, None, "forward", optim.gd(lr=0.1), max_steps=5000)
    assert res.steps < gd.steps / 10


def steps_to(res, level=1e-10):
    below = np.nonzero(res.trace.kl_forward < level)[0]
    return int(below[0]) if below.size else None


def test_natural_needs_far_fewer_steps_than_first_order_methods_at_their_best_step_size():
    best = {}
    for name in ("gd", "momentum", "adam"):
        counts = []
        for lr in (0.03, 0.1, 0.3, 1.0):
            res = gdlab.fit(TARGET, INIT, "forward", optim.by_name(name, lr), max_steps=3000, tol=0.0)
            n = steps_to(res)
            if n is not None:
                counts.append(n)
        assert counts, name
        best[name] = min(counts)
    natural = steps_to(natural_fit(TARGET, "forward", "mean_var", 10))
    assert natural is not None and natural <= 2
    assert all(natural * 10 <= n for n in best.values()), best


# ---------------------------------------------------------------------------------------------
# The KL trust region
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("param, divergence", [("mean_var", "forward"), ("mean_precision", "reverse"),
                                               ("natural", "forward")])
def test_trust_region_moves_q_by_epsilon_per_step_until_the_last_steps(param, divergence):
    eps = 0.01
    res = gdlab.fit(TARGET, INIT, divergence, optim.natural(trust_region=eps), param=param)
    assert res.stop_reason == "converged"
    assert res.q.mean == pytest.approx(3.0, abs=1e-7) and res.q.var == pytest.approx(0.5, abs=1e-7)
    m, v = res.trace.mean, res.trace.var
    realised = gaussian_kl_1d(m[:-1], v[:-1], m[1:], v[1:])  # recomputed from the trace, by formula
    np.testing.assert_allclose(res.trace.step_kl[:-1], realised, rtol=1e-9, atol=1e-15)
    assert np.isnan(res.trace.step_kl[-1])
    # The steps at ε, then the last steps (the full natural step is shorter than ε's): find where
    # the first step under 0.9 ε falls; every step before it is within 10% of ε.
    last = int(np.argmax(realised < 0.9 * eps))
    assert last >= 10  # most of the way from N(0, 5) is walked at ε per step
    assert np.all(np.abs(realised[:last] / eps - 1) < 0.1)
    assert np.all(realised[last:] < eps * 1.1)


# ---------------------------------------------------------------------------------------------
# Invariance to the parameterization
# ---------------------------------------------------------------------------------------------


def test_natural_paths_coincide_and_plain_gradient_paths_do_not():
    res = compare_params(TARGET, INIT, "forward", ("natural", "gd"), lr=0.01, steps=200,
                         params=("mean_var", "mean_logstd", "mean_precision"))
    natural, plain = res.max_gap("natural"), res.max_gap("gd")
    assert natural < 1e-4
    assert plain >= 100 * natural
    for g in res.gaps:
        assert g.steps_compared == 201
        # each reported gap is the largest symmetric KL over the steps, recomputed here
        a, b = (res.runs[(g.optimizer, p)].trace for p in g.params)
        gap = np.maximum(gaussian_kl_1d(a.mean, a.var, b.mean, b.var), gaussian_kl_1d(b.mean, b.var, a.mean, a.var))
        assert g.max_kl == pytest.approx(gap.max(), rel=1e-12)


def test_natural_gap_shrinks_with_the_step_size():
    """The natural paths differ by O(η²) per step: halving lr (and doubling steps) shrinks the gap."""
    params = ("mean_var", "mean_precision")
    gaps = [compare_params(TARGET, INIT, lr=lr, steps=int(round(1.0 / lr)), params=params,
                           optimizers=("natural",)).max_gap("natural") for lr in (0.04, 0.02)]
    assert gaps[1] < 0.5 * gaps[0]


def test_singular_fisher_without_damping_is_refused_and_damping_fixes_it():
    with pytest.raises(ValueError, match="singular"):
        gdlab.fit("N(0, 1)", "N(0, 1e200)", "forward", optim.natural())
    res = gdlab.fit("N(0, 1)", "N(0, 1e200)", "forward", optim.natural(damping=1e-6), max_steps=5)
    assert res.stop_reason in ("max_steps", "converged", "diverged")


def test_multivariate_reverse_fit_to_a_gaussian_recovers_it():
    """Reverse KL to a Gaussian is minimised at p itself; natural steps with q's Fisher get there."""
    res = gdlab.fit("N([1, -1], [[2, 0.6], [0.6, 1]])", None, "reverse", optim.natural(lr=0.5), max_steps=500)
    assert res.stop_reason == "converged"
    np.testing.assert_allclose(res.q.mean, [1.0, -1.0], atol=1e-8)
    np.testing.assert_allclose(res.q.var, [[2.0, 0.6], [0.6, 1.0]], atol=1e-8)
    assert res.kl_reverse < 1e-14


def test_step_kl_of_traces_of_any_length_is_the_closed_form_from_few_programs():
    """KL(N(m₀, v₀)‖N(m₁, v₁)) = ½(log(v₁/v₀) + (v₀ + (m₀ − m₁)²)/v₁ − 1) between consecutive rows;
    traces of 2 to 300 rows share the programs of a few padded shapes."""
    from gdlab.families import make_family
    from gdlab.fitting import _step_kl, step_kl

    fam = make_family("gaussian", 1, "mean_var")
    rng = np.random.default_rng(3)
    compiled_before = _step_kl(fam)._cache_size()        # other tests in this worker may have compiled some
    with jax.enable_x64(True):
        for n in (1, 2, 3, 63, 64, 65, 66, 130, 300):
            p = np.column_stack([rng.normal(size=n), rng.uniform(0.5, 2.0, size=n)])
            out = step_kl(fam, p)
            m0, v0, m1, v1 = p[:-1, 0], p[:-1, 1], p[1:, 0], p[1:, 1]
            np.testing.assert_allclose(out[:-1], 0.5 * (np.log(v1 / v0) + (v0 + (m0 - m1) ** 2) / v1 - 1),
                                       rtol=1e-12, atol=1e-15)
            assert out.shape == (n,) and np.isnan(out[-1])
    assert _step_kl(fam)._cache_size() - compiled_before <= 4          # 64, 128, 256, 512 pairs
