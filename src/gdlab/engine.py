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

import functools
import itertools
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, NamedTuple

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


_REASON_CODES = {name: code for code, name in stopping.STOP_REASONS.items() if code != stopping.RUNNING}


class RunResult(NamedTuple):
    """How a run ended: the final θ, its loss, the number of updates, why it stopped, the trace."""

    params: np.ndarray
    loss: float
    steps: int
    stop_reason: str
    elapsed: float
    trace: Trace


class Carry(NamedTuple):
    """The loop state between steps (a pytree: ``vmap`` over it runs many configurations at once)."""

    params: Params
    opt_state: Any
    step: jax.Array
    first_loss: jax.Array
    recent_losses: jax.Array
    reason: jax.Array


def init_carry(optimizer: optax.GradientTransformation, init_params: Params,
               criteria: stopping.StopCriteria) -> Carry:
    """The state before step 0: θ_0, the optimizer's initial state, the stopping window."""
    params = jnp.asarray(init_params)
    zero = jnp.zeros((), params.dtype)
    return Carry(params, optimizer.init(params), jnp.zeros((), jnp.int32), zero,
                 stopping.recent_losses_init(criteria, params.dtype), jnp.zeros((), jnp.int32))


def _where(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def chunk_program(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                  optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, length: int,
                  batched: bool = False):
    """The uncompiled program of one chunk: ``(carry, data, batches) -> (carry, rows)``.

    It runs ``length`` steps under ``lax.scan``. With ``batched``, ``batches`` is a pytree whose
    leaves have a leading axis of ``length`` (one mini-batch per step) and step t's loss is
    ``loss(θ, (data, batches[t]))``; otherwise ``batches`` is ignored and the loss is
    ``loss(θ, data)``. :func:`run` jits it; :mod:`gdlab.sweep` ``vmap``-s it over carries.
    """
    opt = optax.with_extra_args_support(optimizer)

    def live(carry: Carry, data):
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
        new = Carry(_where(go, optax.apply_updates(carry.params, updates), carry.params),
                    _where(go, new_state, carry.opt_state), carry.step + go.astype(carry.step.dtype),
                    first, recent, reason)
        return new, row

    def run_chunk(carry: Carry, data, batches=None):
        def step_data(batch):
            return (data, batch) if batched else data

        example = jax.tree_util.tree_map(lambda b: b[0], batches) if batched else None
        row_shape = jax.eval_shape(lambda c: live(c, step_data(example))[1], carry)

        def frozen(c: Carry, _):
            return c, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), row_shape)

        def step(c: Carry, batch):
            return jax.lax.cond(c.reason == stopping.RUNNING, lambda cc: live(cc, step_data(batch)),
                                lambda cc: frozen(cc, None), c)

        return jax.lax.scan(step, carry, batches if batched else None, length=length)

    return run_chunk


@lru_cache(maxsize=64)
def _compiled_chunk(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                    optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, length: int,
                    batched: bool = False):
    return jax.jit(chunk_program(loss, metrics, fisher, in_domain, optimizer, criteria, length, batched))


def run(objective: Objective, optimizer: optax.GradientTransformation, init_params: Params,
        criteria: stopping.StopCriteria = stopping.StopCriteria(), *, chunk_size: int | None = None,
        callback: Callable[[dict], str | None] | None = None, batches: Iterable[Any] | None = None) -> RunResult:
    """Minimise ``objective.loss`` from ``init_params`` with ``optimizer`` until ``criteria`` stop it.

    Args:
      objective: the loss (and optional metrics, Fisher and domain) with its data.
      optimizer: an optax transform (hyperparameters injected, see :mod:`gdlab.optim`).
      init_params: θ_0, a 1-D array.
      criteria: when to stop (:class:`gdlab.stopping.StopCriteria`).
      chunk_size: steps per compiled chunk; default min(max_steps + 1, 1024).
      callback: called after every chunk with that chunk's rows (NumPy arrays). If it returns
        a stop reason (``"converged"``, ``"max_steps"`` or ``"diverged"``) the run ends there
        with that reason: this is how a caller applies a rule the compiled loop cannot see
        (e.g. the full-data loss once per epoch of mini-batch SGD).
      batches: for mini-batch runs, an iterable of chunks of mini-batches: pytrees whose leaves
        have a leading axis of steps (one chunk = that many steps, e.g. one epoch); step t's
        loss is ``objective.loss(θ, (objective.data, batch_t))``. The run ends with
        ``max_steps`` when the batches run out.

    Returns:
      A :class:`RunResult`; ``trace`` has ``steps + 1`` rows (θ_0 … θ_steps), one fewer when
      the batches ran out (no loss is evaluated after the last update).

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> obj = Objective(loss=lambda th, _: jnp.sum((th - 3.0) ** 2))
      >>> res = run(obj, optim.gd(0.25), jnp.zeros(1), stopping.StopCriteria(max_steps=50))
      >>> res.stop_reason, round(float(res.params[0]), 6)
      ('converged', 3.0)
    """
    criteria.validate()
    carry = init_carry(optimizer, init_params, criteria)
    programs = functools.partial(_compiled_chunk, objective.loss, objective.metrics, objective.fisher,
                                 objective.in_domain, optimizer, criteria)
    if batches is None:
        length = chunk_size or min(criteria.max_steps + 1, 1024)
        chunks: Iterable[Any] = itertools.repeat(None)
    else:
        chunks = iter(batches)
    pieces = []
    start = time.perf_counter()
    for xs in chunks:
        if batches is not None:
            length = int(jax.tree_util.tree_leaves(xs)[0].shape[0])
        carry, rows = programs(length, batches is not None)(carry, objective.data, xs)
        rows = jax.device_get(rows)
        valid = rows.pop("valid")
        rows = {k: np.asarray(v)[valid] for k, v in rows.items()}
        pieces.append(rows)
        asked = callback(rows) if callback is not None else None
        if int(carry.reason) != stopping.RUNNING:
            break
        if asked is not None:
            if asked not in _REASON_CODES:
                raise ValueError(f"the callback returned {asked!r}; return None to go on or one of "
                                 f"{', '.join(_REASON_CODES)} to stop.")
            carry = carry._replace(reason=jnp.asarray(_REASON_CODES[asked], jnp.int32))
            break
    else:
        carry = carry._replace(reason=jnp.asarray(stopping.MAX_STEPS, jnp.int32))
    elapsed = time.perf_counter() - start
    if not pieces:
        raise ValueError("batches gave no chunk of mini-batches; give at least one.")
    columns = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    trace = Trace(columns)
    return RunResult(params=np.asarray(carry.params), loss=float(columns["loss"][-1]), steps=int(carry.step),
                     stop_reason=stopping.STOP_REASONS[int(carry.reason)], elapsed=elapsed, trace=trace)
