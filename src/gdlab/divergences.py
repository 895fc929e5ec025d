r"""KL divergence in both directions, cross-entropy and entropy, for Gaussian q and mixture p.

.. math::

   \mathrm{KL}(p\,\|\,q) = \mathbb E_p[\log p - \log q] = H(p, q) - H(p)
   \quad\text{(forward: mass-covering, maximum likelihood)}

   \mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q - \log p] = -H(q) - \mathbb E_q[\log p]
   \quad\text{(reverse: mode-seeking, variational inference)}

How each term is computed, for q = N(m, C) with C = L Lᵀ:

- Gaussian p: both directions in closed form (:func:`kl_gaussian`).
- Mixture p, forward: H(p, q) = −E_p[log q] is exact from p's mean and covariance (log q is
  quadratic in x); H(p) is a constant of the fit, computed once (:func:`mixture_entropy`).
- Mixture p, reverse: E_q[log p] has no closed form. log p is smooth but has a near-kink
  wherever the dominant component changes, so Gauss–Hermite under q is badly wrong for a wide
  q (errors of 1e-3 and a fake optimum). In 1-D and 2-D gdlab integrates along lines
  x = a + b t, t ~ N(0, 1), with a composite Gauss–Legendre rule whose panel boundaries sit on
  the switch points (where w_i N_i = w_j N_j, the roots of a quadratic in t) and are graded
  geometrically around them on the scale of the transition width 1/|slope|; in 2-D the outer
  integral's panels are graded around the points where a line is tangent to a switch conic
  (the roots of a quadratic discriminant). Node counts are fixed (static shapes under jit):
  boundaries move with q, and they carry no gradient, so the gradient is the same rule applied
  to the reparameterized integrand ∇θ log p(m + L z). In d ≥ 3: reparameterized Monte Carlo
  with fixed, seeded, antithetic samples (a deterministic objective for a given seed).
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from gdlab.families import cholesky, solve_lower
from gdlab.families import entropy as gaussian_entropy_from_chol
from gdlab.targets import Mixture, log_prob, moments, sample

Array = jax.Array

#: Half-width of the integration range in standard-normal units: the tail beyond ±10 holds
#: 1.5e-23 of the mass, far below float64 resolution even where log p is large.
TRUNCATION = 10.0
#: Gauss–Legendre nodes per panel.
NODES_PER_PANEL = 16
#: Uniform panels spanning [-T, T] on each line (the switch-point panels come on top).
UNIFORM_PANELS = 24
#: Offsets around a switch point, in units of the transition width 1/|slope|.
_SWITCH_GRADING = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
#: Offsets around a tangency point of the 2-D outer integral, in standard-normal units.
_TANGENT_GRADING = np.array([0.0] + [2.0 ** -j for j in range(7, -2, -1)])


@lru_cache(maxsize=None)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def kl_gaussian(m0: Array, c0: Array, m1: Array, c1: Array) -> Array:
    r"""KL(N(m0, C0) ‖ N(m1, C1)) in closed form.

    .. math::  \tfrac12\left[\operatorname{tr}(C_1^{-1}C_0) + (m_1-m_0)^\top C_1^{-1}(m_1-m_0)
               - d + \log\frac{|C_1|}{|C_0|}\right]

    Args:
      m0, c0: the first Gaussian's mean (d,) and covariance (d, d).
      m1, c1: the second's.

    Returns:
      The KL divergence, a scalar ≥ 0.

    Example:
      >>> import jax.numpy as jnp
      >>> float(kl_gaussian(jnp.zeros(1), jnp.eye(1), jnp.ones(1), jnp.eye(1)))
      0.5
    """
    d = m0.shape[-1]
    l0, l1 = cholesky(c0), cholesky(c1)
    a = solve_lower(l1, l0)
    r = solve_lower(l1, m1 - m0)
    logdet = 2.0 * (jnp.sum(jnp.log(jnp.diagonal(l1))) - jnp.sum(jnp.log(jnp.diagonal(l0))))
    return 0.5 * (jnp.sum(a * a) + jnp.sum(r * r) - d + logdet)


def gaussian_cross_entropy(mean_p: Array, cov_p: Array, m: Array, c: Array) -> Array:
    r"""H(p, q) = −E_p[log q] for q = N(m, C) and any p with mean m_p and covariance C_p.

    .. math::  \tfrac12\left[d\log 2\pi + \log|C| + \operatorname{tr}(C^{-1}C_p)
               + (m_p-m)^\top C^{-1}(m_p-m)\right]

    Exact, since log q is quadratic in x: only p's first two moments enter.

    Args:
      mean_p, cov_p: p's mean (d,) and covariance (d, d).
      m, c: q's mean and covariance.

    Returns:
      H(p, q), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> h = gaussian_cross_entropy(jnp.ones(1), jnp.eye(1), jnp.zeros(1), jnp.eye(1))
      >>> round(float(h), 6)                      # ½ log 2π + ½ (1 + 1²)
      1.918939
    """
    d = m.shape[-1]
    chol = cholesky(c)
    a = solve_lower(chol, cov_p)
    a = solve_lower(chol, a.T)                                     # L⁻¹ C_p L⁻ᵀ
    r = solve_lower(chol, mean_p - m)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return 0.5 * (d * jnp.log(2.0 * jnp.pi) + logdet + jnp.trace(a) + jnp.sum(r * r))


def cross_entropy(p: Mixture, mean: Array, cov: Array) -> Array:
    r"""H(p, q) = −E_p[log q] for a mixture p and q = N(mean, cov), exactly from p's moments.

    Args:
      p: the mixture (:func:`gdlab.targets.mixture`).
      mean, cov: q's mean (d,) and covariance (d, d).

    Returns:
      H(p, q), a scalar (:func:`gaussian_cross_entropy` of p's mean and covariance).

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab.targets import mixture
      >>> h = cross_entropy(mixture("0.5*N(-1, 1) + 0.5*N(1, 1)"), jnp.zeros(1), jnp.eye(1))
      >>> round(float(h), 6)                      # ½ log 2π + ½ E_p[x²] = ½ log 2π + ½ · 2
      1.918939
    """
    mean_p, cov_p = moments(p)
    return gaussian_cross_entropy(mean_p, cov_p, mean, cov)


def gaussian_entropy(c: Array) -> Array:
    r"""H(N(m, C)) = ½ log |2πe C|.

    .. math::  H = \tfrac12 \log\det(2\pi e\, C)

    Args:
      c: the covariance C, (d, d).

    Returns:
      The entropy in nats, a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(gaussian_entropy(jnp.eye(1))), 6)        # ½ log 2πe
      1.418939
    """
    return gaussian_entropy_from_chol(cholesky(c))


# --- integrals of log p along a line ------------------------------------------------------------

def _line_quadratics(p: Mixture, a: Array, b: Array) -> tuple[Array, Array, Array]:
    r"""Coefficients with log(w_i N_i(a + b t)) = c_i + d_i t + e_i t², one per component."""
    dim = p.dim
    chol = cholesky(p.covs)
    if dim == 1:                                     # C⁻¹ without LAPACK (see families.cholesky)
        prec = 1.0 / p.covs
    else:
        prec = jax.vmap(lambda l: jax.scipy.linalg.cho_solve((l, True), jnp.eye(dim, dtype=l.dtype)))(chol)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    u = a - p.means                                  # (k, d)
    pb = jnp.einsum("kde,e->kd", prec, b)
    pu = jnp.einsum("kde,ke->kd", prec, u)
    e = -0.5 * jnp.einsum("d,kd->k", b, pb)
    d = -jnp.einsum("kd,kd->k", u, pb)
    c = (jnp.log(p.weights) - 0.5 * (dim * jnp.log(2.0 * jnp.pi) + logdet)
         - 0.5 * jnp.einsum("kd,kd->k", u, pu))
    return c, d, e


def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(k, 1)
    return i, j


def _quadratic_roots(a2: Array, a1: Array, a0: Array) -> tuple[Array, Array]:
    """Real roots of a2 t² + a1 t + a0 (stable form); NaN where there is none."""
    disc = a1 * a1 - 4.0 * a2 * a0
    sq = jnp.sqrt(jnp.where(disc >= 0, disc, jnp.nan))
    q = -0.5 * (a1 + jnp.where(a1 >= 0, 1.0, -1.0) * sq)
    return q / a2, a0 / q


def _graded(points: Array, widths: Array, grading: np.ndarray, limit: float) -> Array:
    """Points ± widths·grading, invalid ones moved to -limit (giving empty panels)."""
    offsets = np.concatenate([grading, -grading[1:]])
    pts = points[..., None] + widths[..., None] * offsets
    pts = jnp.where(jnp.isfinite(pts), pts, -limit)
    return jnp.clip(pts, -limit, limit).ravel()


def _panel_rule(boundaries: Array, n: int) -> tuple[Array, Array]:
    """Nodes and weights of an n-point Gauss–Legendre rule on every panel between boundaries."""
    xi, wi = _gauss_legendre(n)
    bnd = jnp.sort(jax.lax.stop_gradient(boundaries))
    half = 0.5 * (bnd[1:] - bnd[:-1])
    mid = 0.5 * (bnd[1:] + bnd[:-1])
    return (mid[:, None] + half[:, None] * xi).ravel(), (half[:, None] * wi).ravel()


def _std_normal_pdf(t: Array) -> Array:
    return jnp.exp(-0.5 * t * t) / jnp.sqrt(2.0 * jnp.pi)


def _switch_boundaries(c: Array, d: Array, e: Array) -> Array:
    """Panel boundaries in t around each point where two components trade dominance."""
    i, j = _pairs(c.shape[0])
    a2, a1, a0 = e[i] - e[j], d[i] - d[j], c[i] - c[j]
    roots = jnp.concatenate(_quadratic_roots(a2, a1, a0))
    slope = jnp.abs(jnp.concatenate([a1, a1]) + 2.0 * jnp.concatenate([a2, a2]) * roots)
    width = jnp.minimum(1.0 / slope, TRUNCATION)
    return _graded(roots, width, _SWITCH_GRADING, TRUNCATION)


def _uniform_boundaries(dtype) -> Array:
    return jnp.linspace(-TRUNCATION, TRUNCATION, UNIFORM_PANELS + 1, dtype=dtype)


def expected_log_mixture_on_line(p: Mixture, a: Array, b: Array) -> Array:
    r"""∫ φ(t) log p(a + b t) dt over t ∈ [−10, 10], φ the standard normal density.

    For q = N(m, v) in 1-D this is E_q[log p] with a = m, b = √v. The rule is a composite
    Gauss–Legendre one whose panels break where the dominant component changes.

    Args:
      p: the mixture.
      a, b: the line's offset and direction, each shape (d,).

    Returns:
      The integral, a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab.targets import mixture
      >>> e = expected_log_mixture_on_line(mixture("N(0, 1)"), jnp.zeros(1), jnp.ones(1))
      >>> round(float(e), 10)                     # −½ log 2π − ½ E[t²]
      -1.4189385332
    """
    c, d, e = _line_quadratics(p, a, b)
    cs, ds, es = (jax.lax.stop_gradient(x) for x in (c, d, e))
    bounds = _uniform_boundaries(a.dtype)
    if p.n_components > 1:
        bounds = jnp.concatenate([bounds, _switch_boundaries(cs, ds, es)])
    t, w = _panel_rule(bounds, NODES_PER_PANEL)
    logp = logsumexp(c[:, None] + d[:, None] * t + e[:, None] * t * t, axis=0)
    return jnp.sum(w * _std_normal_pdf(t) * logp)


def _expected_log_mixture_2d(p: Mixture, mean: Array, chol: Array) -> Array:
    """E_q[log p] in 2-D: an outer rule over z₁, the line rule over z₂ (x = m + L z)."""
    l0, l1 = chol[:, 0], chol[:, 1]
    inner = lambda z1: expected_log_mixture_on_line(p, mean + l0 * z1, l1)  # noqa: E731
    bounds = _uniform_boundaries(mean.dtype)
    if p.n_components > 1:
        # Where a line z₁ = const touches a switch conic the inner integral loses smoothness:
        # there the inner quadratic has a double root, i.e. its discriminant (a quadratic in z₁,
        # recovered exactly from three values) vanishes.
        zs = jnp.array([-1.0, 0.0, 1.0], mean.dtype)
        cde = jax.vmap(lambda z1: _line_quadratics(p, mean + l0 * z1, l1))(jax.lax.stop_gradient(zs))
        c, d, e = (jax.lax.stop_gradient(x) for x in cde)
        i, j = _pairs(p.n_components)
        disc = (d[:, i] - d[:, j]) ** 2 - 4.0 * (e[:, i] - e[:, j]) * (c[:, i] - c[:, j])
        q0, q1 = disc[1], 0.5 * (disc[2] - disc[0])
        q2 = 0.5 * (disc[2] + disc[0]) - disc[1]
        roots = jnp.concatenate(_quadratic_roots(q2, q1, q0))
        bounds = jnp.concatenate([bounds, _graded(roots, jnp.ones_like(roots), _TANGENT_GRADING, TRUNCATION)])
    z1, w = _panel_rule(bounds, NODES_PER_PANEL)
    return jnp.sum(w * _std_normal_pdf(z1) * jax.vmap(inner)(z1))


def expected_log_mixture(p: Mixture, mean: Array, chol: Array, eps: Array | None = None) -> Array:
    r"""E_q[log p(x)] for q = N(mean, L Lᵀ) and a mixture p.

    Deterministic composite Gauss–Legendre quadrature in 1-D and 2-D (accurate to ~1e-12);
    in d ≥ 3 the Monte Carlo average (1/S) Σ_s log p(mean + L ε_s) over the given ε (S, d).

    Args:
      p: the mixture.
      mean: q's mean, (d,).
      chol: L, the lower Cholesky factor of q's covariance, (d, d).
      eps: standard-normal draws (S, d), needed in d ≥ 3 (:func:`standard_normal_samples`).

    Returns:
      E_q[log p], a scalar.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from gdlab.targets import mixture
      >>> p = mixture("0.5*N([0, 0], 1) + 0.5*N([0, 0], 1)")      # two equal halves: N(0, I)
      >>> e = jax.jit(expected_log_mixture)          # compiled: one program, not hundreds of small ops
      >>> round(float(e(p, jnp.zeros(2), jnp.eye(2))), 10)       # −log 2π − 1
      -2.8378770664
    """
    if p.dim == 1:
        return expected_log_mixture_on_line(p, mean, chol[:, 0])
    if p.dim == 2:
        return _expected_log_mixture_2d(p, mean, chol)
    if eps is None:
        raise ValueError(f"eps (Monte Carlo samples of shape (S, {p.dim})) is needed for a {p.dim}-D mixture.")
    return jnp.mean(log_prob(p, mean + eps @ chol.T))


def standard_normal_samples(n: int, dim: int, seed: int) -> np.ndarray:
    """n antithetic standard-normal draws (n even): ε and −ε, so odd moments cancel exactly.

    Args:
      n: how many draws (an odd n gives n − 1).
      dim: d.
      seed: the NumPy generator's seed.

    Returns:
      An array (n, d).

    Example:
      >>> eps = standard_normal_samples(4, 2, seed=0)
      >>> eps.shape, float(abs(eps.mean(0)).max())
      ((4, 2), 0.0)
    """
    if n < 2:
        raise ValueError(f"samples must be at least 2, got {n}.")
    half = np.random.default_rng(seed).standard_normal((n // 2, dim))
    return np.concatenate([half, -half])


def mixture_entropy(p: Mixture, samples: int = 200_000, seed: int = 0) -> float:
    r"""H(p) = −E_p[log p] of a mixture, as a float (a constant of any fit to p).

    .. math::  H(p) = -\sum_i w_i\, \mathbb E_{N_i}[\log p]

    Closed form for one component; each E_{N_i}[log p] by the quadrature of
    :func:`expected_log_mixture` in 1-D and 2-D; Monte Carlo with ``samples`` draws in d ≥ 3.

    Args:
      p: the mixture.
      samples, seed: the Monte Carlo draws for d ≥ 3.

    Returns:
      H(p) in nats.

    Example:
      >>> from gdlab.targets import mixture
      >>> import numpy as np
      >>> h = mixture_entropy(mixture("0.5*N(-50, 1) + 0.5*N(50, 1)"))   # far apart: H(N(0,1)) + log 2
      >>> bool(abs(h - (0.5 * np.log(2 * np.pi * np.e) + np.log(2))) < 1e-10)
      True
    """
    if p.n_components == 1:           # ½ log det(2πe C) on the host: eager JAX ops each compile at start-up
        sign, logdet = np.linalg.slogdet(2.0 * np.pi * np.e * np.asarray(p.covs, dtype=np.float64)[0])
        return float(0.5 * logdet) if sign > 0 else float("nan")
    if p.dim <= 2:
        return float(_quadrature_entropy(p))
    x = sample(p, samples, seed)
    return float(-np.mean(np.asarray(log_prob(p, jnp.asarray(x)))))


@jax.jit
def _quadrature_entropy(p: Mixture) -> Array:
    # compiled once per number of components and dimension: traced op by op it took ~0.1 s a call,
    # holding the GIL (the explorer computes it for every run it starts)
    chols = cholesky(p.covs)
    terms = jax.vmap(lambda m, l: expected_log_mixture(p, m, l))(p.means, chols)
    return -jnp.sum(p.weights * terms)


def kl_forward(p: Mixture, mean: Array, cov: Array, entropy_p: Array | float | None = None) -> Array:
    r"""KL(p ‖ q) = H(p, q) − H(p) for q = N(mean, cov).

    .. math::  \mathrm{KL}(p\,\|\,q) = \mathbb E_p[\log p - \log q] = H(p, q) - H(p)

    Args:
      p: the target mixture.
      mean, cov: q's mean (d,) and covariance (d, d).
      entropy_p: H(p); pass it when calling repeatedly for the same p (it is a constant).

    Returns:
      The forward KL, a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab.targets import mixture
      >>> p = mixture("N(0, 1)")
      >>> float(kl_forward(p, jnp.ones(1), jnp.eye(1)))
      0.5
    """
    if p.n_components == 1:
        return kl_gaussian(p.means[0], p.covs[0], mean, cov)
    if entropy_p is None:
        entropy_p = mixture_entropy(p)
    return cross_entropy(p, mean, cov) - entropy_p


def kl_reverse(p: Mixture, mean: Array, cov: Array, eps: Array | None = None) -> Array:
    r"""KL(q ‖ p) = −H(q) − E_q[log p] for q = N(mean, cov).

    .. math::  \mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q - \log p] = -H(q) - \mathbb E_q[\log p]

    Args:
      p: the target mixture.
      mean, cov: q's mean (d,) and covariance (d, d).
      eps: the Monte Carlo draws (S, d) used for mixtures in d ≥ 3.

    Returns:
      The reverse KL, a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab.targets import mixture
      >>> p = mixture("N(0, 1)")
      >>> float(kl_reverse(p, jnp.ones(1), jnp.eye(1)))
      0.5
    """
    if p.n_components == 1:
        return kl_gaussian(mean, cov, p.means[0], p.covs[0])
    chol = cholesky(cov)
    return -gaussian_entropy_from_chol(chol) - expected_log_mixture(p, mean, chol, eps)
