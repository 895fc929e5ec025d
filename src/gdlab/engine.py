r"""The compiled optimization loop: chunks of steps under ``lax.scan``, early stopping, a trace.

One step at θ_t:

1. L_t, g_t = L(θ_t), ∇L(θ_t); record (t, L_t, ‖g_t‖, θ_t, metrics(θ_t));
2. decide with :func:`gdlab.stopping.check` whether the run stops at θ_t;
3. if not: u_t, s_{t+1} = optimizer.update(g_t, s_t, θ_t); θ_{t+1} = θ_t + u_t; record η_t.

Steps run in compiled chunks (``jit`` of a ``lax.scan``); once a run has stopped, the rest of
its chunk is skipped by ``lax.cond`` and dropped from the trace. Between chunks Python checks
the stop flag and calls ``callback`` (progress bars, the web stream). The objective's data
(a target, a data set) is an argument of the compiled chunk, not a constant baked into it, so a
new problem of the same shapes reuses the compiled code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdlab import stopping
from gdlab.optim import learning_rate

Params = jax.Array
LossFn = Callable[[Params, Any], jax.Array]
MetricsFn = Callable[[Params, Any], dict]


class Objective(NamedTuple):
    """What the engine minimises.

    Attributes:
      loss: (θ, data) ↦ scalar; pure and jittable. Return NaN where θ is out of the domain.
      data: a pytree of arrays passed to ``loss`` (and ``metrics``, ``fisher``).
      metrics: (θ, data) ↦ dict of arrays recorded in the trace at every step, or None.
      fisher: (θ, data) ↦ the Fisher information at θ, passed to optimizers that use it
        (:func:`gdlab.optim.natural`) as the extra argument ``fisher``: a matrix (P, P) for the
        flattened θ, or a function v ↦ F v (Fisher-vector products, for large P); None if unknown.
      in_domain: θ ↦ bool, whether θ is a valid parameter; passed as the extra argument
        ``in_domain`` so that an optimizer may shorten a step that would leave the domain
        (natural gradient does; plain gradient descent does not, and such a run diverges).
    """

    loss: LossFn
    data: Any = None
    metrics: MetricsFn | None = None
    fisher: Callable[[Params, Any], Any] | None = None
    in_domain: Callable[[Params], jax.Array] | None = None


@dataclass(frozen=True)
class Trace:
    """Per-step records of a run: ``trace.loss[t]`` is L(θ_t); row 0 is the start.

    Columns: ``step``, ``loss``, ``grad_norm``, ``lr`` (the step size of the update made from
    θ_t), ``params`` (θ_t), and the objective's metrics (for a fit: ``mean``, ``var``,
    ``kl_forward``, ``kl_reverse``).
    """

    columns: dict

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(f"the trace has no column {name!r}; it has {', '.join(self.columns)}.") from None

    def __len__(self) -> int:
        return len(self.columns["step"])

    def __contains__(self, name: str) -> bool:
        return name in self.columns


class RunResult(NamedTuple):
    """How a run ended: the final θ, its loss, the number of updates, why it stopped, the trace."""

    params: np.ndarray
    loss: float
    steps: int
    stop_reason: str
    elapsed: float
    trace: Trace


class _Carry(NamedTuple):
    params: Params
    opt_state: Any
    step: jax.Array
    first_loss: jax.Array
    recent_losses: jax.Array
    reason: jax.Array


def _where(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


@lru_cache(maxsize=64)
def _compiled_chunk(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain, optimizer: optax.GradientTransformation,
                    criteria: stopping.StopCriteria, length: int):
    opt = optax.with_extra_args_support(optimizer)

    def live(carry: _Carry, data):
        value, grad = jax.value_and_grad(loss)(carry.params, data)
        grad_norm = optax.tree.norm(grad)
        first = jnp.where(carry.step == 0, value, carry.first_loss)
        params_finite = jnp.all(jnp.isfinite(carry.params))
        reason, recent = stopping.check(criteria, carry.step, value, first, grad_norm, params_finite,
                                        carry.recent_losses)
        extra = {} if fisher is None else {"fisher": fisher(carry.params, data)}
        if in_domain is not None:
            extra["in_domain"] = in_domain
        updates, new_state = opt.update(grad, carry.opt_state, carry.params, **extra)
        go = reason == stopping.RUNNING
        row = dict(step=carry.step, loss=value, grad_norm=grad_norm, lr=learning_rate(new_state),
                   params=carry.params, valid=jnp.bool_(True))
        if metrics is not None:
            row.update(metrics(carry.params, data))
        new = _Carry(_where(go, optax.apply_updates(carry.params, updates), carry.params),
                     _where(go, new_state, carry.opt_state), carry.step + go.astype(carry.step.dtype),
                     first, recent, reason)
        return new, row

    def run_chunk(carry: _Carry, data):
        row_shape = jax.eval_shape(lambda c: live(c, data)[1], carry)

        def frozen(c: _Carry, _):
            return c, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), row_shape)

        def step(c: _Carry, _):
            return jax.lax.cond(c.reason == stopping.RUNNING, lambda cc: live(cc, data), lambda cc: frozen(cc, None), c)

        return jax.lax.scan(step, carry, None, length=length)

    return jax.jit(run_chunk)


def run(objective: Objective, optimizer: optax.GradientTransformation, init_params: Params,
        criteria: stopping.StopCriteria = stopping.StopCriteria(), *, chunk_size: int | None = None,
        callback: Callable[[dict], None] | None = None) -> RunResult:
    """Minimise ``objective.loss`` from ``init_params`` with ``optimizer`` until ``criteria`` stop it.

    Args:
      objective: the loss (and optional metrics and Fisher) with its data.
      optimizer: an optax transform (hyperparameters injected, see :mod:`gdlab.optim`).
      init_params: θ_0, a 1-D array.
      criteria: when to stop (:class:`gdlab.stopping.StopCriteria`).
      chunk_size: steps per compiled chunk; default min(max_steps + 1, 1024).
      callback: called after every chunk with that chunk's rows (NumPy arrays).

    Returns:
      A :class:`RunResult`; ``trace`` has ``steps + 1`` rows (θ_0 … θ_steps).

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> obj = Objective(loss=lambda th, _: jnp.sum((th - 3.0) ** 2))
      >>> res = run(obj, optim.gd(0.25), jnp.zeros(1), stopping.StopCriteria(max_steps=50))
      >>> res.stop_reason, round(float(res.params[0]), 6)
      ('converged', 3.0)
    """
    criteria.validate()
    length = chunk_size or min(criteria.max_steps + 1, 1024)
    params = jnp.asarray(init_params)
    chunk = _compiled_chunk(objective.loss, objective.metrics, objective.fisher, objective.in_domain, optimizer,
                            criteria, length)
    zero = jnp.zeros((), params.dtype)
    carry = _Carry(params, optimizer.init(params), jnp.zeros((), jnp.int32), zero,
                   stopping.recent_losses_init(criteria, params.dtype), jnp.zeros((), jnp.int32))
    pieces = []
    start = time.perf_counter()
    while True:
        carry, rows = chunk(carry, objective.data)
        rows = jax.device_get(rows)
        valid = rows.pop("valid")
        rows = {k: np.asarray(v)[valid] for k, v in rows.items()}
        pieces.append(rows)
        if callback is not None:
            callback(rows)
        if int(carry.reason) != stopping.RUNNING:
            break
    elapsed = time.perf_counter() - start
    columns = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    trace = Trace(columns)
    return RunResult(params=np.asarray(carry.params), loss=float(columns["loss"][-1]), steps=int(carry.step),
                     stop_reason=stopping.STOP_REASONS[int(carry.reason)], elapsed=elapsed, trace=trace)
