"""Tests for gdlab.models: losses, gradients, Fisher information, margins, separability.

Every number is checked against an independent route: hand-written NumPy/SciPy formulas for the
losses and gradients, JAX's Hessian (the Fisher of a canonical-link GLM is the Hessian of its
mean negative log-likelihood), the covariance of the score by enumerating the labels, the
pseudo-inverse for the softmax's singular directions, and a linear program written here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.special import expit, logsumexp

from gdlab import models

jax.config.update("jax_enable_x64", True)

RNG = np.random.default_rng(20261122)
N, D, K = 40, 3, 4
X = RNG.normal(size=(N, D))
Y_BIN = (RNG.random(N) < 0.5).astype(float)
Y_CLS = RNG.integers(0, K, N).astype(float)
Y_REG = X @ np.array([1.0, -2.0, 0.5]) + 3.0 + RNG.normal(size=N)
XA = np.hstack([X, np.ones((N, 1))])

CASES = {  # id: (model, y)
    "linear-mse": (models.make_model("linear", D), Y_REG),
    "linear-rmse": (models.make_model("linear", D, loss="rmse"), Y_REG),
    "logistic": (models.make_model("logistic", D), Y_BIN),
    "softmax": (models.make_model("softmax", D, n_classes=K), Y_CLS),
}


def theta_for(model, scale=0.3, seed=1):
    return np.random.default_rng(seed).normal(size=model.n_params) * scale


def matrix(model, theta):
    """[W; bᵀ] as a (d + 1, m) array, independently of gdlab's unravel."""
    return np.asarray(theta).reshape(model.n_features + 1, model.n_outputs)


def np_objective(model, theta, y, l2):
    """J(θ) written out in NumPy: stable cross-entropies via logaddexp/logsumexp."""
    Z = XA @ matrix(model, theta)
    W = matrix(model, theta)[:-1]
    pen = 0.5 * l2 * np.sum(W * W)
    if model.kind == "linear":
        mse = np.mean((Z[:, 0] - y) ** 2)
        return (np.sqrt(mse) if model.loss == "rmse" else mse) + pen
    if model.kind == "logistic":
        z = Z[:, 0]
        return np.mean(np.logaddexp(0.0, z) - y * z) + pen
    return np.mean(logsumexp(Z, axis=1) - Z[np.arange(N), y.astype(int)]) + pen


def np_gradient(model, theta, y, l2):
    """∇J by hand: X̃ᵀ(residual)/n with the model's residual, plus λW."""
    M = matrix(model, theta)
    Z = XA @ M
    if model.kind == "linear":
        r = Z[:, 0] - y
        g = (2.0 / N) * XA.T @ r
        if model.loss == "rmse":
            g = g / (2.0 * np.sqrt(np.mean(r ** 2)))
        G = g[:, None]
    elif model.kind == "logistic":
        G = (XA.T @ (expit(Z[:, 0]) - y) / N)[:, None]
    else:
        P = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
        G = XA.T @ (P - np.eye(K)[y.astype(int)]) / N
    G[:-1] += l2 * M[:-1]
    return G.ravel()


# ------------------------------------------------------------------------------- the door

@pytest.mark.parametrize("kind, kwargs, fragment", [
    ("tree", {}, "model must be one of"),
    ("linear", {"loss": "cross-entropy"}, "mse or rmse"),
    ("logistic", {"loss": "mse"}, "mse and rmse are for --model linear"),
    ("softmax", {"n_classes": 1}, "at least 2 classes"),
])
def test_make_model_refuses_bad_settings(kind, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        models.make_model(kind, 3, **kwargs)


def test_parameter_layout_round_trips():
    m = models.make_model("softmax", 3, n_classes=4)
    W, b = RNG.normal(size=(3, 4)), RNG.normal(size=4)
    theta = models.ravel(W, b)
    assert theta.shape == (m.n_params,) == (16,)
    W2, b2 = models.unravel(m, jnp.asarray(theta))
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)
    assert models.penalty_mask(m).reshape(4, 4)[-1].sum() == 0 and models.penalty_mask(m).sum() == 12


# ------------------------------------------------------------------------------- losses and gradients

@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_objective_and_gradient_match_hand_formulas(case, l2):
    model, y = CASES[case]
    theta = theta_for(model)
    J, g = jax.value_and_grad(lambda t: models.objective(model, t, jnp.asarray(X), jnp.asarray(y), l2))(
        jnp.asarray(theta))
    assert float(J) == pytest.approx(np_objective(model, theta, y, l2), rel=1e-13)
    np.testing.assert_allclose(np.asarray(g), np_gradient(model, theta, y, l2), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("z, y, expected", [(1000.0, 0.0, 1000.0), (1000.0, 1.0, 0.0), (-1000.0, 1.0, 1000.0),
                                            (-1000.0, 0.0, 0.0), (40.0, 0.0, 40.0 + np.log1p(np.exp(-40.0)))])
def test_binary_cross_entropy_is_stable_at_extreme_logits(z, y, expected):
    """log(1 + eᶻ) − yz without overflow (eᶻ = inf at z = 1000) or log(0) (sigmoid(−1000) = 0)."""
    m = models.make_model("logistic", 1)
    value = float(models.example_losses(m, jnp.array([z]), jnp.array([y]))[0])
    assert value == pytest.approx(expected, abs=1e-12)


def test_softmax_cross_entropy_is_stable_at_extreme_logits():
    m = models.make_model("softmax", 1, n_classes=3)
    z = jnp.array([[1000.0, -1000.0, 0.0], [1000.0, 1000.0, 1000.0]])
    values = np.asarray(models.example_losses(m, z, jnp.array([1.0, 2.0])))
    np.testing.assert_allclose(values, [2000.0, np.log(3.0)], rtol=0, atol=2.3e-13)   # ulp(1000) = 1.1e-13


def test_prior_bias_is_the_best_constant_model():
    """With W = 0 the gradient in the bias vanishes at the prior bias (the objective's minimum over b)."""
    for case, (model, y) in CASES.items():
        if model.kind == "softmax":
            mean = np.bincount(y.astype(int), minlength=K) / N
        else:
            mean = y.mean()
        theta = models.init_params(model, "zeros", 0, models.prior_bias(model, mean))
        g = np_gradient(model, theta, y, 0.0).reshape(D + 1, -1)
        np.testing.assert_allclose(g[-1], 0.0, atol=1e-12, err_msg=case)


def test_init_normal_has_variance_one_over_d_and_is_seeded():
    m = models.make_model("softmax", 400, n_classes=10)
    theta = models.init_params(m, "normal", 7, np.zeros(10))
    W = theta.reshape(401, 10)[:-1]
    assert W.var() == pytest.approx(1.0 / 400, rel=0.05)        # 4,000 draws: ±2.2% standard error
    np.testing.assert_array_equal(theta, models.init_params(m, "normal", 7, np.zeros(10)))
    assert not np.array_equal(theta, models.init_params(m, "normal", 8, np.zeros(10)))
    np.testing.assert_array_equal(theta.reshape(401, 10)[-1], 0.0)


# ------------------------------------------------------------------------------- Fisher information

def fisher(model, theta, y, l2, form="matrix"):
    args = (model, jnp.asarray(theta), jnp.asarray(X), jnp.asarray(y), l2)
    if form == "matrix":
        return np.asarray(models.fisher_matrix(*args))
    if form == "diagonal":
        return np.asarray(models.fisher_diagonal(*args))
    return models.fisher_vector_product(*args)


def hessian(model, theta, y, l2):
    # compiled: op by op, autodiff's second derivative of the softmax objective takes ~7 s, jit ~0.3 s
    return np.asarray(jax.jit(jax.hessian(lambda t: models.objective(model, t, jnp.asarray(X), jnp.asarray(y), l2)))(
        jnp.asarray(theta)))


def softmax_null_projector(l2):
    """Σ u uᵀ over the unit directions that shift every class's logits alike, for the unpenalised rows."""
    rows = np.ones(D + 1) if l2 == 0 else np.eye(D + 1)[-1]
    return np.kron(np.diag(rows), np.full((K, K), 1.0 / K))


@pytest.mark.parametrize("l2", [0.0, 0.25])
@pytest.mark.parametrize("case", ["linear-mse", "logistic", "softmax"])
def test_fisher_is_the_hessian_for_canonical_links(case, l2):
    """Logistic and softmax (canonical links) and MSE (σ² = ½): F = ∇²J, exactly."""
    model, y = CASES[case]
    theta = theta_for(model)
    F = fisher(model, theta, y, l2)
    H = hessian(model, theta, y, l2)
    if model.kind == "softmax":
        H = H + softmax_null_projector(l2)
    np.testing.assert_allclose(F, H, rtol=1e-10, atol=1e-12)


def test_rmse_fisher_is_the_positive_part_of_its_hessian():
    """RMSE = √m: ∇²RMSE = ∇²m/(2√m) − ∇m∇mᵀ/(4 m^{3/2}) = F − g gᵀ / RMSE with g = ∇RMSE."""
    model, y = CASES["linear-rmse"]
    theta = theta_for(model)
    rmse = np_objective(model, theta, y, 0.0)
    g = np_gradient(model, theta, y, 0.0)
    np.testing.assert_allclose(fisher(model, theta, y, 0.0), hessian(model, theta, y, 0.0) + np.outer(g, g) / rmse,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fisher(model, theta, y, 0.0), XA.T @ XA / (N * rmse), rtol=1e-12)


@pytest.mark.parametrize("case", ["logistic", "softmax"])
def test_fisher_is_the_covariance_of_the_score(case):
    """F = (1/n) Σᵢ E_{y ~ p(·|xᵢ, θ)}[s sᵀ], s = ∇_θ log p(y | xᵢ, θ): the labels enumerated."""
    model, _ = CASES[case]
    theta = theta_for(model)
    M = matrix(model, theta)
    F = np.zeros((model.n_params, model.n_params))
    for i in range(N):
        z = XA[i] @ M
        if model.kind == "logistic":
            p1 = expit(z[0])
            outcomes = [(1.0, p1, np.outer(XA[i], [1.0 - p1])), (0.0, 1.0 - p1, np.outer(XA[i], [-p1]))]
        else:
            p = np.exp(z - logsumexp(z))
            outcomes = [(k, p[k], np.outer(XA[i], np.eye(K)[k] - p)) for k in range(K)]
        for _, prob, score in outcomes:
            s = score.ravel()
            F += prob * np.outer(s, s) / N
    expected = F + (softmax_null_projector(0.0) if model.kind == "softmax" else 0.0)
    np.testing.assert_allclose(fisher(model, theta, _, 0.0), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("l2", [0.0, 0.25])
@pytest.mark.parametrize("case", list(CASES))
def test_fisher_vector_product_and_diagonal_agree_with_the_matrix(case, l2):
    model, y = CASES[case]
    theta = theta_for(model)
    F = fisher(model, theta, y, l2)
    product = fisher(model, theta, y, l2, "product")
    for seed in range(3):
        v = np.random.default_rng(seed).normal(size=model.n_params)
        np.testing.assert_allclose(np.asarray(product(jnp.asarray(v))), F @ v, rtol=1e-11, atol=1e-12)
    expected_diag = np.diag(F) - (np.diag(softmax_null_projector(l2)) if model.kind == "softmax" else 0.0)
    np.testing.assert_allclose(fisher(model, theta, y, l2, "diagonal"), expected_diag, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_fisher_vector_product_of_zero_is_zero(case):
    """Conjugate gradient starts from F·0 under jit. The softmax product written as
    p⊙U − p⊙Σ(p⊙U) made XLA:CPU (jaxlib 0.10.2) return uninitialised memory there, now and then;
    compile it afresh several times and insist on exact zeros."""
    model, y = CASES[case]
    theta = jnp.asarray(theta_for(model))
    for trial in range(4):
        f = jax.jit(lambda t, X_, y_, trial=trial: models.fisher_vector_product(model, t, X_, y_, 0.1)(
            jnp.zeros(model.n_params)))
        assert np.all(np.asarray(f(theta, jnp.asarray(X), jnp.asarray(y))) == 0.0)


@pytest.mark.parametrize("l2", [0.0, 0.25])
def test_softmax_natural_direction_is_the_pseudo_inverse_solution(l2):
    """With the null directions filled in, F̃⁻¹g = H⁺g: the minimum-norm Newton direction."""
    model, y = CASES["softmax"]
    theta = theta_for(model)
    g = np_gradient(model, theta, y, l2)
    x = np.linalg.solve(fisher(model, theta, y, l2), g)
    np.testing.assert_allclose(x, np.linalg.pinv(hessian(model, theta, y, l2), rcond=1e-10) @ g, rtol=1e-8,
                               atol=1e-10)


# ------------------------------------------------------------------------------- margins and separability

def lp_separable(Xs, y):
    """Is there (w, b) with (2y − 1)(w·x + b) ≥ 1 for every row? Written here, for binary labels."""
    A = -((2 * y - 1)[:, None] * np.hstack([Xs, np.ones((len(y), 1))]))
    res = linprog(np.zeros(A.shape[1]), A_ub=A, b_ub=-np.ones(len(y)), bounds=(None, None), method="highs")
    return res.status == 0


def test_margins_match_their_definitions():
    for case in ("logistic", "softmax"):
        model, y = CASES[case]
        theta = theta_for(model)
        Z = XA @ matrix(model, theta)
        got = np.asarray(models.margins(model, jnp.asarray(theta), jnp.asarray(X), jnp.asarray(y)))
        if model.kind == "logistic":
            expected = (2 * y - 1) * Z[:, 0]
        else:
            lab = y.astype(int)
            others = np.where(np.eye(K, dtype=bool)[lab], -np.inf, Z)
            expected = Z[np.arange(N), lab] - others.max(axis=1)
        np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_linearly_separable_agrees_with_an_independent_program():
    m = models.make_model("logistic", 2)
    rng = np.random.default_rng(5)
    for trial in range(6):
        Xs = rng.normal(size=(30, 2))
        y = (Xs @ [1.0, -1.0] + (0.0 if trial % 2 else 0.8 * rng.normal(size=30)) > 0).astype(float)
        assert models.linearly_separable(m, Xs, y) == lp_separable(Xs, y)
    # XOR is the classic non-separable set; three collinear points with the middle one odd, too
    assert models.linearly_separable(m, np.array([[0, 0], [1, 1], [0, 1], [1, 0.0]]), np.array([0, 0, 1, 1.0])) is False
    assert models.linearly_separable(models.make_model("linear", 2), Xs, y) is False


def test_multiclass_separability():
    m = models.make_model("softmax", 1, n_classes=3)
    # three clusters on a line are separable by a softmax (logits linear in x can rank them)
    Xs = np.array([[-3.0], [-2.9], [0.0], [0.1], [3.0], [3.1]])
    assert models.linearly_separable(m, Xs, np.array([0, 0, 1, 1, 2, 2.0])) is True
    # the middle class split across both ends is not
    assert models.linearly_separable(m, Xs, np.array([1, 0, 0, 2, 2, 1.0])) is False


@pytest.mark.parametrize("n, block", [(10_001, 4096), (50, 4096), (8192, 4096)])
def test_weighted_gram_by_blocks_matches_the_plain_product(n, block):
    """The blocked X̃ᵀWX̃ (no augmented copy of X) against NumPy's product on X̃ = [X, 1]."""
    rng = np.random.default_rng(n)
    X, w = rng.standard_normal((n, 7)), rng.random(n)
    Xa = np.hstack([X, np.ones((n, 1))])
    got = np.asarray(models.weighted_gram(jnp.asarray(X), jnp.asarray(w), block_rows=block))
    np.testing.assert_allclose(got, (Xa * w[:, None]).T @ Xa, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_gradient_by_row_reduction_matches_the_hand_formula(kind):
    """The logits' custom pullback (Σᵢ z̄ᵢxᵢ as a row reduction) gives ∇J = X̃ᵀ(∂ℓ/∂z)/n + λW, in NumPy."""
    rng = np.random.default_rng(3)
    n, d = 3000, 5
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 0.4).astype(float) if kind == "logistic" else rng.standard_normal(n)
    m = models.make_model(kind, d)
    theta = rng.standard_normal(d + 1)
    z = X @ theta[:-1] + theta[-1]
    r = (expit(z) - y) if kind == "logistic" else 2.0 * (z - y)
    Xa = np.hstack([X, np.ones((n, 1))])
    expected = Xa.T @ r / n + 0.3 * np.append(theta[:-1], 0.0)
    got = jax.jit(jax.grad(lambda t: models.objective(m, t, jnp.asarray(X), jnp.asarray(y), 0.3)))(jnp.asarray(theta))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-11, atol=1e-13)
