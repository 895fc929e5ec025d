r"""Parametric Gaussian families q_θ and their parameterizations.

A family turns a flat parameter vector θ (a 1-D array, what the optimizer moves) into the
moments of q: a mean vector ``m`` of shape (d,) and a covariance ``C`` of shape (d, d), and
back. Plain gradient descent depends on this choice; natural gradient, to first order, does
not — which is why every 1-D parameterization of the source texts is here.

1-D Gaussian q = N(m, v) (v is the **variance**):

=================  =========================  =======================  ================
``param``          θ                          back to (m, v)           domain
=================  =========================  =======================  ================
``mean_var``       (m, v)                     (θ₁, θ₂)                 θ₂ > 0
``mean_std``       (m, s), s = √v             (θ₁, θ₂²)                θ₂ > 0
``mean_logstd``    (m, log s)                 (θ₁, e^{2θ₂})            all of ℝ²
``mean_precision`` (m, τ), τ = 1/v            (θ₁, 1/θ₂)               θ₂ > 0
``natural``        (η₁, η₂) = (m/v, −1/(2v))  (−η₁/(2η₂), −1/(2η₂))    η₂ < 0
``expectation``    (μ₁, μ₂) = (E x, E x²)     (μ₁, μ₂ − μ₁²)           μ₂ − μ₁² > 0
=================  =========================  =======================  ================

d-dimensional Gaussian q = N(m, C):

- ``gaussian`` (full covariance), param ``cholesky``: θ = (m, vech L) with C = L Lᵀ, L lower
  triangular, its diagonal stored as log so every θ is valid.
- ``diag-gaussian``, param ``mean_logstd``: θ = (m, log σ), C = diag(σ²).

Outside its domain a family's ``moments`` still returns numbers (e.g. a negative variance);
``in_domain`` says whether θ names a distribution, and objectives turn an out-of-domain θ
into a non-finite loss so that the engine reports the run as diverged.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

PARAMS_1D = ("mean_var", "mean_std", "mean_logstd", "mean_precision", "natural", "expectation")
FAMILIES = ("gaussian", "diag-gaussian")


class Family(NamedTuple):
    """A Gaussian family in one parameterization.

    Attributes:
      name: ``"gaussian"`` or ``"diag-gaussian"``.
      param: the parameterization's name (see the module docstring).
      dim: d, the dimension of x.
      n_params: the length of θ.
      param_names: one label per entry of θ, for tables.
      moments: θ ↦ (m of shape (d,), C of shape (d, d)); pure and jittable.
      from_moments: (m, C) ↦ θ; pure and jittable.
      in_domain: θ ↦ bool array; whether θ names a distribution.
    """

    name: str
    param: str
    dim: int
    n_params: int
    param_names: tuple[str, ...]
    moments: Callable[[Array], tuple[Array, Array]]
    from_moments: Callable[[Array, Array], Array]
    in_domain: Callable[[Array], Array]

    def cholesky(self, theta: Array) -> tuple[Array, Array]:
        """(m, L) with C = L Lᵀ; for d = 1, L = [[√v]] (NaN outside the domain)."""
        mean, cov = self.moments(theta)
        return mean, cholesky(cov)


# --- factor and solve, without LAPACK in 1-D --------------------------------------------------
# XLA:CPU lowers a factorisation or a triangular solve to LAPACK, whose first use imports SciPy's
# LAPACK bindings (~0.2 s, a tenth of a 1-D fit's start-up); for 1 x 1 matrices they are a square
# root and a division, which lower to plain arithmetic.

def cholesky(c: Array) -> Array:
    r"""The lower Cholesky factor L of C = L Lᵀ, for C of shape (..., d, d); √C when d = 1.

    Args:
      c: symmetric positive definite matrices.

    Returns:
      L, the same shape (NaN where C is not positive definite).

    Example:
      >>> cholesky(jnp.array([[4.0]])).tolist(), cholesky(jnp.array([[4.0, 2.0], [2.0, 2.0]])).tolist()
      ([[2.0]], [[2.0, 0.0], [1.0, 1.0]])
    """
    if c.shape[-1] == 1:
        return jnp.sqrt(c)
    return jnp.linalg.cholesky(c)


def solve_lower(l: Array, b: Array) -> Array:
    r"""L⁻¹ b for a lower-triangular L (d, d) and b of shape (d,) or (d, k); b / l when d = 1.

    Args:
      l: L, lower triangular with a non-zero diagonal.
      b: the right-hand side.

    Returns:
      x with L x = b, shaped like b.

    Example:
      >>> solve_lower(jnp.array([[2.0]]), jnp.array([3.0])).tolist()
      [1.5]
      >>> solve_lower(jnp.array([[2.0, 0.0], [1.0, 1.0]]), jnp.array([2.0, 3.0])).tolist()
      [1.0, 2.0]
    """
    if l.shape == (1, 1):
        return b / l[0, 0]
    return jax.scipy.linalg.solve_triangular(l, b, lower=True)


# --- 1-D: each parameterization is a pair of maps θ <-> (m, v) --------------------------------

def _to_mv(param: str, theta: Array) -> tuple[Array, Array]:
    a, b = theta[0], theta[1]
    if param == "mean_var":
        return a, b
    if param == "mean_std":
        return a, b * b
    if param == "mean_logstd":
        return a, jnp.exp(2.0 * b)
    if param == "mean_precision":
        return a, 1.0 / b
    if param == "natural":
        v = -0.5 / b
        return a * v, v
    if param == "expectation":
        return a, b - a * a
    raise AssertionError(param)


def _from_mv(param: str, m: Array, v: Array) -> Array:
    if param == "mean_var":
        pair = (m, v)
    elif param == "mean_std":
        pair = (m, jnp.sqrt(v))
    elif param == "mean_logstd":
        pair = (m, 0.5 * jnp.log(v))
    elif param == "mean_precision":
        pair = (m, 1.0 / v)
    elif param == "natural":
        pair = (m / v, -0.5 / v)
    elif param == "expectation":
        pair = (m, v + m * m)
    else:
        raise AssertionError(param)
    return jnp.stack(pair)


def _domain_1d(param: str, theta: Array) -> Array:
    finite = jnp.all(jnp.isfinite(theta))
    a, b = theta[0], theta[1]
    if param == "mean_logstd":
        ok = jnp.bool_(True)
    elif param == "natural":
        ok = b < 0
    elif param == "expectation":
        ok = b - a * a > 0
    else:  # mean_var, mean_std, mean_precision: the second entry is positive
        ok = b > 0
    return finite & ok


_NAMES_1D = {
    "mean_var": ("mean", "var"),
    "mean_std": ("mean", "std"),
    "mean_logstd": ("mean", "log_std"),
    "mean_precision": ("mean", "precision"),
    "natural": ("eta1", "eta2"),
    "expectation": ("E[x]", "E[x^2]"),
}


@lru_cache(maxsize=None)  # one object per family: compiled runs are cached by identity
def gaussian_1d(param: str = "mean_var") -> Family:
    """The 1-D Gaussian family N(m, v) in parameterization ``param``.

    Args:
      param: ``mean_var``, ``mean_std``, ``mean_logstd``, ``mean_precision``, ``natural``
        (η₁ = m/v, η₂ = −1/(2v)) or ``expectation`` (E x, E x²).

    Returns:
      A :class:`Family` with two parameters.

    Example:
      >>> fam = gaussian_1d("natural")
      >>> theta = fam.from_moments(jnp.array([1.0]), jnp.array([[2.0]]))
      >>> [round(float(t), 6) for t in theta]      # (m/v, -1/(2v))
      [0.5, -0.25]
    """
    if param not in PARAMS_1D:
        raise ValueError(f"param must be one of {', '.join(PARAMS_1D)} for a 1-D Gaussian, got {param!r}.")

    def moments(theta: Array) -> tuple[Array, Array]:
        m, v = _to_mv(param, theta)
        return jnp.reshape(m, (1,)), jnp.reshape(v, (1, 1))

    def from_moments(mean: Array, cov: Array) -> Array:
        return _from_mv(param, jnp.reshape(mean, ()), jnp.reshape(cov, ()))

    return Family("gaussian", param, 1, 2, _NAMES_1D[param], moments,
                  from_moments, lambda theta: _domain_1d(param, theta))


@lru_cache(maxsize=None)  # one object per family: compiled runs are cached by identity
def full_gaussian(dim: int) -> Family:
    r"""d-dimensional Gaussian with full covariance, θ = (m, vech L), diag(L) stored as log.

    .. math::  C = L L^\top, \qquad \theta = (m_1..m_d,\ \log L_{11}, L_{21}, \log L_{22}, \dots)

    Args:
      dim: d.

    Returns:
      A :class:`Family` with d + d(d+1)/2 parameters (parameterization ``cholesky``).

    Example:
      >>> fam = full_gaussian(2)
      >>> cov = jnp.array([[2.0, 0.5], [0.5, 1.0]])
      >>> m, c = fam.moments(fam.from_moments(jnp.zeros(2), cov))
      >>> bool(jnp.allclose(c, cov))
      True
    """
    rows, cols = np.tril_indices(dim)
    on_diag = rows == cols

    def moments(theta: Array) -> tuple[Array, Array]:
        mean = theta[:dim]
        entries = theta[dim:]
        entries = jnp.where(on_diag, jnp.exp(entries), entries)
        chol = jnp.zeros((dim, dim), theta.dtype).at[rows, cols].set(entries)
        return mean, chol @ chol.T

    def from_moments(mean: Array, cov: Array) -> Array:
        chol = jnp.linalg.cholesky(cov)
        entries = chol[rows, cols]
        entries = jnp.where(on_diag, jnp.log(entries), entries)
        return jnp.concatenate([jnp.reshape(mean, (dim,)), entries])

    names = tuple(f"mean[{i}]" for i in range(dim)) + tuple(
        f"log L[{r},{c}]" if r == c else f"L[{r},{c}]" for r, c in zip(rows, cols))
    return Family("gaussian", "cholesky", dim, dim + len(rows), names, moments, from_moments,
                  lambda theta: jnp.all(jnp.isfinite(theta)))


@lru_cache(maxsize=None)  # one object per family: compiled runs are cached by identity
def diag_gaussian(dim: int) -> Family:
    """d-dimensional Gaussian with diagonal covariance, θ = (m, log σ).

    Args:
      dim: d.

    Returns:
      A :class:`Family` with 2d parameters (parameterization ``mean_logstd``).

    Example:
      >>> fam = diag_gaussian(2)
      >>> m, c = fam.moments(jnp.array([1.0, 2.0, 0.0, jnp.log(3.0)]))
      >>> [round(float(x), 6) for x in jnp.diag(c)]
      [1.0, 9.0]
    """

    def moments(theta: Array) -> tuple[Array, Array]:
        return theta[:dim], jnp.diag(jnp.exp(2.0 * theta[dim:]))

    def from_moments(mean: Array, cov: Array) -> Array:
        return jnp.concatenate([jnp.reshape(mean, (dim,)), 0.5 * jnp.log(jnp.diag(cov))])

    names = tuple(f"mean[{i}]" for i in range(dim)) + tuple(f"log_std[{i}]" for i in range(dim))
    return Family("diag-gaussian", "mean_logstd", dim, 2 * dim, names, moments, from_moments,
                  lambda theta: jnp.all(jnp.isfinite(theta)))


def make_family(name: str, dim: int, param: str | None = None) -> Family:
    """The family called ``name`` ("gaussian" or "diag-gaussian") for x of dimension ``dim``.

    In 1-D both names give the 1-D Gaussian, whose parameterization ``param`` defaults to
    ``mean_var`` (the source text's Mean and Variance). In d > 1 dimensions, ``gaussian`` is
    parameterized by ``cholesky`` and ``diag-gaussian`` by ``mean_logstd``.

    Args:
      name: ``gaussian`` or ``diag-gaussian``.
      dim: d ≥ 1.
      param: the parameterization (1-D: ``mean_var``, ``mean_std``, ``mean_logstd``,
        ``mean_precision``, ``natural``, ``expectation``; d-D: the one the name allows, or None).

    Returns:
      A :class:`Family` with ``n_params`` entries in θ (2 in 1-D; d + d(d+1)/2 for ``gaussian``,
      2d for ``diag-gaussian``).

    Example:
      >>> make_family("diag-gaussian", 3).n_params, make_family("gaussian", 3).n_params
      (6, 9)
      >>> fam = make_family("gaussian", 1, "mean_precision")
      >>> [float(x) for x in fam.from_moments(jnp.array([1.0]), jnp.array([[4.0]]))]    # (m, 1/v)
      [1.0, 0.25]
    """
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {name!r}.")
    if dim == 1:
        return gaussian_1d(param or "mean_var")
    allowed = "cholesky" if name == "gaussian" else "mean_logstd"
    if param not in (None, allowed):
        hint = ("; the 1-D parameterizations need a 1-D target" if param in PARAMS_1D else "")
        raise ValueError(f"param for a {dim}-D {name} q must be {allowed!r}, got {param!r}{hint}.")
    return full_gaussian(dim) if name == "gaussian" else diag_gaussian(dim)


def convert(theta: Array, source: Family, target: Family) -> Array:
    """The same distribution in another parameterization: θ in ``source`` ↦ θ in ``target``.

    Args:
      theta: θ in ``source``'s parameterization.
      source, target: two families of the same dimension.

    Returns:
      θ in ``target``'s parameterization (via the moments).

    Example:
      >>> theta = convert(jnp.array([1.0, 2.0]), gaussian_1d("mean_var"), gaussian_1d("mean_precision"))
      >>> [float(t) for t in theta]
      [1.0, 0.5]
    """
    if source.dim != target.dim:
        raise ValueError(f"cannot convert a {source.dim}-D {source.name} to a {target.dim}-D {target.name}.")
    return target.from_moments(*source.moments(theta))


def entropy(cov_chol: Array) -> Array:
    r"""Entropy of N(m, C) from its Cholesky factor L (C = L Lᵀ).

    .. math::  H(q) = \tfrac d2 (1 + \log 2\pi) + \sum_i \log L_{ii}

    Args:
      cov_chol: L, the lower Cholesky factor of C, (d, d).

    Returns:
      H(q) in nats.

    Example:
      >>> import numpy as np
      >>> h = entropy(jnp.linalg.cholesky(jnp.array([[2.0, 0.5], [0.5, 1.0]])))
      >>> bool(abs(h - 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * np.array([[2.0, 0.5], [0.5, 1.0]])))) < 1e-12)
      True
    """
    d = cov_chol.shape[-1]
    return 0.5 * d * (1.0 + jnp.log(2.0 * jnp.pi)) + jnp.sum(jnp.log(jnp.diagonal(cov_chol)))
