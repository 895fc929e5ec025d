r"""Fit a Gaussian q to a target p by gradient descent on KL divergence, in either direction.

.. math::

   \text{forward:}\ \min_\theta \mathrm{KL}(p\,\|\,q_\theta) \qquad
   \text{reverse:}\ \min_\theta \mathrm{KL}(q_\theta\,\|\,p)

Forward KL is mass-covering: its minimiser over Gaussians is the moment match
(mean Σwᵢmᵢ, variance Σwᵢ(vᵢ+mᵢ²) − mean²). Reverse KL is mode-seeking: started near one
mode of a well-separated mixture it settles on that mode, and it can have several local minima.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdlab import divergences, engine, optim, stopping
from gdlab.families import Family, make_family
from gdlab.fisher import analytic_fisher, is_singular
from gdlab.specs import MixtureSpec, SpecError, parse_distribution
from gdlab.targets import Mixture, mixture

DIVERGENCES = ("forward", "reverse")


class FitData(NamedTuple):
    """The data of a KL objective: the target, its entropy H(p), Monte Carlo draws (d ≥ 3)."""

    target: Mixture
    entropy_p: jax.Array
    eps: jax.Array


@dataclass(frozen=True)
class Gaussian:
    """A fitted q = N(mean, var): floats in 1-D; a vector and a covariance matrix in d-D."""

    mean: Any
    var: Any

    @property
    def cov(self) -> Any:
        return self.var

    def spec(self) -> str:
        """The distribution in the spec language, e.g. ``N(2.0, 1.0)``."""
        if np.ndim(self.mean) == 0:
            return f"N({float(self.mean)!r}, {float(self.var)!r})"
        return f"N({np.asarray(self.mean).tolist()}, {np.asarray(self.var).tolist()})"


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
      q: the final Gaussian (``q.mean``, ``q.var``).
      loss: the minimised divergence at the final q.
      kl_forward, kl_reverse: KL(p‖q) and KL(q‖p) at the final q.
      steps: updates made. stop_reason: ``converged``, ``max_steps`` or ``diverged``.
      message: one sentence on how the run ended. elapsed: seconds, compilation included.
      params: the final θ. family: the family and parameterization used.
      trace: per-step ``step, loss, grad_norm, lr, params, mean, var, kl_forward, kl_reverse``
        and ``step_kl``, KL(q_t‖q_{t+1}): how far in distribution each step moved q.
    """

    q: Gaussian
    loss: float
    kl_forward: float
    kl_reverse: float
    steps: int
    stop_reason: str
    message: str
    elapsed: float
    params: np.ndarray
    family: Family
    divergence: str
    trace: engine.Trace


def _moments_for_display(family: Family, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, cov = family.moments(theta)
    if family.dim == 1:
        return mean[0], cov[0, 0]
    return mean, cov


def _kl(direction: str, family: Family, theta: jax.Array, data: FitData) -> jax.Array:
    mean, cov = family.moments(theta)
    if direction == "forward":
        return divergences.kl_forward(data.target, mean, cov, data.entropy_p)
    return divergences.kl_reverse(data.target, mean, cov, data.eps)


def _other(divergence: str) -> str:
    return "reverse" if divergence == "forward" else "forward"


def _kl_between(family: Family, theta: jax.Array, theta_next: jax.Array) -> jax.Array:
    m0, c0 = family.moments(theta)
    m1, c1 = family.moments(theta_next)
    return divergences.kl_gaussian(m0, c0, m1, c1)


@functools.lru_cache(maxsize=None)
def _geometry_of(family: Family):
    """(θ, data) ↦ q's Fisher at θ with the exact KL from q_θ, for natural-gradient optimizers.

    Cached so compiled runs are reused.
    """

    def geometry(theta, data):
        return optim.Geometry(fisher=analytic_fisher(family, theta),
                              kl=lambda theta_next: _kl_between(family, theta, theta_next))

    return geometry


@functools.lru_cache(maxsize=None)
def _step_kl(family: Family):
    """KL(q_θ‖q_θ′) for consecutive rows of a trace, vectorised and compiled once per family."""

    return jax.jit(jax.vmap(functools.partial(_kl_between, family)))


def step_kl(family: Family, params: np.ndarray) -> np.ndarray:
    """KL(q_{θ_t}‖q_{θ_{t+1}}) for each row t of a trace's ``params``: how far in distribution
    each step moved q (the quantity a KL trust region bounds). The last row, with no step after
    it, is NaN.

    Args:
      family: q's family (:func:`gdlab.families.make_family`).
      params: θ_t per row, shape (T, P).

    Returns:
      KL(q_t‖q_{t+1}), shape (T,).

    Example:
      >>> from gdlab.families import make_family
      >>> fam = make_family("gaussian", 1, "mean_var")
      >>> [round(float(k), 12) for k in step_kl(fam, np.array([[0.0, 1.0], [1.0, 1.0]]))]
      [0.5, nan]
    """
    params = np.asarray(params)
    out = np.full(len(params), np.nan)
    steps = len(params) - 1
    if steps > 0:
        # Traces of every length would each compile the program for their shape (14 compilations
        # in examples/kl_gradient_descent.py's 15 fits): the pairs are padded to a power of two
        # with the last θ (KL 0, dropped), so a handful of shapes serve every run.
        padded = np.concatenate([params, np.repeat(params[-1:], max(64, 1 << (steps - 1).bit_length()) - steps,
                                                   axis=0)])
        out[:-1] = np.asarray(_step_kl(family)(padded[:-1], padded[1:]))[:steps]
    return out


@functools.lru_cache(maxsize=None)
def _kl_functions(family: Family, divergence: str, trace_both: bool):
    """(loss, metrics) for a family and direction; cached so compiled runs are reused.

    The metrics hold only the direction not being minimised: the minimised one is the loss,
    which the engine records already (it is copied to ``kl_<direction>`` after the run).
    """

    def loss(theta, data: FitData):
        return jnp.where(family.in_domain(theta), _kl(divergence, family, theta, data), jnp.nan)

    def metrics(theta, data: FitData):
        mean, var = _moments_for_display(family, theta)
        out = dict(mean=mean, var=var)
        if trace_both:
            out["kl_" + _other(divergence)] = _kl(_other(divergence), family, theta, data)
        return out

    return loss, metrics


def _as_spec(value: str | MixtureSpec, what: str) -> MixtureSpec:
    if isinstance(value, MixtureSpec):
        return value
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a distribution spec such as \"N(0, 5)\", got {value!r}.")
    return parse_distribution(value, what=what)


def kl_objective(target: str | MixtureSpec, family: Family, divergence: str, *, samples: int = 4096,
                 seed: int = 0) -> engine.Objective:
    """The objective θ ↦ KL(p‖q_θ) (``forward``) or KL(q_θ‖p) (``reverse``) for the engine.

    It carries q's analytic Fisher information (:func:`gdlab.fisher.analytic_fisher`) and
    domain, so natural-gradient optimizers work in either direction and for any target: the
    metric is q's, the gradient is the objective's (closed form, quadrature or Monte Carlo).
    Mixtures in d ≥ 3 use ``samples`` fixed antithetic Monte Carlo draws from ``seed``.

    Args:
      target: p, a spec text or a parsed :class:`gdlab.specs.MixtureSpec`.
      family: q's family, of p's dimension.
      divergence: ``forward`` or ``reverse``.
      samples, seed: the Monte Carlo draws for mixtures in d ≥ 3.

    Returns:
      A :class:`gdlab.engine.Objective` whose ``loss(θ, data)`` is the KL.

    Example:
      >>> from gdlab.families import make_family
      >>> fam = make_family("gaussian", 1, "mean_var")
      >>> obj = kl_objective("N(2, 1)", fam, "forward")
      >>> round(float(obj.loss(jnp.array([0.0, 5.0]), obj.data)), 12)     # ½ log 5
      0.804718956217
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)} "
                         f"(forward = KL(p||q), reverse = KL(q||p)), got {divergence!r}.")
    spec = _as_spec(target, "target")
    p = mixture(spec)
    if p.dim != family.dim:
        raise ValueError(f"the target is {p.dim}-D but q is {family.dim}-D; give an init of the target's dimension.")
    monte_carlo = p.dim >= 3 and p.n_components > 1
    if not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be a whole number ≥ 2, got {samples!r}.")
    eps = divergences.standard_normal_samples(samples if monte_carlo else 2, p.dim, seed)
    data = FitData(p, jax.device_put(np.float64(divergences.mixture_entropy(p, seed=seed))), jax.device_put(eps))
    trace_both = p.n_components == 1 or p.dim != 2   # 2-D mixture quadrature is too dear to do twice a step
    loss, metrics = _kl_functions(family, divergence, trace_both)
    return engine.Objective(loss=loss, data=data, metrics=metrics, fisher=_geometry_of(family),
                            in_domain=family.in_domain)


def _ending(result: engine.RunResult, family: Family) -> str:
    if result.stop_reason == "converged":
        return f"converged after {result.steps} steps (the loss stopped changing)."
    if result.stop_reason == "max_steps":
        return f"stopped at max_steps = {result.steps} before the loss stopped changing."
    theta = jnp.asarray(result.params)
    if not bool(family.in_domain(theta)):
        why = "the step left the parameter domain (the variance must stay positive)"
    elif not np.isfinite(result.loss):
        why = "the loss became non-finite"
    else:
        why = "the loss grew far past its starting value"
    return (f"diverged at step {result.steps}: {why}; the step size is too large or negative "
            f"(gradient ascent runs away).")


def fit(target: str | MixtureSpec, init: str | MixtureSpec | None = None, divergence: str = "forward",
        optimizer: optax.GradientTransformation | None = None, *, family: str = "gaussian",
        param: str | None = None, max_steps: int = 10_000, tol: float = 1e-15, patience: int = 20,
        grad_tol: float = 0.0, samples: int = 4096, seed: int = 0,
        callback: Callable[[dict], None] | None = None, precision: str = "float64") -> FitResult:
    r"""Fit q to the target p by minimising KL(p‖q) or KL(q‖p) with gradient descent.

    Args:
      target: p as a spec, e.g. ``"N(2, 1)"`` or ``"0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"``
        (``N(mean, variance)``), 1-D or d-D.
      init: the starting q, a single Gaussian spec of the target's dimension (default: the source
        text's N(0, 5) in 1-D, N(0, I) in d-D).
      divergence: ``"forward"`` for KL(p‖q) or ``"reverse"`` for KL(q‖p).
      optimizer: an optax transform, e.g. ``gdlab.optim.momentum(lr=0.05, momentum=0.9)``;
        default ``gdlab.optim.gd(lr=0.1)``.
      family: ``"gaussian"`` (full covariance) or ``"diag-gaussian"``.
      param: the parameterization θ of q (1-D: ``mean_var`` (default), ``mean_std``,
        ``mean_logstd``, ``mean_precision``, ``natural``, ``expectation``).
      max_steps, tol, patience, grad_tol: stopping rules (:mod:`gdlab.stopping`); ``tol=0``
        runs exactly ``max_steps`` updates unless the run diverges.
      samples, seed: Monte Carlo draws for mixture targets in d ≥ 3.
      callback: called with each compiled chunk's trace rows (for progress displays).
      precision: ``"float64"`` (default; gdlab switches JAX to 64-bit inside this call only)
        or ``"float32"``.

    Returns:
      A :class:`FitResult`.

    Example:
      >>> res = fit("N(2, 1)", "N(0, 5)", "forward", optim.gd(lr=0.5))
      >>> res.stop_reason, round(res.q.mean, 6), round(res.q.var, 6)
      ('converged', 2.0, 1.0)
    """
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")
    with jax.enable_x64(precision == "float64"):
        return _fit(target, init, divergence, optimizer, family, param, max_steps, tol, patience,
                    grad_tol, samples, seed, callback)


def fit_problem(target: str | MixtureSpec, init: str | MixtureSpec | None, family: str = "gaussian",
                param: str | None = None) -> tuple[MixtureSpec, Family, np.ndarray, np.ndarray]:
    """(target spec, q's family, q₀'s mean and covariance) as :func:`fit` reads its arguments.

    The default init is the source text's N(0, 5) in 1-D and N(0, I) in d-D; every bad pairing
    of target, init and family is a :class:`SpecError` naming it. Sweeps use it too, so that a
    sweep cell starts exactly where ``gdlab fit`` with its settings does.

    Args:
      target: p, a spec text or a parsed spec.
      init: q₀, a single Gaussian spec of p's dimension, or None for the default.
      family, param: as :func:`fit`.

    Returns:
      (target spec, family, q₀'s mean (d,), q₀'s covariance (d, d)).

    Example:
      >>> spec, fam, mean, cov = fit_problem("N(2, 1)", None)
      >>> fam.param, mean.tolist(), cov.tolist()
      ('mean_var', [0.0], [[5.0]])
    """
    target_spec = _as_spec(target, "target")
    dim = target_spec.dim
    if init is None:
        init_spec = parse_distribution(f"N({[0.0] * dim}, {np.eye(dim).tolist()})" if dim > 1 else "N(0, 5)")
    else:
        init_spec = _as_spec(init, "init")
    if init_spec.n_components != 1:
        raise SpecError(f"init \"{init_spec.text}\" is a mixture; q is a single Gaussian, so give one N(mean, variance).")
    if init_spec.dim != dim:
        raise SpecError(f"init \"{init_spec.text}\" is {init_spec.dim}-D but the target is {dim}-D; give an init of the target's dimension.")
    fam = make_family(family, dim, param)
    init_cov = init_spec.covs[0]
    if fam.name == "diag-gaussian" and dim > 1 and np.any(init_cov != np.diag(np.diag(init_cov))):
        raise SpecError(f"init \"{init_spec.text}\" has a non-diagonal covariance, which a diag-gaussian q cannot "
                        f"start from; give a diagonal covariance or use --family gaussian.")
    return target_spec, fam, np.asarray(init_spec.means[0]), np.asarray(init_cov)


def _fit(target, init, divergence, optimizer, family_name, param, max_steps, tol, patience, grad_tol,
         samples, seed, callback) -> FitResult:
    target_spec, fam, init_mean, init_cov = fit_problem(target, init, family_name, param)
    dim = target_spec.dim
    theta0 = _compiled(fam.from_moments)(init_mean, init_cov)
    optimizer = optimizer if optimizer is not None else optim.gd(0.1)
    criteria = stopping.StopCriteria(max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol).validate()
    objective = kl_objective(target_spec, fam, divergence, samples=samples, seed=seed)
    _check_fisher(optimizer, fam, theta0)

    result = engine.run(objective, optimizer, theta0, criteria, callback=callback)

    fwd, rev, inside, mean, var = jax.device_get(_report(fam)(result.params, objective.data))
    if not inside:
        fwd = rev = float("nan")
    q = Gaussian(float(mean), float(var)) if dim == 1 else Gaussian(mean, var)
    return FitResult(q=q, loss=result.loss, kl_forward=float(fwd), kl_reverse=float(rev), steps=result.steps,
                     stop_reason=result.stop_reason, message=_ending(result, fam), elapsed=result.elapsed,
                     params=result.params, family=fam, divergence=divergence,
                     trace=engine.Trace({**result.trace.columns, "kl_" + divergence: result.trace.loss,
                                         "step_kl": step_kl(fam, result.trace.params)}))


@functools.lru_cache(maxsize=None)
def _compiled(function: Callable) -> Callable:
    # one compiled program where eager JAX ops would each compile one (tens of ms at start-up)
    return jax.jit(function)


@functools.lru_cache(maxsize=None)
def _report(family: Family) -> Callable:
    """θ, data ↦ (KL(p‖q), KL(q‖p), θ in the domain, q's mean, q's variance): a fit's summary, one program."""

    def report(theta, data: FitData):
        mean, var = _moments_for_display(family, theta)
        return _kl("forward", family, theta, data), _kl("reverse", family, theta, data), family.in_domain(theta), \
            mean, var

    return jax.jit(report)


def _check_fisher(optimizer: optax.GradientTransformation, family: Family, theta0: jax.Array) -> None:
    """Refuse a natural-gradient run whose Fisher at the start cannot be solved (and no damping)."""
    if not optim.is_natural(optimizer, theta0):
        return
    natural = optim.natural_state(optimizer.init(theta0))
    if natural is None:
        return
    damping, _ = natural
    if is_singular(np.asarray(analytic_fisher(family, theta0)), damping):
        raise ValueError(f"the Fisher information of the starting q is singular or too ill-conditioned to solve "
                         f"in float64 (damping = {damping:g}); give a damping > 0 (e.g. --damping 1e-6, "
                         f"natural(damping=1e-6)) or a less extreme init.")
