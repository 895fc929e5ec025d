"""gdlab.fit against closed forms and independently computed optima (the core issue's acceptance)."""

import numpy as np
import pytest
from reference import reverse_kl_and_grad
from scipy import optimize

import gdlab
from gdlab import optim
from gdlab.families import PARAMS_1D
from gdlab.specs import SpecError

BIMODAL_SPEC = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"
BIMODAL = ([0.5, 0.5], [-2.0, 2.0], [0.25, 0.25])
MIXTURES = {
    "bimodal": BIMODAL,
    "asymmetric": ([0.3, 0.7], [-2.0, 1.5], [0.36, 0.16]),
    "three": ([0.2, 0.5, 0.3], [-3.0, 0.0, 2.5], [0.5, 0.1, 1.0]),
}


def spec_of(ws, ms, vs):
    return " + ".join(f"{w}*N({m}, {v})" for w, m, v in zip(ws, ms, vs))


SANE = [
    ("gd", optim.gd(0.1)),
    ("momentum", optim.momentum(0.05, 0.9)),
    ("nesterov", optim.nesterov(0.05, 0.9)),
    ("adam", optim.adam(0.05)),
]


@pytest.mark.parametrize("name,opt", SANE, ids=[n for n, _ in SANE])
@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_gaussian_target_is_matched_exactly(name, opt, divergence):
    res = gdlab.fit("N(2, 1)", "N(0, 5)", divergence, opt)
    assert res.stop_reason == "converged"
    assert abs(res.q.mean - 2.0) < 1e-6 and abs(res.q.var - 1.0) < 1e-6
    assert res.kl_forward < 1e-11 and res.kl_reverse < 1e-11


@pytest.mark.parametrize("param", PARAMS_1D)
def test_every_parameterization_reaches_the_same_optimum(param):
    res = gdlab.fit("N(-1, 0.5)", "N(0, 2)", "reverse", optim.adam(0.02), param=param)
    assert res.stop_reason == "converged"
    assert abs(res.q.mean + 1.0) < 1e-6 and abs(res.q.var - 0.5) < 1e-6


@pytest.mark.parametrize("name", MIXTURES)
def test_forward_kl_to_a_mixture_is_moment_matching(name):
    ws, ms, vs = (np.array(a) for a in MIXTURES[name])
    mean = np.sum(ws * ms)
    var = np.sum(ws * (vs + ms ** 2)) - mean ** 2
    res = gdlab.fit(spec_of(ws, ms, vs), "N(0.5, 5)", "forward", optim.momentum(0.05, 0.9))
    assert res.stop_reason == "converged"
    assert abs(res.q.mean - mean) < 1e-6 and abs(res.q.var - var) < 1e-6


def reverse_stationary_point(target, m0, v0):
    """A stationary point of KL(q‖p) found by scipy root-finding on the quadrature gradient."""
    grad = lambda x: reverse_kl_and_grad(*target, x[0], x[1])[1]  # noqa: E731
    sol = optimize.root(grad, [m0, np.sqrt(v0)], tol=1e-12)
    assert np.linalg.norm(grad(sol.x)) < 1e-10, sol.message
    return sol.x[0], sol.x[1] ** 2


def is_local_minimum(target, m, v):
    """Hessian of the quadrature KL in (m, s) by central differences of its gradient: positive definite?"""
    s, h = np.sqrt(v), 1e-5
    g = lambda x: reverse_kl_and_grad(*target, x[0], x[1])[1]  # noqa: E731
    hess = np.column_stack([(g(np.array([m, s]) + h * e) - g(np.array([m, s]) - h * e)) / (2 * h) for e in np.eye(2)])
    return bool(np.all(np.linalg.eigvalsh(0.5 * (hess + hess.T)) > 0))


@pytest.mark.parametrize("start,mode", [("N(1.5, 0.5)", 2.0), ("N(-1.2, 0.3)", -2.0)])
def test_reverse_kl_is_mode_seeking_from_near_a_mode(start, mode):
    res = gdlab.fit(BIMODAL_SPEC, start, "reverse", optim.gd(0.05))
    assert res.stop_reason == "converged"
    m_ref, v_ref = reverse_stationary_point(BIMODAL, mode, 0.25)
    assert abs(m_ref - mode) < 0.01                    # the reference optimum sits on the mode
    assert abs(res.q.mean - m_ref) < 1e-6 and abs(res.q.var - v_ref) < 1e-6
    assert is_local_minimum(BIMODAL, m_ref, v_ref)


def test_reverse_kl_from_a_wide_start_reports_the_point_it_reached_honestly():
    """The README example: from N(0.5, 5) reverse KL has a broad local minimum between the modes.
    Whatever gdlab reaches must be a genuine local minimum of the exact objective."""
    res = gdlab.fit(BIMODAL_SPEC, "N(0.5, 5)", "reverse", optim.momentum(0.05, 0.9))
    assert res.stop_reason == "converged"
    m_ref, v_ref = reverse_stationary_point(BIMODAL, res.q.mean, res.q.var)
    assert abs(res.q.mean - m_ref) < 1e-6 and abs(res.q.var - v_ref) < 1e-6
    assert is_local_minimum(BIMODAL, m_ref, v_ref)
    kl_ref, _ = reverse_kl_and_grad(*BIMODAL, m_ref, np.sqrt(v_ref))
    assert abs(res.kl_reverse - kl_ref) < 1e-10
    # it is a worse optimum than a mode (the global minimum), and the report says KL honestly
    kl_mode, _ = reverse_kl_and_grad(*BIMODAL, *(lambda m, v: (m, np.sqrt(v)))(*reverse_stationary_point(BIMODAL, 2.0, 0.25)))
    assert res.kl_reverse > kl_mode


def test_forward_and_reverse_fits_differ_visibly():
    fwd = gdlab.fit(BIMODAL_SPEC, "N(1.5, 0.5)", "forward", optim.gd(0.1))
    rev = gdlab.fit(BIMODAL_SPEC, "N(1.5, 0.5)", "reverse", optim.gd(0.05))
    assert abs(fwd.q.mean) < 1e-6 and abs(fwd.q.var - 4.25) < 1e-6    # covers both modes
    assert abs(rev.q.mean - 2.0) < 0.01 and rev.q.var < 0.3          # sits on one
    assert rev.kl_reverse < fwd.kl_reverse and fwd.kl_forward < rev.kl_forward


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_negative_step_size_runs_away_and_is_reported_as_diverged(divergence):
    """The source text's demonstration: step size −0.02 from N(0, 5) is gradient ascent on KL.
    Documented behaviour: KL climbs monotonically until the run is stopped as diverged."""
    res = gdlab.fit("N(2, 1)", "N(0, 5)", divergence, optim.gd(-0.02))
    assert res.stop_reason == "diverged"
    assert "diverged" in res.message
    kl = res.trace.loss[:-1]                      # the last row is the non-finite or runaway value
    assert np.all(np.isfinite(kl)) and len(kl) > 10
    assert np.all(np.diff(kl) >= -1e-12)           # climbs monotonically
    assert kl[-1] > 10 * kl[0]


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_negative_step_size_with_a_shared_mean_climbs_until_max_steps(divergence):
    """With p and q centred together, ascent only inflates the variance (documented in the README)."""
    res = gdlab.fit("N(0, 1)", "N(0, 5)", divergence, optim.gd(-0.02), max_steps=2000)
    assert res.stop_reason == "max_steps" and res.steps == 2000
    assert np.all(np.diff(res.trace.loss) > 0) and res.q.var > 5.0 and res.q.mean == 0.0


def test_momentum_reaches_the_tolerance_in_fewer_steps():
    plain = gdlab.fit("N(2, 1)", "N(0, 5)", "forward", optim.momentum(0.02, 0.0))
    heavy = gdlab.fit("N(2, 1)", "N(0, 5)", "forward", optim.momentum(0.02, 0.9))
    assert plain.stop_reason == heavy.stop_reason == "converged"
    assert heavy.steps < plain.steps / 2


def kl_forward_grad_mean_var(m, v, mp=2.0, vp=1.0):
    """∇ of KL(N(mp, vp) ‖ N(m, v)) = ½[log(v/vp) + (vp + (mp−m)²)/v − 1] in (m, v), by hand."""
    return np.array([(m - mp) / v, 0.5 * (1.0 / v - (vp + (mp - m) ** 2) / v ** 2)])


def test_momentum_update_is_the_heavy_ball_formula():
    lr, beta, n = 0.02, 0.9, 60
    res = gdlab.fit("N(2, 1)", "N(0, 5)", "forward", optim.momentum(lr, beta), max_steps=n, tol=0)
    assert res.steps == n and len(res.trace) == n + 1
    theta, velocity = np.array([0.0, 5.0]), np.zeros(2)
    for t in range(n + 1):
        np.testing.assert_allclose(res.trace.params[t], theta, rtol=1e-12, atol=1e-13)
        velocity = beta * velocity + kl_forward_grad_mean_var(*theta)
        theta = theta - lr * velocity


def test_trace_columns_describe_each_step():
    res = gdlab.fit("N(2, 1)", "N(0, 5)", "forward", optim.gd(0.1), max_steps=25, tol=0)
    tr = res.trace
    assert list(tr.step) == list(range(26))
    np.testing.assert_allclose(tr.mean, tr.params[:, 0])
    np.testing.assert_allclose(tr.var, tr.params[:, 1])
    np.testing.assert_allclose(tr.lr, 0.1)
    expected_kl = 0.5 * (np.log(tr.var / 1.0) + (1.0 + (2.0 - tr.mean) ** 2) / tr.var - 1.0)
    np.testing.assert_allclose(tr.kl_forward, expected_kl, rtol=1e-12)
    np.testing.assert_allclose(tr.loss, expected_kl, rtol=1e-12)
    grads = np.array([kl_forward_grad_mean_var(m, v) for m, v in zip(tr.mean, tr.var)])
    np.testing.assert_allclose(tr.grad_norm, np.linalg.norm(grads, axis=1), rtol=1e-12)


TARGET_2D = "N([1, 2], [[2, 0.5], [0.5, 1]])"
MEAN_2D, COV_2D = np.array([1.0, 2.0]), np.array([[2.0, 0.5], [0.5, 1.0]])


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_full_covariance_q_matches_a_correlated_2d_target(divergence):
    res = gdlab.fit(TARGET_2D, "N([0, 0], [[1, 0], [0, 1]])", divergence, optim.gd(0.1))
    assert res.stop_reason == "converged"
    np.testing.assert_allclose(res.q.mean, MEAN_2D, atol=1e-6)
    np.testing.assert_allclose(res.q.cov, COV_2D, atol=1e-6)


def test_diagonal_q_forward_matches_the_marginal_variances():
    """Forward KL over diagonal Gaussians: the moment match restricted to the diagonal."""
    res = gdlab.fit(TARGET_2D, "N([0, 0], [1, 1])", "forward", optim.gd(0.1), family="diag-gaussian")
    np.testing.assert_allclose(res.q.mean, MEAN_2D, atol=1e-6)
    np.testing.assert_allclose(res.q.cov, np.diag(np.diag(COV_2D)), atol=1e-6)


def test_diagonal_q_reverse_matches_the_inverse_precision_diagonal():
    """Reverse KL over diagonal Gaussians (mean-field VI): variances 1/diag(C⁻¹) (Bishop 2006, §10.1.2)."""
    res = gdlab.fit(TARGET_2D, "N([0, 0], [1, 1])", "reverse", optim.gd(0.1), family="diag-gaussian")
    np.testing.assert_allclose(res.q.mean, MEAN_2D, atol=1e-6)
    np.testing.assert_allclose(np.diag(res.q.cov), 1.0 / np.diag(np.linalg.inv(COV_2D)), atol=1e-6)


def test_2d_mixture_forward_fit_is_the_moment_match():
    spec = "0.4*N([-2, 0], [[0.5, 0.2], [0.2, 0.3]]) + 0.6*N([2, 1], [[0.3, -0.1], [-0.1, 0.6]])"
    w = np.array([0.4, 0.6]); ms = np.array([[-2.0, 0.0], [2.0, 1.0]])
    cs = np.array([[[0.5, 0.2], [0.2, 0.3]], [[0.3, -0.1], [-0.1, 0.6]]])
    mean = w @ ms
    cov = sum(wi * (ci + np.outer(mi, mi)) for wi, mi, ci in zip(w, ms, cs)) - np.outer(mean, mean)
    res = gdlab.fit(spec, "N([0, 0], [[1, 0], [0, 1]])", "forward", optim.momentum(0.05, 0.9))
    np.testing.assert_allclose(res.q.mean, mean, atol=1e-6)
    np.testing.assert_allclose(res.q.cov, cov, atol=1e-6)


def test_3d_mixture_reverse_fit_by_monte_carlo_lands_on_a_mode():
    spec = "0.5*N([-3, 0, 0], [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]) + 0.5*N([3, 0, 0], [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])"
    res = gdlab.fit(spec, "N([2, 0.5, 0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])", "reverse", optim.adam(0.05),
                    samples=2048, seed=3, max_steps=3000)
    # far-apart modes: q on one mode is (to Monte Carlo accuracy) that component
    np.testing.assert_allclose(res.q.mean, [3, 0, 0], atol=0.05)
    np.testing.assert_allclose(np.diag(res.q.cov), [0.5, 0.5, 0.5], rtol=0.1)


def test_float32_precision_is_available_on_request():
    res = gdlab.fit("N(2, 1)", "N(0, 5)", "forward", optim.gd(0.1), precision="float32", tol=1e-7)
    assert res.params.dtype == np.float32
    assert abs(res.q.mean - 2.0) < 1e-3 and abs(res.q.var - 1.0) < 1e-3


@pytest.mark.parametrize("kwargs,match", [
    (dict(target="N(2,", init="N(0, 5)"), "position"),
    (dict(target="N(2, 1)", init="0.5*N(0, 1) + 0.5*N(1, 1)"), "mixture"),
    (dict(target="N(2, 1)", init="N([0, 0], [1, 1])"), "2-D"),
    (dict(target="N(2, 1)", init="N(0, 5)", divergence="sideways"), "divergence must be one of"),
    (dict(target="N(2, 1)", init="N(0, 5)", param="bogus"), "param must be one of"),
    (dict(target="N(2, 1)", init="N(0, 5)", precision="float16"), "precision"),
    (dict(target=TARGET_2D, init="N([0, 0], [[1, 0.5], [0.5, 1]])", family="diag-gaussian"), "diagonal"),
])
def test_bad_input_raises_a_clear_value_error(kwargs, match):
    with pytest.raises((ValueError, SpecError), match=match):
        gdlab.fit(**kwargs)
