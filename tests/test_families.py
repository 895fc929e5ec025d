"""Parameterizations of the Gaussian families: exact round trips, domains, entropy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gdlab import families
from gdlab.families import PARAMS_1D, diag_gaussian, full_gaussian, gaussian_1d, make_family

means = st.floats(-50, 50)
variances = st.floats(1e-3, 1e3)


# θ written out by hand from the definitions (module docstring), independent of the code.
def theta_by_hand(param, m, v):
    return {
        "mean_var": (m, v),
        "mean_std": (m, np.sqrt(v)),
        "mean_logstd": (m, 0.5 * np.log(v)),
        "mean_precision": (m, 1.0 / v),
        "natural": (m / v, -1.0 / (2.0 * v)),
        "expectation": (m, v + m * m),
    }[param]


@pytest.mark.parametrize("param", PARAMS_1D)
@given(m=means, v=variances)
@settings(max_examples=40, deadline=None)
def test_1d_round_trip_and_definition(param, m, v):
    fam = gaussian_1d(param)
    theta = fam.from_moments(jnp.array([m]), jnp.array([[v]]))
    np.testing.assert_allclose(theta, theta_by_hand(param, m, v), rtol=1e-13, atol=1e-13)
    mean, cov = fam.moments(theta)
    np.testing.assert_allclose(mean, [m], rtol=1e-12, atol=1e-12 * (1 + abs(m)))
    # expectation parameters lose |m|²-relative precision in v = μ₂ − μ₁²
    atol = 1e-12 * (1 + m * m) if param == "expectation" else 0.0
    np.testing.assert_allclose(cov, [[v]], rtol=1e-11, atol=atol)
    assert bool(fam.in_domain(theta))


@pytest.mark.parametrize("param,bad", [
    ("mean_var", (0.0, -1.0)), ("mean_std", (0.0, -1.0)), ("mean_precision", (0.0, 0.0)),
    ("natural", (0.0, 0.5)), ("expectation", (2.0, 3.0)), ("mean_var", (np.nan, 1.0)),
])
def test_1d_domain_excludes_invalid_points(param, bad):
    assert not bool(gaussian_1d(param).in_domain(jnp.array(bad)))


def test_mean_logstd_domain_is_everything():
    assert bool(gaussian_1d("mean_logstd").in_domain(jnp.array([-3.0, -40.0])))


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + d * np.eye(d)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_full_gaussian_round_trip(dim):
    rng = np.random.default_rng(dim)
    fam = full_gaussian(dim)
    mean, cov = rng.standard_normal(dim), random_spd(rng, dim)
    theta = fam.from_moments(jnp.asarray(mean), jnp.asarray(cov))
    assert theta.shape == (fam.n_params,) == (dim + dim * (dim + 1) // 2,)
    m2, c2 = fam.moments(theta)
    np.testing.assert_allclose(m2, mean, rtol=1e-13)
    np.testing.assert_allclose(c2, cov, rtol=1e-12)
    # the diagonal of L is stored as its log: every θ is valid, θ = 0 is N(0, I)
    m0, c0 = fam.moments(jnp.zeros(fam.n_params))
    np.testing.assert_array_equal(c0, np.eye(dim))


def test_diag_gaussian_round_trip():
    fam = diag_gaussian(3)
    m, c = fam.moments(fam.from_moments(jnp.array([1.0, -2.0, 3.0]), jnp.diag(jnp.array([0.5, 2.0, 9.0]))))
    np.testing.assert_allclose(m, [1.0, -2.0, 3.0])
    np.testing.assert_allclose(c, np.diag([0.5, 2.0, 9.0]), rtol=1e-14)


@pytest.mark.parametrize("param", PARAMS_1D)
def test_moments_are_jittable_and_differentiable(param):
    fam = gaussian_1d(param)
    theta = fam.from_moments(jnp.array([0.7]), jnp.array([[1.3]]))
    jac = jax.jit(jax.jacfwd(lambda t: jnp.concatenate([fam.moments(t)[0], fam.moments(t)[1][0]])))(theta)
    # the map θ -> (m, v) is a bijection on the domain: its Jacobian is invertible
    assert abs(np.linalg.det(np.asarray(jac))) > 1e-8


def test_make_family_choices_and_errors():
    assert make_family("gaussian", 1).param == "mean_var"
    assert make_family("diag-gaussian", 1, "natural").param == "natural"
    assert make_family("gaussian", 3).param == "cholesky"
    assert make_family("diag-gaussian", 3).param == "mean_logstd"
    with pytest.raises(ValueError, match="family must be one of"):
        make_family("student", 1)
    with pytest.raises(ValueError, match="param must be one of"):
        make_family("gaussian", 1, "bogus")
    with pytest.raises(ValueError, match="cholesky"):
        make_family("gaussian", 2, "mean_var")


@pytest.mark.parametrize("dim", [1, 2, 4])
def test_entropy_against_scipy(dim):
    cov = random_spd(np.random.default_rng(7), dim)
    expected = stats.multivariate_normal(np.zeros(dim), cov).entropy()
    np.testing.assert_allclose(families.entropy(jnp.linalg.cholesky(jnp.asarray(cov))), expected, rtol=1e-13)


@pytest.mark.parametrize("src", PARAMS_1D)
@pytest.mark.parametrize("dst", PARAMS_1D)
def test_convert_between_parameterizations_round_trips(src, dst):
    a, b = gaussian_1d(src), gaussian_1d(dst)
    theta = a.from_moments(jnp.array([0.8]), jnp.array([[1.7]]))
    there = families.convert(theta, a, b)
    np.testing.assert_allclose(there, theta_by_hand(dst, 0.8, 1.7), rtol=1e-13)
    np.testing.assert_allclose(families.convert(there, b, a), theta, rtol=1e-13)
