r"""Optimizers: optax transforms with their hyperparameters injected.

Every optimizer here is an ``optax.GradientTransformation`` built with
``optax.inject_hyperparams``, so the learning rate (a number or an optax schedule) and the
momentum live in the optimizer state as traced values: a sweep or a slider changes them
without recompiling, and the learning rate actually used at each step can be read back
(:func:`learning_rate`). Negative learning rates are allowed on purpose: gradient *ascent*
shows a run "running away" (source text 000, "set the step size to -0.02").

Natural gradient (:func:`natural`) is a ``GradientTransformationExtraArgs`` whose ``update``
receives the Fisher information at the current parameters as the extra argument ``fisher``
(and the parameter domain as ``in_domain``); the engine passes both to every optimizer and
plain ones ignore them. In the words of optimistix, every optimizer here is a direction times
a step: the Euclidean direction −∇L or the Fisher direction −F⁻¹∇L, times a constant,
scheduled or KL-trust-region step.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

Schedule = Callable[[jax.Array], jax.Array]
LearningRate = Union[float, Schedule]

OPTIMIZERS = ("gd", "momentum", "nesterov", "adam", "natural")
SOLVERS = ("auto", "cholesky", "cg")


def _check_lr(lr: LearningRate) -> None:
    if callable(lr):
        return
    if not isinstance(lr, (int, float)) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number or an optax schedule, got {lr!r}.")


def _check_momentum(momentum: float) -> None:
    if not isinstance(momentum, (int, float)) or not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be a number in [0, 1] (0 keeps none, 0.9 and 0.99 are "
                         f"sensible), got {momentum!r}.")


class _Traced:
    """Stands for a number an optimizer keeps in its state, in the keys of :func:`shared`."""

    def __repr__(self) -> str:
        return "<traced>"


_TRACED = _Traced()


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def shared(factory: Callable[..., optax.GradientTransformation] | None = None, *,
           traced: tuple[str, ...] = ()) -> Any:
    """Make ``factory`` return one object per setting (``gd(0.1) is gd(0.1)``), and one ``update``
    function per kind: transforms that differ only in the numbers named in ``traced`` share it.

    The engine compiles its loop once per ``update`` function. The numbers named in ``traced``
    are injected hyperparameters (``optax.inject_hyperparams``): ``init`` writes them into the
    state and ``update`` reads them from there, so ``gd(0.1)`` and ``gd(0.2)`` compute with the
    same ``update`` and a second :func:`gdlab.fit` at another step size reuses the compiled loop
    (0.5–1 s of compilation at toy size) instead of compiling it again. A schedule in place of a
    number is part of ``update`` (its closure), so it keys a kind of its own, as does ``None``
    where a number could be (a trust region or none). A transform is a pair of pure functions,
    so sharing it is safe. Settings that cannot be hashed (an array as the step size) build a
    new object each time.

    Args:
      factory: a function of hashable settings returning an optax transform.
      traced: the names of its settings that its transform keeps in the state when they are
        numbers.

    Returns:
      The factory, memoised on its arguments (or a decorator, called with ``traced`` only).

    Example:
      >>> gd(0.1) is gd(0.1), gd(0.1) is gd(0.2), gd(0.1).update is gd(0.2).update
      (True, False, True)
    """
    if factory is None:
        return functools.partial(shared, traced=traced)
    signature = inspect.signature(factory)
    built = functools.lru_cache(maxsize=256)(factory)
    kinds: dict[tuple, Callable] = {}       # kind → the update of the first transform of that kind

    @functools.lru_cache(maxsize=256)
    def cached(*args, **kwargs):
        opt = built(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        kind = tuple((name, _TRACED if name in traced and _is_number(value) else value)
                     for name, value in bound.arguments.items())
        if len(kinds) >= 1024:          # kinds keyed by schedule objects would pile up
            kinds.clear()
        update = kinds.setdefault(kind, opt.update)
        return opt if update is opt.update else opt._replace(update=update)

    @functools.wraps(factory)
    def make(*args, **kwargs):
        try:
            hash((args, tuple(kwargs.items())))
        except TypeError:
            return factory(*args, **kwargs)
        return cached(*args, **kwargs)

    return make


@shared(traced=("lr",))
def gd(lr: LearningRate = 0.1) -> optax.GradientTransformation:
    r"""Plain gradient descent.

    .. math::  \theta_{t+1} = \theta_t - \eta_t \nabla L(\theta_t)

    Args:
      lr: the step size η, a number (negative: gradient ascent) or an optax schedule t ↦ η_t.

    Returns:
      An optax transform whose update is −η_t g_t.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = gd(lr=0.1)
      >>> u, _ = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)))
      >>> float(u[0])
      -0.2
    """
    _check_lr(lr)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)


@shared(traced=("lr", "momentum"))
def momentum(lr: LearningRate = 0.1, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""Heavy-ball momentum (Polyak 1964), optax's ``sgd(momentum=β)``.

    .. math::

       v_{t+1} = \beta v_t + \nabla L(\theta_t), \qquad
       \theta_{t+1} = \theta_t - \eta_t v_{t+1}, \qquad v_0 = 0

    With a constant step this is θ_{t+1} = θ_t − η∇L(θ_t) + β(θ_t − θ_{t−1}): a fraction β of
    the previous step carries over. β = 0 is plain gradient descent; β = 1 keeps all of it.

    Args:
      lr: the step size η, a number or an optax schedule.
      momentum: β in [0, 1].

    Returns:
      An optax transform.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = momentum(lr=0.1, momentum=0.9)
      >>> state = opt.init(jnp.zeros(1))
      >>> u1, state = opt.update(jnp.array([1.0]), state)
      >>> u2, state = opt.update(jnp.array([1.0]), state)
      >>> round(float(u2[0]), 6)                 # -0.1 * (0.9 * 1 + 1)
      -0.19

    References:
      Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """
    _check_lr(lr)
    _check_momentum(momentum)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)


@shared(traced=("lr", "momentum"))
def nesterov(lr: LearningRate = 0.1, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""Nesterov momentum, optax's ``sgd(momentum=β, nesterov=True)``.

    .. math::

       v_{t+1} = \beta v_t + \nabla L(\theta_t), \qquad
       \theta_{t+1} = \theta_t - \eta_t (\nabla L(\theta_t) + \beta v_{t+1})

    Args:
      lr: the step size η, a number or an optax schedule.
      momentum: β in [0, 1].

    Returns:
      An optax transform.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = nesterov(lr=0.1, momentum=0.9)
      >>> u, _ = opt.update(jnp.array([1.0]), opt.init(jnp.zeros(1)))
      >>> round(float(u[0]), 6)                  # -0.1 * (1 + 0.9 * 1)
      -0.19

    References:
      Sutskever et al., "On the importance of initialization and momentum in deep learning", 2013.
    """
    _check_lr(lr)
    _check_momentum(momentum)
    return optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
        learning_rate=lr, momentum=momentum, nesterov=True)


@shared(traced=("lr", "b1", "b2", "eps"))
def adam(lr: LearningRate = 0.01, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    r"""Adam (Kingma & Ba 2015), optax's ``adam``.

    .. math::

       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
       \quad \theta_{t+1} = \theta_t - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Args:
      lr: the step size η, a number or an optax schedule.
      b1, b2: the decay rates β₁, β₂ of the moment estimates, in [0, 1).
      eps: ε > 0 in the denominator.

    Returns:
      An optax transform.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = adam(lr=0.01)
      >>> u, _ = opt.update(jnp.array([5.0]), opt.init(jnp.zeros(1)))
      >>> round(float(u[0]), 6)                  # the first step is -η·sign(g), whatever |g|
      -0.01

    References:
      Kingma & Ba, "Adam: A method for stochastic optimization", 2015.
    """
    _check_lr(lr)
    for name, value in (("b1", b1), ("b2", b2)):
        if not (0.0 <= value < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}.")
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2, eps=eps)



class NaturalGradientState(NamedTuple):
    """State of :func:`natural`: the momentum buffer (unused when momentum = 0)."""

    velocity: jax.Array


FisherArg = Union[jax.Array, Callable[[jax.Array], jax.Array]]


class Geometry(NamedTuple):
    """The Fisher information at θ with the exact KL from q_θ, as an objective can pass it.

    Attributes:
      fisher: F(θ), a (P, P) matrix or a function v ↦ F v.
      kl: θ′ ↦ KL(q_θ‖q_θ′), exact; lets a KL trust region make each realised step KL equal ε
        rather than only its quadratic model ½ δᵀFδ.
    """

    fisher: FisherArg
    kl: Callable[[Any], jax.Array]


def solve_fisher(fisher: FisherArg, grad: jax.Array, damping: float | jax.Array = 0.0, solver: str = "auto",
                 cg_maxiter: int | None = None) -> jax.Array:
    r"""The natural-gradient direction (F + λI)⁻¹ g, by solving, never by inverting F.

    .. math::  (F + \lambda I)\, x = g

    Args:
      fisher: F as a (P, P) matrix, or a function v ↦ F v (a Fisher-vector product, for P too
        large to form F).
      grad: g, shape (P,).
      damping: λ ≥ 0, added to the diagonal (Levenberg–Marquardt damping).
      solver: ``cholesky`` (dense F), ``cg`` (conjugate gradient, with F v products only), or
        ``auto``: Cholesky for a matrix, conjugate gradient for a function.
      cg_maxiter: conjugate-gradient iterations (default: JAX's, 10 P).

    Returns:
      x, shape (P,). A singular or indefinite F + λI gives non-finite entries (the engine then
      reports the run as diverged); use damping > 0 for such an F.

    Example:
      >>> import jax.numpy as jnp
      >>> x = solve_fisher(jnp.array([[2.0, 0.0], [0.0, 4.0]]), jnp.array([1.0, 1.0]))
      >>> [round(float(v), 12) for v in x]
      [0.5, 0.25]
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
    if callable(fisher) or solver == "cg":
        matvec = fisher if callable(fisher) else (lambda v: fisher @ v)
        damped = lambda v: matvec(v) + damping * v  # noqa: E731
        x, _ = jax.scipy.sparse.linalg.cg(damped, grad, tol=1e-12, maxiter=cg_maxiter)
        return x
    damped = fisher + damping * jnp.eye(fisher.shape[0], dtype=fisher.dtype)
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(damped, lower=True), grad)


def shorten_into_domain(in_domain: Callable[[Any], jax.Array], params: Any, step: Any, halvings: int = 60) -> Any:
    r"""The longest of step, step/2, step/4, … (``halvings`` times) that keeps θ + step in the domain.

    .. math::  \alpha = \max\{2^{-k} : k = 0..K,\ \theta + 2^{-k}\delta \in \Theta\}, \qquad
               \delta \leftarrow \alpha\,\delta \quad (\alpha = 0 \text{ if none is})

    A natural-gradient step can overshoot the parameter domain (a negative variance or
    precision, η₂ ≥ 0): it is shortened, never silently accepted.

    Args:
      in_domain: θ ↦ a boolean array, whether θ names a distribution.
      params: θ, a pytree.
      step: δ, a pytree like ``params``.
      halvings: K, how many times to halve at most.

    Returns:
      α δ, a pytree like ``step`` (zero when no halving stays inside).

    Example:
      >>> import jax.numpy as jnp
      >>> positive = lambda th: jnp.all(th > 0)
      >>> [float(v) for v in shorten_into_domain(positive, jnp.array([1.0]), jnp.array([-3.0]))]
      [-0.75]
    """
    flat, unravel = ravel_pytree(params)
    delta, unravel_step = ravel_pytree(step)
    alphas = 0.5 ** jnp.arange(halvings + 1, dtype=flat.dtype)
    ok = jax.vmap(lambda a: jnp.all(in_domain(unravel(flat + a * delta))))(alphas)
    alpha = jnp.where(jnp.any(ok), alphas[jnp.argmax(ok)], 0.0)
    return unravel_step(alpha * delta)


def _trust_region_rate(grad, direction, params, lr, epsilon, kl, refinements):
    """η = min(|lr|, η_ε) · sign(lr), with η_ε from ½ δᵀFδ = ε, refined on the exact KL if given."""
    # ½ δᵀFδ = ε for δ = −η F⁻¹g gives η = √(2ε / gᵀF⁻¹g).
    eta = jnp.sqrt(2.0 * epsilon / jnp.vdot(grad, direction))
    if kl is not None and params is not None:
        # KL(q_θ‖q_{θ−ηd}) = c₂η² + c₃η³ + …: rescaling η by √(ε / KL(η)) converges fast
        # (each pass shrinks the relative error about threefold for ε ~ 0.01); a NaN KL
        # (a step out of the domain) halves η instead.
        flat, unravel = ravel_pytree(params)
        sign = jnp.where(lr < 0, -1.0, 1.0)  # gradient ascent steps the other way
        for _ in range(refinements):
            realised = kl(unravel(flat - sign * eta * direction))
            ok = jnp.isfinite(realised) & (realised > 0)
            eta = eta * jnp.where(ok, jnp.sqrt(epsilon / jnp.where(ok, realised, 1.0)), 0.5)
    return jnp.sign(lr) * jnp.minimum(jnp.abs(lr), eta)


def _natural(learning_rate, damping, momentum, trust_region, solver, cg_maxiter, refinements):
    def init_fn(params):
        flat, _ = ravel_pytree(params)
        return NaturalGradientState(velocity=jnp.zeros_like(flat))

    def update_fn(updates, state, params=None, *, fisher=None, in_domain=None, **extra_args):
        del extra_args
        if fisher is None:
            raise ValueError("the natural gradient needs the Fisher information at θ, passed to update as the "
                             "extra argument `fisher`; gdlab's engine passes it for objectives that define one "
                             "(gdlab.fit and gdlab.train do).")
        kl = None
        if isinstance(fisher, Geometry):
            fisher, kl = fisher
        grad, unravel = ravel_pytree(updates)
        direction = solve_fisher(fisher, grad, damping, solver, cg_maxiter)
        rate = learning_rate
        if trust_region is not None:
            rate = _trust_region_rate(grad, direction, params, learning_rate, trust_region, kl, refinements)
        velocity = momentum * state.velocity + direction
        step = unravel(-rate * velocity)
        if in_domain is not None and params is not None:
            step = shorten_into_domain(in_domain, params, step)
        return step, NaturalGradientState(velocity=velocity)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@shared(traced=("lr", "damping", "momentum", "trust_region"))
def natural(lr: LearningRate = 1.0, damping: float = 0.0, *, momentum: float = 0.0,
            trust_region: float | None = None, solver: str = "auto", cg_maxiter: int | None = None,
            refinements: int = 4) -> optax.GradientTransformationExtraArgs:
    r"""Natural gradient descent: the gradient preconditioned by the inverse Fisher information.

    .. math::

       \delta_t = -\eta_t\,(F(\theta_t) + \lambda I)^{-1}\nabla L(\theta_t)

    It is the steepest-descent step when distance is measured by KL divergence between the
    distributions rather than by Euclidean distance between parameters: minimising the
    linearised loss ∇Lᵀδ subject to KL(q_θ‖q_{θ+δ}) ≈ ½ δᵀFδ = ε (the Lagrangian
    ∇Lᵀδ + ½ν δᵀFδ, set to zero in δ) gives δ ∝ −F⁻¹∇L. Because F transforms as a metric
    (F_φ = Jᵀ F_θ J for θ = θ(φ)), the step moves q by the same amount in every
    parameterization, to first order in η.

    With ``trust_region=ε`` the step length is the Lagrangian's: η_t = √(2ε / gᵀ(F+λI)⁻¹g), so
    the predicted KL(q_θ‖q_{θ+δ}) = ½ δᵀFδ equals ε. The quadratic model is only second-order
    accurate: in (mean, variance) a step of predicted KL 0.01 that shrinks the variance realises
    up to 0.013. So when the objective passes the exact KL (a :class:`Geometry`, as
    ``gdlab.fit`` does), η is refined ``refinements`` times by η ← η √(ε / KL(q_θ‖q_{θ−ηd})),
    and the realised KL of each step is ε (to about 1e-4 relative). The step is capped at
    ``lr`` (a full natural step at lr = 1), so near the optimum the steps shrink and the run
    converges.

    Exponential families (the 1-D Gaussian's ``natural`` η and ``expectation`` μ = E[T(x)]
    parameterizations) show the duality exactly. With A(η) the log-partition function,
    μ = ∇A(η) and F_η = ∇²A(η) = ∂μ/∂η, and F_μ = F_η⁻¹. By the chain rule
    ∇_η L = F_η ∇_μ L, so the natural gradient in η is the plain gradient in μ, and vice versa:

    - forward KL(p‖q_η) = A(η) − ηᵀE_p[T] + const has ∇_η L = μ − E_p[T]; a natural step of
      lr = 1 in μ lands on μ = E_p[T], the moment match, in **one step** (to any target p);
    - reverse KL(q_η‖p) to a Gaussian p = q_{η_p} is (η − η_p)ᵀμ − A(η) + A(η_p), with
      ∇_η L = F_η(η − η_p); a natural step of lr = 1 in η lands on η_p in **one step**;
    - in (mean, variance), F = diag(1/v, 1/(2v²)) and forward KL to p gives m ← E_p[x] at the
      first step and v ← Var_p(x) at the second.

    A step that would leave the parameter domain (a negative variance or precision) is
    shortened by halving until it stays inside (:func:`shorten_into_domain`), when the engine
    passes the domain (``gdlab.fit`` does).

    Args:
      lr: step size η or an optax schedule (a full natural step is lr = 1).
      damping: λ ≥ 0 added to F's diagonal; needed when F is singular.
      momentum: β ∈ [0, 1): heavy-ball momentum on the natural direction.
      trust_region: ε > 0, the KL each step may move q by (None: no trust region).
      solver: ``auto`` (Cholesky for a dense F, conjugate gradient for a Fisher-vector
        product), ``cholesky`` or ``cg``.
      cg_maxiter: conjugate-gradient iterations.
      refinements: trust region only: rescalings of η on the exact KL, when it is given.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update(g, state, params, fisher=F)``
      takes F as a (P, P) matrix, a function v ↦ F v, or a :class:`Geometry` (F with the exact
      KL from q_θ); lr, damping, momentum and ε are
      injected hyperparameters (traced: changing them does not recompile).

    Example:
      >>> import jax.numpy as jnp
      >>> opt = natural(lr=1.0)
      >>> F = jnp.diag(jnp.array([1.0 / 2.0, 1.0 / (2 * 2.0 ** 2)]))     # N(m, v=2) in mean_var
      >>> u, _ = opt.update(jnp.array([0.5, -0.125]), opt.init(jnp.zeros(2)), fisher=F)
      >>> [round(float(x), 12) for x in u]                                # -F⁻¹g
      [-1.0, 1.0]

    References:
      Amari, "Natural gradient works efficiently in learning", Neural Computation, 1998.
      Martens, "New insights and perspectives on the natural gradient method", JMLR, 2020.
      Schulman et al., "Trust region policy optimization", ICML 2015 (the KL-constrained step).
    """
    _check_lr(lr)
    if not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number ≥ 0 (try 1e-6 for a singular Fisher), got {damping!r}.")
    if not isinstance(momentum, (int, float)) or not (0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be a number in [0, 1) for the natural gradient, got {momentum!r}.")
    if trust_region is not None:
        if not isinstance(trust_region, (int, float)) or not math.isfinite(trust_region) or trust_region <= 0:
            raise ValueError(f"trust_region must be a positive KL, e.g. 0.01, got {trust_region!r}.")
        if momentum != 0:
            raise ValueError("trust_region and momentum cannot be combined: the KL bound holds for each natural "
                             "step itself, not for an accumulated velocity; drop one of them.")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
    if cg_maxiter is not None and (not isinstance(cg_maxiter, int) or cg_maxiter < 1):
        raise ValueError(f"cg_maxiter must be a whole number ≥ 1, got {cg_maxiter!r}.")
    if not isinstance(refinements, int) or not 0 <= refinements <= 50:
        raise ValueError(f"refinements must be a whole number in [0, 50], got {refinements!r}.")
    return optax.inject_hyperparams(_natural, static_args=("solver", "cg_maxiter", "refinements"))(
        learning_rate=lr, damping=float(damping), momentum=float(momentum),
        trust_region=None if trust_region is None else float(trust_region), solver=solver, cg_maxiter=cg_maxiter,
        refinements=refinements)


def natural_state(state: Any) -> tuple[float, float] | None:
    """(damping, trust_region or NaN) of a :func:`natural` optimizer's state, or None for other optimizers.

    Args:
      state: an optimizer state, as ``optimizer.init(params)`` returns it.

    Returns:
      ``(damping, trust_region)`` with NaN for no trust region, or None.

    Example:
      >>> import jax.numpy as jnp
      >>> natural_state(natural(damping=1e-3).init(jnp.zeros(2))), natural_state(gd(0.1).init(jnp.zeros(2)))
      ((0.001, nan), None)
    """
    s = _natural_leaf(state)
    if s is None:
        return None
    return float(s.hyperparams["damping"]), float(s.hyperparams.get("trust_region", float("nan")))


def _natural_leaf(state: Any) -> Any:
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    is_leaf = lambda x: isinstance(x, injected)  # noqa: E731
    for s in jax.tree_util.tree_leaves(state, is_leaf=is_leaf):
        if is_leaf(s) and isinstance(s.inner_state, NaturalGradientState):
            return s
    return None


def is_natural(optimizer: optax.GradientTransformation, params: Any) -> bool:
    """Whether ``optimizer`` is (or chains) a :func:`natural` step, read from its state's structure
    (``jax.eval_shape``: nothing is computed or compiled).

    Args:
      optimizer: an optax transform.
      params: parameters of the shape it will update.

    Returns:
      True when its state holds a natural-gradient state.

    Example:
      >>> import jax.numpy as jnp
      >>> is_natural(natural(), jnp.zeros(2)), is_natural(adam(0.1), jnp.zeros(2))
      (True, False)
    """
    return _natural_leaf(jax.eval_shape(optimizer.init, params)) is not None

def by_name(name: str, lr: LearningRate, momentum: float | None = None, *, damping: float | None = None,
            trust_region: float | None = None) -> optax.GradientTransformation:
    """The optimizer called ``name`` (one of ``OPTIMIZERS``) with learning rate ``lr``.

    ``momentum`` is used by ``momentum`` and ``nesterov`` (default 0.9) and by ``natural``
    (default 0); ``damping`` and ``trust_region`` by ``natural`` only. An option that does not
    apply to the optimizer is refused rather than silently ignored.

    Args:
      name: ``gd``, ``momentum``, ``nesterov``, ``adam`` or ``natural``.
      lr: the step size, a number or an optax schedule.
      momentum, damping, trust_region: the optimizer's options, where it has them.

    Returns:
      The optax transform (shared per setting, see :func:`shared`).

    Example:
      >>> by_name("momentum", 0.1) is momentum(0.1, 0.9)
      True
      >>> by_name("gd", 0.1, damping=0.1)
      Traceback (most recent call last):
      ...
      ValueError: damping applies to the natural optimizer, not 'gd'; use --optimizer natural or drop --damping.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}.")
    if name == "natural":
        return natural(lr, damping or 0.0, momentum=momentum or 0.0, trust_region=trust_region)
    for option, value in (("damping", damping), ("trust_region", trust_region)):
        if value is not None:
            raise ValueError(f"{option} applies to the natural optimizer, not {name!r}; use --optimizer natural "
                             f"or drop --{option.replace('_', '-')}.")
    if name in ("momentum", "nesterov"):
        return globals()[name](lr, 0.9 if momentum is None else momentum)
    if momentum is not None and momentum != 0:
        raise ValueError(f"momentum applies to the momentum and nesterov optimizers, not {name!r}; "
                         f"use --optimizer momentum or drop --momentum.")
    return gd(lr) if name == "gd" else adam(lr)


def learning_rate(state: Any) -> jax.Array:
    """The learning rate the last update used, read from an injected-hyperparameter state.

    NaN for an optimizer built without ``optax.inject_hyperparams`` (its rate is not in the state).

    Args:
      state: an optimizer state.

    Returns:
      η as a JAX scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(learning_rate(gd(0.25).init(jnp.zeros(1))))
      0.25
    """
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    is_injected = lambda x: isinstance(x, injected)  # noqa: E731
    for s in jax.tree_util.tree_leaves(state, is_leaf=is_injected):
        if is_injected(s) and "learning_rate" in s.hyperparams:
            return jnp.asarray(s.hyperparams["learning_rate"])
    return jnp.asarray(jnp.nan)
