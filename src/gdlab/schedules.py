r"""Learning-rate schedules by name, all of them optax schedules.

=================  ==============================================================  =========================
name               learning rate at step t                                          options
=================  ==============================================================  =========================
``constant``       η                                                                –
``exponential``    η · γ^(t / k)           (annealing)                              decay γ, decay_steps k=1
``step``           η · γ^⌊t / k⌋                                                    decay γ, decay_steps k=100
``cosine``         η · (α + (1−α)·½(1 + cos(π·min(t, T)/T)))                        decay_steps T, alpha α
``warm-restarts``  cosine cycles of length P, P·r, P·r², … each restarting at η     period P, period_mult r,
                   (SGDR)                                                           alpha α
=================  ==============================================================  =========================

References:
  Loshchilov & Hutter, "SGDR: Stochastic gradient descent with warm restarts", 2017.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "exponential", "step", "cosine", "warm-restarts")

Schedule = Callable[[jax.Array], jax.Array]


def _on_float_steps(schedule: Schedule) -> Schedule:
    """Evaluate ``schedule`` at a float step count: optax's decays computed from the int32 count
    come out in float32 (0.1 becomes 0.10000000149) even when a run is in float64."""
    return lambda count: schedule(jnp.asarray(count, dtype=jnp.result_type(float)))


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive whole number of steps, got {value!r}.")
    return value


def _check_decay(decay: float) -> None:
    if not (isinstance(decay, (int, float)) and 0.0 < decay <= 1.0):
        raise ValueError(f"decay must be in (0, 1] (the factor the learning rate is multiplied by), got {decay!r}.")


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1] (the final learning rate as a fraction of lr), got {alpha!r}.")


def warm_restarts(lr: float, period: int, period_mult: float = 1.0, alpha: float = 0.0) -> Schedule:
    r"""SGDR: cosine annealing from lr to α·lr, restarted at lr after P, P·r, P·r², … steps.

    .. math::

       s_i = P\,\frac{r^i - 1}{r - 1}\ (s_i = iP \text{ if } r = 1),\qquad
       \eta_t = \eta\left(\alpha + \frac{1-\alpha}2\left(1 + \cos\frac{\pi (t - s_i)}{P r^i}\right)\right)
       \text{ for } s_i \le t < s_{i+1}

    Written in closed form rather than with ``optax.sgdr_schedule``, which joins one schedule per
    cycle: its graph grows with the number of cycles (period 1 over 10,000 steps did not compile
    in minutes); this one is a handful of operations for any number of cycles.

    Args:
      lr: η, the rate at the start of every cycle.
      period: P ≥ 1, the first cycle's length in steps.
      period_mult: r ≥ 1, each cycle's length over the previous one's.
      alpha: α in [0, 1], the floor of each cycle as a fraction of η.

    Returns:
      An optax schedule, step t ↦ η_t.

    Example:
      >>> s = warm_restarts(0.1, period=10)
      >>> [round(float(s(t)), 4) for t in (0, 5, 10, 15)]
      [0.1, 0.05, 0.1, 0.05]

    References:
      Loshchilov & Hutter, "SGDR: Stochastic gradient descent with warm restarts", 2017.
    """
    _positive_int("period", period)
    if not (isinstance(period_mult, (int, float)) and period_mult >= 1.0 and math.isfinite(period_mult)):
        raise ValueError(f"period_mult must be at least 1 (each cycle as long as or longer than the last), got {period_mult!r}.")
    _check_alpha(alpha)
    r = float(period_mult)

    def cycle_start(i):
        return i * period if r == 1.0 else period * (r ** i - 1.0) / (r - 1.0)

    def schedule(count):
        t = jnp.asarray(count, dtype=jnp.result_type(float))
        if r == 1.0:
            i = jnp.floor(t / period)
        else:
            i = jnp.floor(jnp.log1p(t * (r - 1.0) / period) / math.log(r))
        # the logarithm can land a hair off at a boundary: settle i so that s_i <= t < s_{i+1}
        i = jnp.where(cycle_start(i) > t, i - 1, i)
        i = jnp.where(cycle_start(i + 1) <= t, i + 1, i)
        length = period * r ** i
        return lr * (alpha + (1.0 - alpha) * 0.5 * (1.0 + jnp.cos(jnp.pi * (t - cycle_start(i)) / length)))

    return schedule


def make_schedule(name: str, lr: float, *, decay: float | None = None, decay_steps: int | None = None,
                  alpha: float = 0.0, period: int | None = None, period_mult: float = 1.0,
                  horizon: int = 10_000) -> Schedule | float:
    r"""The schedule called ``name`` starting from ``lr``; ``constant`` gives ``lr`` itself.

    .. math::

       \text{exponential: } \eta_t = \eta\, d^{t/k},\quad
       \text{step: } \eta_t = \eta\, d^{\lfloor t/k \rfloor},\quad
       \text{cosine: } \eta_t = \eta\left(\alpha + \tfrac{1-\alpha}{2}\left(1 + \cos\tfrac{\pi \min(t, k)}{k}\right)\right)

    with d = ``decay`` and k = ``decay_steps``; ``warm-restarts`` is :func:`warm_restarts`.

    Args:
      name: ``constant``, ``exponential``, ``step``, ``cosine`` or ``warm-restarts``.
      lr: η, the rate at step 0.
      decay: d in (0, 1] (exponential and step; default 0.99).
      decay_steps: k (default 1 for exponential, 100 for step, ``horizon`` for cosine).
      alpha: α, the floor of cosine and warm restarts as a fraction of η.
      period, period_mult: P and r of :func:`warm_restarts` (default P = 100, r = 1).
      horizon: the run's length in steps (``max_steps``): the default decay length of ``cosine``.

    Returns:
      An optax schedule t ↦ η_t, or ``lr`` itself for ``constant``.

    Example:
      >>> s = make_schedule("step", 1.0, decay=0.5, decay_steps=10)
      >>> [float(s(t)) for t in (0, 9, 10, 25)]
      [1.0, 1.0, 0.5, 0.25]
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}.")
    if not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number, got {lr!r}.")
    if name == "constant":
        return lr
    if name in ("exponential", "step"):
        decay = 0.99 if decay is None else decay
        _check_decay(decay)
        steps = _positive_int("decay_steps", decay_steps if decay_steps is not None else (1 if name == "exponential" else 100))
        return _on_float_steps(optax.exponential_decay(lr, transition_steps=steps, decay_rate=decay,
                                                       staircase=name == "step"))
    if name == "cosine":
        _check_alpha(alpha)
        steps = _positive_int("decay_steps", decay_steps if decay_steps is not None else max(horizon, 1))
        return _on_float_steps(optax.cosine_decay_schedule(lr, decay_steps=steps, alpha=alpha))
    return warm_restarts(lr, period if period is not None else 100, period_mult, alpha)
