r"""Many runs at once: hyperparameter grids and multistart as one ``vmap``-ed compiled program.

A sweep is the engine's own chunk program (:func:`gdlab.engine.chunk_program`, the same
``lax.scan`` of steps and the same stopping rules as a single run) mapped over a batch of
loop states::

    jax.jit(jax.vmap(run_chunk, in_axes=(0, None)))(carries, data)

Each cell's hyperparameters are *values in its optimizer state*, not constants of the program,
so one compilation serves every cell:

- the learning rate, momentum, damping, trust region: the injected hyperparameters of
  :mod:`gdlab.optim`'s optimizers (``opt_state.hyperparams[...]``), set per cell;
- a learning-rate schedule: every schedule of :mod:`gdlab.schedules` is η · g(t), where the
  shape g depends on the schedule's options (decay, decay_steps, alpha, period,
  period_mult) but not on η. A sweep runs η_t = η · g_k(t) as an optax stateful schedule
  (:class:`ScaledSchedule`) whose state holds the cell's η and the index k of its shape; the
  distinct shapes (one per combination of schedule options in the grid, built by
  :func:`gdlab.schedules.make_schedule` with lr = 1) are the branches of one ``lax.switch``.
  So sweeping ``period`` or ``decay`` does not recompile either: under ``vmap`` every branch is
  evaluated and each cell selects its own (a few scalar operations per branch and step);
- the start point: the cell's θ₀.

Steps run in chunks; between chunks Python records the cells that stopped. At most ``lanes``
cells are computed at once: the others wait, and each takes the lane of a cell that stopped
(so lanes do not idle in lockstep while the slowest cell finishes); a lane with nothing left
to run is frozen. The loop ends when every cell has stopped.

A cell's result is the engine's result for that configuration: with ``vectorize=False`` (the
cells one after another inside the compiled program, ``lax.map``) bit for bit; under ``vmap``
to rounding (see :func:`run_batch`). Which is faster depends on the objective: ``vmap``
vectorises cheap steps across cells (landscapes), while an objective whose every step is
already a vectorised quadrature gains little from it and ``lax.map`` wastes no step on cells
that have stopped (benchmarks/bench_sweep.py measures both).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["GridAxis", "parse_grid", "grid_cells", "ScaledSchedule", "ScaledScheduleState", "run_batch",
           "BatchResult", "SweepResult", "sweep_fit", "sweep_landscape", "sweep_train", "write_table",
           "TABLE_FORMATS"]

TABLE_FORMATS = (".csv", ".parquet", ".json")
MAX_CELLS = 1_000_000
MAX_SHAPES = 64                   # distinct schedule shapes in one sweep (branches of one lax.switch)
ROW_BUDGET = 2 ** 20              # cells × steps per chunk kept in memory at once
VMAP_LANES = 32                   # runs computed at once under vmap (the others queue for a lane)
VMAP_CHUNK = 64                   # steps per chunk under vmap
MAP_LANES = 4096                  # runs per compiled lax.map call
LANES_AXIS = "lanes"              # the vmap axis of the runs (stopping rules skip work for all lanes at once)
FINAL_LANES = 1024                # runs at once under vmap when no trace is kept and steps are cheap
FINAL_CHUNK = 1024                # steps per chunk without traces (a chunk's Python costs ~1 ms; lanes refill between)
OPTIMIZER_HYPERPARAMS = {"lr": "learning_rate", "momentum": "momentum", "damping": "damping",
                         "trust_region": "trust_region"}
SCHEDULE_OPTIONS = {"exponential": ("decay", "decay_steps"), "step": ("decay", "decay_steps"),
                    "cosine": ("decay_steps", "alpha"), "warm-restarts": ("period", "period_mult", "alpha"),
                    "constant": ()}
INTEGER_OPTIONS = ("decay_steps", "period")


# =============================================================================== grids

class GridAxis(NamedTuple):
    """One axis of a grid: a hyperparameter name, its values, whether they are log-spaced."""

    name: str
    values: tuple[float, ...]
    log: bool = False


_GRID_HELP = "write --grid name=a:b:n (n values from a to b), name=a:b:n:log (log-spaced) or name=v1,v2,..."


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text.strip()!r} is not a number; {_GRID_HELP}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}: {text.strip()!r} is not a finite number; {_GRID_HELP}.")
    return value


def parse_grid(text: str) -> GridAxis:
    """Parse one ``--grid`` option: ``name=a:b:n``, ``name=a:b:n:log`` or ``name=v1,v2,...``.

    ``a:b:n`` is n evenly spaced values from a to b, both included; ``:log`` spaces them
    evenly in log (a, b > 0), as ``numpy.geomspace``.

    Args:
      text: the option's value.

    Returns:
      A :class:`GridAxis` (the name and its values); a bad axis is a ValueError naming it.

    Example:
      >>> parse_grid("lr=0.001:1:4:log").values
      (0.001, 0.01, 0.1, 1.0)
      >>> parse_grid("momentum=0,0.5,0.9")
      GridAxis(name='momentum', values=(0.0, 0.5, 0.9), log=False)
    """
    name, sep, spec = (text or "").partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ValueError(f"--grid {text!r} is not name=values; {_GRID_HELP}.")
    what = f"--grid {name}"
    if ":" in spec:
        parts = [p.strip() for p in spec.split(":")]
        log = False
        if len(parts) == 4:
            if parts[3] not in ("log", "lin"):
                raise ValueError(f"{what}: the fourth part must be 'log' or 'lin', got {parts[3]!r}; {_GRID_HELP}.")
            log = parts[3] == "log"
            parts = parts[:3]
        if len(parts) != 3:
            raise ValueError(f"{what}={spec!r} has {len(parts)} parts separated by ':'; {_GRID_HELP}.")
        a, b = _number(parts[0], what), _number(parts[1], what)
        try:
            n = int(parts[2])
        except ValueError:
            n = 0
        if n < 1 or str(n) != parts[2].lstrip("+"):
            raise ValueError(f"{what}: the count {parts[2]!r} must be a whole number ≥ 1; {_GRID_HELP}.")
        if n > MAX_CELLS:
            raise ValueError(f"{what}: {n:,} values is more than a sweep takes ({MAX_CELLS:,} cells).")
        if log and not (a > 0 and b > 0):
            raise ValueError(f"{what}: log spacing needs a > 0 and b > 0, got {parts[0]} and {parts[1]}.")
        values = np.geomspace(a, b, n) if log else np.linspace(a, b, n)
        if n >= 2:       # end points exactly as written, not as the spacing rounds them
            values[0], values[-1] = a, b
        return GridAxis(name, tuple(float(v) for v in values), log)
    values = tuple(_number(v, what) for v in spec.split(","))
    if len(set(values)) != len(values):
        raise ValueError(f"{what}: a value is listed twice in {spec!r}; list each value once.")
    return GridAxis(name, values, False)


def grid_cells(axes: Sequence[GridAxis]) -> dict[str, np.ndarray]:
    """The cells of a grid: the Cartesian product, the first axis varying slowest.

    Args:
      axes: the grid's axes.

    Returns:
      {name: values per cell}, every array of length Π len(axis.values).

    Example:
      >>> cells = grid_cells([GridAxis("lr", (0.1, 0.2)), GridAxis("momentum", (0.0, 0.9))])
      >>> cells["lr"].tolist(), cells["momentum"].tolist()
      ([0.1, 0.1, 0.2, 0.2], [0.0, 0.9, 0.0, 0.9])
    """
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise ValueError(f"a --grid axis is given twice ({', '.join(names)}); give each name once.")
    size = math.prod(len(a.values) for a in axes)
    if size > MAX_CELLS:
        raise ValueError(f"the grid has {size:,} cells; a sweep takes at most {MAX_CELLS:,}.")
    mesh = np.meshgrid(*[np.asarray(a.values, dtype=float) for a in axes], indexing="ij")
    return {a.name: m.reshape(-1) for a, m in zip(axes, mesh)}


# =============================================================================== traced schedules

class ScaledScheduleState(NamedTuple):
    """State of :class:`ScaledSchedule`: the step count, the cell's η, the index of its shape."""

    count: Any
    peak: Any
    shape: Any


class ScaledSchedule:
    r"""η_t = η · g_k(t) as an optax stateful schedule, η and k in the state (per cell under ``vmap``).

    .. math::  \eta_t = \eta \cdot g_k(t), \qquad g_k = \text{make\_schedule}(\text{name}, 1, \text{options}_k)

    Every schedule of :mod:`gdlab.schedules` is its learning rate times a shape that does not
    depend on it, so η · g_k(t) is the same number as the schedule built with lr = η.

    Args:
      shapes: the schedule shapes g_0, g_1, ... (schedules built with lr = 1).

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import schedules
      >>> s = ScaledSchedule([schedules.make_schedule("exponential", 1.0, decay=0.5)])
      >>> state = s.init()._replace(peak=jnp.asarray(0.2))
      >>> [float(s(state._replace(count=jnp.asarray(t)))) for t in (0, 1, 2)]
      [0.2, 0.1, 0.05]
    """

    def __init__(self, shapes: Sequence[Callable]):
        if not shapes:
            raise ValueError("ScaledSchedule needs at least one shape.")
        self.shapes = tuple(shapes)

    def init(self) -> ScaledScheduleState:
        import jax.numpy as jnp

        return ScaledScheduleState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.result_type(float)),
                                   jnp.zeros([], jnp.int32))

    def update(self, state: ScaledScheduleState, **extra_args) -> ScaledScheduleState:
        import optax

        return state._replace(count=optax.safe_increment(state.count))

    def __call__(self, state: ScaledScheduleState, **extra_args):
        import jax

        if len(self.shapes) == 1:
            return state.peak * self.shapes[0](state.count)
        return state.peak * jax.lax.switch(state.shape, self.shapes, state.count)


def _injected(x) -> bool:
    import optax

    return isinstance(x, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState))


def with_hyperparams(opt_state: Any, values: dict[str, Any]) -> Any:
    """``opt_state`` with injected hyperparameters replaced: ``{"learning_rate": η, "momentum": β, ...}``.

    Works on a stacked (batched) state: each value has the batch's leading axis. A learning rate
    driven by a :class:`ScaledSchedule` is set through the schedule's state (its peak η), with
    ``"schedule_shape"`` the index of each cell's shape; other scheduled hyperparameters cannot
    be set (optax recomputes them at every step), which is refused.

    Args:
      opt_state: an optimizer state (batched or not).
      values: the hyperparameters to set, by their optax names.

    Returns:
      The state with those values.

    Example:
      >>> import jax.numpy as jnp
      >>> from gdlab import optim
      >>> state = with_hyperparams(optim.gd(0.1).init(jnp.zeros(1)), {"learning_rate": jnp.asarray(0.5)})
      >>> float(optim.learning_rate(state))
      0.5
    """
    import jax
    import jax.numpy as jnp

    found = []

    def replace(s):
        if not _injected(s):
            return s
        found.append(True)
        hyper = dict(s.hyperparams)
        states = dict(getattr(s, "hyperparams_states", {}) or {})
        for name, value in values.items():
            if name == "schedule_shape":
                continue
            if name in states and isinstance(states[name], ScaledScheduleState):
                old = states[name]
                states[name] = old._replace(peak=jnp.asarray(value, old.peak.dtype))
                if "schedule_shape" in values:
                    states[name] = states[name]._replace(shape=jnp.asarray(values["schedule_shape"], jnp.int32))
            elif name in states:
                raise ValueError(f"{name} follows a schedule in this optimizer; it cannot be set per cell.")
            elif name in hyper:
                hyper[name] = jnp.asarray(value, jnp.asarray(hyper[name]).dtype)
            else:
                raise ValueError(f"the optimizer has no hyperparameter {name!r}; it has {', '.join(hyper)}.")
        if hasattr(s, "hyperparams_states"):
            return s._replace(hyperparams=hyper, hyperparams_states=states)
        return s._replace(hyperparams=hyper)

    out = jax.tree_util.tree_map(replace, opt_state, is_leaf=_injected)
    if not found:
        raise ValueError("the optimizer was not built with optax.inject_hyperparams; gdlab.optim's optimizers are.")
    return out


# =============================================================================== the batched engine loop

class BatchResult(NamedTuple):
    """N runs' outcomes, each as :func:`gdlab.engine.run` would report it.

    Attributes:
      params: (N, P) final θ. loss: (N,) L(θ_final). steps: (N,) updates made.
      stop_reason: N names (``converged``, ``max_steps``, ``diverged``).
      first_reach: (N,) the first step t with L(θ_t) ≤ ``reach`` (−1: never; all −1 without ``reach``).
      elapsed: seconds, compilation included. traces: N :class:`gdlab.engine.Trace` when kept.
    """

    params: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    stop_reason: tuple[str, ...]
    first_reach: np.ndarray
    elapsed: float
    traces: tuple | None


@lru_cache(maxsize=32)
def _batched_chunk(loss, metrics, fisher, in_domain, optimizer, criteria, length, vectorize, block=1):
    import jax

    from gdlab import engine

    if vectorize:
        program = engine.chunk_program(loss, metrics, fisher, in_domain, optimizer, criteria, length, block=block,
                                       lanes_axis=LANES_AXIS)
        return jax.jit(jax.vmap(program, in_axes=(0, None), axis_name=LANES_AXIS))
    program = engine.chunk_program(loss, metrics, fisher, in_domain, optimizer, criteria, length, block=block)
    # one run after another inside the same compiled program: each run's arithmetic is exactly
    # a single run's (vmap's vectorised code may round differently, e.g. where it fuses a
    # multiply-add or sums a quadrature in another order, and a stop decided at the rounding
    # level then comes at another step)
    return jax.jit(lambda carry, data: jax.lax.map(lambda c: program(c, data), carry))


@lru_cache(maxsize=32)
def _batched_final(loss, fisher, in_domain, optimizer, criteria, length, vectorize, block=1):
    import jax

    from gdlab import engine

    if vectorize:
        program = engine.final_program(loss, fisher, in_domain, optimizer, criteria, length, block, LANES_AXIS)
        return jax.jit(jax.vmap(program, in_axes=(0, None, 0, None), axis_name=LANES_AXIS))
    program = engine.final_program(loss, fisher, in_domain, optimizer, criteria, length, block)
    return jax.jit(lambda carry, data, outcome, reach: jax.lax.map(lambda co: program(co[0], data, co[1], reach),
                                                                   (carry, outcome)))


@lru_cache(maxsize=32)
def _batched_init(optimizer, criteria):
    import jax

    from gdlab import engine

    return jax.jit(jax.vmap(lambda p: engine.init_carry(optimizer, p, criteria)))


def _refill_lanes(carry, queue, source, take):
    """Lane i takes run source[i] from the queue where take[i]: fixed shapes, so one compilation."""
    import jax
    import jax.numpy as jnp

    def put(c, q):
        mask = take.reshape((-1,) + (1,) * (c.ndim - 1))
        return jnp.where(mask, q[source], c)

    return jax.tree_util.tree_map(put, carry, queue)


@lru_cache(maxsize=1)
def _refill_program():
    import jax

    return jax.jit(_refill_lanes)


def _refill(carry, queue, source, take):
    return _refill_program()(carry, queue, source, take)


@lru_cache(maxsize=1)
def _take_program():
    import jax

    # one program: eagerly, each of the carry's ~30 leaves was its own gather (~15 ms at 10⁴ cells)
    return jax.jit(lambda tree, index: jax.tree_util.tree_map(lambda a: a[index], tree))


def _take(tree: Any, index: np.ndarray) -> Any:
    return _take_program()(tree, index)


def run_batch(objective, optimizer, init_params, criteria, *, hyperparams: dict[str, Any] | None = None,
              chunk_size: int | None = None, lanes: int | None = None, keep_traces: bool = False,
              reach: float | None = None, vectorize: bool = True,
              callback: Callable[[int, int], Any] | None = None) -> BatchResult:
    r"""Run N configurations of one problem at once: the engine's chunk program under ``vmap``.

    .. math::  (\text{carry}^{(i)}, \text{rows}^{(i)}) = \text{run\_chunk}(\text{carry}^{(i)}, \text{data}),
               \quad i = 1..N, \text{ repeated until every run has stopped}

    Args:
      objective: a :class:`gdlab.engine.Objective` (shared data, e.g. the target p).
      optimizer: an optax transform with injected hyperparameters (:mod:`gdlab.optim`).
      init_params: (N, P) start points θ₀, one per run.
      criteria: :class:`gdlab.stopping.StopCriteria`, the same for every run.
      hyperparams: per-run injected hyperparameters, name → (N,) values (see :func:`with_hyperparams`).
      chunk_size: steps per compiled chunk (default: 64 under vmap with traces, 1,024 without,
        min(1024, 2²⁰ / lanes) with ``vectorize=False``).
      lanes: runs computed at once, the batch of the compiled program (default under vmap: 32
        with traces, 1024 without; 4096 with ``vectorize=False``). Without ``keep_traces`` the
        program records no rows (:func:`gdlab.engine.final_program`), so a batched while loop's
        per-step select costs a few numbers per lane and lanes and chunks can be long. The
        other runs wait in a queue and each takes the lane of
        a run that stopped, between chunks, so lanes do not idle in lockstep while the slowest
        run finishes; one compiled program serves every run.
      keep_traces: return every run's trace (the rows the engine records).
      reach: also record the first step at which the loss is ≤ reach.
      vectorize: ``True`` (default): ``vmap``, all runs in lockstep, vectorised. ``False``:
        ``lax.map``, the runs one after another inside the same compiled program, with exactly
        the arithmetic of :func:`gdlab.engine.run` (bit for bit): slower where steps are cheap
        (landscapes: 1.6x in benchmarks/bench_sweep.py), faster where each step is already a
        vectorised quadrature and cells stop at different times (the fit sweep: 0.8x). The two
        agree to rounding (about 1e-15 in the loss). A stop decided at the rounding level (the
        default ``tol`` = 1e-15 asks the loss to stop changing in its last bits) is then decided
        by rounding noise and may come at another step, moving θ by as much as the flatness of
        the minimum allows (up to 6e-8 in the 160-cell benchmark); with tol ≥ 1e-12 the stops
        agree and every number agrees to about 1e-14.
      callback: ``callback(runs_stopped, N)`` after every chunk (progress bars).

    Returns:
      A :class:`BatchResult`.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from gdlab import engine, optim, stopping
      >>> obj = engine.Objective(loss=lambda th, _: jnp.sum((th - 3.0) ** 2))
      >>> with jax.enable_x64(True):
      ...     res = run_batch(obj, optim.gd(0.25), np.zeros((3, 1)), stopping.StopCriteria(max_steps=50),
      ...                     hyperparams={"learning_rate": np.array([0.25, 0.1, -0.1])})
      >>> res.stop_reason                  # 0.1 is too slow for 50 steps; -0.1 climbs (gradient ascent)
      ('converged', 'max_steps', 'diverged')
    """
    import jax
    import jax.numpy as jnp

    from gdlab import engine, stopping

    criteria.validate()
    init_params = np.asarray(init_params)
    if init_params.ndim != 2 or init_params.shape[0] < 1:
        raise ValueError(f"init_params must have shape (N, P) with N ≥ 1, got {init_params.shape}.")
    n = init_params.shape[0]
    hyperparams = {k: np.broadcast_to(np.asarray(v), (n,)) for k, v in (hyperparams or {}).items()}
    # cheap steps run in blocks with the stopping rules checked once a block (engine.block_function)
    theta0 = jnp.asarray(init_params[0])
    cheap = engine.block_size(objective.loss, theta0, objective.data) > 1
    if lanes is None:
        if not vectorize:
            lanes = MAP_LANES
        elif keep_traces or not cheap:
            lanes = VMAP_LANES
        else:
            # cheap steps: wide lanes vectorise the arithmetic, but a block's rows (steps x lanes)
            # should stay in cache: 10⁴ Rosenbrock cells took 2.4x longer in one lane set of 16,384
            # than in lanes of 1,024 (benchmarks/bench_grid.py's workload); costly steps (a
            # quadrature) gain more from refilling the lanes of early stops
            lanes = FINAL_LANES
    width = max(1, min(int(lanes), n))
    asked = chunk_size is not None
    if chunk_size is None:
        # vmap: a batched while loop selects its whole state, trace buffers included, at every
        # step, so chunks with traces are short; lax.map: each run's loop ends at its stop, buffers
        # cost nothing per step, so chunks are long (bounded by the memory of the rows)
        if vectorize:
            chunk_size = VMAP_CHUNK if keep_traces else FINAL_CHUNK
        else:
            chunk_size = max(16, min(1024, ROW_BUDGET // width))
    length = max(1, min(int(chunk_size), criteria.max_steps + 1))
    if asked:                       # a chunk size asked for is kept: blocks that divide it
        block = engine.block_size(objective.loss, theta0, objective.data, length)
    else:                           # whole blocks
        block = engine.block_size(objective.loss, theta0, objective.data)
        length = -(-length // block) * block
    if keep_traces:
        program = _batched_chunk(objective.loss, objective.metrics, objective.fisher, objective.in_domain, optimizer,
                                 criteria, length, bool(vectorize), block)
    else:
        program = _batched_final(objective.loss, objective.fisher, objective.in_domain, optimizer, criteria, length,
                                 bool(vectorize), block)
        level = jnp.asarray(np.inf if reach is None else reach)

    # every run's starting state, its own hyperparameters set in its optimizer state
    queue = _batched_init(optimizer, criteria)(jnp.asarray(init_params))
    if hyperparams:
        queue = queue._replace(opt_state=with_hyperparams(queue.opt_state, hyperparams))

    params_out = np.full(init_params.shape, np.nan)
    loss_out = np.full(n, np.nan)
    steps_out = np.zeros(n, dtype=np.int64)
    reason_out = np.zeros(n, dtype=np.int64)
    reach_out = np.full(n, -1, dtype=np.int64)
    pieces: list[list[dict]] = [[] for _ in range(n)] if keep_traces else []
    start = time.perf_counter()
    lane_run = np.arange(width)                 # which run each lane computes
    busy = np.ones(width, dtype=bool)           # lanes whose run has not been recorded yet
    waiting = width                             # the next run to start when a lane frees up
    finished = 0
    carry = _take(queue, lane_run)
    fresh_outcome = jax.vmap(lambda _: engine.outcome_init(init_params.dtype))(jnp.arange(width))
    outcome = fresh_outcome
    while busy.any():
        if keep_traces:
            carry, rows = program(carry, objective.data)
            rows = jax.device_get(rows)
            valid = np.asarray(rows["valid"]) & busy[:, None]
            losses = np.asarray(rows["loss"])
            seen = valid.any(axis=1)
            last = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
            loss_out[lane_run[seen]] = losses[seen, last[seen]]
            if reach is not None:
                hit = valid & (losses <= reach)
                first = np.asarray(rows["step"])[np.arange(width), np.argmax(hit, axis=1)]
                new = hit.any(axis=1) & (reach_out[lane_run] < 0)
                reach_out[lane_run[new]] = first[new]
            for lane in np.nonzero(seen)[0]:
                pieces[lane_run[lane]].append({k: np.asarray(v[lane])[valid[lane]] for k, v in rows.items()
                                               if k != "valid"})
        else:
            carry, outcome = program(carry, objective.data, outcome, level)
            last_loss, first_reach = (np.asarray(a) for a in jax.device_get(outcome))
            loss_out[lane_run[busy]] = last_loss[busy]
            reach_out[lane_run[busy]] = first_reach[busy]
        reasons = np.asarray(carry.reason)
        done = np.nonzero(busy & (reasons != stopping.RUNNING))[0]
        if done.size:
            runs = lane_run[done]
            params_out[runs] = np.asarray(carry.params)[done]
            steps_out[runs] = np.asarray(carry.step)[done]
            reason_out[runs] = reasons[done]
            finished += done.size
            # a lane whose run stopped takes the next waiting run: no lane idles while runs wait
            refill = done[: max(0, min(done.size, n - waiting))]
            if refill.size:
                fresh = np.arange(waiting, waiting + refill.size)
                waiting += refill.size
                source, take = np.zeros(width, dtype=np.int32), np.zeros(width, dtype=bool)
                source[refill], take[refill] = fresh, True
                carry = _refill(carry, queue, jnp.asarray(source), jnp.asarray(take))
                if not keep_traces:         # a lane's new run starts with nothing seen
                    outcome = _refill(outcome, fresh_outcome, jnp.arange(width, dtype=jnp.int32), jnp.asarray(take))
                lane_run[refill] = fresh
            busy[done[refill.size:]] = False
        if callback is not None:
            callback(finished, n)
    elapsed = time.perf_counter() - start
    traces = None
    if keep_traces:
        traces = tuple(engine.Trace({k: np.concatenate([p[k] for p in runs]) for k in runs[0]}) for runs in pieces)
    return BatchResult(params=params_out, loss=loss_out, steps=steps_out,
                       stop_reason=tuple(stopping.STOP_REASONS[r] for r in reason_out.tolist()),
                       first_reach=reach_out, elapsed=elapsed, traces=traces)


# =============================================================================== sweeps of fits and landscapes

class SweepResult(NamedTuple):
    """A finished sweep: one row per grid cell, in grid order (the first axis varying slowest).

    Attributes:
      kind: ``"fit"``, ``"landscape"`` or ``"train"``.
      axes: the grid's axes.
      columns: column name → one value per cell: the axes' values, then ``loss`` (the final
        loss; ``f`` for a landscape), ``steps``, ``stop_reason``, ``steps_to_converge`` (the
        steps when the stopping rule said converged, else None), ``steps_to_reach`` (with
        ``reach``: the first step whose loss ≤ reach, else None), and the final point (fit:
        ``mean``, ``var``, ``kl_forward``, ``kl_reverse``; landscape: ``x``, ``y``).
      elapsed: seconds for all cells (one compilation included).
      settings: the settings shared by every cell.
    """

    kind: str
    axes: tuple[GridAxis, ...]
    columns: dict[str, list]
    elapsed: float
    settings: dict

    def __len__(self) -> int:
        return len(self.columns["stop_reason"])

    def rows(self) -> list[dict]:
        """One dict per cell."""
        names = list(self.columns)
        return [dict(zip(names, values)) for values in zip(*(self.columns[k] for k in names))]

    def counts(self) -> dict[str, int]:
        """Cells per stop reason."""
        reasons = self.columns["stop_reason"]
        return {r: reasons.count(r) for r in ("converged", "max_steps", "diverged")}

    def loss_name(self) -> str:
        return "f" if self.kind == "landscape" else "loss"


def _axes(grid: Any) -> tuple[GridAxis, ...]:
    if isinstance(grid, dict):
        grid = [GridAxis(k, tuple(float(x) for x in np.atleast_1d(v))) for k, v in grid.items()]
    axes = tuple(parse_grid(g) if isinstance(g, str) else GridAxis(*g) for g in grid)
    if not axes:
        raise ValueError("a sweep needs at least one --grid axis, e.g. --grid lr=0.001:1:40:log.")
    for a in axes:
        if not a.values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in a.values):
            raise ValueError(f"--grid {a.name}: give finite numbers.")
    return axes


def _sweepable(optimizer: str, schedule: str, start_names: tuple[str, ...],
               natural_options: tuple[str, ...] = ("damping", "trust_region")) -> tuple[str, ...]:
    names = ["lr"]
    if optimizer in ("momentum", "nesterov", "natural"):
        names.append("momentum")
    if optimizer == "natural":
        names += list(natural_options)
    if optimizer == "natural-diag":
        names.append("damping")
    return tuple(names) + SCHEDULE_OPTIONS[schedule] + start_names


def _refuse_axis(name: str, optimizer: str, schedule: str, allowed: tuple[str, ...]) -> None:
    why = ""
    if name in ("max_steps", "tol", "patience", "grad_tol"):
        why = " (stopping rules are the same for every cell of a sweep)"
    elif any(name in opts for opts in SCHEDULE_OPTIONS.values()):
        owners = [s for s, opts in SCHEDULE_OPTIONS.items() if name in opts]
        why = f" ({name} belongs to --schedule {' or '.join(owners)})"
    elif name == "momentum":
        why = " (momentum belongs to --optimizer momentum, nesterov or natural)"
    elif name == "trust_region" and optimizer == "natural":
        why = " (this sweep's natural gradient has no trust region)"
    elif name in ("damping", "trust_region"):
        why = " (damping belongs to the natural-gradient optimizers)" if name == "damping" else \
            " (trust_region belongs to --optimizer natural)"
    elif name in ("l2", "C"):
        why = " (the penalty is part of the objective every cell shares: run one sweep per --l2 or --C)"
    raise ValueError(f"--grid {name}: not something this sweep can vary{why}; with --optimizer {optimizer} and "
                     f"--schedule {schedule} it can vary {', '.join(allowed)}.")


class _Plan(NamedTuple):
    optimizer: Any
    hyperparams: dict
    shapes: int


@lru_cache(maxsize=32)
def _constant_rate_optimizer(name: str, momentum, damping, trust_region):
    """The optimizer of a constant-rate sweep, shared by every sweep of its kind: the rate it is built
    with is a placeholder (each cell's η is an injected hyperparameter set in the state), so a
    second sweep reuses the compiled program of the first."""
    from gdlab import optim

    return optim.by_name(name, 1.0, momentum, damping=damping, trust_region=trust_region)


def _plan(optimizer: str, schedule: str, cells: dict[str, np.ndarray], n: int, *, lr: float, momentum, damping,
          trust_region, schedule_options: dict, max_steps: int, make: Callable | None = None) -> _Plan:
    """The one optimizer of the sweep and each cell's hyperparameters (validated value by value).

    ``make(name, rate, momentum, damping, trust_region)`` builds it (default: :func:`gdlab.optim.by_name`).
    """
    from gdlab import optim, schedules

    base = {"momentum": momentum, "damping": damping, "trust_region": trust_region}
    for name in base:
        if name in cells:
            base[name] = float(cells[name][0])

    def build(rate, **override):
        kw = {**base, **override}
        if make is not None:
            return make(optimizer, rate, kw["momentum"], kw["damping"], kw["trust_region"])
        return optim.by_name(optimizer, rate, kw["momentum"], damping=kw["damping"], trust_region=kw["trust_region"])

    for name in ("momentum", "damping", "trust_region"):   # every value passes the optimizer's own checks
        for v in np.unique(cells.get(name, [])):
            try:
                build(lr, **{name: float(v)})
            except ValueError as exc:
                raise ValueError(f"--grid {name}={v:g}: {exc}") from None
    lrs = np.asarray(cells["lr"], dtype=float) if "lr" in cells else np.full(n, float(lr))

    hyper: dict[str, np.ndarray] = {"learning_rate": lrs}
    for name in ("momentum", "damping", "trust_region"):
        if name in cells:
            hyper[name] = np.asarray(cells[name], dtype=float)

    option_names = SCHEDULE_OPTIONS[schedule]
    if schedule == "constant":
        if make is None:   # every cell's rate is written into the state: one optimizer object, one compilation
            return _Plan(_constant_rate_optimizer(optimizer, base["momentum"], base["damping"], base["trust_region"]),
                         hyper, 1)
        return _Plan(build(float(lrs[0])), hyper, 1)
    combos = np.stack([np.asarray(cells[o], dtype=float) if o in cells
                       else np.full(n, np.nan if schedule_options.get(o) is None else float(schedule_options[o]))
                       for o in option_names], axis=1)
    distinct, shape_index = np.unique(combos, axis=0, return_inverse=True)
    if len(distinct) > MAX_SHAPES:
        raise ValueError(f"the grid asks for {len(distinct)} different {schedule} schedules; a sweep takes at most "
                         f"{MAX_SHAPES} (each is a branch of the compiled program); use fewer values.")
    shapes = []
    for row in distinct:
        opts = {o: (None if np.isnan(v) else (int(v) if o in INTEGER_OPTIONS else float(v)))
                for o, v in zip(option_names, row)}
        opts = {k: v for k, v in opts.items() if v is not None}
        try:
            shapes.append(schedules.make_schedule(schedule, 1.0, horizon=max_steps, **opts))
        except ValueError as exc:
            raise ValueError(f"--grid with {', '.join(f'{k}={v}' for k, v in opts.items())}: {exc}") from None
    hyper["schedule_shape"] = np.asarray(shape_index, dtype=np.int32).reshape(-1)
    return _Plan(build(ScaledSchedule(shapes)), hyper, len(shapes))


def _check_integers(cells: dict[str, np.ndarray]) -> None:
    for name in INTEGER_OPTIONS:
        if name in cells:
            bad = [v for v in np.unique(cells[name]) if not float(v).is_integer() or v < 1]
            if bad:
                raise ValueError(f"--grid {name}: {name} takes whole numbers of steps ≥ 1, got {bad[0]:g}.")


def _common_columns(axes, cells, batch: BatchResult, reach) -> dict[str, list]:
    columns: dict[str, list] = {}
    for a in axes:
        values = np.asarray(cells[a.name])
        columns[a.name] = (values.astype(np.int64) if a.name in INTEGER_OPTIONS else values.astype(float)).tolist()
    columns["loss"] = _finite_or_none(batch.loss)
    columns["steps"] = np.asarray(batch.steps, dtype=np.int64).tolist()
    columns["stop_reason"] = list(batch.stop_reason)
    columns["steps_to_converge"] = [int(s) if r == "converged" else None for s, r in zip(batch.steps, batch.stop_reason)]
    if reach is not None:
        columns["steps_to_reach"] = [int(s) if s >= 0 else None for s in batch.first_reach]
    return columns


def _finite_or_none(values) -> list:
    values = np.asarray(values, dtype=float).reshape(-1)
    out = values.tolist()                      # Python floats, converted in C (10⁴ cells: ~10 ms less)
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out


def _check_common(optimizer: str, schedule: str, reach, optimizers: tuple[str, ...] | None = None) -> None:
    from gdlab import optim, schedules

    optimizers = optim.OPTIMIZERS if optimizers is None else optimizers
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {', '.join(optimizers)}, got {optimizer!r}.")
    if schedule not in schedules.SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(schedules.SCHEDULES)}, got {schedule!r}.")
    if reach is not None and not math.isfinite(reach):
        raise ValueError(f"reach must be a finite loss, got {reach!r}.")


def _prepare(optimizer, schedule, grid, start_names, reach, max_steps, tol, patience, grad_tol, *, optimizers=None,
             natural_options=("damping", "trust_region")):
    from gdlab import stopping

    _check_common(optimizer, schedule, reach, optimizers)
    axes = _axes(grid)
    allowed = _sweepable(optimizer, schedule, start_names, natural_options)
    for a in axes:
        if a.name not in allowed:
            _refuse_axis(a.name, optimizer, schedule, allowed)
    cells = grid_cells(axes)
    _check_integers(cells)
    criteria = stopping.StopCriteria(max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol).validate()
    return axes, cells, criteria


def _select_block(block: tuple[int, int] | None, cells: dict[str, np.ndarray], plan: _Plan) -> tuple[dict, _Plan]:
    """The cells lo … hi − 1 of the grid (in grid order) and their hyperparameters; all of them for None.

    A block of a distributed sweep (:func:`gdlab.distributed.distributed_sweep`) runs these cells
    only. It is cut after the plan is made from the whole grid, so the optimizer and its schedule
    shapes (the compiled program) are the whole sweep's, and each cell computes what it computes
    in the whole sweep.
    """
    if block is None:
        return cells, plan
    lo, hi = block
    n = len(next(iter(cells.values())))
    if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer)) and 0 <= lo < hi <= n):
        raise ValueError(f"block must be (lo, hi) with 0 ≤ lo < hi ≤ {n} (the grid's cells), got {block!r}.")
    part = slice(int(lo), int(hi))
    return ({k: v[part] for k, v in cells.items()},
            plan._replace(hyperparams={k: np.asarray(v)[part] for k, v in plan.hyperparams.items()}))


def sweep_fit(target: Any, init: Any = None, divergence: str = "forward", optimizer: str = "gd", grid: Any = (), *,
              lr: float | None = None, momentum: float | None = None, damping: float | None = None,
              trust_region: float | None = None, schedule: str = "constant", decay: float | None = None,
              decay_steps: int | None = None, alpha: float = 0.0, period: int | None = None,
              period_mult: float = 1.0, family: str = "gaussian", param: str | None = None,
              max_steps: int = 10_000, tol: float = 1e-15, patience: int = 20, grad_tol: float = 0.0,
              samples: int = 4096, seed: int = 0, reach: float | None = None, chunk_size: int | None = None,
              lanes: int | None = None, vectorize: bool = True, callback: Callable[[int, int], Any] | None = None,
              precision: str = "float64", block: tuple[int, int] | None = None) -> SweepResult:
    r"""Fit q to p for every cell of a hyperparameter grid, all cells in one compiled program.

    .. math::  \text{for each cell } c:\ \min_\theta \mathrm{KL}_c(\theta)
               \text{ with the optimizer's } (\eta, \beta, \ldots)_c,\ \text{schedule}_c,\ \theta_{0,c}

    Each cell's result is what :func:`gdlab.fit` returns for that cell's settings (the same
    engine program and stopping rules, under ``vmap``).

    Args:
      target, init, divergence, family, param, samples, seed: as :func:`gdlab.fit`.
      optimizer: ``gd``, ``momentum``, ``nesterov``, ``adam`` (or ``natural`` where the objective has a Fisher).
      grid: the axes: ``["lr=0.001:1:40:log", "momentum=0,0.5,0.9,0.99"]``, :class:`GridAxis`
        tuples, or a dict name → values. Names: ``lr``, ``momentum`` (momentum/nesterov), the
        schedule's options (``decay``, ``decay_steps``, ``alpha``, ``period``, ``period_mult``),
        ``init_mean`` and ``init_var`` (1-D).
      lr, momentum, damping, trust_region, schedule, decay, decay_steps, alpha, period, period_mult:
        the settings of every cell, where the grid does not vary them (lr: 0.1, or 1 for natural,
        as ``gdlab fit``).
      max_steps, tol, patience, grad_tol: stopping rules, the same for every cell.
      reach: also report the first step at which the loss is ≤ reach (``steps_to_reach``).
      chunk_size, lanes: steps per compiled chunk, cells computed at once (see :func:`run_batch`).
      vectorize: ``vmap`` the cells (default) or run them one after another inside the compiled
        program, bit for bit as :func:`gdlab.fit` (see :func:`run_batch`).
      callback: ``callback(cells_stopped, cells)`` after each chunk.
      precision: ``"float64"`` (default; 64-bit inside this call only) or ``"float32"``.
      block: ``(lo, hi)``: run only the cells lo … hi − 1 of the grid (a block of a distributed
        sweep, :func:`gdlab.distributed.distributed_sweep`); the table then has those rows.

    Returns:
      A :class:`SweepResult` (columns ``loss``, ``steps``, ``stop_reason``, ``steps_to_converge``,
      ``mean``, ``var``, ``kl_forward``, ``kl_reverse``, ...).

    Example:
      >>> res = sweep_fit("N(2, 1)", "N(0, 5)", "forward", "momentum", ["lr=0.1,0.5", "momentum=0,0.5"],
      ...                 max_steps=500)
      >>> res.columns["stop_reason"], [round(m, 6) for m in res.columns["mean"]]
      (['max_steps', 'converged', 'converged', 'converged'], [2.0, 2.0, 2.0, 2.0])
    """
    import jax

    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")
    if lr is None:
        lr = 1.0 if optimizer == "natural" else 0.1
    with jax.enable_x64(precision == "float64"):
        return _sweep_fit(target, init, divergence, optimizer, grid, lr, momentum, damping, trust_region, schedule,
                          dict(decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                               period_mult=period_mult),
                          family, param, max_steps, tol, patience, grad_tol, samples, seed, reach, chunk_size,
                          lanes, vectorize, callback, block)


@lru_cache(maxsize=16)
def _final_values(fam, forward_loss, reverse_loss):
    """Compiled: each cell's final moments and both KL directions (NaN outside the domain, as gdlab.fit)."""
    import jax

    def one(theta, forward_data, reverse_data):
        mean, cov = fam.moments(theta)
        return mean, cov, forward_loss(theta, forward_data), reverse_loss(theta, reverse_data)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def _sweep_fit(target, init, divergence, optimizer, grid, lr, momentum, damping, trust_region, schedule,
               schedule_options, family, param, max_steps, tol, patience, grad_tol, samples, seed, reach,
               chunk_size, lanes, vectorize, callback, block=None) -> SweepResult:
    import jax
    import jax.numpy as jnp

    from gdlab import fitting
    from gdlab.fitting import kl_objective

    target_spec, fam, mean0, cov0 = fitting.fit_problem(target, init, family, param)
    start_names = ("init_mean", "init_var") if fam.dim == 1 else ()
    axes, cells, criteria = _prepare(optimizer, schedule, grid, start_names, reach, max_steps, tol, patience, grad_tol)
    n = len(next(iter(cells.values())))
    if "init_var" in cells and not np.all(cells["init_var"] > 0):
        raise ValueError("--grid init_var: variances must be positive.")
    objective = kl_objective(target_spec, fam, divergence, samples=samples, seed=seed)
    if optimizer == "natural" and objective.fisher is None:
        raise ValueError("the natural gradient needs the Fisher information of q, which this fit objective does "
                         "not provide; sweep gd, momentum, nesterov or adam.")
    plan = _plan(optimizer, schedule, cells, n, lr=lr, momentum=momentum, damping=damping, trust_region=trust_region,
                 schedule_options=schedule_options, max_steps=max_steps)
    cells, plan = _select_block(block, cells, plan)
    n = len(next(iter(cells.values())))

    means = np.broadcast_to(mean0, (n, fam.dim)).copy()
    covs = np.broadcast_to(cov0, (n, fam.dim, fam.dim)).copy()
    if "init_mean" in cells:
        means[:, 0] = cells["init_mean"]
    if "init_var" in cells:
        covs[:, 0, 0] = cells["init_var"]
    theta0 = np.asarray(jax.jit(jax.vmap(fam.from_moments))(jnp.asarray(means), jnp.asarray(covs)))

    batch = run_batch(objective, plan.optimizer, theta0, criteria, hyperparams=plan.hyperparams,
                      chunk_size=chunk_size, lanes=lanes, reach=reach, vectorize=vectorize,
                      callback=callback)

    columns = _common_columns(axes, cells, batch, reach)
    final = jnp.asarray(batch.params)
    forward = kl_objective(target_spec, fam, "forward", samples=samples, seed=seed)
    reverse = kl_objective(target_spec, fam, "reverse", samples=samples, seed=seed)
    m, c, kl_f, kl_r = _final_values(fam, forward.loss, reverse.loss)(final, forward.data, reverse.data)
    if fam.dim == 1:
        columns["mean"] = _finite_or_none(m[:, 0])
        columns["var"] = _finite_or_none(c[:, 0, 0])
    else:
        for i in range(fam.dim):
            columns[f"mean_{i}"] = _finite_or_none(m[:, i])
            columns[f"var_{i}"] = _finite_or_none(c[:, i, i])
    columns["kl_forward"] = _finite_or_none(kl_f)
    columns["kl_reverse"] = _finite_or_none(kl_r)
    settings = dict(target=target_spec.text, init=None if init is None else str(getattr(init, "text", init)),
                    divergence=divergence, optimizer=optimizer, lr=lr, momentum=momentum, schedule=schedule,
                    **{k: v for k, v in schedule_options.items() if v is not None}, family=fam.name,
                    param=fam.param, max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol,
                    reach=reach, compiled_programs=1, schedule_shapes=plan.shapes, vectorize=bool(vectorize))
    return SweepResult("fit", axes, columns, batch.elapsed, settings)


def sweep_landscape(function: Any, init: Any = None, optimizer: str = "gd", grid: Any = (), *, lr: float = 0.01,
                    momentum: float | None = None, schedule: str = "constant", decay: float | None = None,
                    decay_steps: int | None = None, alpha: float = 0.0, period: int | None = None,
                    period_mult: float = 1.0, max_steps: int = 10_000, tol: float = 1e-15, patience: int = 20,
                    grad_tol: float = 0.0, reach: float | None = None, chunk_size: int | None = None,
                    lanes: int | None = None, vectorize: bool = True,
                    callback: Callable[[int, int], Any] | None = None, precision: str = "float64",
                    block: tuple[int, int] | None = None) -> SweepResult:
    r"""Minimise a landscape for every cell of a hyperparameter grid, all cells in one compiled program.

    Grid names: ``lr``, ``momentum`` (momentum/nesterov), the schedule's options, and the start
    point ``x0`` (and ``y0`` in 2-D). Other arguments (``block`` too) as :func:`sweep_fit` and
    :func:`gdlab.landscapes.minimize`; the columns end with ``x`` (and ``y``), the final point,
    and ``at_global_minimum`` (within 1e-6 of a recorded global minimum; named landscapes only).

    Args:
      function: a landscape, its name or an expression in x (and y).
      init: the start point (default: the landscape's).
      optimizer: ``gd``, ``momentum``, ``nesterov`` or ``adam``.
      grid: the axes, e.g. ``["lr=0.001:0.3:20:log", "momentum=0,0.5,0.9"]``.
      lr, momentum, schedule, decay, decay_steps, alpha, period, period_mult: every cell's
        settings where the grid does not vary them.
      max_steps, tol, patience, grad_tol: the stopping rules (:mod:`gdlab.stopping`).
      reach, chunk_size, lanes, vectorize, callback, precision: as :func:`sweep_fit`.

    Returns:
      A :class:`SweepResult` (kind ``"landscape"``), one row per cell.

    Example:
      >>> res = sweep_landscape("double-well", 1.5, "gd", ["lr=0.01,0.1"], max_steps=2000)
      >>> [round(x, 6) for x in res.columns["x"]]          # the small step stays, the large one escapes
      [1.2, -1.5]
    """
    import jax

    from gdlab.landscapes import get_landscape, landscape_objective

    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")
    if optimizer == "natural":
        raise ValueError(_NO_FISHER)
    with jax.enable_x64(precision == "float64"):
        landscape = get_landscape(function)
        start_names = ("x0", "y0")[: landscape.dim]
        axes, cells, criteria = _prepare(optimizer, schedule, grid, start_names, reach, max_steps, tol, patience,
                                         grad_tol)
        n = len(next(iter(cells.values())))
        if init is None and landscape.start is None and not all(s in cells for s in start_names):
            raise ValueError(f'"{landscape.name[:60]}" has no default start; give --init or --grid '
                             f'{" and ".join(start_names)}.')
        if init is not None:
            base = np.atleast_1d(np.asarray(init, dtype=float))
        elif landscape.start is not None:
            base = np.asarray(landscape.start, dtype=float)
        else:
            base = np.zeros(landscape.dim)        # every coordinate comes from the grid (checked above)
        if base.shape != (landscape.dim,) or not np.all(np.isfinite(base)):
            raise ValueError(f"init must be {landscape.dim} finite number{'s' if landscape.dim > 1 else ''}, "
                             f"got {np.asarray(init).tolist()}.")
        theta0 = np.broadcast_to(base, (n, landscape.dim)).copy()
        for i, name in enumerate(start_names):
            if name in cells:
                theta0[:, i] = cells[name]
        plan = _plan(optimizer, schedule, cells, n, lr=lr, momentum=momentum, damping=None, trust_region=None,
                     schedule_options=dict(decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                           period_mult=period_mult), max_steps=max_steps)
        cells, plan = _select_block(block, cells, plan)
        if block is not None:
            theta0 = theta0[block[0]:block[1]]
        batch = run_batch(landscape_objective(landscape), plan.optimizer, theta0, criteria,
                          hyperparams=plan.hyperparams, chunk_size=chunk_size, lanes=lanes, reach=reach,
                          vectorize=vectorize, callback=callback)
    columns = _common_columns(axes, cells, batch, reach)
    columns["f"] = columns.pop("loss")
    for i, name in enumerate(("x", "y")[: landscape.dim]):
        columns[name] = _finite_or_none(batch.params[:, i])
    if landscape.global_minima:
        from gdlab.landscapes import near_minima

        columns["at_global_minimum"] = near_minima(batch.params, landscape.global_minima).any(axis=1).tolist()
    settings = dict(function=landscape.name, init=base.tolist(), optimizer=optimizer, lr=lr, momentum=momentum,
                    schedule=schedule, max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol,
                    reach=reach, compiled_programs=1, schedule_shapes=plan.shapes, vectorize=bool(vectorize),
                    global_minima=[list(m.x) for m in landscape.global_minima])
    return SweepResult("landscape", axes, columns, batch.elapsed, settings)


def sweep_train(data: Any, model: str = "logistic", optimizer: str = "gd", grid: Any = (), *, loss: str | None = None,
                target: str | None = None, features: list[str] | None = None, lr: float | None = None,
                momentum: float | None = None, damping: float | None = None, solver: str = "auto",
                schedule: str = "constant", decay: float | None = None, decay_steps: int | None = None,
                alpha: float = 0.0, period: int | None = None, period_mult: float = 1.0, epochs: int | None = None,
                max_steps: int | None = None, test_size: float = 0.2, standardize: bool = True, init: str = "zeros",
                seed: int = 0, l2: float | None = None, C: float | None = None, tol: float = 1e-15,
                patience: int = 10, grad_tol: float = 1e-10, reach: float | None = None,
                chunk_size: int | None = None, lanes: int | None = None, vectorize: bool = True,
                callback: Callable[[int, int], Any] | None = None, precision: str = "float64",
                block: tuple[int, int] | None = None) -> SweepResult:
    r"""Train a model by batch gradient descent for every cell of a hyperparameter grid, in one compiled program.

    .. math::  \text{for each cell } c:\ \min_\theta J(\theta) = \frac1n\sum_i \ell(z_i(\theta), y_i)
               + \frac{\lambda}{2}\lVert W\rVert^2 \text{ with the optimizer's } (\eta, \beta, \lambda_F)_c,
               \ \text{schedule}_c

    The data, the model, the penalty, θ₀ and the stopping rules are read once
    (:func:`gdlab.training.full_batch_problem`, the reading :func:`gdlab.train` uses) and shared
    by every cell; each cell's result is what :func:`gdlab.train` with ``batch_size=0`` and that
    cell's settings reports (``loss``, ``test_loss``, the metric, ``steps``, ``stop_reason``). One
    difference: without a penalty on separable data, train stops (``diverged``) at the compiled
    chunk where the weights first separate the classes, the sweep at its own stop; both report
    ``diverged``, at different step counts. Mini-batches are not swept (every cell would need the
    per-epoch stopping rule of :func:`gdlab.train`).

    Args:
      data: as :func:`gdlab.train` (batch mode), the same for every cell, and so are ``model``,
        ``loss``, ``target``, ``features``, ``test_size``, ``standardize``, ``init``, ``seed``, ``l2``,
        ``C``, ``solver``, ``epochs``, ``max_steps``, ``tol``, ``patience`` and ``grad_tol``.
      optimizer: ``gd``, ``momentum``, ``nesterov``, ``adam``, ``natural`` or ``natural-diag``
        (built by :func:`gdlab.training.make_optimizer`, as ``gdlab train`` builds them).
      grid: the axes (as :func:`sweep_fit`). Names: ``lr``, ``momentum`` (momentum, nesterov,
        natural), ``damping`` (natural, natural-diag), the schedule's options (``decay``,
        ``decay_steps``, ``alpha``, ``period``, ``period_mult``).
      lr, momentum, damping, schedule, decay, decay_steps, alpha, period, period_mult: the settings of
        every cell where the grid does not vary them (lr: ``gdlab.training.DEFAULT_LR[optimizer]``).
      reach, chunk_size, lanes, vectorize, callback, precision, block: as :func:`sweep_fit`.

    Returns:
      A :class:`SweepResult` (kind ``"train"``; columns ``loss``, ``steps``, ``stop_reason``,
      ``steps_to_converge``, then ``test_loss``, the metric and ``test_`` metric (``accuracy`` or
      ``rmse``), ``grad_norm``).

    Example:
      >>> res = sweep_train("breast_cancer", "logistic", "momentum", ["lr=0.3,3"], test_size=0.0, max_steps=3000)
      >>> res.columns["stop_reason"], [round(v, 6) for v in res.columns["loss"]]      # C = 1, as train's example
      (['converged', 'converged'], [0.06636, 0.06636])
    """
    import jax

    from gdlab import training

    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")
    if optimizer not in training.OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(training.OPTIMIZERS)}, got {optimizer!r}.")
    if lr is None:
        lr = training.DEFAULT_LR[optimizer]
    with jax.enable_x64(precision == "float64"):
        # gdlab.train's own checks and its run length (in batch mode it does not depend on the data)
        training._check_settings(model, loss, 0, epochs, max_steps, init, tol, patience, grad_tol,
                                 training.datamod.DEFAULT_MEMORY_LIMIT, None)
        steps_cap = training._plan(0, epochs, max_steps, 1).steps_cap
        axes, cells, criteria = _prepare(optimizer, schedule, grid, (), reach, steps_cap, tol, patience, grad_tol,
                                         optimizers=training.OPTIMIZERS, natural_options=("damping",))
        n = len(next(iter(cells.values())))

        def make(name, rate, momentum_, damping_, trust_region_):
            del trust_region_
            return training.make_optimizer(name, rate, momentum_, damping=damping_)

        plan = _plan(optimizer, schedule, cells, n, lr=lr, momentum=momentum, damping=damping, trust_region=None,
                     schedule_options=dict(decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                           period_mult=period_mult), max_steps=steps_cap, make=make)
        cells, plan = _select_block(block, cells, plan)
        n = len(next(iter(cells.values())))
        problem = training.full_batch_problem(data, model, loss, plan.optimizer, target=target, features=features,
                                              epochs=epochs, max_steps=max_steps, test_size=test_size,
                                              standardize=standardize, init=init, seed=seed, l2=l2, C=C,
                                              solver=solver, tol=tol, patience=patience, grad_tol=grad_tol)
        theta0 = np.broadcast_to(problem.theta0, (n, problem.theta0.size)).copy()
        batch = run_batch(problem.objective, plan.optimizer, theta0, problem.criteria, hyperparams=plan.hyperparams,
                          chunk_size=chunk_size, lanes=lanes, reach=reach, vectorize=vectorize, callback=callback)
        ends = [problem.finish(theta, reason) for theta, reason in zip(batch.params, batch.stop_reason)]
    batch = batch._replace(stop_reason=tuple(e.stop_reason for e in ends))
    columns = _common_columns(axes, cells, batch, reach)
    columns["loss"] = _finite_or_none([e.evaluation.loss for e in ends])
    metric = "rmse" if problem.model.kind == "linear" else "accuracy"
    columns["test_loss"] = _finite_or_none([e.evaluation.test_loss for e in ends])
    columns[metric] = _finite_or_none([e.evaluation.metric for e in ends])
    columns["test_" + metric] = _finite_or_none([e.evaluation.test_metric for e in ends])
    columns["grad_norm"] = _finite_or_none([e.evaluation.grad_norm for e in ends])
    if problem.l2 == 0.0 and problem.model.kind != "linear":
        columns["separable"] = [e.separable for e in ends]
    settings = dict(data=str(data) if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__") else "arrays",
                    model=problem.model.kind, loss=problem.model.loss, optimizer=optimizer, lr=lr, momentum=momentum,
                    damping=damping, schedule=schedule,
                    **{k: v for k, v in dict(decay=decay, decay_steps=decay_steps, period=period).items()
                       if v is not None}, alpha=alpha, period_mult=period_mult, l2=problem.l2,
                    n_train=problem.source.n_train, n_test=problem.source.n_test,
                    features=list(problem.source.features), test_size=test_size, seed=seed, init=init,
                    max_steps=steps_cap, tol=tol, patience=patience, grad_tol=grad_tol, reach=reach,
                    compiled_programs=1, schedule_shapes=plan.shapes, vectorize=bool(vectorize))
    return SweepResult("train", axes, columns, batch.elapsed, settings)


_NO_FISHER = ("the natural gradient needs a Fisher information, which a landscape does not have (it is a "
              "function, not a distribution); use gd, momentum, nesterov or adam.")


# =============================================================================== tables

def check_table_path(path: str, what: str = "--out") -> str:
    """The table format of ``path`` by its suffix; refuses an unknown suffix or an unwritable folder.

    Args:
      path: where the table goes.
      what: the option's name for the message.

    Returns:
      The suffix (``.csv``, ``.parquet`` or ``.json``).

    Example:
      >>> check_table_path("sweep.CSV")
      '.csv'
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"{what} {path!r}: the file name must end in {', '.join(TABLE_FORMATS)} (the format "
                         f"follows the suffix).")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {what} {path!r}: its folder does not exist or is not writable.")
    return suffix


def write_table(result: SweepResult, path: str) -> None:
    """Write the sweep's cells to ``path``: CSV, Parquet or JSON by the suffix. Missing values are
    empty (CSV) or null (Parquet, JSON); JSON also holds the axes and the shared settings.

    Args:
      result: a :class:`SweepResult`.
      path: a ``.csv``, ``.parquet`` or ``.json`` path.

    Returns:
      None; the file is written.

    Example:
      >>> import os, tempfile
      >>> res = sweep_landscape("bowl", 1.0, "gd", ["lr=0.1,0.2"], max_steps=200)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     write_table(res, os.path.join(tmp, "s.csv"))
      ...     lines = open(os.path.join(tmp, "s.csv")).read().splitlines()
      >>> len(lines), lines[0].split(",")[0]       # a header and one row per cell
      (3, 'lr')
    """
    suffix = check_table_path(path)
    try:
        if suffix == ".csv":
            with open(path, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(list(result.columns))
                for values in zip(*result.columns.values()):
                    writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in values])
        elif suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({k: pa.array(v) for k, v in result.columns.items()}), path)
        else:
            payload = {"kind": result.kind, "axes": {a.name: list(a.values) for a in result.axes},
                       "log_axes": [a.name for a in result.axes if a.log], "settings": result.settings,
                       "elapsed": result.elapsed, "counts": result.counts(), "cells": result.rows()}
            with open(path, "w") as fh:
                json.dump(payload, fh)
    except OSError as exc:
        raise ValueError(f"cannot write {path!r}: {exc.strerror}.") from None
