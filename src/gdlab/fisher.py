r"""Fisher information of the Gaussian families, four ways, and Fisher-vector products.

For q_θ(x) the Fisher information matrix is

.. math::

   F(\theta) = \mathbb E_{q_\theta}\!\left[\nabla_\theta \log q_\theta(x)\,\nabla_\theta \log q_\theta(x)^\top\right]
             = -\mathbb E_{q_\theta}\!\left[\nabla^2_\theta \log q_\theta(x)\right]
             = \nabla^2_{\theta'} \mathrm{KL}(q_\theta \,\|\, q_{\theta'})\big|_{\theta'=\theta}

The last equality is the source text's central result: KL's value and gradient in θ′ vanish at
θ′ = θ, so KL(q_θ‖q_{θ+δ}) = ½ δᵀF(θ)δ + O(|δ|³): the Fisher is the curvature of KL, and the
natural gradient is steepest descent in that geometry. Each route is computed independently:

- ``analytic``: closed forms. A Gaussian N(m, C) has, in the moments, F_mm = C⁻¹ and
  F_{C_a C_b} = ½ tr(C⁻¹ ∂_aC C⁻¹ ∂_bC) with no cross term. For the 1-D parameterizations
  this gives (v the variance, s = √v, τ = 1/v):

  ==================  ==========================================================
  ``mean_var``        diag(1/v, 1/(2v²))
  ``mean_std``        diag(1/s², 2/s²)
  ``mean_logstd``     diag(1/v, 2)
  ``mean_precision``  diag(τ, 1/(2τ²))
  ``natural``         Cov_q[(x, x²)] = [[v, 2mv], [2mv, 4m²v + 2v²]]  (= ∇²A(η))
  ``expectation``     its inverse, [[(v + 2m²)/v², −m/v²], [−m/v², 1/(2v²)]]
  ==================  ==========================================================

  ``diag-gaussian`` (m, log σ): diag(1/σ², 2). ``gaussian`` (m, vech L) with log diagonal:
  block diag(C⁻¹, F_L), F_L[a, b] = ½ tr(S_a S_b) with S_a = M_a + M_aᵀ, M_a = L⁻¹ ∂_aL.
- ``kl_hessian``: ``jax.hessian`` of θ′ ↦ KL(q_θ‖q_θ′) (closed-form Gaussian KL) at θ′ = θ.
- ``score``: E_q[s sᵀ] with s = ∇_θ log q_θ(x) by autodiff of ``jax.scipy``'s log-density,
  the expectation taken by a cubature rule exact for polynomials of degree 5 in x: the score
  of a Gaussian is quadratic in x, so s sᵀ is quartic and the rule gives it exactly.
- ``neg_hessian``: −E_q[∇²_θ log q_θ(x)] with the same exact cubature.

References:
  Amari, "Natural gradient works efficiently in learning", 1998.
  Kristiadi, "Fisher information matrix", 2018 (the derivation the source text follows).
  Stroud, "Approximate calculation of multiple integrals", 1971 (the degree-5 rule E_n^{r²} 5-2).
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from gdlab.divergences import kl_gaussian
from gdlab.families import Family

Array = jax.Array

METHODS = ("analytic", "kl_hessian", "score", "neg_hessian")


# --- analytic --------------------------------------------------------------------------------

def _analytic_1d(param: str, theta: Array) -> Array:
    a, b = theta[0], theta[1]
    zero = jnp.zeros_like(a)
    if param == "mean_var":
        return jnp.array([[1.0 / b, zero], [zero, 0.5 / b**2]])
    if param == "mean_std":
        return jnp.array([[1.0 / b**2, zero], [zero, 2.0 / b**2]])
    if param == "mean_logstd":
        return jnp.array([[jnp.exp(-2.0 * b), zero], [zero, 2.0 + zero]])
    if param == "mean_precision":
        return jnp.array([[b, zero], [zero, 0.5 / b**2]])
    if param == "natural":
        v = -0.5 / b
        m = a * v
        return jnp.array([[v, 2 * m * v], [2 * m * v, 4 * m**2 * v + 2 * v**2]])
    if param == "expectation":
        m, v = a, b - a * a
        return jnp.array([[(v + 2 * m**2) / v**2, -m / v**2], [-m / v**2, 0.5 / v**2]])
    raise AssertionError(param)


def _analytic_cholesky(dim: int, theta: Array) -> Array:
    rows, cols = np.tril_indices(dim)
    entries = theta[dim:]
    on_diag = rows == cols
    chol = jnp.zeros((dim, dim), theta.dtype).at[rows, cols].set(jnp.where(on_diag, jnp.exp(entries), entries))
    # ∂L/∂θ_a: the unit matrix at (r, c), times L_rr where the diagonal is stored as a log.
    scale = jnp.where(on_diag, chol[rows, rows], 1.0)
    basis = jnp.zeros((len(rows), dim, dim), theta.dtype).at[np.arange(len(rows)), rows, cols].set(scale)
    m = jax.scipy.linalg.solve_triangular(chol, basis, lower=True)     # M_a = L⁻¹ ∂_aL
    s = m + jnp.swapaxes(m, 1, 2)                                      # L⁻¹ ∂_aC L⁻ᵀ
    f_chol = 0.5 * jnp.einsum("aij,bji->ab", s, s)
    eye = jnp.eye(dim, dtype=theta.dtype)
    cov_inv = jax.scipy.linalg.cho_solve((chol, True), eye)
    n = dim + len(rows)
    out = jnp.zeros((n, n), theta.dtype)
    return out.at[:dim, :dim].set(cov_inv).at[dim:, dim:].set(f_chol)


def analytic_fisher(family: Family, theta: Array) -> Array:
    """F(θ) in closed form (the table in the module docstring).

    Args:
      family: a :class:`gdlab.families.Family` (any parameterization).
      theta: θ, shape (P,), inside the family's domain.

    Returns:
      F(θ), shape (P, P).

    Example:
      >>> from gdlab.families import gaussian_1d
      >>> F = analytic_fisher(gaussian_1d("mean_var"), jnp.array([1.0, 2.0]))
      >>> [[float(x) for x in row] for row in F]          # diag(1/v, 1/(2v²))
      [[0.5, 0.0], [0.0, 0.125]]
    """
    theta = jnp.asarray(theta)
    if family.dim == 1:
        return _analytic_1d(family.param, theta)
    d = family.dim
    if family.name == "diag-gaussian":
        return jnp.diag(jnp.concatenate([jnp.exp(-2.0 * theta[d:]), jnp.full((d,), 2.0, theta.dtype)]))
    return _analytic_cholesky(d, theta)


# --- the Hessian of KL -----------------------------------------------------------------------

def _kl_between(family: Family, theta: Array, theta_prime: Array) -> Array:
    m0, c0 = family.moments(theta)
    m1, c1 = family.moments(theta_prime)
    return kl_gaussian(m0, c0, m1, c1)


def kl_hessian_fisher(family: Family, theta: Array) -> Array:
    r"""F(θ) as the curvature of KL: ∇²_{θ′} KL(q_θ‖q_{θ′}) at θ′ = θ, by autodiff.

    .. math::  F(\theta) = \nabla^2_{\theta'} \mathrm{KL}(q_\theta \,\|\, q_{\theta'})\big|_{\theta'=\theta}

    Args:
      family: a :class:`gdlab.families.Family` (any parameterization).
      theta: θ, shape (P,), inside the family's domain.

    Returns:
      F(θ), shape (P, P).

    Example:
      >>> from gdlab.families import gaussian_1d
      >>> F = kl_hessian_fisher(gaussian_1d("mean_var"), jnp.array([1.0, 2.0]))
      >>> [[round(float(x), 12) + 0.0 for x in row] for row in F]
      [[0.5, 0.0], [0.0, 0.125]]
    """
    theta = jnp.asarray(theta)
    return jax.hessian(lambda t: _kl_between(family, jax.lax.stop_gradient(theta), t))(theta)


def fisher_vector_product(family: Family, theta: Array, v: Array) -> Array:
    r"""F(θ) v without forming F: the Hessian-vector product of θ′ ↦ KL(q_θ‖q_θ′) at θ′ = θ.

    .. math::  F v = \frac{\partial}{\partial \epsilon}\,
               \nabla_{\theta'}\mathrm{KL}(q_\theta\|q_{\theta'})\big|_{\theta'=\theta+\epsilon v,\ \epsilon=0}

    Forward-over-reverse autodiff: one gradient and one JVP, O(P) memory, so conjugate
    gradient can solve (F + λI)x = g for a P too large to store F.

    Args:
      family: a :class:`gdlab.families.Family`.
      theta: θ, shape (P,).
      v: the vector, shape (P,).

    Returns:
      F(θ) v, shape (P,).

    Example:
      >>> from gdlab.families import gaussian_1d
      >>> fv = fisher_vector_product(gaussian_1d("mean_var"), jnp.array([1.0, 2.0]), jnp.array([2.0, 8.0]))
      >>> [round(float(x), 12) for x in fv]
      [1.0, 1.0]
    """
    theta = jnp.asarray(theta)
    fixed = jax.lax.stop_gradient(theta)
    grad = jax.grad(lambda t: _kl_between(family, fixed, t))
    return jax.jvp(grad, (theta,), (jnp.asarray(v, theta.dtype),))[1]


# --- expectations under q: the score and the Hessian of log q ---------------------------------

@lru_cache(maxsize=None)
def gaussian_cubature(dim: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes z (n, d) and weights w (n,) with Σ w f(z) = E[f(z)], z ~ N(0, I), for every polynomial f of degree ≤ 5.

    Stroud's fully symmetric rule E_n^{r²} 5-2 (2d² + 1 nodes): the origin with weight 2/(d+2);
    ±√(d+2) e_i with weight (4−d)/(2(d+2)²); √((d+2)/2)(±e_i ± e_j), i < j, with weight
    1/(d+2)². In 1-D it is the 3-point Gauss–Hermite rule. (Some weights are negative for
    d > 4; the rule is still exact.)

    Args:
      dim: d ≥ 1.

    Returns:
      (z, w): nodes of shape (2d² + 1, d) and weights of shape (2d² + 1,).

    Example:
      >>> z, w = gaussian_cubature(3)
      >>> round(float(w @ z[:, 0] ** 4), 12), round(float(w @ (z[:, 0] ** 2 * z[:, 1] ** 2)), 12)
      (3.0, 1.0)
    """
    d = dim
    nodes = [np.zeros(d)]
    weights = [2.0 / (d + 2)]
    lam = np.sqrt(d + 2.0)
    for i in range(d):
        for sign in (1.0, -1.0):
            z = np.zeros(d)
            z[i] = sign * lam
            nodes.append(z)
            weights.append((4.0 - d) / (2.0 * (d + 2) ** 2))
    mu = np.sqrt((d + 2) / 2.0)
    for i in range(d):
        for j in range(i + 1, d):
            for si in (1.0, -1.0):
                for sj in (1.0, -1.0):
                    z = np.zeros(d)
                    z[i], z[j] = si * mu, sj * mu
                    nodes.append(z)
                    weights.append(1.0 / (d + 2) ** 2)
    return np.array(nodes), np.array(weights)


def log_density(family: Family, theta: Array, x: Array) -> Array:
    r"""log q_θ(x) for x of shape (d,), by ``jax.scipy.stats``.

    .. math::  \log q_\theta(x) = -\tfrac12 (x - m)^\top C^{-1} (x - m) - \tfrac12 \log\det(2\pi C),
               \qquad (m, C) = \text{the moments of } \theta

    Args:
      family: a :class:`gdlab.families.Family`.
      theta: θ, shape (P,).
      x: a point, shape (d,).

    Returns:
      log q_θ(x), a scalar.

    Example:
      >>> from gdlab.families import gaussian_1d
      >>> round(float(log_density(gaussian_1d("mean_var"), jnp.array([0.0, 1.0]), jnp.array([0.0]))), 12)
      -0.918938533205
    """
    mean, cov = family.moments(theta)
    if family.dim == 1:
        return jax.scipy.stats.norm.logpdf(x[0], mean[0], jnp.sqrt(cov[0, 0]))
    return jax.scipy.stats.multivariate_normal.logpdf(x, mean, cov)


def _nodes_under_q(family: Family, theta: Array) -> tuple[Array, Array]:
    z, w = gaussian_cubature(family.dim)
    mean, chol = family.cholesky(theta)
    x = mean + jnp.asarray(z, theta.dtype) @ chol.T
    return jax.lax.stop_gradient(x), jnp.asarray(w, theta.dtype)


def score_fisher(family: Family, theta: Array) -> Array:
    r"""F(θ) = E_q[∇ log q ∇ log qᵀ], the covariance of the score (its mean is 0), taken exactly.

    .. math::  F(\theta) = \mathbb E_{q_\theta}\!\left[\nabla_\theta \log q_\theta(x)\,\nabla_\theta \log q_\theta(x)^\top\right]

    The expectation is :func:`gaussian_cubature`'s, exact because the score is quadratic in x.

    Args:
      family: a :class:`gdlab.families.Family` (any parameterization).
      theta: θ, shape (P,), inside the family's domain.

    Returns:
      F(θ), shape (P, P).

    Example:
      >>> from gdlab.families import gaussian_1d
      >>> F = score_fisher(gaussian_1d("mean_var"), jnp.array([1.0, 2.0]))
      >>> [[round(float(x), 12) + 0.0 for x in row] for row in F]
      [[0.5, 0.0], [0.0, 0.125]]
    """
    theta = jnp.asarray(theta)
    x, w = _nodes_under_q(family, theta)
    scores = jax.vmap(lambda xi: jax.grad(lambda t: log_density(family, t, xi))(theta))(x)
    return jnp.einsum("n,ni,nj->ij", w, scores, scores)


def neg_hessian_fisher(family: Family, theta: Array) -> Array:
    r"""F(θ) = −E_q[∇²_θ log q_θ(x)], the negative expected Hessian of the log-density, taken exactly.

    .. math::  F(\theta) = -\mathbb E_{q_\theta}\!\left[\nabla^2_\theta \log q_\theta(x)\right]

    Args:
      family: a :class:`gdlab.families.Family` (any parameterization).
      theta: θ, shape (P,), inside the family's domain.

    Returns:
      F(θ), shape (P, P).

    Example:
      >>> from gdlab.families import gaussian_1d
      >>> F = neg_hessian_fisher(gaussian_1d("mean_precision"), jnp.array([1.0, 0.5]))
      >>> [[round(float(x), 12) + 0.0 for x in row] for row in F]      # diag(τ, 1/(2τ²))
      [[0.5, 0.0], [0.0, 2.0]]
    """
    theta = jnp.asarray(theta)
    x, w = _nodes_under_q(family, theta)
    hessians = jax.vmap(lambda xi: jax.hessian(lambda t: log_density(family, t, xi))(theta))(x)
    return -jnp.einsum("n,nij->ij", w, hessians)


_ROUTES = {"analytic": analytic_fisher, "kl_hessian": kl_hessian_fisher, "score": score_fisher,
           "neg_hessian": neg_hessian_fisher}
# Compiled once per family (families are cached objects, so hashable and stable).
_COMPILED = {name: jax.jit(route, static_argnums=0) for name, route in _ROUTES.items()}


def fisher_information(family: Family, theta: Array, method: str = "analytic") -> Array:
    r"""The Fisher information matrix F(θ) of q_θ, shape (P, P), by ``method``.

    Args:
      family: a :class:`gdlab.families.Family` (any parameterization).
      theta: θ, shape (P,), inside the family's domain.
      method: ``analytic`` (closed form), ``kl_hessian`` (∇² of KL(q_θ‖q_θ′) at θ′ = θ),
        ``score`` (E[∇log q ∇log qᵀ]) or ``neg_hessian`` (−E[∇² log q]); all four agree.

    Returns:
      F(θ), symmetric positive definite inside the domain.

    Example:
      >>> import gdlab
      >>> fam = gdlab.make_family("gaussian", 1, "natural")
      >>> theta = fam.from_moments(jnp.array([1.0]), jnp.array([[2.0]]))
      >>> F = fisher_information(fam, theta, method="score")
      >>> [[round(float(x), 10) for x in row] for row in F]    # Cov[(x, x²)] at m=1, v=2
      [[2.0, 4.0], [4.0, 16.0]]
    """
    if method not in _ROUTES:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    theta = jnp.asarray(theta)
    if theta.shape != (family.n_params,):
        raise ValueError(f"theta must have shape ({family.n_params},) for the {family.name} family in "
                         f"{family.param!r}, got {theta.shape}.")
    return _COMPILED[method](family, theta)


def is_singular(fisher: np.ndarray, damping: float = 0.0) -> bool:
    """Whether F + λI is too close to singular for a float64 solve: not finite, or its smallest
    eigenvalue is ≤ 0 or below 1e-14 of its largest.

    Args:
      fisher: F, a (P, P) array.
      damping: λ ≥ 0, added to the diagonal.

    Returns:
      True when F + λI should not be solved.

    Example:
      >>> F = np.diag([1.0, 1e-20])
      >>> is_singular(F), is_singular(F, damping=1e-6)
      (True, False)
    """
    f = np.asarray(fisher, dtype=float)
    if not np.all(np.isfinite(f)):
        return True
    eig = np.linalg.eigvalsh(0.5 * (f + f.T) + damping * np.eye(len(f)))
    return bool(eig[0] <= 0 or eig[0] < 1e-14 * eig[-1])
