r"""Target distributions p: Gaussians and Gaussian mixtures in d dimensions.

A target is a :class:`Mixture` (a single Gaussian is a mixture of one), a pytree of arrays so
that objectives take it as data: a new target of the same shape reuses compiled code.

.. math::  p(x) = \sum_{i=1}^k w_i \, \mathcal N(x; m_i, C_i)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import multivariate_normal

from gdlab.specs import MixtureSpec, parse_distribution

Array = jax.Array


class Mixture(NamedTuple):
    """A Gaussian mixture: weights (k,), means (k, d), covariances (k, d, d)."""

    weights: Array
    means: Array
    covs: Array

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def n_components(self) -> int:
        return self.weights.shape[-1]


def mixture(spec: MixtureSpec | str) -> Mixture:
    """The target named by a spec (text like ``"0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"``, variances).

    Args:
      spec: a spec text or a parsed :class:`gdlab.specs.MixtureSpec`.

    Returns:
      A :class:`Mixture` of JAX arrays.

    Example:
      >>> p = mixture("0.5*N(-2, 0.25) + 0.5*N(2, 0.25)")
      >>> p.n_components, p.dim, p.covs[:, 0, 0].tolist()
      (2, 1, [0.25, 0.25])
    """
    if isinstance(spec, str):
        spec = parse_distribution(spec)
    # device_put, not jnp.asarray: the latter compiles a small program per shape (tens of ms at start-up)
    return Mixture(*(jax.device_put(np.asarray(a, dtype=np.float64)) for a in (spec.weights, spec.means, spec.covs)))


def log_prob(p: Mixture, x: Array) -> Array:
    r"""log p(x) for x of shape (..., d), by log-sum-exp over the components.

    .. math::  \log p(x) = \log \sum_i \exp\big(\log w_i + \log \mathcal N(x; m_i, C_i)\big)

    Args:
      p: the mixture.
      x: points, shape (..., d).

    Returns:
      log p(x), shape (...).

    Example:
      >>> import numpy as np
      >>> lp = log_prob(mixture("0.5*N(-50, 1) + 0.5*N(50, 1)"), jnp.array([[50.0]]))
      >>> bool(abs(lp[0] - (np.log(0.5) - 0.5 * np.log(2 * np.pi))) < 1e-12)   # no underflow far out
      True
    """
    comp = jax.vmap(lambda m, c: multivariate_normal.logpdf(x, m, c), out_axes=-1)(p.means, p.covs)
    return logsumexp(comp + jnp.log(p.weights), axis=-1)


def moments(p: Mixture) -> tuple[Array, Array]:
    r"""Mean and covariance of the mixture.

    .. math::  \bar m = \sum_i w_i m_i, \qquad
               \bar C = \sum_i w_i (C_i + m_i m_i^\top) - \bar m \bar m^\top

    Args:
      p: the mixture.

    Returns:
      (mean (d,), covariance (d, d)): the forward-KL optimum of a Gaussian q (the moment match).

    Example:
      >>> m, c = moments(mixture("0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"))
      >>> float(m[0]), float(c[0, 0])                 # 0.25 + 2²
      (0.0, 4.25)
    """
    w = p.weights
    mean = jnp.einsum("k,kd->d", w, p.means)
    second = jnp.einsum("k,kde->de", w, p.covs + jnp.einsum("kd,ke->kde", p.means, p.means))
    return mean, second - jnp.outer(mean, mean)


def sample(p: Mixture, n: int, seed: int = 0) -> np.ndarray:
    """n samples from p (NumPy, seeded): for Monte Carlo estimates made once, outside jit.

    Args:
      p: the mixture.
      n: how many samples.
      seed: the NumPy generator's seed.

    Returns:
      An array (n, d).

    Example:
      >>> x = sample(mixture("N(3, 4)"), 100_000, seed=0)
      >>> x.shape, bool(abs(x.mean() - 3) < 0.05), bool(abs(x.var() - 4) < 0.1)
      ((100000, 1), True, True)
    """
    rng = np.random.default_rng(seed)
    w = np.asarray(p.weights, dtype=np.float64)
    comp = rng.choice(len(w), size=n, p=w / w.sum())
    chols = np.linalg.cholesky(np.asarray(p.covs, dtype=np.float64))
    z = rng.standard_normal((n, p.dim))
    return np.asarray(p.means)[comp] + np.einsum("nij,nj->ni", chols[comp], z)
