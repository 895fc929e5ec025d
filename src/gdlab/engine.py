r"""The compiled optimization loop: chunks of steps under ``lax.while_loop``, early stopping, a trace.

One step at θ_t:

1. L_t, g_t = L(θ_t), ∇L(θ_t); record (t, L_t, ‖g_t‖, θ_t, metrics(θ_t));
2. decide with the rules of :mod:`gdlab.stopping` whether the run stops at θ_t;
3. if not: u_t, s_{t+1} = optimizer.update(g_t, s_t, θ_t); θ_{t+1} = θ_t + u_t; record η_t.

Steps run in compiled chunks (``jit`` of a ``lax.while_loop`` writing the trace rows into
buffers). Inside a chunk, cheap steps run in blocks (:data:`RUN_BLOCK` steps in a run,
:data:`BLOCK` in a sweep's vmapped lanes or an explorer's short chunks): a plain ``lax.scan`` of
steps 1 and 3, then the rules of step 2 for the whole block at once
(:func:`gdlab.stopping.check_block`), which finds the same stop as checking after every step
and returns the run to θ of that step; the steps computed past it are dropped. Costly steps (a
pass over a data set) run in blocks of one, so no step is computed after the stop. Between
chunks Python checks the stop flag and calls ``callback`` (progress bars, the web stream). The
objective's data (a target, a data set) is an argument of the compiled chunk, not a constant
baked into it, so a new problem of the same shapes reuses the compiled code.
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
    """The state before step 0: θ_0, the optimizer's initial state, the stopping window.

    Args:
      optimizer: the optax transform.
      init_params: θ₀.
      criteria: the stopping rules (they size the window of recent losses).

    Returns:
      A :class:`Carry` at step 0.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> c = init_carry(optim.gd(0.1), jnp.zeros(2), stopping.StopCriteria(patience=3))
      >>> int(c.step), c.recent_losses.shape
      (0, (4,))
    """
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
    """Steps per compiled chunk: min(max_steps + 1, 16384), fewer when θ is large (16 MB of rows).

    Args:
      criteria: the stopping rules (``max_steps``).
      n_params: P, the length of θ.

    Returns:
      Steps per chunk, at least 1.

    Example:
      >>> default_chunk_size(stopping.StopCriteria(max_steps=100), 2), default_chunk_size(stopping.StopCriteria(), 2)
      (101, 10001)
    """
    by_memory = ROW_BUDGET_BYTES // (8 * (n_params + 8))
    return max(1, min(criteria.max_steps + 1, MAX_CHUNK, max(256, by_memory)))


CHEAP_STEP_FLOPS = 2000           # a loss and gradient under this many flops counts as cheap
BLOCK = 64                        # steps per block when steps are cheap (1 when they are not)
# Steps per block of one run's cheap steps (engine.run): a block's stopping check and row copies
# are ~25 small XLA:CPU operations (~3 µs), more than 64 Rosenbrock steps cost (~1 µs). Under
# vmap (sweeps) a block's rows for every lane must stay in cache, so sweeps keep BLOCK. Blocks
# of 64 and 1,024 give bit-identical runs (the scan's body is the same program).
RUN_BLOCK = 1024


def step_flops(loss: LossFn, theta: Any, data: Any) -> float:
    """XLA's flop count of one loss-and-gradient evaluation (from the lowered program, not
    compiled); ``inf`` when XLA does not say. Remembered per loss and argument shapes.

    Args:
      loss: (θ, data) ↦ L.
      theta: a θ of the run's shape and dtype.
      data: the loss's data.

    Returns:
      The flops of ``value_and_grad(loss)(theta, data)``.

    Example:
      >>> import jax.numpy as jnp
      >>> step_flops(lambda th, _: jnp.sum(th ** 2), jnp.zeros(3), None) < CHEAP_STEP_FLOPS
      True
    """
    key = (loss, _shapes(theta), _shapes(data))
    if key not in _STEP_FLOPS:
        if len(_STEP_FLOPS) >= 256:      # bounded: the keys hold loss functions alive
            _STEP_FLOPS.clear()
        try:
            cost = jax.jit(jax.value_and_grad(loss)).lower(theta, data).cost_analysis() or {}
            _STEP_FLOPS[key] = float(cost.get("flops", np.inf))
        except Exception:                # a cost analysis is advice: never fail a run over it
            _STEP_FLOPS[key] = np.inf
    return _STEP_FLOPS[key]


_STEP_FLOPS: dict = {}


def _shapes(tree: Any) -> tuple:
    # shapes and dtypes only: reading a device array's values here would copy a data set to the host
    return tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in jax.tree_util.tree_leaves(tree))


def block_size(loss: LossFn, theta: Any, data: Any, length: int | None = None) -> int:
    """Steps per block (see :func:`block_function`): :data:`BLOCK` when a step is cheap, else 1.

    A block computes its steps before it checks the stopping rules, so up to ``block − 1`` steps
    after a stop are computed and thrown away: nothing when steps cost nanoseconds, too much when
    one is a pass over a data set. With ``length`` (a chunk whose length is fixed, e.g. an epoch
    of mini-batches) the block is the largest divisor of ``length`` that is at most that.

    Args:
      loss, theta, data: as :func:`step_flops`.
      length: the chunk length the blocks must divide, or None.

    Returns:
      Steps per block.

    Example:
      >>> import jax.numpy as jnp
      >>> bowl = lambda th, _: jnp.sum(th ** 2)
      >>> block_size(bowl, jnp.zeros(2), None), block_size(bowl, jnp.zeros(2), None, 100)
      (64, 50)
    """
    if step_flops(loss, theta, data) > CHEAP_STEP_FLOPS:
        return 1
    if length is None:
        return BLOCK
    return max(d for d in range(1, min(BLOCK, length) + 1) if length % d == 0)


def advance_function(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                     optimizer: optax.GradientTransformation, trace: bool = True, squared: bool = False):
    r"""One step with no stopping rule: ``(params, opt_state, data) -> (params, opt_state, row)``.

    The row describes θ_t: its loss, ‖∇L(θ_t)‖, whether θ_t is finite and, with ``trace``, θ_t,
    the step size η_t of the update made from it and the metrics; the returned θ is
    θ_{t+1} = θ_t + u_t.

    .. math::  (u_t, s_{t+1}) = \text{optimizer.update}(\nabla L(\theta_t), s_t, \theta_t),
               \quad \theta_{t+1} = \theta_t + u_t

    Args:
      loss: (θ, data) ↦ L.
      metrics: (θ, data) ↦ dict of numbers to record, or None.
      fisher: (θ, data) ↦ the Fisher (or a :class:`gdlab.optim.Geometry`) for natural-gradient
        optimizers, or None.
      in_domain: θ ↦ whether θ is valid, or None (every θ is).
      optimizer: the optax transform.
      trace: whether the row carries the step size and the metrics too.
      squared: the row carries ‖∇L(θ_t)‖² as ``grad_sq`` instead of ``grad_norm`` (a scan of
        steps takes the square roots of all its rows at once, after the loop: a root a step made
        10⁴ Rosenbrock steps 15% slower on XLA:CPU).

    Returns:
      The step function. Its optional fourth argument ``stops``, row ↦ whether the run stops at
      θ_t (traced), lets it skip computing F(θ_t) for an update that will be thrown away.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> opt = optim.gd(0.25)
      >>> advance = advance_function(lambda th, _: jnp.sum((th - 3.0) ** 2), None, None, None, opt)
      >>> theta, _, row = advance(jnp.zeros(1), opt.init(jnp.zeros(1)), None)
      >>> float(row["loss"]), float(theta[0])          # L(0) = 9; 0 − 0.25 · 2(0 − 3)
      (9.0, 1.5)
    """
    opt = optax.with_extra_args_support(optimizer)

    def advance(params, opt_state, data, stops=None):
        value, grad = jax.value_and_grad(loss)(params, data)
        # optax.tree.norm is the square root of its squared form: a root taken later is the same number
        norm = {"grad_sq": optax.tree.norm(grad, squared=True)} if squared else {"grad_norm": optax.tree.norm(grad)}
        row = dict(loss=value, **norm, params_finite=_all_finite(params), params=params)
        extra = {} if fisher is None else {"fisher": _fisher_unless(fisher, params, data,
                                                                   None if stops is None else stops(row))}
        if in_domain is not None:
            extra["in_domain"] = in_domain
        updates, new_state = opt.update(grad, opt_state, params, **extra)
        if trace:
            row["lr"] = learning_rate(new_state)
            if metrics is not None:
                row.update(metrics(params, data))
        return optax.apply_updates(params, updates), new_state, row

    return advance


def _fisher_unless(fisher, params, data, stopped):
    """F(θ), or a stand-in of its shape where the run stops at θ (``stopped``, traced).

    The update made from the step a run stops at is thrown away, so its Fisher (for training,
    a pass over the data and a P×P product: as costly as the gradient) need not be computed.
    Only a Fisher given as one array is skipped: the identity for a (P, P) matrix, ones for a
    diagonal. Any other form (a Fisher-vector product, a :class:`gdlab.optim.Geometry`) is
    computed as before. The step's row does not read F (the step size comes from the state).
    """
    if stopped is None:
        return fisher(params, data)
    # the form of F, traced abstractly (a function or a Geometry is not an array: no stand-in)
    shape = jax.eval_shape(lambda p, d: (lambda f: f if isinstance(f, jax.Array) else None)(fisher(p, d)),
                           params, data)
    if shape is None or shape.ndim not in (1, 2) or (shape.ndim == 2 and shape.shape[0] != shape.shape[1]):
        return fisher(params, data)

    def stand_in(*_):
        return (jnp.eye(shape.shape[0], dtype=shape.dtype) if shape.ndim == 2
                else jnp.ones(shape.shape, shape.dtype))

    return jax.lax.cond(stopped, stand_in, fisher, params, data)


def lean_rows(trace: bool, block: int) -> bool:
    """Whether a block records only the loss and θ (and ‖∇L‖ when a ``grad_tol`` needs it):
    without a trace, in blocks of cheap steps. Under ``vmap`` each output of a scan costs about as
    much as a cheap step (:func:`block_function` screens the rules to spare the rest). A costly
    step (block 1) keeps its rows, so that the loss it reports needs no second evaluation.

    Args:
      trace: whether the rows are a trace's.
      block: steps per block.

    Returns:
      True for lean rows.

    Example:
      >>> lean_rows(False, 64), lean_rows(False, 1), lean_rows(True, 64)
      (True, False, False)
    """
    return not trace and block > 1


def block_function(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                   optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, block: int,
                   batched: bool = False, trace: bool = True, lanes_axis: str | None = None):
    """``block`` steps, then the stopping rules for all of them: ``(carry, data, xs) -> (carry, rows, n)``.

    The steps run in a ``lax.scan`` with no per-step branch or select (under ``vmap`` a per-step
    stop costs a select over every lane's whole state); :func:`gdlab.stopping.check_block` then
    finds the first step s at which a rule fires, exactly as the rules applied step by step
    would. The carry returned holds θ_{t0+s} and the stop reason if the run stopped in the block,
    else θ_{t0+block}. ``rows`` has ``block`` rows (leading axis), ``n`` of them valid: the steps
    up to and including the stop. The optimizer state is the one after the block (a stopped run
    never reads it again). With ``batched``, ``xs`` has one mini-batch per step. ``lanes_axis``:
    the name of the ``vmap`` axis when runs are batched (see :func:`gdlab.stopping.check_block`).

    Args:
      loss, metrics, fisher, in_domain, optimizer: as :func:`advance_function`.
      criteria: the stopping rules.
      block: K, the steps of a block.
      batched: whether each step takes its own mini-batch from ``xs``.
      trace: whether the rows are the trace's (else only the loss and θ: the least a stop needs).
      lanes_axis: the ``vmap`` axis name of the runs, or None.

    Returns:
      The block function.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> crit = stopping.StopCriteria(max_steps=2)
      >>> run_block = block_function(lambda th, _: jnp.sum((th - 3.0) ** 2), None, None, None, optim.gd(0.25),
      ...                            crit, 8)
      >>> carry, rows, n = run_block(init_carry(optim.gd(0.25), jnp.zeros(1), crit), None)
      >>> int(n), int(carry.step), float(carry.params[0])    # 8 steps made, the run ends at step 2
      (3, 2, 2.25)
    """
    lean = lean_rows(trace, block)
    advance = advance_function(loss, metrics, fisher, in_domain, optimizer, trace, squared=block > 1 and not lean)
    if _screened(in_domain, criteria, block, trace):
        return _screened_block(advance, criteria, block, batched, lanes_axis)

    def run_block(carry: Carry, data, xs=None):
        def stops_here(row):
            # block 1 only: the rules of the check below, applied before the Fisher is computed
            one = lambda v: jnp.reshape(v, (1,))  # noqa: E731
            stop = stopping.check_block(criteria, carry.step, one(row["loss"]), one(row["grad_norm"]),
                                        one(row["params_finite"]), carry.first_loss, carry.recent_losses,
                                        carry.reason == stopping.RUNNING, lanes_axis)[0]
            return stop < 1

        def body(state, x):
            params, opt_state, row = advance(*state, (data, x) if batched else data,
                                             stops_here if block == 1 else None)
            if lean:
                # Few rows: under vmap each output of a scan costs about as much as a cheap step.
                # A non-finite gradient or θ stops the run as a non-finite loss does, so the
                # loss row carries it as NaN.
                ok = jnp.isfinite(row["grad_norm"]) & row["params_finite"]
                kept = dict(loss=jnp.where(ok, row["loss"], jnp.nan), params=row["params"])
                if criteria.grad_tol > 0:
                    kept["grad_norm"] = row["grad_norm"]
                row = kept
            return (params, opt_state), row

        if block == 1:      # one step (costly objectives, the explorer): no loop around it
            x0 = None if xs is None else jax.tree_util.tree_map(lambda b: b[0], xs)
            (params, opt_state), row = body((carry.params, carry.opt_state), x0)
            rows = jax.tree_util.tree_map(lambda r: r[None], row)
        else:
            (params, opt_state), rows = jax.lax.scan(body, (carry.params, carry.opt_state), xs, length=block)
            if "grad_sq" in rows:
                rows["grad_norm"] = jnp.sqrt(rows.pop("grad_sq"))
        grad_norm = rows.get("grad_norm", jnp.zeros(block, rows["loss"].dtype))
        params_finite = jnp.ones(block, bool) if lean else rows.pop("params_finite")
        stop, reason, first, recent = stopping.check_block(criteria, carry.step, rows["loss"], grad_norm,
                                                           params_finite, carry.first_loss, carry.recent_losses,
                                                           carry.reason == stopping.RUNNING, lanes_axis)
        stopped = stop < block
        at = jnp.minimum(stop, block - 1)
        params = jax.tree_util.tree_map(lambda r, p: jnp.where(stopped, r[at], p), rows["params"], params)
        rows["step"] = carry.step + jnp.arange(block, dtype=carry.step.dtype)
        new = Carry(params, opt_state, carry.step + jnp.minimum(stop, block).astype(carry.step.dtype), first,
                    recent, reason)
        return new, rows, jnp.minimum(stop + 1, block)

    return run_block


def _screened(in_domain, criteria: stopping.StopCriteria, block: int, trace: bool) -> bool:
    """Whether a block's stopping rules are screened (:func:`_screened_block`): lean rows, no
    domain and no gradient rule. A step shortened into a domain can turn a non-finite step
    finite, and a gradient rule needs ‖∇L‖ at every step: those keep every row."""
    return lean_rows(trace, block) and in_domain is None and criteria.grad_tol == 0


def _flagged_block(advance, from_rows, criteria: stopping.StopCriteria, block: int, lanes_axis: str):
    r"""Under ``vmap``, a block that records nothing unless a rule can fire in it:
    ``(carry, data, reach) -> (carry, last loss, first j with L ≤ reach or −1)``.

    The screen of :func:`_screened_block` is computed step by step in the scan's carry (a flag,
    the loss before, L_0) rather than in a pass over recorded rows: under ``vmap`` writing the
    loss and θ of every step took 6.4 ms where carrying the screen took 3.4 ms (1,024 Rosenbrock
    lanes × 1,024 steps in blocks of 64; the bare scan 1.6 ms). Only the last ``patience + 1``
    losses are written (the window the calm rule reads in the next block).
    Where some lane's flag is up, ``max_steps`` falls inside the block or θ at its end is not
    finite, the block is made again from its start by ``from_rows``, which records the rows and
    applies the rules to them: the same step function from the same state, so the same numbers.
    """

    def run_block(carry: Carry, data, reach):
        running = carry.reason == stopping.RUNNING
        width = carry.recent_losses.shape[0]
        tail = min(width, block)
        level = jnp.isfinite(reach)                      # reach = inf: no level, every j stays −1

        def body(state, j):
            params, opt_state, before, first, flag, hit = state
            params, opt_state, row = advance(params, opt_state, data)
            value = row["loss"]
            first = jnp.where((carry.step == 0) & (j == 0), value, first)
            hit = jnp.where(level & (hit < 0) & (value <= reach), j, hit).astype(jnp.int32)
            return (params, opt_state, value, first, flag | _screen(criteria, value, before, first), hit), value

        state = (carry.params, carry.opt_state, carry.recent_losses[-1], carry.first_loss, jnp.asarray(False),
                 jnp.asarray(-1, jnp.int32))
        steps = jnp.arange(block, dtype=jnp.int32)
        state, _ = jax.lax.scan(lambda s, j: (body(s, j)[0], None), state, steps[:block - tail])
        (end, opt_state, last, first, flag, hit), losses = jax.lax.scan(body, state, steps[block - tail:])
        # θ at the block's end finite: no step of it had a non-finite ∇L or θ (see _settle_finite)
        rows_needed = running & (flag | (criteria.max_steps - carry.step < block) | ~_all_finite(end))
        anywhere = jax.lax.psum(rows_needed.astype(jnp.int32), lanes_axis) > 0

        def unflagged():
            recent = jnp.concatenate([carry.recent_losses, losses])[tail:]
            return Carry(end, opt_state, carry.step + block, first, recent, carry.reason), last, hit

        return jax.lax.cond(anywhere, lambda: from_rows(carry, data, reach), unflagged)

    return run_block


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _trips(until: jax.Array, lanes_axis: str | None) -> jax.Array:
    # steps 0..until of every lane: a trip count shared by the lanes under vmap makes a plain
    # loop, where a count per lane would be a select of the whole state per lane and step
    return until + 1 if lanes_axis is None else jax.lax.pmax(until + 1, lanes_axis)


def _replay(advance, carry: Carry, inputs, until: jax.Array, lanes_axis: str | None):
    """θ_s and θ_{s+1}, s = ``until`` (−1: none wanted), by the block's steps again from its start.

    One run's block of lean rows does not record θ: the run stops once, so making up to one
    block's steps again costs less than writing θ at every step. The same step function from the
    same state computes the same θ, bit for bit.
    """
    data, xs, batched = inputs

    def again(i, state):
        params, opt_state, at, after = state
        x = None if xs is None else jax.tree_util.tree_map(lambda b: b[i], xs)
        new, opt_state, _ = advance(params, opt_state, (data, x) if batched else data)
        here = i == until
        at = jax.tree_util.tree_map(lambda p, c: jnp.where(here, p, c), params, at)
        after = jax.tree_util.tree_map(lambda p, c: jnp.where(here, p, c), new, after)
        return new, opt_state, at, after

    state = (carry.params, carry.opt_state, carry.params, carry.params)
    return jax.lax.fori_loop(0, _trips(until, lanes_axis), again, state)[2:]


def _first_not_finite(advance, carry: Carry, inputs, until: jax.Array, block: int, lanes_axis: str | None):
    """The first step s ≤ ``until`` of the block at which ∇L(θ_s) or θ_s is not finite (``block``
    if none), and θ_s, by the block's steps again from its start."""
    data, xs, batched = inputs

    def again(i, state):
        params, opt_state, bad, at = state
        x = None if xs is None else jax.tree_util.tree_map(lambda b: b[i], xs)
        new, opt_state, row = advance(params, opt_state, (data, x) if batched else data)
        first = (bad == block) & (i <= until) & ~(jnp.isfinite(row["grad_norm"]) & row["params_finite"])
        at = jax.tree_util.tree_map(lambda p, c: jnp.where(first, p, c), params, at)
        return new, opt_state, jnp.where(first, i, bad), at

    state = (carry.params, carry.opt_state, jnp.asarray(block, jnp.int32), carry.params)
    return jax.lax.fori_loop(0, _trips(until, lanes_axis), again, state)[2:]


def _screened_block(advance, criteria: stopping.StopCriteria, block: int, batched: bool, lanes_axis: str | None):
    r""":func:`block_function` for lean rows, the stopping rules screened in one pass over them.

    Under ``vmap`` every pass over a block's rows (steps × lanes) costs about as much as a cheap
    step, and so does every value computed at every step: :func:`gdlab.stopping.check_block`'s
    dozen passes cost four times the steps themselves (10⁴ Rosenbrock cells,
    benchmarks/bench_grid.py), and ‖∇L‖ and the finiteness tests about as much again. Here the
    steps record the loss (and θ under ``vmap``), and one pass flags the runs where a rule on the
    losses can fire:

    .. math::  \text{flag} = \bigvee_t \lnot\text{finite}(L_t) \lor L_t - L_0 > c\max(1, |L_0|)
               \lor |L_t - L_{t-1}| \le \mathrm{tol}\max(1, |L_t|)

    (a calm window's last two losses are that close). In a block where no run is flagged only
    ``max_steps`` can stop a run, found without the rows; otherwise ``check_block`` reads them.
    The rules on ∇L and θ are settled after the block (:func:`_settle_finite`).
    """

    def run_block(carry: Carry, data, xs=None):
        running = carry.reason == stopping.RUNNING

        # θ at a stop: one run stops once, so making up to one block's steps again costs less than
        # writing θ at every step; lanes under vmap stop at many different steps, and a block with
        # a stop is then common: 10⁴ Rosenbrock cells with Adam, 7,000 converging, took 7.2 s
        # replaying and 5.3 s recording θ (momentum with 54 early stops: 0.10 s and 0.13 s).
        record = lanes_axis is not None

        def body(state, x):
            params, opt_state, row = advance(*state, (data, x) if batched else data)
            return (params, opt_state), ((row["loss"], row["params"]) if record else row["loss"])

        (end, opt_state), out = jax.lax.scan(body, (carry.params, carry.opt_state), xs, length=block)
        losses, thetas = out if record else (out, None)
        stop, reason, first, recent = _screened_check(criteria, carry, losses, running, lanes_axis)
        stop, reason, params = _settle_finite(advance, carry, (data, xs, batched), stop, reason, end, block,
                                              lanes_axis, thetas)
        new = Carry(params, opt_state, carry.step + jnp.minimum(stop, block).astype(carry.step.dtype), first,
                    recent, reason)
        rows = dict(loss=losses, step=carry.step + jnp.arange(block, dtype=carry.step.dtype))
        return new, rows, jnp.minimum(stop + 1, block)

    return run_block


def _screen(criteria: stopping.StopCriteria, loss, before, first):
    """Where a rule on the losses can fire (elementwise): L not finite, ran away from L_0, or
    within ``tol`` of the loss before it (a calm window's last two losses are that close)."""
    flag = ~jnp.isfinite(loss) | (loss - first > criteria.divergence_factor * jnp.maximum(1.0, jnp.abs(first)))
    if criteria.tol > 0:
        flag = flag | (jnp.abs(loss - before) <= criteria.tol * jnp.maximum(1.0, jnp.abs(loss)))
    return flag


def _screened_check(criteria: stopping.StopCriteria, carry: Carry, losses, running, lanes_axis: str | None):
    """:func:`gdlab.stopping.check_block` on a block's losses, after one pass that flags the runs
    where a rule on the losses can fire (see :func:`_screened_block`)."""
    block = losses.shape[0]
    first = jnp.where(carry.step == 0, losses[0], carry.first_loss)
    flag = _screen(criteria, losses, jnp.concatenate([carry.recent_losses[-1:], losses[:-1]]), first)
    flagged = jnp.any(flag) & running
    anywhere = flagged if lanes_axis is None else jax.lax.psum(flagged.astype(jnp.int32), lanes_axis) > 0

    def read_rows():
        return stopping.check_block(criteria, carry.step, losses, jnp.zeros(block, losses.dtype),
                                    jnp.ones(block, bool), carry.first_loss, carry.recent_losses, running, lanes_axis)

    def screened():
        # no rule on the losses fired: only max_steps can stop the run in this block
        stop = jnp.clip(criteria.max_steps - carry.step, 0, block).astype(jnp.int32)
        reason = jnp.where(stop < block, stopping.MAX_STEPS, stopping.RUNNING).astype(jnp.int32)
        return stop, reason, first, jnp.concatenate([carry.recent_losses, losses])[block:]

    return jax.lax.cond(anywhere, read_rows, screened)


def _settle_finite(advance, carry: Carry, inputs, stop, reason, end, block: int, lanes_axis: str | None,
                   thetas=None):
    r"""The stop of a block whose rows have no finiteness tests, with the rules on ∇L and θ applied.

    The rules on the losses gave the first stop s (``block`` if none). An update from a
    non-finite ∇L(θ_j) or θ_j leaves θ_{j+1} non-finite, and so every θ after it (θ + u is not
    finite when either is), so a finite θ_{s+1} shows that no such step came up to s:

    .. math::  \theta_{s+1} \in \mathbb{R}^P \implies \nabla L(\theta_j),\ \theta_j
               \text{ finite for all } j \le s

    θ_{s+1} is θ at the block's end for a run that goes on; for a run that stopped, θ_s and
    θ_{s+1} come from the block's θ rows (``thetas``) or, without them, from :func:`_replay`.
    Only where θ_{s+1} is not finite are the steps made once more with the test at every step
    (:func:`_first_not_finite`): in a block where a run diverges.

    Returns:
      (stop, reason, θ): the block's first stop, its reason and θ there (θ at the block's end
      for a run that goes on).
    """
    running = carry.reason == stopping.RUNNING
    stopped = running & (stop < block)
    if thetas is None:
        at, after = _replay(advance, carry, inputs, jnp.where(stopped, stop, -1), lanes_axis)
    else:
        i = jnp.minimum(stop, block - 1)
        at = jax.tree_util.tree_map(lambda r: r[i], thetas)
        after = jax.tree_util.tree_map(lambda r, e: jnp.where(i + 1 < block, r[jnp.minimum(i + 1, block - 1)], e),
                                       thetas, end)
    beyond = jax.tree_util.tree_map(lambda a, e: jnp.where(stopped, a, e), after, end)
    broken = running & ~_all_finite(beyond)
    anywhere = broken if lanes_axis is None else jax.lax.psum(broken.astype(jnp.int32), lanes_axis) > 0
    until = jnp.where(broken, jnp.minimum(stop, block - 1), -1)
    bad, at_bad = jax.lax.cond(anywhere,
                               lambda: _first_not_finite(advance, carry, inputs, until, block, lanes_axis),
                               lambda: (jnp.asarray(block, jnp.int32), carry.params))
    found = bad < block
    params = jax.tree_util.tree_map(lambda b, a, e: jnp.where(found, b, jnp.where(stopped, a, e)), at_bad, at, end)
    return (jnp.where(found, bad, stop).astype(stop.dtype),
            jnp.where(found, stopping.DIVERGED, reason).astype(reason.dtype), params)


def advance(optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, carry: Carry, value, grad,
            extra: dict) -> tuple[Carry, dict]:
    r"""Steps 2 and 3 of the loop, once L(θ_t) and ∇L(θ_t) are known: stop, or update θ.

    .. math::  \text{reason} = \text{check}(L_t, \lVert g_t\rVert, \ldots);\quad
               \theta_{t+1} = \theta_t + u_t,\ (u_t, s_{t+1}) = \text{optimizer.update}(g_t, s_t, \theta_t)

    The compiled loop computes L and ∇L itself (:func:`block_function`); a driver that gets them
    from elsewhere (:func:`gdlab.distributed.train_dask` sums them over data held by Dask
    workers) calls this, one step at a time, with the same rules (a block of one step).

    Args:
      optimizer: the run's optax transform.
      criteria: the stopping rules.
      carry: the loop state at θ_t.
      value: L(θ_t).
      grad: ∇L(θ_t).
      extra: the optimizer's extra arguments (``fisher``, ``in_domain``).

    Returns:
      (the carry at θ_{t+1}, or at θ_t with the stop reason; the trace row of θ_t: ``step``,
      ``loss``, ``grad_norm``, ``lr``, ``params``).

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> opt, crit = optim.gd(0.25), stopping.StopCriteria()
      >>> carry, row = advance(opt, crit, init_carry(opt, jnp.zeros(1), crit), jnp.asarray(9.0),
      ...                      jnp.asarray([-6.0]), {})
      >>> float(row["loss"]), float(carry.params[0]), int(carry.step)   # 0 − 0.25 · (−6)
      (9.0, 1.5, 1)
    """
    opt = optax.with_extra_args_support(optimizer)
    grad_norm = optax.tree.norm(grad)
    params_finite = jnp.all(jnp.isfinite(carry.params))
    stop, reason, first, recent = stopping.check_block(criteria, carry.step, jnp.reshape(value, (1,)),
                                                       jnp.reshape(grad_norm, (1,)), jnp.reshape(params_finite, (1,)),
                                                       carry.first_loss, carry.recent_losses)
    updates, new_state = opt.update(grad, carry.opt_state, carry.params, **extra)
    go = stop > 0
    row = dict(step=carry.step, loss=value, grad_norm=grad_norm, lr=learning_rate(new_state),
               params=carry.params)
    # the optimizer state is not frozen with θ at a stop: the run ends there (as in a block)
    params = jax.tree_util.tree_map(lambda new, old: jnp.where(go, new, old),
                                    optax.apply_updates(carry.params, updates), carry.params)
    new = Carry(params, new_state, carry.step + go.astype(carry.step.dtype), first, recent, reason)
    return new, row


def chunk_program(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                  optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, length: int,
                  batched: bool = False, block: int = 1, lanes_axis: str | None = None):
    """The uncompiled program of one chunk: ``(carry, data, batches, limit) -> (carry, rows)``.

    It runs blocks of ``block`` steps (:func:`block_function`; ``length`` is a multiple of it)
    under ``lax.while_loop`` until ``limit`` steps (a traced number ≤ ``length``, so chunks of any
    size share one compilation; rounded up to whole blocks) or a stop, and returns the rows in
    buffers of ``length`` with a ``valid`` mask. With ``batched``, ``batches`` is a pytree whose
    leaves have a leading axis of ``length`` (one mini-batch per step) and step t's loss is
    ``loss(θ, (data, batches[t]))``; otherwise ``batches`` is ignored and the loss is
    ``loss(θ, data)``. :func:`run` jits it; :mod:`gdlab.sweep` ``vmap``-s it over carries.

    Args:
      loss, metrics, fisher, in_domain, optimizer: as :func:`advance_function`.
      criteria: the stopping rules.
      length: the row buffers' length (steps at most per call), a multiple of ``block``.
      batched: whether each step takes its own mini-batch from ``batches``.
      block: steps per block (:func:`block_size`).
      lanes_axis: the ``vmap`` axis name of the runs, or None.

    Returns:
      The chunk function ``(carry, data, batches=None, limit=None) -> (carry, rows)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> bowl = lambda th, _: jnp.sum((th - 3.0) ** 2)
      >>> chunk = chunk_program(bowl, None, None, None, optim.gd(0.25), stopping.StopCriteria(), 4, block=2)
      >>> carry, rows = chunk(init_carry(optim.gd(0.25), jnp.zeros(1), stopping.StopCriteria()), None)
      >>> [float(v) for v in rows["params"][:, 0]]             # the error halves each step
      [0.0, 1.5, 2.25, 2.625]
    """
    if length % block:
        raise ValueError(f"length must be a multiple of block, got {length=} and {block=}.")
    run_block = block_function(loss, metrics, fisher, in_domain, optimizer, criteria, block, batched,
                               lanes_axis=lanes_axis)

    def run_chunk(carry: Carry, data, batches=None, limit=None):
        limit = length if limit is None else jnp.minimum(limit, length)

        def block_xs(i):
            if not batched:
                return None
            return jax.tree_util.tree_map(lambda b: jax.lax.dynamic_slice_in_dim(b, i, block), batches)

        row_shape = jax.eval_shape(lambda c: run_block(c, data, block_xs(0))[1], carry)
        buffers = jax.tree_util.tree_map(lambda r: jnp.zeros((length, *r.shape[1:]), r.dtype), row_shape)

        # A while loop over blocks: it ends at the block of the stop, and the rows of a block go
        # into the buffers in place.
        def running(state):
            i, c, _, _ = state
            return (i < limit) & (c.reason == stopping.RUNNING)

        def step(state):
            i, c, rows, n = state
            c, block_rows, recorded = run_block(c, data, block_xs(i))
            rows = jax.tree_util.tree_map(lambda buf, r: jax.lax.dynamic_update_slice_in_dim(buf, r, i, 0),
                                          rows, block_rows)
            return i + block, c, rows, n + recorded

        zero = jnp.zeros((), jnp.int32)
        _, carry, rows, n = jax.lax.while_loop(running, step, (zero, carry, buffers, zero))
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
    """The :class:`Outcome` before step 0: no loss yet (NaN), the level not reached (−1).

    Args:
      dtype: the loss's dtype.

    Returns:
      An :class:`Outcome`.

    Example:
      >>> o = outcome_init()
      >>> float(o.loss), int(o.first_reach)
      (nan, -1)
    """
    return Outcome(jnp.full((), jnp.nan, dtype), jnp.full((), -1, jnp.int32))


def final_program(loss: LossFn, fisher, in_domain, optimizer: optax.GradientTransformation,
                  criteria: stopping.StopCriteria, length: int, block: int = 1, lanes_axis: str | None = None):
    """The uncompiled program of a chunk that records nothing: ``(carry, data, outcome, reach) ->
    (carry, outcome)``.

    The same blocks of steps as :func:`chunk_program` (:func:`block_function`), up to ``length``
    steps (a multiple of ``block``) under ``lax.while_loop``, keeping of the rows only an
    :class:`Outcome`. Under ``vmap`` a batched while loop selects its whole state for the lanes
    still running once per block, and the steps inside a block are a plain ``scan``: a sweep of
    many cells runs at about the cost of its arithmetic (benchmarks/bench_grid.py). ``reach`` is
    a traced level (``inf`` to ignore it).

    Args:
      loss, fisher, in_domain, optimizer: as :func:`advance_function`.
      criteria: the stopping rules.
      length: steps at most per call, a multiple of ``block``.
      block: steps per block (:func:`block_size`).
      lanes_axis: the ``vmap`` axis name of the runs, or None.

    Returns:
      The chunk function ``(carry, data, outcome, reach) -> (carry, outcome)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> bowl = lambda th, _: jnp.sum((th - 3.0) ** 2)
      >>> final = final_program(bowl, None, None, optim.gd(0.25), stopping.StopCriteria(), 4)
      >>> carry, out = final(init_carry(optim.gd(0.25), jnp.zeros(1), stopping.StopCriteria()), None,
      ...                    outcome_init(), jnp.asarray(0.6))
      >>> float(carry.params[0]), float(out.loss), int(out.first_reach)   # L(θ_t) = 9/4ᵗ: ≤ 0.6 from t = 2
      (2.8125, 0.140625, 2)
    """
    if length % block:
        raise ValueError(f"length must be a multiple of block, got {length=} and {block=}.")
    run_block = block_function(loss, None, fisher, in_domain, optimizer, criteria, block, trace=False,
                               lanes_axis=lanes_axis)

    def from_rows(c: Carry, data, reach):
        c, rows, recorded = run_block(c, data)

        def first_hit():
            hit = (jnp.arange(block) < recorded) & (rows["loss"] <= reach)
            return jnp.where(jnp.any(hit), jnp.argmax(hit), -1).astype(jnp.int32)

        # a pass over the rows costs about a cheap step a row under vmap: none without a level
        return c, rows["loss"][recorded - 1], jax.lax.cond(jnp.isfinite(reach), first_hit,
                                                           lambda: jnp.asarray(-1, jnp.int32))

    run_outcome = from_rows
    if lanes_axis is not None and _screened(in_domain, criteria, block, trace=False):
        run_outcome = _flagged_block(advance_function(loss, None, fisher, in_domain, optimizer, trace=False),
                                     from_rows, criteria, block, lanes_axis)

    def run_final(carry: Carry, data, outcome: Outcome, reach):
        def running(state):
            i, c, _ = state
            return (i < length) & (c.reason == stopping.RUNNING)

        def step(state):
            i, c, out = state
            step0 = c.step
            c, last, hit = run_outcome(c, data, reach)
            first_hit = jnp.where(hit < 0, -1, step0 + hit).astype(jnp.int32)
            if lean_rows(False, block):
                # with a gradient rule, the loss row is NaN where the gradient or θ was not finite,
                # which stops the run there, at the carry's θ: report the loss itself (one more
                # evaluation a block, cheap where blocks are long)
                last = jnp.where(jnp.isnan(last), loss(c.params, data), last)
            out = Outcome(last, jnp.where(out.first_reach < 0, first_hit, out.first_reach).astype(jnp.int32))
            return i + block, c, out

        _, carry, outcome = jax.lax.while_loop(running, step, (jnp.zeros((), jnp.int32), carry, outcome))
        return carry, outcome

    return run_final


def _init_elsewhere(params):
    raise TypeError("this transform only updates: its state is made by the optimizer it came from (update_only).")


def update_only(optimizer: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """The optimizer as a compiled loop sees it: its ``update`` alone (the loop starts from a state
    made outside it), so that transforms sharing an ``update`` share compiled programs.

    :mod:`gdlab.optim`'s optimizers that differ only in injected numbers (``gd(0.1)`` and
    ``gd(0.2)``) share their ``update`` (:func:`gdlab.optim.shared`), and so one compilation.

    Args:
      optimizer: an optax transform.

    Returns:
      A transform equal (``==``, same hash) to that of any optimizer with the same ``update``.

    Example:
      >>> from gdlab import optim
      >>> update_only(optim.gd(0.1)) == update_only(optim.gd(0.2)), optim.gd(0.1) == optim.gd(0.2)
      (True, False)
    """
    return optax.GradientTransformationExtraArgs(_init_elsewhere, optimizer.update)


@functools.cache
def _host_is_device() -> bool:
    return jax.default_backend() == "cpu"


def _to_host(tree: Any) -> Any:
    """``jax.device_get(tree)``, but where the device is this machine's CPU, NumPy's read-only views
    of the buffers: there device_get's asynchronous copies cost ~5 µs an array and a view ~1 µs
    (a run of 10⁴ cheap steps fetches a dozen arrays)."""
    if _host_is_device():
        return jax.tree_util.tree_map(np.asarray, tree)
    return jax.device_get(tree)


@lru_cache(maxsize=64)
def _compiled_chunk(loss: LossFn, metrics: MetricsFn | None, fisher, in_domain,
                    optimizer: optax.GradientTransformation, criteria: stopping.StopCriteria, length: int,
                    batched: bool = False, block: int = 1):
    return jax.jit(chunk_program(loss, metrics, fisher, in_domain, optimizer, criteria, length, batched, block))


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
                                 objective.in_domain, update_only(optimizer), criteria)
    if batches is None:
        if chunk_size is None:              # whole blocks; a chunk size asked for is kept as it is
            block = block_size(objective.loss, carry.params, objective.data)
            if block > 1:
                block = RUN_BLOCK
            length = -(-default_chunk_size(criteria, int(np.size(init_params))) // block) * block
        else:
            length = chunk_size
            block = block_size(objective.loss, carry.params, objective.data, length)
        chunks: Iterable[Any] = itertools.repeat(None)
    else:
        chunks = iter(batches)
    pieces = []
    start = time.perf_counter()
    # the first chunk is short so that progress shows early, unless steps are cheap (blocks)
    steps_next = FIRST_CHUNK if batches is not None or block == 1 else length
    for xs in chunks:
        limit = None
        if batches is not None:
            length = int(jax.tree_util.tree_leaves(xs)[0].shape[0])
            one_batch = jax.tree_util.tree_map(lambda b: jax.ShapeDtypeStruct(b.shape[1:], b.dtype), xs)
            block = block_size(objective.loss, carry.params, (objective.data, one_batch), length)
        elif chunk_size is None:
            limit = np.int32(min(length, steps_next))        # a host scalar: no program to convert it
        chunk_start = time.perf_counter()
        carry, rows = programs(length, batches is not None, block)(carry, objective.data, xs, limit)
        rows, (params, step, reason) = _to_host((rows, (carry.params, carry.step, carry.reason)))
        reason = int(reason)
        n = int(np.count_nonzero(rows.pop("valid")))     # the valid rows come first
        rows = {k: np.array(v[:n]) for k, v in rows.items()}
        pieces.append(rows)
        # Size the next chunk to take about CHUNK_SECONDS at the pace just seen (compilation
        # included the first time, so the second chunk may still be short).
        pace = (time.perf_counter() - chunk_start) / max(1, n)
        steps_next = int(min(length, max(FIRST_CHUNK, CHUNK_SECONDS / pace)))
        asked = callback(rows) if callback is not None else None
        if reason != stopping.RUNNING:
            break
        if asked is not None:
            if asked not in _REASON_CODES:
                raise ValueError(f"the callback returned {asked!r}; return None to go on or one of "
                                 f"{', '.join(_REASON_CODES)} to stop.")
            reason = _REASON_CODES[asked]
            break
    else:
        reason = stopping.MAX_STEPS
    elapsed = time.perf_counter() - start
    if not pieces:
        raise ValueError("batches gave no chunk of mini-batches; give at least one.")
    columns = pieces[0] if len(pieces) == 1 else {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    trace = Trace(columns)
    return RunResult(params=np.asarray(params), loss=float(columns["loss"][-1]), steps=int(step),
                     stop_reason=stopping.STOP_REASONS[reason], elapsed=elapsed, trace=trace)
