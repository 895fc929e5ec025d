"""Tests for gdlab.fisher: the Fisher information four ways against independent NumPy computations.

The reference Fisher of N(m, C) is built here by hand: in the moments it is C⁻¹ for the mean and
½ tr(C⁻¹ dC C⁻¹ dC) for the covariance (no cross term); a parameterization θ maps to the
moments with a Jacobian written out per parameterization (1-D) or taken by central finite
differences of NumPy code (d-D), and F(θ) = Jᵀ F_moments J.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from gdlab import families
from gdlab.fisher import (METHODS, fisher_information, fisher_vector_product, gaussian_cubature,
                          is_singular)

RNG = np.random.default_rng(20261122)
POINTS_1D = [(float(m), float(v)) for m, v in zip(RNG.normal(0, 2, 4), RNG.uniform(0.2, 6.0, 4))]


def theta_of(param: str, m: float, v: float) -> np.ndarray:
    """θ of N(m, v) in each 1-D parameterization, written out independently of gdlab."""
    return {
        "mean_var": np.array([m, v]),
        "mean_std": np.array([m, np.sqrt(v)]),
        "mean_logstd": np.array([m, 0.5 * np.log(v)]),
        "mean_precision": np.array([m, 1.0 / v]),
        "natural": np.array([m / v, -0.5 / v]),
        "expectation": np.array([m, v + m * m]),
    }[param]


def mv_of(param: str, theta: np.ndarray) -> tuple[float, float]:
    """(m, v) from θ, the inverse of :func:`theta_of`, written out independently of gdlab."""
    a, b = theta
    return {
        "mean_var": (a, b),
        "mean_std": (a, b * b),
        "mean_logstd": (a, np.exp(2 * b)),
        "mean_precision": (a, 1.0 / b),
        "natural": (-a / (2 * b), -1.0 / (2 * b)),
        "expectation": (a, b - a * a),
    }[param]


def jacobian_mv(param: str, m: float, v: float) -> np.ndarray:
    """∂(m, v)/∂θ by hand, for each parameterization."""
    s = np.sqrt(v)
    if param == "mean_var":
        return np.eye(2)
    if param == "mean_std":
        return np.array([[1.0, 0.0], [0.0, 2.0 * s]])
    if param == "mean_logstd":
        return np.array([[1.0, 0.0], [0.0, 2.0 * v]])
    if param == "mean_precision":
        return np.array([[1.0, 0.0], [0.0, -v * v]])  # v = 1/τ, dv/dτ = −1/τ² = −v²
    if param == "natural":  # v = −1/(2η₂), m = η₁ v: dv/dη₂ = 2v², dm/dη₁ = v, dm/dη₂ = η₁ · 2v² = 2mv
        return np.array([[v, 2.0 * m * v], [0.0, 2.0 * v * v]])
    if param == "expectation":  # m = μ₁, v = μ₂ − μ₁²
        return np.array([[1.0, 0.0], [-2.0 * m, 1.0]])
    raise AssertionError(param)


def reference_fisher_1d(param: str, m: float, v: float) -> np.ndarray:
    j = jacobian_mv(param, m, v)
    return j.T @ np.diag([1.0 / v, 0.5 / v**2]) @ j


@pytest.mark.parametrize("param", families.PARAMS_1D)
@pytest.mark.parametrize("m, v", POINTS_1D)
def test_every_method_matches_the_closed_form_1d(param, m, v):
    fam = families.gaussian_1d(param)
    theta = jnp.asarray(theta_of(param, m, v))
    ref = reference_fisher_1d(param, m, v)
    for method in METHODS:
        got = np.asarray(fisher_information(fam, theta, method))
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max(), err_msg=method)


@pytest.mark.parametrize("param", families.PARAMS_1D)
def test_score_covariance_by_scipy_quadrature(param):
    """E_q[s sᵀ] with the score from finite differences of scipy's log-pdf and quad over x."""
    m, v = 0.7, 1.9
    theta = theta_of(param, m, v)
    fam = families.gaussian_1d(param)

    def logq(x, th):
        mean, var = mv_of(param, th)
        return stats.norm.logpdf(x, mean, np.sqrt(var))

    h = 1e-5

    def score(x):
        return np.array([(logq(x, theta + h * e) - logq(x, theta - h * e)) / (2 * h) for e in np.eye(2)])

    # the score is quadratic in x: sample it at 5 points and interpolate exactly (fast quad callbacks)
    xs = m + np.sqrt(v) * np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    coeffs = [np.polyfit(xs, [score(x)[i] for x in xs], 2) for i in range(2)]
    ref = np.empty((2, 2))
    for i, j in itertools.product(range(2), range(2)):
        f = lambda x: stats.norm.pdf(x, m, np.sqrt(v)) * np.polyval(coeffs[i], x) * np.polyval(coeffs[j], x)  # noqa: E731
        ref[i, j] = integrate.quad(f, m - 14 * np.sqrt(v), m + 14 * np.sqrt(v), epsabs=1e-13, epsrel=1e-12)[0]
    got = np.asarray(fisher_information(fam, jnp.asarray(theta), "score"))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)


def random_cov(d: int, diagonal: bool) -> np.ndarray:
    a = RNG.normal(size=(d, d))
    c = a @ a.T + 0.5 * d * np.eye(d)
    return np.diag(np.diag(c)) if diagonal else c


def moments_np(fam, theta):
    m, c = fam.moments(jnp.asarray(theta))
    return np.asarray(m), np.asarray(c)


def reference_fisher_nd(fam, theta: np.ndarray) -> np.ndarray:
    """Jᵀ [C⁻¹ ⊕ ½ tr(C⁻¹ ∂C C⁻¹ ∂C)] J with J by central differences of the moment map."""
    d = fam.dim
    h = 1e-6
    m, c = moments_np(fam, theta)
    cinv = np.linalg.inv(c)
    dm, dc = [], []
    for e in np.eye(len(theta)):
        mp, cp = moments_np(fam, theta + h * e)
        mm, cm = moments_np(fam, theta - h * e)
        dm.append((mp - mm) / (2 * h))
        dc.append((cp - cm) / (2 * h))
    p = len(theta)
    f = np.empty((p, p))
    for a, b in itertools.product(range(p), range(p)):
        f[a, b] = dm[a] @ cinv @ dm[b] + 0.5 * np.trace(cinv @ dc[a] @ cinv @ dc[b])
    assert m.shape == (d,)
    return f


@pytest.mark.parametrize("name, d", [("gaussian", 2), ("gaussian", 3), ("diag-gaussian", 3), ("gaussian", 5)])
def test_every_method_matches_the_reference_nd(name, d):
    fam = families.make_family(name, d)
    for _ in range(2):
        cov = random_cov(d, diagonal=name == "diag-gaussian")
        theta = fam.from_moments(jnp.asarray(RNG.normal(size=d)), jnp.asarray(cov))
        ref = reference_fisher_nd(fam, np.asarray(theta))
        mats = {method: np.asarray(fisher_information(fam, theta, method)) for method in METHODS}
        for method, got in mats.items():
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7, err_msg=method)  # finite differences
        for a, b in itertools.combinations(METHODS, 2):  # the four routes agree far more tightly
            np.testing.assert_allclose(mats[a], mats[b], rtol=1e-10, atol=1e-12, err_msg=f"{a} vs {b}")


@pytest.mark.parametrize("param", families.PARAMS_1D)
def test_symmetric_positive_definite(param):
    fam = families.gaussian_1d(param)
    for m, v in POINTS_1D:
        for method in METHODS:
            f = np.asarray(fisher_information(fam, jnp.asarray(theta_of(param, m, v)), method))
            np.testing.assert_allclose(f, f.T, rtol=0, atol=1e-12 * np.abs(f).max())
            assert np.linalg.eigvalsh(0.5 * (f + f.T)).min() > 0


def test_expectation_and_natural_fishers_are_inverses():
    for m, v in POINTS_1D:
        f_nat = np.asarray(fisher_information(families.gaussian_1d("natural"), jnp.asarray(theta_of("natural", m, v))))
        f_exp = np.asarray(fisher_information(families.gaussian_1d("expectation"),
                                              jnp.asarray(theta_of("expectation", m, v)), "kl_hessian"))
        np.testing.assert_allclose(f_nat @ f_exp, np.eye(2), rtol=0, atol=1e-9)
        # and the natural Fisher is the covariance of the sufficient statistics (x, x²)
        cov_t = np.array([[v, 2 * m * v], [2 * m * v, 4 * m * m * v + 2 * v * v]])
        np.testing.assert_allclose(f_nat, cov_t, rtol=1e-12)


def kl_np(m0, c0, m1, c1) -> float:
    c1inv = np.linalg.inv(c1)
    d = m1 - m0
    return 0.5 * (np.trace(c1inv @ c0) + d @ c1inv @ d - len(m0) + np.log(np.linalg.det(c1) / np.linalg.det(c0)))


@pytest.mark.parametrize("fam", [families.gaussian_1d(p) for p in families.PARAMS_1D] + [families.full_gaussian(2)],
                         ids=lambda f: f"{f.name}-{f.param}")
def test_kl_is_half_delta_f_delta_to_second_order(fam):
    """KL(q_θ‖q_θ+δ) / (½ δᵀFδ) → 1, with |ratio − 1| shrinking in proportion to |δ| (the cubic term)."""
    m0 = np.array([0.4] * fam.dim)
    c0 = np.eye(fam.dim) * 1.7 + (0.3 if fam.dim > 1 else 0.0) * (1 - np.eye(fam.dim))
    theta = np.asarray(fam.from_moments(jnp.asarray(m0), jnp.asarray(c0)))
    f = np.asarray(fisher_information(fam, jnp.asarray(theta)))
    u = RNG.normal(size=len(theta))
    u /= np.linalg.norm(u)
    errors = []
    for size in (1e-2, 1e-3, 1e-4):
        delta = size * u
        m1, c1 = moments_np(fam, theta + delta)
        ratio = kl_np(m0, c0, m1, c1) / (0.5 * delta @ f @ delta)
        errors.append(abs(ratio - 1.0))
    assert errors[-1] < 1e-3
    assert errors[1] < 0.2 * errors[0] and errors[2] < 0.2 * errors[1]  # ∝ |δ| over the decade


@pytest.mark.parametrize("fam", [families.gaussian_1d("natural"), families.full_gaussian(3), families.diag_gaussian(2)],
                         ids=lambda f: f"{f.name}-{f.param}")
def test_fisher_vector_product_without_forming_f(fam):
    theta = fam.from_moments(jnp.asarray(RNG.normal(size=fam.dim)), jnp.asarray(random_cov(fam.dim, fam.name != "gaussian")))
    f = np.asarray(fisher_information(fam, theta))
    for _ in range(3):
        v = RNG.normal(size=fam.n_params)
        np.testing.assert_allclose(np.asarray(fisher_vector_product(fam, theta, jnp.asarray(v))), f @ v,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 7])
def test_cubature_is_exact_to_degree_five(d):
    """Σ w z^α = E[z^α] for every monomial of degree ≤ 5 (E z² = 1, E z⁴ = 3, odd moments 0)."""
    z, w = gaussian_cubature(d)
    double_factorial = {0: 1, 1: 0, 2: 1, 3: 0, 4: 3, 5: 0}
    for degree in range(6):
        for combo in itertools.combinations_with_replacement(range(d), degree):
            powers = np.bincount(np.array(combo, dtype=int), minlength=d)
            exact = np.prod([double_factorial[k] for k in powers])
            got = w @ np.prod(z ** powers, axis=1)
            assert got == pytest.approx(exact, abs=1e-12), (degree, combo)


def test_unknown_method_and_wrong_shape_are_clear_errors():
    fam = families.gaussian_1d("mean_var")
    with pytest.raises(ValueError, match="method must be one of analytic, kl_hessian, score, neg_hessian"):
        fisher_information(fam, jnp.array([0.0, 1.0]), "empirical")
    with pytest.raises(ValueError, match=r"theta must have shape \(2,\)"):
        fisher_information(fam, jnp.array([0.0, 1.0, 2.0]))


def test_is_singular():
    assert is_singular(np.diag([1.0, 0.0]))
    assert not is_singular(np.diag([1.0, 0.0]), damping=1e-6)
    assert is_singular(np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert is_singular(np.array([[np.inf, 0.0], [0.0, 1.0]]))
    assert not is_singular(np.array([[2.0, 0.5], [0.5, 1.0]]))
