r"""Landscapes: 1-D and 2-D functions with local and global minima, and gradient descent on them.

Named functions, each with its global minima recorded (and, for the double well, its local one):

==================  ===  =========================================================  ====================
name                dim  f                                                          global minimum
==================  ===  =========================================================  ====================
``double-well``      1   see :func:`double_well` (shallow, sharp well on the right)  f(−1.5) = 0
``bowl``             1   x²                                                          f(0) = 0
``himmelblau``       2   (x² + y − 11)² + (x + y² − 7)²                              4 points, f = 0
``rosenbrock``       2   (1 − x)² + 100 (y − x²)²                                    f(1, 1) = 0
``rastrigin``        2   20 + Σ (xᵢ² − 10 cos 2πxᵢ)                                  f(0, 0) = 0
``ackley``           2   see :func:`ackley` (a cone in a field of ripples)            f(0, 0) = 0
``beale``            2   (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²     f(3, 0.5) = 0
``six-hump-camel``   2   (4 − 2.1x² + x⁴/3) x² + xy + (−4 + 4y²) y²                  2 points, f ≈ −1.0316
==================  ===  =========================================================  ====================

Any other text is read as an expression in ``x`` (1-D) or ``x, y`` (2-D) by the safe parser of
:mod:`gdlab.expressions`; such a landscape has no recorded minima.

"Gradient descent with restarts" means two things here, each under its own name: the
``warm-restarts`` learning-rate schedule (SGDR), which on the double well jumps out of the
sharp local well that a constant small step stays in, and :func:`multistart`: N random starts
in a box, run together under ``vmap``, the best kept.

References:
  Himmelblau, "Applied Nonlinear Programming", 1972. Rosenbrock, "An automatic method for
  finding the greatest or least value of a function", 1960. Ackley, "A connectionist machine
  for genetic hillclimbing", 1987. Rastrigin, "Systems of extremal control", 1974.
  Beale, "On an iterative method for finding a local minimum of a function of more than one
  variable", 1958. Dixon & Szegő, "The global optimization problem", 1978 (six-hump camel).
  Surjanovic & Bingham, "Virtual Library of Simulation Experiments: optimization test
  functions" (sfu.ca/~ssurjano), for the recorded minima.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from gdlab.expressions import parse_expression

__all__ = ["Minimum", "Landscape", "LANDSCAPES", "get_landscape", "landscape_objective", "minimize",
           "multistart", "random_starts", "MinimizeResult", "MultistartResult", "double_well"]

DEFAULT_BOX = 5.0          # expressions: multistart and pictures in [-5, 5]^d unless --box says otherwise
FOUND_TOL = 1e-6           # a run "found" a minimum when it ends this close to it (Euclidean)


class Minimum(NamedTuple):
    """A recorded minimum: the point and the value there."""

    x: tuple[float, ...]
    f: float


class Landscape(NamedTuple):
    """A function to minimise, with what is known about it.

    Attributes:
      name: the registry name, or the expression's text.
      dim: 1 or 2 (θ = (x,) or (x, y)).
      fn: θ ↦ f(θ) for θ of shape (dim,); pure and jittable.
      formula: f in words, for titles.
      box: ((lo, hi), ...) per coordinate: where multistart draws its starts and pictures look.
      start: the default start point, or None (expressions need ``init``).
      global_minima: the recorded global minima (empty when unknown).
      local_minima: recorded local minima that are not global.
    """

    name: str
    dim: int
    fn: Callable
    formula: str
    box: tuple[tuple[float, float], ...]
    start: tuple[float, ...] | None
    global_minima: tuple[Minimum, ...] = ()
    local_minima: tuple[Minimum, ...] = ()


# ----------------------------------------------------------------------------- the double well

# f'(x) = k (x − r1)(x − r2)(x − r3) / (1 + ((x − r3)/s)²): minima at r1 (global) and r3 (local),
# a maximum at r2. The denominator sharpens the right well relative to the left one, so that
# a large step (lr · f''(r3) > 2) cannot stay in the local minimum while the global one stays
# stable (lr · f''(r1) < 2): the picture of source text 001, with the physics of warm restarts.
_R1, _R2, _R3, _S, _K = -1.5, 0.7, 1.2, 0.5, 30.0
_A, _B = _R3 - _R1, _R3 - _R2


_U1 = (_R1 - _R3) / _S


def _double_well_value(d, u, log1p, atan2):
    """f at x = r1 + s·d (u = (x − r3)/s), written so that f(r1) = 0 exactly: every term is a
    difference F(u) − F(u1) taken in closed form (u² − u1² = d(d + 2u1), a difference of logs as
    one log1p, a difference of arctangents as one atan2), so nothing large cancels near x = r1."""
    s, a, b = _S, _A, _B
    return _K * s * s * (s * s * d * (d + 2 * _U1) / 2 + s * (a + b) * d
                         + (a * b - s * s) / 2 * log1p(d * (d + 2 * _U1) / (1 + _U1 * _U1))
                         - s * (a + b) * atan2(d, 1 + u * _U1))


_F_LOCAL = _double_well_value(_A / _S, 0.0, math.log1p, math.atan2)


def double_well(theta):
    r"""A 1-D double well: a deep, wide global minimum on the left, a shallow, sharp local one on the right.

    .. math::

       f'(x) = \frac{k\,(x - r_1)(x - r_2)(x - r_3)}{1 + ((x - r_3)/s)^2}, \qquad
       r_1 = -1.5,\ r_2 = 0.7,\ r_3 = 1.2,\ s = 0.5,\ k = 30

    and, with u = (x − r₃)/s, a = r₃ − r₁, b = r₃ − r₂ (partial fractions), f = F(u) − F(u₁),
    u₁ = (r₁ − r₃)/s, so that f(r₁) = 0:

    .. math::

       F(u) = k s^2\Big[\tfrac{s^2u^2}{2} + s(a+b)u + \tfrac{ab - s^2}{2}\log(1+u^2)
              - s(a+b)\arctan u\Big]

    Global minimum f(−1.5) = 0 (f'' = 5.91); local minimum
    f(1.2) ≈ 6.76 (f'' = 40.5); the barrier between them is at x = 0.7 (f ≈ 7.98). A constant
    step of 0.01 from x = 1.5 settles in the local minimum; a step of 0.1 cannot stay there
    (0.1 · 40.5 > 2) but can stay in the global one (0.1 · 5.91 < 2).

    Args:
      theta: the point, a JAX array of shape (1,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> with jax.enable_x64(True):
      ...     print(float(double_well(jnp.array([-1.5]))),
      ...           abs(round(float(jax.grad(double_well)(jnp.array([1.2]))[0]), 12)))
      0.0 0.0
    """
    import jax.numpy as jnp

    x = jnp.asarray(theta)[0]
    return _double_well_value((x - _R1) / _S, (x - _R3) / _S, jnp.log1p, jnp.arctan2)


# ----------------------------------------------------------------------------- the 2-D classics

def bowl(theta):
    """f(x) = x²: one minimum, f(0) = 0 (source text 001's bowl).

    Args:
      theta: the point, a JAX array of shape (1,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(bowl(jnp.array([3.0])))
      9.0
    """
    return theta[0] ** 2


def himmelblau(theta):
    """f(x, y) = (x² + y − 11)² + (x + y² − 7)²: four global minima, all f = 0.

    Args:
      theta: the point, a JAX array of shape (2,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(himmelblau(jnp.array([3.0, 2.0]))), float(himmelblau(jnp.array([0.0, 0.0])))
      (0.0, 170.0)
    """
    x, y = theta[0], theta[1]
    return (x ** 2 + y - 11.0) ** 2 + (x + y ** 2 - 7.0) ** 2


def rosenbrock(theta):
    """f(x, y) = (1 − x)² + 100 (y − x²)²: a curved valley, minimum f(1, 1) = 0.

    Args:
      theta: the point, a JAX array of shape (2,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(rosenbrock(jnp.array([1.0, 1.0]))), float(rosenbrock(jnp.array([0.0, 1.0])))
      (0.0, 101.0)
    """
    x, y = theta[0], theta[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x ** 2) ** 2


def rastrigin(theta):
    """f(x, y) = 20 + Σ (xᵢ² − 10 cos 2πxᵢ): a grid of local minima, global f(0, 0) = 0.

    Args:
      theta: the point, a JAX array of shape (2,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(rastrigin(jnp.array([0.0, 0.0]))), round(float(rastrigin(jnp.array([1.0, 0.0]))), 9)
      (0.0, 1.0)
    """
    import jax.numpy as jnp

    return 10.0 * theta.shape[0] + jnp.sum(theta ** 2 - 10.0 * jnp.cos(2.0 * jnp.pi * theta))


def ackley(theta):
    r"""Ackley's function; global minimum f(0, 0) = 0, at the tip of a cone.

    .. math::  f(x, y) = -20\,e^{-0.2\sqrt{(x^2 + y^2)/2}} - e^{(\cos 2\pi x + \cos 2\pi y)/2} + e + 20

    f is not differentiable at the origin (near it f ≈ 2√2·r); the gradient is taken there as
    0, which is in the subdifferential, by a square root whose gradient is 0 at 0.

    Args:
      theta: the point, a JAX array of shape (2,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> round(float(ackley(jnp.array([0.0, 0.0]))), 12), [float(g) for g in jax.grad(ackley)(jnp.zeros(2))]
      (0.0, [0.0, 0.0])
    """
    import jax.numpy as jnp

    s = 0.5 * jnp.sum(theta ** 2)
    positive = s > 0
    r = jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)
    return (-20.0 * jnp.exp(-0.2 * r) - jnp.exp(0.5 * jnp.sum(jnp.cos(2.0 * jnp.pi * theta)))
            + jnp.e + 20.0)


def beale(theta):
    """f(x, y) = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²; f(3, 0.5) = 0.

    Args:
      theta: the point, a JAX array of shape (2,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> float(beale(jnp.array([3.0, 0.5]))), float(beale(jnp.array([0.0, 0.0])))
      (0.0, 14.203125)
    """
    x, y = theta[0], theta[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def six_hump_camel(theta):
    """f(x, y) = (4 − 2.1x² + x⁴/3) x² + xy + (−4 + 4y²) y²: six minima, two of them global.

    Args:
      theta: the point, a JAX array of shape (2,).

    Returns:
      f(θ), a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(six_hump_camel(jnp.array([0.08984201310031806, -0.7126564030207396]))), 6)
      -1.031628
    """
    x, y = theta[0], theta[1]
    return (4.0 - 2.1 * x ** 2 + x ** 4 / 3.0) * x ** 2 + x * y + (-4.0 + 4.0 * y ** 2) * y ** 2


# Minima: closed forms where they exist; otherwise the literature's points polished by Newton's
# method in float64 (tests check that the gradient vanishes there and the value is as recorded).
_CAMEL = (0.08984201310031806, -0.7126564030207396)
LANDSCAPES: dict[str, Landscape] = {
    ls.name: ls for ls in (
        Landscape("double-well", 1, double_well,
                  "f'(x) = 30(x+1.5)(x-0.7)(x-1.2) / (1+4(x-1.2)^2)", ((-2.5, 2.5),), (1.5,),
                  (Minimum((_R1,), 0.0),), (Minimum((_R3,), _F_LOCAL),)),
        Landscape("bowl", 1, bowl, "x^2", ((-3.0, 3.0),), (2.0,), (Minimum((0.0,), 0.0),)),
        Landscape("himmelblau", 2, himmelblau, "(x^2+y-11)^2 + (x+y^2-7)^2", ((-5.0, 5.0), (-5.0, 5.0)),
                  (0.0, 0.0),
                  (Minimum((3.0, 2.0), 0.0),
                   Minimum((-2.805118086952745, 3.131312518250573), 0.0),
                   Minimum((-3.779310253377747, -3.2831859912861696), 0.0),
                   Minimum((3.5844283403304917, -1.8481265269644034), 0.0))),
        Landscape("rosenbrock", 2, rosenbrock, "(1-x)^2 + 100(y-x^2)^2", ((-2.0, 2.0), (-1.0, 3.0)),
                  (-1.5, 2.0), (Minimum((1.0, 1.0), 0.0),)),
        Landscape("rastrigin", 2, rastrigin, "20 + sum(x_i^2 - 10 cos(2 pi x_i))", ((-5.12, 5.12), (-5.12, 5.12)),
                  (2.2, -1.7), (Minimum((0.0, 0.0), 0.0),)),
        Landscape("ackley", 2, ackley, "-20 exp(-0.2 sqrt((x^2+y^2)/2)) - exp((cos 2pi x + cos 2pi y)/2) + e + 20",
                  ((-5.0, 5.0), (-5.0, 5.0)), (2.2, -1.7), (Minimum((0.0, 0.0), 0.0),)),
        Landscape("beale", 2, beale, "(1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2",
                  ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.0), (Minimum((3.0, 0.5), 0.0),)),
        Landscape("six-hump-camel", 2, six_hump_camel, "(4-2.1x^2+x^4/3)x^2 + xy + (-4+4y^2)y^2",
                  ((-3.0, 3.0), (-2.0, 2.0)), (1.5, 1.0),
                  (Minimum(_CAMEL, -1.0316284534898774), Minimum((-_CAMEL[0], -_CAMEL[1]), -1.0316284534898774))),
    )
}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*", re.ASCII)


def get_landscape(function: str | Landscape, box: Sequence[Sequence[float]] | None = None) -> Landscape:
    """The named landscape, or the expression ``function`` in x (and y) as a landscape.

    Args:
      function: a name of :data:`LANDSCAPES` or an expression such as ``"x**4 - 3*x**2 + x"``.
      box: ((lo, hi), ...) per coordinate to replace the landscape's box (multistart, pictures).

    Returns:
      A :class:`Landscape` (name, dimension, f, formula, box, start, recorded minima).

    Raises:
      ValueError: an unknown name (the message lists the known ones), a bad box;
        :class:`gdlab.expressions.ExpressionError` for an expression outside the grammar.

    Example:
      >>> get_landscape("himmelblau").global_minima[0]
      Minimum(x=(3.0, 2.0), f=0.0)
      >>> get_landscape("x**2 + y**2").dim
      2
    """
    if isinstance(function, Landscape):
        landscape = function
    elif not isinstance(function, str):
        raise ValueError(f"function must be a landscape name or an expression, got {function!r}.")
    elif function.strip() in LANDSCAPES:
        landscape = LANDSCAPES[function.strip()]
    elif _WORD.fullmatch(function.strip()) and function.strip() not in ("x", "y"):
        raise ValueError(f'unknown landscape "{function.strip()[:40]}"; the named ones are '
                         f'{", ".join(LANDSCAPES)}, or give an expression in x (1-D) or x and y (2-D) '
                         f'such as "x**4 - 3*x**2 + x".')
    else:
        expr = parse_expression(function)
        landscape = Landscape(function.strip(), expr.dim, expr.fn, function.strip(),
                              tuple((-DEFAULT_BOX, DEFAULT_BOX) for _ in range(expr.dim)), None)
    if box is not None:
        landscape = landscape._replace(box=check_box(box, landscape.dim))
    return landscape


def check_box(box: Sequence[Sequence[float]], dim: int) -> tuple[tuple[float, float], ...]:
    """((lo, hi), ...) with one finite interval lo < hi per coordinate, or ValueError.

    Args:
      box: one (lo, hi) pair per coordinate.
      dim: the landscape's dimension.

    Returns:
      The box as a tuple of float pairs.

    Example:
      >>> check_box([[-1, 1], [0, 2]], 2)
      ((-1.0, 1.0), (0.0, 2.0))
      >>> check_box([[1, -1]], 1)
      Traceback (most recent call last):
      ...
      ValueError: each interval of a box needs finite lo < hi, got (1.0, -1.0).
    """
    try:
        pairs = tuple((float(lo), float(hi)) for lo, hi in box)
    except (TypeError, ValueError):
        raise ValueError(f"a box is one (lo, hi) pair per coordinate, got {box!r}.") from None
    if len(pairs) != dim:
        raise ValueError(f"the box has {len(pairs)} intervals but the landscape is {dim}-D; give {dim}.")
    for lo, hi in pairs:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"each interval of a box needs finite lo < hi, got ({lo}, {hi}).")
    return pairs


# ----------------------------------------------------------------------------- runs

class MinimizeResult(NamedTuple):
    """One run on a landscape: where it ended, f there, the update count, why it stopped, its trace."""

    x: np.ndarray
    f: float
    steps: int
    stop_reason: str
    elapsed: float
    trace: Any                   # gdlab.engine.Trace: step, loss (= f), grad_norm, lr, params


class MultistartResult(NamedTuple):
    """N runs from random starts: each run's end, the best one, and what was found.

    Attributes:
      starts: (N, d) start points. x: (N, d) end points. f, steps: (N,). stop_reason: N names.
      best: index of the run with the lowest finite f.
      traces: the N traces (gdlab.engine.Trace) when kept, else None.
      reached_global: runs that ended within ``found_tol`` of a recorded global minimum.
      global_minima_found: how many distinct recorded global minima some run ended at
        (None when the landscape records none).
    """

    starts: np.ndarray
    x: np.ndarray
    f: np.ndarray
    steps: np.ndarray
    stop_reason: tuple[str, ...]
    best: int
    elapsed: float
    traces: tuple | None
    reached_global: int | None
    global_minima_found: int | None


@lru_cache(maxsize=128)
def _loss_for(fn: Callable) -> Callable:
    # one loss object per landscape function, so the engine's compiled chunks are reused
    return lambda theta, _data: fn(theta)


def landscape_objective(landscape: Landscape):
    """The landscape as an engine objective: loss(θ, data) = f(θ); no data, no metrics.

    Args:
      landscape: a :class:`Landscape`.

    Returns:
      A :class:`gdlab.engine.Objective` (one loss object per function, so compiled runs are reused).

    Example:
      >>> import jax.numpy as jnp
      >>> obj = landscape_objective(get_landscape("bowl"))
      >>> float(obj.loss(jnp.array([2.0]), None))
      4.0
    """
    from gdlab import engine

    return engine.Objective(loss=_loss_for(landscape.fn))


def _start_point(landscape: Landscape, init: Any) -> np.ndarray:
    if init is None:
        if landscape.start is None:
            raise ValueError(f'"{landscape.name[:60]}" has no default start; give init, a point with '
                             f'{landscape.dim} coordinate{"s" if landscape.dim > 1 else ""}.')
        init = landscape.start
    point = np.atleast_1d(np.asarray(init, dtype=float))
    if point.shape != (landscape.dim,):
        raise ValueError(f"init has {point.size} coordinate{'s' if point.size != 1 else ''} but "
                         f"{landscape.name[:60]!s} is {landscape.dim}-D; give {landscape.dim}.")
    if not np.all(np.isfinite(point)):
        raise ValueError(f"init must be finite, got {point.tolist()}.")
    return point


def _criteria(max_steps, tol, patience, grad_tol):
    from gdlab import stopping

    return stopping.StopCriteria(max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol).validate()


def _check_precision(precision: str) -> None:
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")


def minimize(function: str | Landscape, init: Any = None, optimizer=None, *, max_steps: int = 10_000,
             tol: float = 1e-15, patience: int = 20, grad_tol: float = 0.0,
             callback: Callable[[dict], Any] | None = None, precision: str = "float64") -> MinimizeResult:
    r"""Minimise a landscape by gradient descent from ``init`` with gdlab's engine.

    .. math::  \theta_{t+1} = \theta_t + u_t, \quad (u_t, s_{t+1}) = \text{optimizer}(\nabla f(\theta_t), s_t)

    Args:
      function: a :class:`Landscape`, a name of :data:`LANDSCAPES` or an expression in x (and y).
      init: the start point (default: the landscape's ``start``).
      optimizer: an optax transform from :mod:`gdlab.optim` (default ``gd(lr=0.01)``).
      max_steps, tol, patience, grad_tol: the stopping rules of :mod:`gdlab.stopping`.
      callback: called with each compiled chunk's trace rows (progress displays).
      precision: ``"float64"`` (default; JAX switched to 64-bit inside this call only) or ``"float32"``.

    Returns:
      A :class:`MinimizeResult`; ``trace.loss[t]`` is f(θ_t).

    Example:
      >>> from gdlab import optim
      >>> res = minimize("double-well", 1.5, optim.gd(0.01))       # stays in the right-hand well
      >>> res.stop_reason, round(float(res.x[0]), 6)
      ('converged', 1.2)
    """
    import jax

    from gdlab import engine, optim

    _check_precision(precision)
    with jax.enable_x64(precision == "float64"):
        landscape = get_landscape(function)
        theta0 = _start_point(landscape, init)
        optimizer = optimizer if optimizer is not None else optim.gd(0.01)
        criteria = _criteria(max_steps, tol, patience, grad_tol)
        result = engine.run(landscape_objective(landscape), optimizer, jax.numpy.asarray(theta0), criteria,
                            callback=callback)
    return MinimizeResult(x=np.asarray(result.params), f=result.loss, steps=result.steps,
                          stop_reason=result.stop_reason, elapsed=result.elapsed, trace=result.trace)


def random_starts(box: Sequence[Sequence[float]], n: int, seed: int = 0) -> np.ndarray:
    """n points drawn uniformly in the box, reproducibly from ``seed``: shape (n, d).

    Args:
      box: one (lo, hi) pair per coordinate.
      n: how many points, ≥ 1.
      seed: the NumPy generator's seed.

    Returns:
      The points, shape (n, d).

    Example:
      >>> random_starts(((-1, 1), (0, 2)), 3, seed=0).shape
      (3, 2)
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of starts must be a whole number ≥ 1, got {n!r}.")
    lo, hi = np.asarray(box, dtype=float).T
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, lo.size))


def near_minima(points: np.ndarray, minima: Sequence[Minimum], tol: float = FOUND_TOL) -> np.ndarray:
    """(N, M) booleans: point i lies within ``tol`` (Euclidean) of minimum j.

    Args:
      points: N points, shape (N, d).
      minima: M recorded minima.
      tol: the Euclidean distance that counts as "at" a minimum.

    Returns:
      A boolean array (N, M).

    Example:
      >>> minima = get_landscape("double-well").global_minima + get_landscape("double-well").local_minima
      >>> near_minima(np.array([[-1.5], [1.2], [0.0]]), minima).tolist()
      [[True, False], [False, True], [False, False]]
    """
    points = np.atleast_2d(np.asarray(points, dtype=float))
    if not minima:
        return np.zeros((len(points), 0), dtype=bool)
    centres = np.asarray([m.x for m in minima], dtype=float)
    dist = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1)
    return np.isfinite(dist) & (dist <= tol)


def minima_found(points: np.ndarray, minima: Sequence[Minimum], tol: float = FOUND_TOL) -> tuple[int, int]:
    """(how many of ``points`` lie within tol of some minimum, how many minima have such a point).

    Args:
      points, minima, tol: as :func:`near_minima`.

    Returns:
      (points at a minimum, minima found).

    Example:
      >>> minima_found(np.array([[3.0, 2.0], [3.0, 2.0], [0.0, 0.0]]), get_landscape("himmelblau").global_minima)
      (2, 1)
    """
    close = near_minima(points, minima, tol)
    return int(close.any(axis=1).sum()), int(close.any(axis=0).sum())


def multistart(function: str | Landscape, n: int, optimizer=None, *, seed: int = 0,
               box: Sequence[Sequence[float]] | None = None, starts: np.ndarray | None = None,
               max_steps: int = 10_000, tol: float = 1e-15, patience: int = 20, grad_tol: float = 0.0,
               keep_traces: bool = False, found_tol: float = FOUND_TOL, vectorize: bool = True,
               callback: Callable[[int, int], Any] | None = None, precision: str = "float64") -> MultistartResult:
    r"""Gradient descent from ``n`` random starts at once (one ``vmap``-ed compiled program); keep the best.

    .. math::  \theta_0^{(i)} \sim \mathcal U(\text{box}),\ i = 1..n; \qquad
               \hat\theta = \theta^{(i^*)},\ i^* = \arg\min_i f(\theta^{(i)}_\text{end})

    Every start runs the same engine program as :func:`minimize` (the same stopping rules,
    per run), batched with :func:`gdlab.sweep.run_batch`.

    Args:
      function: a landscape, its name or an expression.
      n: the number of starts.
      optimizer: an optax transform from :mod:`gdlab.optim` (default ``gd(lr=0.01)``).
      seed: seeds the uniform draws of the starts.
      box: ((lo, hi), ...) to draw from (default: the landscape's box).
      starts: (n, d) start points to use instead of random ones.
      max_steps, tol, patience, grad_tol: the stopping rules of :mod:`gdlab.stopping`.
      keep_traces: keep every run's trace (for pictures).
      found_tol: a run ended at a minimum when within this Euclidean distance of it.
      vectorize: ``vmap`` the runs (default), or run them one after another inside the compiled
        program, bit for bit as :func:`minimize` (see :func:`gdlab.sweep.run_batch`).
      callback: called as ``callback(runs_stopped, n)`` after each compiled chunk.
      precision: ``"float64"`` (default) or ``"float32"``.

    Returns:
      A :class:`MultistartResult`.

    Example:
      >>> res = multistart("himmelblau", 64, seed=0)
      >>> res.global_minima_found, res.reached_global, round(float(res.f[res.best]), 12)
      (4, 64, 0.0)
    """
    import jax

    from gdlab import optim, sweep

    _check_precision(precision)
    landscape = get_landscape(function, box)
    if starts is None:
        starts = random_starts(landscape.box, n, seed)
    starts = np.asarray(starts, dtype=float)
    if starts.ndim != 2 or starts.shape[1] != landscape.dim or not np.all(np.isfinite(starts)):
        raise ValueError(f"starts must be finite points of shape (n, {landscape.dim}).")
    with jax.enable_x64(precision == "float64"):
        optimizer = optimizer if optimizer is not None else optim.gd(0.01)
        criteria = _criteria(max_steps, tol, patience, grad_tol)
        batch = sweep.run_batch(landscape_objective(landscape), optimizer, starts, criteria,
                                keep_traces=keep_traces, vectorize=vectorize, callback=callback)
    f = np.asarray(batch.loss, dtype=float)
    finite = np.where(np.isfinite(f), f, np.inf)
    best = int(np.argmin(finite))
    reached = found = None
    if landscape.global_minima:
        reached, found = minima_found(batch.params, landscape.global_minima, found_tol)
    return MultistartResult(starts=starts, x=np.asarray(batch.params), f=f, steps=np.asarray(batch.steps),
                            stop_reason=tuple(batch.stop_reason), best=best, elapsed=batch.elapsed,
                            traces=batch.traces, reached_global=reached, global_minima_found=found)
