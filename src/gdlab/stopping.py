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


def sliding_range(values: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
    r"""Max and min over every window of ``width`` consecutive values.

    .. math::  \mathrm{hi}_j = \max_{0 \le i < w} x_{j+i}, \quad \mathrm{lo}_j = \min_{0 \le i < w} x_{j+i},
               \quad j = 0 \ldots n - w

    By doubling (van Herk's idea in its sparse-table form): maxima over 1, 2, 4, …, k ≤ w values,
    then two overlapping windows of k: ⌈log₂ w⌉ + 1 elementwise passes instead of w.

    Args:
      values: x, a 1-D array of n ≥ w values.
      width: w, the window's length.

    Returns:
      (hi, lo), each of n − w + 1 values.

    Example:
      >>> hi, lo = sliding_range(jnp.array([3., 1., 4., 1., 5.]), 3)
      >>> hi.tolist(), lo.tolist()
      ([4.0, 4.0, 5.0], [1.0, 1.0, 1.0])
    """
    hi, lo, k = values, values, 1
    while 2 * k <= width:
        hi, lo = jnp.maximum(hi[:-k], hi[k:]), jnp.minimum(lo[:-k], lo[k:])
        k *= 2
    n = values.shape[0] - width + 1
    return (jnp.maximum(hi[:n], hi[width - k:width - k + n]),
            jnp.minimum(lo[:n], lo[width - k:width - k + n]))


def check_block(criteria: StopCriteria, step0: jax.Array, loss: jax.Array, grad_norm: jax.Array,
                params_finite: jax.Array, first_loss: jax.Array, recent: jax.Array, active: jax.Array = True,
                lanes_axis: str | None = None):
    """:func:`check` applied to K consecutive steps at once, after they were computed.

    Step j of the block is step t = step0 + j, with ``loss[j]``, ``grad_norm[j]``,
    ``params_finite[j]``; ``recent`` holds the ``patience + 1`` losses before step0, oldest first,
    NaN where not seen (:func:`recent_losses_init` at the start, or after a reset: NaNs always
    come first). The rules and their precedence are those of :func:`check`, step by step; the
    window's spread is computed for all K steps together (:func:`sliding_range`), which is what
    lets the engine run K steps without any per-step stopping work. ``active``: False for a run
    that has stopped already (under ``vmap`` its lane still computes); ``lanes_axis``: the name of
    the ``vmap`` axis of the lanes, if any.

    Args:
      criteria: the rules' settings.
      step0: the step number of the block's first step.
      loss, grad_norm, params_finite: per step of the block (K values each).
      first_loss: the loss at step 0 of the run (read when step0 > 0).
      recent: the window of the ``patience + 1`` losses before the block, oldest first.
      active: whether the run is still going (False: nothing it shows can call for the spread).
      lanes_axis: the ``vmap`` axis name of the runs, or None.

    Returns:
      (stop, reason, first_loss, recent): ``stop`` the first j at which a rule fires (K if none),
      ``reason`` its code (RUNNING if none), the loss at step 0 of the run, and the window of the
      last ``patience + 1`` losses after the block (meaningful only when the run goes on).

    Example:
      >>> c = StopCriteria(max_steps=100, tol=1e-9, patience=2)
      >>> losses = jnp.array([4., 2., 1., 1., 1., 1.])
      >>> stop, reason, first, _ = check_block(c, jnp.int32(0), losses, jnp.ones(6), jnp.ones(6, bool),
      ...                                      jnp.float64(0), recent_losses_init(c))
      >>> int(stop), STOP_REASONS[int(reason)]       # steps 2, 3, 4 all at 1: calm at step 4
      (4, 'converged')
    """
    k = loss.shape[0]
    width = recent.shape[0]
    steps = step0 + jnp.arange(k, dtype=step0.dtype)
    first = jnp.where(step0 == 0, loss[0], first_loss)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & params_finite
    ran_away = loss - first > criteria.divergence_factor * jnp.maximum(1.0, jnp.abs(first))
    diverged = ~finite | ran_away

    window = jnp.concatenate([recent, loss])            # step j's window: window[j + 1 : j + 1 + width]
    # NaNs (slots not yet written) are a prefix of `recent`: step j's window is full once it
    # starts past them. A NaN loss inside the block stops the run there (diverged) before any
    # later window matters. Fullness is tested by position, not through max/min, which drop
    # NaNs in XLA:CPU's vectorised reductions.
    unseen = jnp.sum(jnp.isnan(recent))
    full = jnp.arange(k) + 1 >= unseen
    threshold = criteria.tol * jnp.maximum(1.0, jnp.abs(loss))

    def spread_calm():
        if k == 1:      # one step (the explorer's step-by-step runs): two reductions, fewer small ops
            hi, lo = jnp.max(window[1:], keepdims=True), jnp.min(window[1:], keepdims=True)
        else:
            hi, lo = sliding_range(window[1:], width)
        return full & (hi - lo <= threshold)

    if criteria.tol > 0 and k > 1:
        # The window's spread is most of the cost of the rules. A window is calm only if its last
        # two losses are that close (their difference is at most the spread, in floating point
        # too: rounding is monotone), so the spread is computed only in blocks where some step
        # passes that test; under vmap, over every lane (`lanes_axis`), so that the branch is
        # taken or skipped for all lanes together rather than computed and selected.
        close = full & (jnp.abs(loss - window[width - 1:-1]) <= threshold) & active
        needed = jnp.any(close)
        if lanes_axis is not None:
            needed = jax.lax.psum(needed.astype(jnp.int32), lanes_axis) > 0
        calm = jax.lax.cond(needed, spread_calm, lambda: jnp.zeros(k, bool))
    else:
        calm = spread_calm()
    converged = ((criteria.tol > 0) & calm) | ((criteria.grad_tol > 0) & (grad_norm <= criteria.grad_tol))

    reason = jnp.where(diverged, DIVERGED,
                       jnp.where(converged, CONVERGED,
                                 jnp.where(steps >= criteria.max_steps, MAX_STEPS, RUNNING))).astype(jnp.int32)
    stopped = reason != RUNNING
    stop = jnp.where(jnp.any(stopped), jnp.argmax(stopped), k).astype(jnp.int32)
    return stop, jnp.where(stop < k, reason[jnp.minimum(stop, k - 1)], RUNNING).astype(jnp.int32), first, \
        window[k:]
