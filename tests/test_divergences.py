"""KL divergences against independent computations: scipy quadrature, closed forms, Monte Carlo.

Tolerances: the quadrature references use scipy.integrate.quad at epsabs 1e-14 with breakpoints
(their own error estimates are below 1e-12); gdlab is asked to agree to 1e-10 in value and
1e-8 in gradient, as the issue demands. Monte Carlo comparisons use 5 standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import expected_logp_and_grad, logp_np, quad
from scipy import integrate, stats

from gdlab import divergences as D
from gdlab.targets import Mixture, mixture, moments

BIMODAL = ([0.5, 0.5], [-2.0, 2.0], [0.25, 0.25])
ASYMMETRIC = ([0.3, 0.7], [-2.0, 1.5], [0.36, 0.16])
THREE_MODES = ([0.2, 0.5, 0.3], [-3.0, 0.0, 2.5], [0.5, 0.1, 1.0])
# (mean, variance) of q: wide, inside a mode, between modes, far away, very narrow, very wide
Q_POINTS = [(0.5, 5.0), (0.0, 25.0), (-2.0, 0.25), (2.1, 0.3), (0.0, 1.0), (10.0, 0.01), (0.3, 100.0), (1.0, 1e-4)]


def mix1d(ws, ms, vs):
    return Mixture(jnp.array(ws), jnp.array(ms)[:, None], jnp.array(vs)[:, None, None])


@pytest.mark.parametrize("target", [BIMODAL, ASYMMETRIC, THREE_MODES], ids=["bimodal", "asymmetric", "three"])
@pytest.mark.parametrize("m,v", Q_POINTS)
def test_reverse_kl_1d_mixture_value_and_gradient_match_quad(target, m, v):
    p = mix1d(*target)
    value_ref, grad_ref_logp = expected_logp_and_grad(*target, m, np.sqrt(v))
    s = np.sqrt(v)
    kl_ref = -0.5 * np.log(2 * np.pi * np.e * v) - value_ref
    # d/dm KL = -dE/dm ; d/ds KL = -1/s - dE/ds
    grad_ref = np.array([-grad_ref_logp[0], -1.0 / s - grad_ref_logp[1]])

    def kl(theta):
        return D.kl_reverse(p, theta[:1], (theta[1] ** 2).reshape(1, 1))

    theta = jnp.array([m, s])
    np.testing.assert_allclose(float(jax.jit(kl)(theta)), kl_ref, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(kl))(theta)), grad_ref, rtol=1e-9, atol=1e-8)


def test_gauss_hermite_would_fail_here():
    """The reason for the panel rule: 200-node Gauss–Hermite under a wide q is off by > 1e-4."""
    ws, ms, vs = BIMODAL
    m, v = 0.0, 25.0
    t, w = np.polynomial.hermite_e.hermegauss(200)
    gh = np.sum(w / np.sqrt(2 * np.pi) * logp_np(m + np.sqrt(v) * t, ws, ms, vs))
    exact, _ = expected_logp_and_grad(ws, ms, vs, m, np.sqrt(v))
    assert abs(gh - exact) > 1e-4
    got = float(D.expected_log_mixture(mix1d(ws, ms, vs), jnp.array([m]), jnp.array([[np.sqrt(v)]])))
    assert abs(got - exact) < 1e-11


@pytest.mark.parametrize("target", [BIMODAL, ASYMMETRIC, THREE_MODES], ids=["bimodal", "asymmetric", "three"])
@pytest.mark.parametrize("m,v", [(0.5, 5.0), (-2.0, 0.25), (3.0, 0.5)])
def test_forward_kl_1d_mixture_matches_quad(target, m, v):
    ws, ms, vs = target
    f = lambda x: np.exp(logp_np(x, ws, ms, vs)) * (logp_np(x, ws, ms, vs) - logp_np(x, [1.0], [m], [v]))
    ref = quad(f, -30, 30, list(np.linspace(-30, 30, 121)) + list(ms))
    got = float(D.kl_forward(mix1d(*target), jnp.array([m]), jnp.array([[v]])))
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("target", [BIMODAL, THREE_MODES], ids=["bimodal", "three"])
def test_mixture_entropy_matches_quad(target):
    ws, ms, vs = target
    ref = quad(lambda x: -np.exp(logp_np(x, ws, ms, vs)) * logp_np(x, ws, ms, vs), -30, 30,
               list(np.linspace(-30, 30, 121)))
    np.testing.assert_allclose(D.mixture_entropy(mix1d(*target)), ref, rtol=1e-12)


def test_gaussian_kl_closed_form_matches_quadrature_and_monte_carlo():
    """Three routes to KL between Gaussians in 1-D: closed form, quad, and the mixture rule
    (a 'mixture' of two identical halves is the same Gaussian, but goes through the quadrature)."""
    m0, v0, m1, v1 = 0.3, 2.0, -1.0, 0.7
    closed = float(D.kl_gaussian(jnp.array([m0]), jnp.array([[v0]]), jnp.array([m1]), jnp.array([[v1]])))
    by_hand = 0.5 * (v0 / v1 + (m1 - m0) ** 2 / v1 - 1 + np.log(v1 / v0))
    f = lambda x: stats.norm.pdf(x, m0, np.sqrt(v0)) * (stats.norm.logpdf(x, m0, np.sqrt(v0)) - stats.norm.logpdf(x, m1, np.sqrt(v1)))
    via_quad = quad(f, -30, 30, [m0, m1])
    halves = mix1d([0.5, 0.5], [m1, m1], [v1, v1])
    via_rule = float(D.kl_reverse(halves, jnp.array([m0]), jnp.array([[v0]])))
    x = np.random.default_rng(0).normal(m0, np.sqrt(v0), 400_000)
    terms = stats.norm.logpdf(x, m0, np.sqrt(v0)) - stats.norm.logpdf(x, m1, np.sqrt(v1))
    np.testing.assert_allclose(closed, by_hand, rtol=1e-14)
    np.testing.assert_allclose(closed, via_quad, rtol=1e-12)
    np.testing.assert_allclose(via_rule, closed, rtol=1e-12)
    assert abs(terms.mean() - closed) < 5 * terms.std() / np.sqrt(len(x))


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


@pytest.mark.parametrize("d", [2, 3, 6])
def test_multivariate_gaussian_kl_against_monte_carlo(d):
    rng = np.random.default_rng(d)
    m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
    c0, c1 = random_spd(rng, d), random_spd(rng, d)
    got = float(D.kl_gaussian(*(jnp.asarray(a) for a in (m0, c0, m1, c1))))
    x = stats.multivariate_normal(m0, c0).rvs(300_000, random_state=rng)
    terms = stats.multivariate_normal(m0, c0).logpdf(x) - stats.multivariate_normal(m1, c1).logpdf(x)
    assert abs(terms.mean() - got) < 5 * terms.std() / np.sqrt(len(x))
    # and the cross-entropy identity KL = H(p, q) − H(p), each from its own formula
    ce = float(D.gaussian_cross_entropy(*(jnp.asarray(a) for a in (m0, c0, m1, c1))))
    h = stats.multivariate_normal(m0, c0).entropy()
    np.testing.assert_allclose(ce - h, got, rtol=1e-12)


@given(m0=st.floats(-5, 5), v0=st.floats(0.01, 50), m1=st.floats(-5, 5), v1=st.floats(0.01, 50))
@settings(max_examples=50, deadline=None)
def test_kl_is_nonnegative_and_zero_on_the_diagonal(m0, v0, m1, v1):
    a = (jnp.array([m0]), jnp.array([[v0]]))
    b = (jnp.array([m1]), jnp.array([[v1]]))
    assert float(D.kl_gaussian(*a, *b)) >= -1e-15
    assert abs(float(D.kl_gaussian(*a, *a))) < 1e-14
    p = mix1d(*BIMODAL)
    assert float(D.kl_reverse(p, *a)) >= -1e-12
    assert float(D.kl_forward(p, *a)) >= -1e-12


def test_kl_of_mixture_with_itself_is_zero_in_both_directions_for_one_component():
    p = mixture("N(1.5, 0.3)")
    m, c = p.means[0], p.covs[0]
    assert abs(float(D.kl_forward(p, m, c))) < 1e-15
    assert abs(float(D.kl_reverse(p, m, c))) < 1e-15


MIX2D = ([0.4, 0.6], [[-2.0, 0.0], [2.0, 1.0]], [[[0.5, 0.2], [0.2, 0.3]], [[0.3, -0.1], [-0.1, 0.6]]])


def test_reverse_kl_2d_mixture_matches_dblquad():
    ws, ms, cs = (np.array(a) for a in MIX2D)
    p = Mixture(jnp.asarray(ws), jnp.asarray(ms), jnp.asarray(cs))
    m, c = np.array([0.3, 0.5]), np.array([[3.0, 1.0], [1.0, 2.0]])
    chol = np.linalg.cholesky(c)
    precs = [np.linalg.inv(cc) for cc in cs]
    consts = [np.log(w) - 0.5 * np.log(np.linalg.det(2 * np.pi * cc)) for w, cc in zip(ws, cs)]

    def integrand(z2, z1):  # log p written out by hand: fast in dblquad's callbacks
        x = m + chol @ np.array([z1, z2])
        logp = np.logaddexp.reduce([k - 0.5 * (x - mu) @ pr @ (x - mu) for k, mu, pr in zip(consts, ms, precs)])
        return np.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * np.pi) * logp

    e_logp = integrate.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-12, epsrel=1e-12)[0]
    ref = -stats.multivariate_normal(m, c).entropy() - e_logp
    got = float(jax.jit(D.kl_reverse)(p, jnp.asarray(m), jnp.asarray(c)))   # compiled: op by op takes ~8 s
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_reverse_kl_2d_mixture_gradient_matches_finite_differences():
    """The 2-D rule is smooth enough for its gradient to agree with central differences of itself
    at the 1e-7 level (differences at h = 1e-5 carry an O(h²) ≈ 1e-10 error)."""
    ws, ms, cs = (jnp.asarray(np.array(a)) for a in MIX2D)
    p = Mixture(ws, ms, cs)

    def kl(theta):
        l = jnp.array([[jnp.exp(theta[2]), 0.0], [theta[3], jnp.exp(theta[4])]])
        return D.kl_reverse(p, theta[:2], l @ l.T)

    theta = jnp.array([0.3, 0.5, 0.4, 0.2, -0.1])
    grad = np.asarray(jax.jit(jax.grad(kl))(theta))
    f = jax.jit(kl)
    h = 1e-5
    fd = np.array([(float(f(theta.at[i].add(h))) - float(f(theta.at[i].add(-h)))) / (2 * h) for i in range(5)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


def test_monte_carlo_in_3d_matches_an_independent_estimate():
    p = mixture("0.5*N([-2,0,0], [[0.5,0,0],[0,1,0],[0,0,1]]) + 0.5*N([2,0,1], [[0.5,0,0],[0,1,0.2],[0,0.2,1]])")
    m, c = jnp.array([0.2, 0.1, 0.3]), jnp.diag(jnp.array([3.0, 1.5, 2.0]))
    eps = jnp.asarray(D.standard_normal_samples(20_000, 3, seed=1))
    got = float(D.kl_reverse(p, m, c, eps))
    # independent: plain (not antithetic) draws from q with scipy densities
    rng = np.random.default_rng(123)
    x = rng.multivariate_normal(np.asarray(m), np.asarray(c), 200_000)
    logp = np.logaddexp.reduce([np.log(float(w)) + stats.multivariate_normal(np.asarray(mu), np.asarray(cc)).logpdf(x)
                                for w, mu, cc in zip(p.weights, p.means, p.covs)])
    terms = stats.multivariate_normal(np.asarray(m), np.asarray(c)).logpdf(x) - logp
    se = terms.std() / np.sqrt(20_000) + terms.std() / np.sqrt(len(x))
    assert abs(got - terms.mean()) < 5 * se


def test_antithetic_samples_are_symmetric_and_seeded():
    a = D.standard_normal_samples(10, 3, seed=4)
    np.testing.assert_array_equal(a[:5], -a[5:])
    np.testing.assert_array_equal(a, D.standard_normal_samples(10, 3, seed=4))
    with pytest.raises(ValueError, match="samples"):
        D.standard_normal_samples(1, 3, seed=0)


def test_mixture_moments():
    mean, cov = moments(mixture("0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)"))
    mu = 0.3 * -2 + 0.7 * 1.5
    np.testing.assert_allclose(mean, [mu], rtol=1e-15)
    np.testing.assert_allclose(cov, [[0.3 * (0.36 + 4) + 0.7 * (0.16 + 2.25) - mu ** 2]], rtol=1e-14)
