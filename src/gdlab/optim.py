r"""Optimizers: optax transforms with their hyperparameters injected.

Every optimizer here is an ``optax.GradientTransformation`` built with
``optax.inject_hyperparams``, so the learning rate (a number or an optax schedule) and the
momentum live in the optimizer state as traced values: a sweep or a slider changes them
without recompiling, and the learning rate actually used at each step can be read back
(:func:`learning_rate`). Negative learning rates are allowed on purpose: gradient *ascent*
shows a run "running away" (source text 000, "set the step size to -0.02").

Natural gradient (Fisher-preconditioned) steps slot in as further transforms whose
``update`` receives the Fisher information at the current parameters as an extra argument
``fisher`` (``optax.GradientTransformationExtraArgs``); the engine passes it to every
optimizer and plain ones ignore it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jax.Array], jax.Array]
LearningRate = Union[float, Schedule]

OPTIMIZERS = ("gd", "momentum", "nesterov", "adam")


def _check_lr(lr: LearningRate) -> None:
    if callable(lr):
        return
    if not isinstance(lr, (int, float)) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number or an optax schedule, got {lr!r}.")


def _check_momentum(momentum: float) -> None:
    if not isinstance(momentum, (int, float)) or not (0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be a number in [0, 1] (0 keeps none, 0.9 and 0.99 are "
                         f"sensible), got {momentum!r}.")


def gd(lr: LearningRate = 0.1) -> optax.GradientTransformation:
    r"""Plain gradient descent.

    .. math::  \theta_{t+1} = \theta_t - \eta_t \nabla L(\theta_t)

    Example:
      >>> import jax.numpy as jnp
      >>> opt = gd(lr=0.1)
      >>> u, _ = opt.update(jnp.array([2.0]), opt.init(jnp.zeros(1)))
      >>> float(u[0])
      -0.2
    """
    _check_lr(lr)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)


def momentum(lr: LearningRate = 0.1, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""Heavy-ball momentum (Polyak 1964), optax's ``sgd(momentum=β)``.

    .. math::

       v_{t+1} = \beta v_t + \nabla L(\theta_t), \qquad
       \theta_{t+1} = \theta_t - \eta_t v_{t+1}, \qquad v_0 = 0

    With a constant step this is θ_{t+1} = θ_t − η∇L(θ_t) + β(θ_t − θ_{t−1}): a fraction β of
    the previous step carries over. β = 0 is plain gradient descent; β = 1 keeps all of it.

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


def nesterov(lr: LearningRate = 0.1, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""Nesterov momentum, optax's ``sgd(momentum=β, nesterov=True)``.

    .. math::

       v_{t+1} = \beta v_t + \nabla L(\theta_t), \qquad
       \theta_{t+1} = \theta_t - \eta_t (\nabla L(\theta_t) + \beta v_{t+1})

    References:
      Sutskever et al., "On the importance of initialization and momentum in deep learning", 2013.
    """
    _check_lr(lr)
    _check_momentum(momentum)
    return optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
        learning_rate=lr, momentum=momentum, nesterov=True)


def adam(lr: LearningRate = 0.01, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    r"""Adam (Kingma & Ba 2015), optax's ``adam``.

    .. math::

       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
       \quad \theta_{t+1} = \theta_t - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

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


def by_name(name: str, lr: LearningRate, momentum: float | None = None) -> optax.GradientTransformation:
    """The optimizer called ``name`` (one of ``OPTIMIZERS``) with learning rate ``lr``.

    ``momentum`` is used by ``momentum`` and ``nesterov`` (default 0.9) and refused elsewhere
    rather than silently ignored.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}.")
    if name in ("momentum", "nesterov"):
        return globals()[name](lr, 0.9 if momentum is None else momentum)
    if momentum is not None and momentum != 0:
        raise ValueError(f"momentum applies to the momentum and nesterov optimizers, not {name!r}; "
                         f"use --optimizer momentum or drop --momentum.")
    return gd(lr) if name == "gd" else adam(lr)


def learning_rate(state: Any) -> jax.Array:
    """The learning rate the last update used, read from an injected-hyperparameter state.

    NaN for an optimizer built without ``optax.inject_hyperparams`` (its rate is not in the state).
    """
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    is_injected = lambda x: isinstance(x, injected)  # noqa: E731
    for s in jax.tree_util.tree_leaves(state, is_leaf=is_injected):
        if is_injected(s) and "learning_rate" in s.hyperparams:
            return jnp.asarray(s.hyperparams["learning_rate"])
    return jnp.asarray(jnp.nan)
