r"""Invariance to the parameterization: the same optimizer, the same q, every parameterization.

Plain gradient descent moves θ along −∇_θL, and how far q moves depends on how θ names q
(variance or precision, the source text's example). The natural gradient −F(θ)⁻¹∇_θL is a
tangent vector of the family of distributions, the same in every parameterization: if
θ = θ(φ) with Jacobian J, then F_φ = JᵀF_θJ and ∇_φL = Jᵀ∇_θL, so
J F_φ⁻¹∇_φL = F_θ⁻¹∇_θL. Natural-gradient paths from the same q therefore agree to first order
in the step size (they differ by O(η²) per step, through the curvature of each chart), while
plain-gradient paths separate at first order.

:func:`compare_params` measures this: it runs each optimizer from the same q in each
parameterization for the same number of steps, and reports, for every pair of
parameterizations, the largest KL between the q's they reached at the same step.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from gdlab import optim
from gdlab.families import PARAMS_1D
from gdlab.fitting import FitResult, fit
from gdlab.specs import MixtureSpec

DEFAULT_PARAMS = ("mean_var", "mean_std", "mean_logstd", "mean_precision", "natural", "expectation")


def gaussian_kl_1d(m0: np.ndarray, v0: np.ndarray, m1: np.ndarray, v1: np.ndarray) -> np.ndarray:
    r"""KL(N(m0, v0) ‖ N(m1, v1)), elementwise, in NumPy.

    .. math::  \tfrac12\left(\frac{v_0}{v_1} + \frac{(m_1-m_0)^2}{v_1} - 1 + \log\frac{v_1}{v_0}\right)

    Args:
      m0, v0: the first normal's means and variances (arrays that broadcast).
      m1, v1: the second's.

    Returns:
      The KL divergences, elementwise.

    Example:
      >>> float(gaussian_kl_1d(0.0, 1.0, 1.0, 1.0))
      0.5
    """
    m0, v0, m1, v1 = (np.asarray(a, dtype=float) for a in (m0, v0, m1, v1))
    ratio = v0 / v1
    return 0.5 * (ratio + (m1 - m0) ** 2 / v1 - 1.0 - np.log(ratio))


def symmetric_path_gap(a: FitResult, b: FitResult) -> np.ndarray:
    r"""max(KL(q_a‖q_b), KL(q_b‖q_a)) at each step both runs reached (NaN where either left the domain).

    .. math::  \Delta_t = \max\big(\mathrm{KL}(q^a_t\|q^b_t),\ \mathrm{KL}(q^b_t\|q^a_t)\big)

    Args:
      a, b: two 1-D fits (:class:`gdlab.fitting.FitResult`), typically one in each parameterization.

    Returns:
      Δ_t for t up to the shorter run's last step.

    Example:
      >>> from gdlab import fit, optim
      >>> a = fit("N(3, 0.5)", "N(0, 5)", optimizer=optim.gd(0.01), param="mean_var", max_steps=3, tol=0)
      >>> b = fit("N(3, 0.5)", "N(0, 5)", optimizer=optim.gd(0.01), param="mean_precision", max_steps=3, tol=0)
      >>> gap = symmetric_path_gap(a, b)
      >>> float(gap[0]), bool(gap[-1] > 1e-4)       # same start; plain GD drifts apart
      (0.0, True)
    """
    n = min(len(a.trace), len(b.trace))
    ma, va, mb, vb = a.trace.mean[:n], a.trace.var[:n], b.trace.mean[:n], b.trace.var[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.maximum(gaussian_kl_1d(ma, va, mb, vb), gaussian_kl_1d(mb, vb, ma, va))
    gap[~((va > 0) & (vb > 0))] = np.nan
    return gap


@dataclass(frozen=True)
class PairGap:
    """For one pair of parameterizations and one optimizer: the largest KL between their q's."""

    params: tuple[str, str]
    optimizer: str
    max_kl: float          # over the steps both runs reached; NaN if none was comparable
    steps_compared: int    # how many steps that is (fewer than asked if a run diverged)


@dataclass(frozen=True)
class ParamComparison:
    """The outcome of :func:`compare_params`.

    Attributes:
      optimizers: the optimizers' names, e.g. ``("natural", "gd")``.
      params: the parameterizations compared.
      runs: ``runs[(optimizer, param)]`` is that run's :class:`gdlab.fitting.FitResult`.
      gaps: one :class:`PairGap` per (pair, optimizer).
      gap_curves: ``gap_curves[(optimizer, a, b)]``: the symmetric KL per step, for plots.
    """

    optimizers: tuple[str, ...]
    params: tuple[str, ...]
    steps: int
    lr: float
    runs: dict
    gaps: tuple[PairGap, ...]
    gap_curves: dict

    def max_gap(self, optimizer: str) -> float:
        """The largest KL between any two parameterizations' q's at the same step, for ``optimizer``."""
        values = [g.max_kl for g in self.gaps if g.optimizer == optimizer]
        return float(np.nanmax(values)) if values and not np.all(np.isnan(values)) else float("nan")


def _optimizer(name: str, lr: float, momentum: float | None, damping: float | None):
    """``name`` with the options that apply to it (one call may list options for several optimizers)."""
    return optim.by_name(name, lr, momentum if name in ("momentum", "nesterov", "natural") else None,
                         damping=damping if name == "natural" else None)


def compare_params(target: str | MixtureSpec, init: str | MixtureSpec = "N(0, 5)", divergence: str = "forward",
                   optimizers: tuple[str, ...] = ("natural", "gd"), lr: float = 0.05, steps: int = 200,
                   params: tuple[str, ...] = DEFAULT_PARAMS, momentum: float | None = None,
                   damping: float | None = None) -> ParamComparison:
    r"""Run each optimizer from the same q in each parameterization and measure how far apart the paths are.

    For every pair (a, b) of parameterizations and every optimizer the result holds

    .. math::  \max_{t \le T} \max\big(\mathrm{KL}(q^a_t\|q^b_t),\ \mathrm{KL}(q^b_t\|q^a_t)\big)

    over the steps t both runs reached (a run that diverges stops early; the pair is then
    compared up to its last step). Every run makes exactly ``steps`` updates (no early stop).

    Args:
      target, init: 1-D distribution specs (the parameterizations are those of a 1-D Gaussian).
      divergence: ``forward`` or ``reverse``.
      optimizers: names from :data:`gdlab.optim.OPTIMIZERS`; the default contrasts the natural
        gradient with plain gradient descent.
      lr, steps: the same step size and number of steps for every run.
      params: parameterizations to compare (two or more of the six).
      momentum, damping: passed to the optimizers that take them.

    Returns:
      A :class:`ParamComparison`.

    Example:
      >>> res = compare_params("N(3, 0.5)", "N(0, 5)", lr=0.01, steps=50, params=("mean_var", "mean_precision"))
      >>> res.max_gap("natural") < 1e-4 < res.max_gap("gd")
      True
    """
    params = tuple(params)
    unknown = [p for p in params if p not in PARAMS_1D]
    if unknown:
        raise ValueError(f"params must be among {', '.join(PARAMS_1D)}, got {unknown[0]!r}.")
    if len(set(params)) < 2:
        raise ValueError(f"compare at least two different parameterizations, got {', '.join(params) or 'none'}.")
    for name in optimizers:
        if name not in optim.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(optim.OPTIMIZERS)}, got {name!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}.")
    runs = {}
    for name in optimizers:
        opt = _optimizer(name, lr, momentum, damping)
        for param in params:
            runs[(name, param)] = fit(target, init, divergence, opt, param=param, max_steps=steps, tol=0.0)
            if runs[(name, param)].family.dim != 1:
                raise ValueError("compare-params compares the parameterizations of a 1-D Gaussian; give a 1-D target.")
    gaps, curves = [], {}
    for name in optimizers:
        for a, b in itertools.combinations(params, 2):
            curve = symmetric_path_gap(runs[(name, a)], runs[(name, b)])
            curves[(name, a, b)] = curve
            finite = curve[np.isfinite(curve)]
            gaps.append(PairGap((a, b), name, float(finite.max()) if finite.size else float("nan"), int(finite.size)))
    return ParamComparison(tuple(optimizers), params, steps, lr, runs, tuple(gaps), curves)
