r"""The compiled optimization loop: chunks of steps under ``lax.while_loop``, early stopping, a trace.

One step at θ_t:

1. L_t, g_t = L(θ_t), ∇L(θ_t); record (t, L_t, ‖g_t‖, θ_t, metrics(θ_t));
2. decide with :func:`gdlab.stopping.check` whether the run stops at θ_t;
3. if not: u_t, s_{t+1} = optimizer.update(g_t, s_t, θ_t); θ_{t+1} = θ_t + u_t; record η_t.

Steps run in compiled chunks (``jit`` of a ``lax.while_loop`` writing the trace rows into
buffers); a chunk ends at the stop, so no step is computed after it. Between chunks Python checks
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


@lru_cache(maxsize=64)
def _compiled_init(optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria):
    # Eagerly, optax's injected-hyperparameter init dispatches a dozen small ops (~5 ms).
    return jax.jit(functools.partial(init_carry, optimizer, criteria=criteria))


ROW_BUDGET_BYTES = 16 * 2**20   # the trace buffers of one chunk
MAX_CHUNK = 16384               # steps per chunk at most: Python runs between chunks
FIRST_CHUNK = 64                # the first chunk is short, so progress shows early on slow objectives
CHUNK_SECONDS = 0.5             # later chunks are sized to take about this long


def default_chunk_size(criteria: stopping.StopCriteria, n_params: int) -> int:
    """Steps per compiled chunk: min(max_steps + 1, 16384), fewer when θ is large (16 MB of rows)."""
    by_memory = ROW_BUDGET_BYTES // (8 * (n_params + 8))
    return max(1, min(criteria.max_steps + 1, MAX_CHUNK, max(256, by_memory)))


def _where(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def step_function(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                  optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria):
    """One step of the loop: ``(carry, data) -> (carry, row)``; the row describes θ_t (its loss,
    ‖∇L‖, the step size used, θ_t and the metrics) and the carry holds θ_{t+1}, or θ_t at a stop."""
    def live(carry: Carry, data):
        value, grad = jax.value_and_grad(loss)(carry.params, data)
        extra = {} if fisher is None else {"fisher": fisher(carry.params, data)}
        if in_domain is not None:
            extra["in_domain"] = in_domain
        new, row = advance(optimizer, criteria, carry, value, grad, extra)
        if metrics is not None:
            row.update(metrics(carry.params, data))
        return new, row

    return live


def advance(optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, carry: Carry, value, grad,
            extra: dict) -> tuple[Carry, dict]:
    r"""Steps 2 and 3 of the loop, once L(θ_t) and ∇L(θ_t) are known: stop, or update θ.

    .. math::  \text{reason} = \text{check}(L_t, \lVert g_t\rVert, \ldots);\quad
               \theta_{t+1} = \theta_t + u_t,\ (u_t, s_{t+1}) = \text{optimizer.update}(g_t, s_t, \theta_t)

    :func:`step_function` computes L and ∇L itself; a driver that gets them from elsewhere
    (:func:`gdlab.distributed.train_dask` sums them over data held by Dask workers) calls this.

    Args:
      optimizer, criteria: the run's optax transform and stopping rules.
      carry: the loop state at θ_t. value, grad: L(θ_t) and ∇L(θ_t).
      extra: the optimizer's extra arguments (``fisher``, ``in_domain``).

    Returns:
      (the carry at θ_{t+1}, or at θ_t with the stop reason; the trace row of θ_t: ``step``,
      ``loss``, ``grad_norm``, ``lr``, ``params``).
    """
    opt = optax.with_extra_args_support(optimizer)
    grad_norm = optax.tree.norm(grad)
    first = jnp.where(carry.step == 0, value, carry.first_loss)
    params_finite = jnp.all(jnp.isfinite(carry.params))
    reason, recent = stopping.check(criteria, carry.step, value, first, grad_norm, params_finite,
                                    carry.recent_losses)
    updates, new_state = opt.update(grad, carry.opt_state, carry.params, **extra)
    go = reason == stopping.RUNNING
    row = dict(step=carry.step, loss=value, grad_norm=grad_norm, lr=learning_rate(new_state),
               params=carry.params)
    # The optimizer state is not frozen with θ at a stop: the run ends there and its state is
    # never read again, and a select over the whole state cost ~1 µs a step on CPU (XLA
    # then copied the loop's buffers), 30 times the rest of a step.
    new = Carry(_where(go, optax.apply_updates(carry.params, updates), carry.params),
                new_state, carry.step + go.astype(carry.step.dtype), first, recent, reason)
    return new, row


def chunk_program(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                  optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, length: int,
                  batched: bool = False):
    """The uncompiled program of one chunk: ``(carry, data, batches) -> (carry, rows)``.

    It runs up to ``length`` steps (or ``limit``, a traced number ≤ ``length``, so chunks of
    any size share one compilation) under ``lax.while_loop``, ending early at a stop, and
    returns the rows in buffers of ``length`` with a ``valid`` mask. With ``batched``, ``batches`` is a pytree whose
    leaves have a leading axis of ``length`` (one mini-batch per step) and step t's loss is
    ``loss(θ, (data, batches[t]))``; otherwise ``batches`` is ignored and the loss is
    ``loss(θ, data)``. :func:`run` jits it; :mod:`gdlab.sweep` ``vmap``-s it over carries.
    """
    live = step_function(loss, metrics, fisher, in_domain, optimizer, criteria)

    def run_chunk(carry: Carry, data, batches=None, limit=None):
        limit = length if limit is None else jnp.minimum(limit, length)

        def step_data(i):
            return (data, jax.tree_util.tree_map(lambda b: b[i], batches)) if batched else data

        row_shape = jax.eval_shape(lambda c: live(c, step_data(0))[1], carry)
        buffers = jax.tree_util.tree_map(lambda r: jnp.zeros((length, *r.shape), r.dtype), row_shape)

        # A while loop, not a scan: it ends at the stop (no step of an expensive objective is
        # computed after it) and needs no per-step branch, so XLA updates its buffers in place.
        def running(state):
            i, c, _ = state
            return (i < limit) & (c.reason == stopping.RUNNING)

        def step(state):
            i, c, rows = state
            c, row = live(c, step_data(i))
            rows = jax.tree_util.tree_map(lambda buf, r: buf.at[i].set(r), rows, row)
            return i + 1, c, rows

        n, carry, rows = jax.lax.while_loop(running, step, (jnp.zeros((), jnp.int32), carry, buffers))
        rows["valid"] = jnp.arange(length) < n
        return carry, rows

    return run_chunk


class Outcome(NamedTuple):
    """What a run without a trace keeps of its rows: the last loss and when it first reached a level.

    ``loss``: L at the last θ evaluated (θ_final once the run has stopped), NaN before step 0;
    ``first_reach``: the first step t with L(θ_t) ≤ ``reach``, −1 while there is none.
    """

    loss: jax.Array
    first_reach: jax.Array


def outcome_init(dtype=jnp.float64) -> Outcome:
    return Outcome(jnp.full((), jnp.nan, dtype), jnp.full((), -1, jnp.int32))


def final_program(loss: LossFn, fisher, in_domain, optimizer: optax.GradientTransformation,
                  criteria: stopping.StopCriteria, length: int):
    """The uncompiled program of a chunk that records nothing: ``(carry, data, outcome, reach) ->
    (carry, outcome)``.

    The same steps as :func:`chunk_program` (:func:`step_function`), up to ``length`` of them under
    ``lax.while_loop``, keeping of the rows only an :class:`Outcome`. Under ``vmap`` a batched
    while loop selects its whole state at every step for the lanes still running; without row
    buffers that state is a few numbers per lane, so a sweep of many cells runs in long chunks at
    about the cost of its arithmetic (benchmarks/bench_grid.py). ``reach`` is a traced level
    (``inf`` to ignore it).
    """
    live = step_function(loss, None, fisher, in_domain, optimizer, criteria)

    def run_final(carry: Carry, data, outcome: Outcome, reach):
        def running(state):
            i, c, _ = state
            return (i < length) & (c.reason == stopping.RUNNING)

        def step(state):
            i, c, out = state
            step_index = c.step
            c, row = live(c, data)
            hit = (out.first_reach < 0) & (row["loss"] <= reach)
            out = Outcome(row["loss"], jnp.where(hit, step_index, out.first_reach).astype(jnp.int32))
            return i + 1, c, out

        _, carry, outcome = jax.lax.while_loop(running, step, (jnp.zeros((), jnp.int32), carry, outcome))
        return carry, outcome

    return run_final


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
      chunk_size: steps per compiled chunk. By default the first chunk has 64 steps and each
        later one is sized to take about half a second, up to :func:`default_chunk_size` steps
        (one compilation serves every size).
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
    carry = _compiled_init(optimizer, criteria)(jnp.asarray(init_params))
    programs = functools.partial(_compiled_chunk, objective.loss, objective.metrics, objective.fisher,
                                 objective.in_domain, optimizer, criteria)
    if batches is None:
        length = chunk_size or default_chunk_size(criteria, int(np.size(init_params)))
        chunks: Iterable[Any] = itertools.repeat(None)
    else:
        chunks = iter(batches)
    pieces = []
    start = time.perf_counter()
    steps_next = FIRST_CHUNK
    for xs in chunks:
        limit = None
        if batches is not None:
            length = int(jax.tree_util.tree_leaves(xs)[0].shape[0])
        elif chunk_size is None:
            limit = jnp.asarray(min(length, steps_next), jnp.int32)
        chunk_start = time.perf_counter()
        carry, rows = programs(length, batches is not None)(carry, objective.data, xs, limit)
        rows = jax.device_get(rows)
        valid = rows.pop("valid")
        rows = {k: np.asarray(v)[valid] for k, v in rows.items()}
        pieces.append(rows)
        # Size the next chunk to take about CHUNK_SECONDS at the pace just seen (compilation
        # included the first time, so the second chunk may still be short).
        pace = (time.perf_counter() - chunk_start) / max(1, int(valid.sum()))
        steps_next = int(min(length, max(FIRST_CHUNK, CHUNK_SECONDS / pace)))
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
