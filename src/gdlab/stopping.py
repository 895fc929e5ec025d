r"""When a run stops: convergence criteria and divergence ("running away") detection.

One small pure function, :func:`check`, decides after each evaluated point θ_t whether the
run goes on. In order of precedence:

1. ``diverged`` — the loss, the gradient or θ is not finite (this includes a step that left
   the parameter domain, e.g. a negative variance, which objectives report as NaN), or the
   loss rose far past its start:  L_t − L_0 > divergence_factor · max(1, |L_0|).
2. ``converged`` — the loss stopped changing: over the last ``patience`` steps it moved by at
   most tol · max(1, |L_t|), i.e. max(L_{t−patience..t}) − min(L_{t−patience..t}) ≤ that
   (``tol = 0`` turns this off); or ‖∇L(θ_t)‖ ≤ grad_tol (``grad_tol = 0``, the default, turns
   that off). The range over a window, rather than one step's change, matters near a minimum:
   there the loss is quadratic in the error, so a slowly converging run changes its loss by
   very little per step long before θ is accurate; over ``patience`` steps the change is
   about patience times larger, and an oscillating run (momentum) cannot pass by crossing.
3. ``max_steps`` — t = max_steps updates have been made.

A stopped run keeps its trace: the stop reason is a result, not an exception.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

RUNNING, CONVERGED, MAX_STEPS, DIVERGED = 0, 1, 2, 3
MAX_STEPS_LIMIT = 2**31 - 2     # the step counter is int32
PATIENCE_LIMIT = 100_000         # the window of recent losses is an array of patience + 1
STOP_REASONS = {RUNNING: "running", CONVERGED: "converged", MAX_STEPS: "max_steps", DIVERGED: "diverged"}


class StopCriteria(NamedTuple):
    """Settings of :func:`check` (see the module docstring for the rules)."""

    max_steps: int = 10_000
    tol: float = 1e-15
    patience: int = 20
    grad_tol: float = 0.0
    divergence_factor: float = 1e3

    def validate(self) -> "StopCriteria":
        """Return self, or raise ValueError naming the first bad setting."""
        if not isinstance(self.max_steps, int) or not 0 <= self.max_steps <= MAX_STEPS_LIMIT:
            raise ValueError(f"max_steps must be a whole number from 0 to {MAX_STEPS_LIMIT:,}, got {self.max_steps!r}.")
        for name in ("tol", "grad_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
                raise ValueError(f"{name} must be a finite number ≥ 0 (0 turns it off), got {v!r}.")
        if not isinstance(self.patience, int) or not 1 <= self.patience <= PATIENCE_LIMIT:
            raise ValueError(f"patience must be a whole number from 1 to {PATIENCE_LIMIT:,}, got {self.patience!r}.")
        if not (self.divergence_factor > 0):
            raise ValueError(f"divergence_factor must be positive, got {self.divergence_factor!r}.")
        return self


def recent_losses_init(criteria: StopCriteria, dtype=jnp.float64) -> jax.Array:
    """The window of recent losses that :func:`check` carries: ``patience + 1`` NaNs at the start.

    Args:
      criteria: the stopping rules (their ``patience`` sets the window's length).
      dtype: the losses' dtype.

    Returns:
      An array of ``patience + 1`` NaNs.

    Example:
      >>> recent_losses_init(StopCriteria(patience=2)).tolist()
      [nan, nan, nan]
    """
    return jnp.full((criteria.patience + 1,), jnp.nan, dtype)


def check(criteria: StopCriteria, step: jax.Array, loss: jax.Array, first_loss: jax.Array,
          grad_norm: jax.Array, params_finite: jax.Array, recent: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Decide whether to stop at θ_step. Returns (reason code, updated window of recent losses).

    ``recent`` holds the last ``patience + 1`` losses (NaN where not yet seen); pass the value
    returned at the previous step, :func:`recent_losses_init` at the start. The rules, in order:

    .. math::

       \text{diverged: } L_t, \lVert g_t \rVert \text{ or } \theta_t \text{ not finite, or }
       L_t - L_0 > c \max(1, |L_0|); \qquad
       \text{converged: } \max_{s \in W} L_s - \min_{s \in W} L_s \le \mathrm{tol} \max(1, |L_t|)
       \text{ or } \lVert g_t \rVert \le \mathrm{grad\_tol}

    with W the last ``patience + 1`` steps and c = ``divergence_factor``; otherwise ``max_steps``
    once ``step`` reaches it.

    Args:
      criteria: the stopping rules.
      step: t, the number of updates made so far.
      loss, first_loss: L_t and L_0.
      grad_norm: ‖∇L(θ_t)‖.
      params_finite: whether every entry of θ_t is finite.
      recent: the window of recent losses.

    Returns:
      (reason, recent): ``RUNNING``, ``CONVERGED``, ``MAX_STEPS`` or ``DIVERGED`` as an int32
      scalar (names in ``STOP_REASONS``), and the updated window.

    Example:
      >>> import jax.numpy as jnp
      >>> c = StopCriteria(max_steps=100, tol=1e-9, patience=1)
      >>> recent = recent_losses_init(c)
      >>> for t in range(3):                     # a loss that stays at 1.0 stops after patience + 1 steps
      ...     reason, recent = check(c, jnp.int32(t), jnp.array(1.0), jnp.array(1.0), jnp.array(0.1),
      ...                            jnp.array(True), recent)
      ...     print(STOP_REASONS[int(reason)])
      running
      converged
      converged
    """
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & params_finite
    ran_away = loss - first_loss > criteria.divergence_factor * jnp.maximum(1.0, jnp.abs(first_loss))
    diverged = ~finite | ran_away

    recent = recent.at[step % recent.shape[0]].set(loss)
    # NaN marks a slot not yet written. The fullness test is explicit: XLA:CPU's vectorised
    # max/min reductions drop NaNs over large vmap batches (jaxlib 0.10: max − min came out −inf
    # for a 21-slot window at 256 lanes), so "NaN until full" cannot ride on the spread.
    full = ~jnp.any(jnp.isnan(recent))
    spread = jnp.max(recent) - jnp.min(recent)
    calm = full & (spread <= criteria.tol * jnp.maximum(1.0, jnp.abs(loss)))
    converged = ((criteria.tol > 0) & calm) | ((criteria.grad_tol > 0) & (grad_norm <= criteria.grad_tol))

    reason = jnp.where(diverged, DIVERGED,
                       jnp.where(converged, CONVERGED,
                                 jnp.where(step >= criteria.max_steps, MAX_STEPS, RUNNING)))
    return reason.astype(jnp.int32), recent
