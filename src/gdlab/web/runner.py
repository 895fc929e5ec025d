r"""One explorer run, stepped by the library's engine in compiled chunks that the page can steer.

The engine's :func:`gdlab.engine.run` runs to the end; a page needs to pause, make one step,
change the step size mid-run and switch the KL direction. So the runner drives the same
compiled chunk the engine uses (:func:`gdlab.engine.chunk_program` on
:func:`gdlab.engine.init_carry`'s carry) itself, one chunk per call, and edits the carry between
chunks:

* a constant step size and the momentum are injected hyperparameters
  (``optax.inject_hyperparams``), i.e. traced values in ``carry.opt_state``: the runner
  compiles with placeholder values and writes the real ones into the state, so a new step size
  or momentum (at start or mid-run) never recompiles;
* a non-constant schedule is a Python closure over its options, so it is part of the compiled
  program (changing it mid-run compiles that schedule once; the optimizer state carries over);
* switching the KL direction swaps the objective and restarts the stopping window at the
  current q, keeping the step count, θ and the optimizer's velocity. A start may carry the
  switches a page recorded (``config.switches``): :meth:`Run.advance` then ends its chunks
  exactly at each switch's step and applies it as that ``update`` did, so a link replays a run
  that switched direction mid-run to the same numbers.

Compiled chunks are cached by (parameterization, direction, optimizer, schedule, stopping
rules, chunk length): a second run of the same kind starts at once. All JAX work runs in
float64 inside ``jax.enable_x64``, as :func:`gdlab.fit` does.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdlab import divergences, engine, optim, schedules, stopping
from gdlab.families import Family, make_family
from gdlab.fitting import kl_objective
from gdlab.fisher import analytic_fisher, is_singular
from gdlab.specs import MixtureSpec, SpecError, parse_distribution
from gdlab.targets import mixture, moments
from gdlab.web.protocol import MOMENTUM_OPTIMIZERS, ProtocolError, RunConfig, Update

CHUNK_LENGTHS = (1, 8, 64)        # compiled chunk sizes: single steps, smooth play, fast play
FRAMES_PER_SECOND = 30            # how often a playing run sends frames, at most
LANDSCAPE_POINTS = 61             # grid of the KL landscape, per axis
_PLACEHOLDER_LR = 0.1             # compiled into nothing: overwritten in the state (see module doc)
_PLACEHOLDER_MOMENTUM = 0.5


def _schedule_signature(cfg: RunConfig) -> Optional[tuple]:
    """What of the configuration a compiled program depends on through the schedule (None: constant)."""
    if cfg.schedule == "constant":
        return None
    return (cfg.schedule, cfg.lr, cfg.decay, cfg.decay_steps, cfg.alpha, cfg.period, cfg.period_mult, cfg.max_steps)


@functools.lru_cache(maxsize=256)
def _optimizer(name: str, schedule_sig: Optional[tuple]) -> optax.GradientTransformation:
    """The optimizer for a kind of run, one object per kind so that compiled code is reused."""
    if schedule_sig is None:
        rate: Any = _PLACEHOLDER_LR
    else:
        sched, lr, decay, decay_steps, alpha, period, period_mult, horizon = schedule_sig
        rate = schedules.make_schedule(sched, lr, decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                       period_mult=period_mult, horizon=horizon)
    return optim.by_name(name, rate, _PLACEHOLDER_MOMENTUM if name in MOMENTUM_OPTIMIZERS else None)


@functools.lru_cache(maxsize=256)
def _program(loss, metrics, fisher, in_domain, optimizer, criteria: stopping.StopCriteria, length: int,
             batched: bool = False, block: int = 1):
    """A jitted chunk of ``length`` steps in blocks of ``block`` (with ``batched``, one mini-batch per
    step: tab 3); ``jax.jit`` adds its own cache per argument shape."""
    return jax.jit(engine.chunk_program(loss, metrics, fisher, in_domain, optimizer, criteria, length, batched, block))


class PackedChunk(NamedTuple):
    """A run's chunk with its rows packed in one table (:func:`_packed_program`)."""

    program: Any          # jitted (carry, data) -> (carry, table)
    layout: dict          # {name: (shape of a row, dtype)}, for unpack_rows
    example: Any          # a (carry, data) of this kind (shapes and dtypes, to compile gdlab.web.turns' program)


@functools.lru_cache(maxsize=256)
def _packed_program(loss, metrics, fisher, in_domain, optimizer, criteria: stopping.StopCriteria, length: int,
                    block: int, carry_and_data: Any) -> PackedChunk:
    """:func:`_program`'s chunk with its rows packed into one float64 table, ``(carry, data) ->
    (carry, table)``, and the rows' layout ``{name: (shape of a row, dtype)}`` for
    :func:`unpack_rows`. A playing run's turn then copies one array to the host instead of one per
    column (each copy is ~8 µs of a ~0.5 ms turn, and fifty runs take turns). The numbers are the
    chunk's, bit for bit: its columns are float64, int32 and bool, which float64 holds exactly.
    ``carry_and_data``: a (carry, data) pair, hashed by shapes and dtypes only (:class:`_ByShape`)."""
    chunk = engine.chunk_program(loss, metrics, fisher, in_domain, optimizer, criteria, length, False, block)
    rows = jax.eval_shape(chunk, *carry_and_data.value)[1]
    layout = {k: (v.shape[1:], v.dtype) for k, v in rows.items()}

    def packed(carry, data):
        carry, rows = chunk(carry, data)
        table = jnp.concatenate([jnp.reshape(rows[k], (length, -1)).astype(jnp.float64) for k in sorted(rows)], axis=1)
        return carry, table

    return PackedChunk(jax.jit(packed), layout, carry_and_data.value)


class _ByShape:
    """A pytree as a cache key by its leaves' shapes and dtypes (its values stay out of the key)."""

    def __init__(self, value: Any):
        self.value, self.key = value, engine._shapes(value)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _ByShape) and self.key == other.key


def unpack_rows(table: np.ndarray, layout: dict) -> dict:
    """The rows of :func:`_packed_program`'s table, valid ones only, as ``{name: column(s)}``.

    Args:
      table: the (length, columns) float64 table.
      layout: ``{name: (shape of one row, dtype)}`` of the chunk's rows (the key order is irrelevant:
        the columns are in sorted name order).

    Returns:
      Each row field with the run's dtype, over the valid rows.

    Example:
      >>> t = np.array([[1.5, 0.0, 1.0], [2.5, 1.0, 1.0], [0.0, 0.0, 0.0]])
      >>> unpack_rows(t, {"loss": ((), np.float64), "step": ((), np.int32), "valid": ((), np.bool_)})
      {'loss': array([1.5, 2.5]), 'step': array([0, 1], dtype=int32)}
    """
    rows, at = {}, 0
    for name in sorted(layout):
        shape, dtype = layout[name]
        width = math.prod(shape)
        rows[name] = table[:, at:at + width].reshape((len(table), *shape)).astype(dtype)
        at += width
    valid = rows.pop("valid")
    return {k: v[valid] for k, v in rows.items()}


@functools.lru_cache(maxsize=64)
def _jitted(fn):
    return jax.jit(fn)


class CacheInfo(NamedTuple):
    """Hits and misses of the compiled-chunk caches (:func:`compile_cache_info`)."""

    hits: int
    misses: int


def compile_cache_info() -> CacheInfo:
    """Hits and misses of the compiled-chunk caches, the tabs' and tab 1's packed one together (the
    protocol test checks that runs reuse them)."""
    plain, packed = _program.cache_info(), _packed_program.cache_info()
    return CacheInfo(plain.hits + packed.hits, plain.misses + packed.misses)


def set_hyperparams(state: Any, **values: float) -> Any:
    """``state`` with the named injected hyperparameters replaced, in the dtypes they had."""
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    is_injected = lambda x: isinstance(x, injected)  # noqa: E731

    def replace(s):
        if not is_injected(s):
            return s
        hp = dict(s.hyperparams)
        for k, v in values.items():
            if k in hp:
                hp[k] = jnp.asarray(v, dtype=jnp.asarray(hp[k]).dtype)
        return s._replace(hyperparams=hp)

    return jax.tree_util.tree_map(replace, state, is_leaf=is_injected)


@functools.lru_cache(maxsize=64)
def _point_kls(n_components: int):
    """(target, H(p), (m, v) arrays) ↦ (KL(p‖q), KL(q‖p)) at each (m, v), vectorised and compiled."""

    def one(target, entropy_p, m, v):
        mean, cov = jnp.reshape(m, (1,)), jnp.reshape(v, (1, 1))
        return divergences.kl_forward(target, mean, cov, entropy_p), divergences.kl_reverse(target, mean, cov)

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0)))


def _finite_or_none(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None


def rows_to_frames(rows: dict, divergence: str) -> list[dict]:
    """The engine's rows of one chunk as frames ``{step, params, mean, var, kl_forward, kl_reverse,
    loss, lr, grad}`` (``grad`` = ‖∇L‖; the minimised KL is the loss; non-finite → None)."""
    other = "reverse" if divergence == "forward" else "forward"
    n = len(rows["step"])
    # whole columns to Python numbers at once (tolist), not element by element: a turn of a
    # playing run is ~0.5 ms, and fifty runs take turns
    col = {k: np.asarray(rows[k], np.float64).tolist() for k in ("mean", "var", "loss", "lr", "grad_norm", "kl_" + other)}
    kl = {divergence: col["loss"], other: col["kl_" + other]}
    params = np.asarray(rows["params"], np.float64).reshape(n, -1).tolist()
    steps = np.asarray(rows["step"]).tolist()
    fin = _finite_or_none
    return [{"step": int(steps[i]), "params": [fin(x) for x in params[i]], "mean": fin(col["mean"][i]),
             "var": fin(col["var"][i]), "kl_forward": fin(kl["forward"][i]), "kl_reverse": fin(kl["reverse"][i]),
             "loss": fin(col["loss"][i]), "lr": fin(col["lr"][i]), "grad": fin(col["grad_norm"][i])}
            for i in range(n)]


def _ending(reason: str, step: int, params: np.ndarray, family: Family, loss: float) -> str:
    """One sentence on how a run stopped (the banner's text)."""
    if reason == "converged":
        return f"converged at step {step}: the KL stopped changing."
    if reason == "max_steps":
        return f"stopped at max_steps = {step} before the KL stopped changing."
    if not bool(family.in_domain(jnp.asarray(params))):
        why = "the step left the parameter domain (the variance must stay positive)"
    elif not math.isfinite(loss):
        why = "the KL became non-finite"
    else:
        why = "the KL grew far past its starting value"
    return f"diverged at step {step}: {why}; the step size is too large or negative (gradient ascent runs away)."


def _parse_spec(text: str, field_name: str) -> MixtureSpec:
    try:
        return parse_distribution(text, what=field_name)
    except SpecError as exc:
        raise ProtocolError(str(exc), field_name) from None


@functools.lru_cache(maxsize=128)
def landscape_of(target_text: str, start_mean: float, start_var: float) -> dict:
    """:func:`landscape` cached by the target's text and the start: many pages on one preset share it."""
    return landscape(parse_distribution(target_text, what="target"), start_mean, start_var)


class JSONText(str):
    """A value that is JSON text already: a message carrying it is sent with the text as it is."""


@functools.lru_cache(maxsize=128)
def landscape_json_of(target_text: str, start_mean: float, start_var: float) -> JSONText:
    """:func:`landscape_of` as JSON text, encoded once: 150 KB, ~4 ms of the server's event loop per
    page that starts the same preset (fifty pages at once held every stream ~0.2 s)."""
    return JSONText(json.dumps(landscape_of(target_text, start_mean, start_var), allow_nan=False))


def landscape(spec: MixtureSpec, start_mean: float, start_var: float) -> dict:
    """Both KLs over a grid of (mean, log variance) around p and the start, for the contour view,
    with the forward optimum (the moment match) and the reverse KL's local minima on the grid."""
    target = mixture(spec)
    means = np.asarray(spec.means)[:, 0]
    variances = np.asarray(spec.covs)[:, 0, 0]
    lo = min(float(np.min(means - 3 * np.sqrt(variances))), start_mean - 1.0)
    hi = max(float(np.max(means + 3 * np.sqrt(variances))), start_mean + 1.0)
    p_mean, p_cov = (np.asarray(x) for x in moments(target))
    log_vars = [math.log(float(np.min(variances))) - 1.5, math.log(max(float(p_cov[0, 0]), start_var)) + 1.0]
    mean_axis = np.linspace(lo, hi, LANDSCAPE_POINTS)
    logvar_axis = np.linspace(log_vars[0], log_vars[1], LANDSCAPE_POINTS)
    mm, ll = np.meshgrid(mean_axis, logvar_axis)          # rows: log variance; columns: mean
    entropy_p = jnp.asarray(divergences.mixture_entropy(target))
    fwd, rev = _point_kls(target.n_components)(target, entropy_p, jnp.asarray(mm.ravel()), jnp.asarray(np.exp(ll.ravel())))
    fwd = np.asarray(fwd).reshape(mm.shape)
    rev = np.asarray(rev).reshape(mm.shape)
    return {
        "mean": mean_axis.tolist(), "log_var": logvar_axis.tolist(),
        "kl_forward": np.where(np.isfinite(fwd), fwd, np.nan).tolist(),
        "kl_reverse": np.where(np.isfinite(rev), rev, np.nan).tolist(),
        "optima": {"forward": [{"mean": float(p_mean[0]), "var": float(p_cov[0, 0]), "global": True}],
                   "reverse": _grid_minima(rev, mean_axis, logvar_axis)},
    }


def _grid_minima(z: np.ndarray, mean_axis: np.ndarray, logvar_axis: np.ndarray) -> list[dict]:
    """Interior grid points lower than their 8 neighbours (approximate local minima); the lowest is global."""
    found = []
    for i in range(1, z.shape[0] - 1):
        for j in range(1, z.shape[1] - 1):
            block = z[i - 1:i + 2, j - 1:j + 2]
            if np.all(np.isfinite(block)) and z[i, j] == block.min() and np.sum(block == z[i, j]) == 1:
                found.append((float(z[i, j]), float(mean_axis[j]), float(math.exp(logvar_axis[i]))))
    found.sort()
    lowest = found[0][0] if found else 0.0
    tie = 1e-9 * max(1.0, abs(lowest))      # a symmetric p has several global minima
    return [{"mean": m, "var": v, "global": z <= lowest + tie} for z, m, v in found]


@dataclass
class Run:
    """The state of one explorer run: its configuration, compiled pieces and the engine's carry."""

    config: RunConfig
    spec: MixtureSpec
    family: Family
    theta0: Any
    objective: engine.Objective = field(repr=False)
    criteria: stopping.StopCriteria
    carry: Any = field(repr=False)
    stop_reason: Optional[str] = None
    pending: list = field(default_factory=list)      # config.switches not yet applied, in order
    programs: dict = field(default_factory=dict, repr=False)   # length -> its PackedChunk
    host_data: Any = field(default=None, repr=False)           # (objective, its data as NumPy): gdlab.web.turns

    # --- building ------------------------------------------------------------------------

    @classmethod
    def build(cls, config: RunConfig) -> "Run":
        """Check the configuration like ``gdlab fit`` does and set up step 0 (call inside x64)."""
        spec = _parse_spec(config.target, "target")
        init = _parse_spec(config.init, "init")
        if spec.dim != 1:
            raise ProtocolError(f"target \"{config.target}\" is {spec.dim}-D; the explorer fits 1-D distributions, "
                                f"so give a 1-D spec such as N(0, 1).", "target")
        if init.n_components != 1 or init.dim != 1:
            raise ProtocolError(f"init \"{config.init}\" must be one 1-D Gaussian N(mean, variance), e.g. N(0, 5).", "init")
        try:
            family = make_family("gaussian", 1, config.param)
            criteria = stopping.StopCriteria(max_steps=config.max_steps, tol=config.tol,
                                             patience=config.patience).validate()
            _optimizer(config.optimizer, _schedule_signature(config))      # schedule options checked here
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        theta0 = family.from_moments(jnp.asarray(init.means[0]), jnp.asarray(init.covs[0]))
        if config.optimizer == "natural" and is_singular(np.asarray(analytic_fisher(family, theta0)), 0.0):
            raise ProtocolError("the Fisher information of the starting q is singular; choose a less extreme start.", "init")
        objective = kl_objective(spec, family, config.divergence)
        run = cls(config, spec, family, theta0, objective, criteria, None)
        run.reset()
        run.pending = [(s.step, s.divergence) for s in config.switches]
        run._chunk_program(SHARED_CHUNK).program(run.carry, objective.data)    # result dropped: see _chunk_program
        return run

    def reset(self) -> None:
        """Back to step 0 at the starting q, with the configured step size and momentum."""
        opt = _optimizer(self.config.optimizer, _schedule_signature(self.config))
        carry = engine._compiled_init(opt, self.criteria)(self.theta0)    # as engine.run: one call, not a dozen ops
        self.carry = carry._replace(opt_state=self._hyperparams(carry.opt_state))
        self.stop_reason = None
        self.pending = []          # a reset starts again in the direction now chosen

    def _hyperparams(self, state: Any) -> Any:
        values: dict = {}
        if self.config.schedule == "constant":
            values["learning_rate"] = self.config.lr
        if self.config.optimizer in MOMENTUM_OPTIMIZERS:
            values["momentum"] = 0.0 if self.config.momentum is None else self.config.momentum
        return set_hyperparams(state, **values)

    # --- what the page shows first -------------------------------------------------------------

    def started(self) -> dict:
        """The ``started`` message: p's components, the landscape, the starting point."""
        mean, cov = self.family.moments(self.theta0)
        m, v = float(mean[0]), float(cov[0, 0])
        target = mixture(self.spec)
        fwd, rev = _point_kls(target.n_components)(target, self.objective.data.entropy_p, np.array([m]),
                                                   np.array([v]))
        return {
            "type": "started",
            "config": self.config.model_dump(),
            "target": {"weights": np.asarray(self.spec.weights).tolist(),
                       "means": np.asarray(self.spec.means)[:, 0].tolist(),
                       "vars": np.asarray(self.spec.covs)[:, 0, 0].tolist(), "text": self.spec.text},
            "start": {"step": 0, "mean": m, "var": v, "kl_forward": _finite_or_none(float(fwd[0])),
                      "kl_reverse": _finite_or_none(float(rev[0])),
                      "lr": self.config.lr if self.config.schedule == "constant" else None},
            "param_names": list(self.family.param_names),
            "landscape": landscape_json_of(self.spec.text, m, v),
        }

    # --- stepping ------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return int(self.carry.step)

    def advance(self, length: int) -> tuple[list[dict], Optional[dict]]:
        """Make ``length`` steps (one of CHUNK_LENGTHS) in compiled chunks; return their frames and,
        if the run stopped, the ``stopped`` message. A scheduled direction switch ends a chunk at
        its step and is applied there (a run that stops at a switch's step goes on). Call inside x64."""
        frames: list[dict] = []
        remaining = length
        while True:
            while self.pending and self.pending[0][0] <= self.step and (
                    self.stop_reason != "diverged"):
                self._switch(self.pending.pop(0)[1])
            if remaining <= 0 or self.stop_reason is not None:
                return frames, None
            limit = remaining if not self.pending else min(remaining, self.pending[0][0] - self.step)
            chunk = max(n for n in CHUNK_LENGTHS if n <= limit)
            more, stopped = self._chunk(chunk)
            frames += more
            remaining -= chunk
            if stopped is not None and not (self.pending and self.pending[0][0] <= self.step):
                return frames, stopped

    def _chunk_program(self, length: int) -> PackedChunk:
        """The compiled chunk of ``length`` steps, its rows packed (:func:`_packed_program`), and the
        rows' layout; remembered by the run until its configuration or direction changes (the lookup
        is ~30 µs of a ~0.5 ms turn). Cheap steps go in scanned blocks, as in engine.run
        (there of RUN_BLOCK steps, here at most BLOCK: the same scanned step, bit for bit), so a
        borderline stop falls on the same step as in gdlab fit (unscanned single steps moved one). :meth:`build` runs the short chunk of shared play
        once, result dropped, so that it is compiled before many runs play, not in their midst
        (which stalled every page ~0.4 s)."""
        if length not in self.programs:
            opt = _optimizer(self.config.optimizer, _schedule_signature(self.config))
            o = self.objective
            block = engine.block_size(o.loss, self.carry.params, o.data, length)
            self.programs[length] = _packed_program(o.loss, o.metrics, o.fisher, o.in_domain, opt, self.criteria,
                                                    length, block, _ByShape((self.carry, o.data)))
        return self.programs[length]

    def _chunk(self, length: int) -> tuple[list[dict], Optional[dict]]:
        """One compiled chunk of ``length`` steps: its frames, and the ``stopped`` message if it stopped."""
        chunk = self._chunk_program(length)
        carry, table = chunk.program(self.carry, self.objective.data)
        return self.chunk_done(carry, np.asarray(table), chunk.layout)

    def chunk_done(self, carry: Any, table: np.ndarray, layout: dict) -> tuple[list[dict], Optional[dict]]:
        """Take a chunk's result (the carry after it, its packed rows): the frames, and the ``stopped``
        message if the run stopped (:mod:`gdlab.web.turns` steps many runs' chunks in one program).

        Args:
          carry: the engine's carry after the chunk.
          table: the chunk's rows, packed (:func:`_packed_program`).
          layout: the rows' layout.

        Returns:
          (frames, the ``stopped`` message or None).
        """
        self.carry = carry
        rows = unpack_rows(table, layout)
        frames = rows_to_frames(rows, self.config.divergence)
        code = int(self.carry.reason)
        if code == stopping.RUNNING:
            return frames, None
        self.stop_reason = stopping.STOP_REASONS[code]
        loss = float(rows["loss"][-1]) if len(rows["loss"]) else float("nan")
        message = _ending(self.stop_reason, self.step, np.asarray(self.carry.params), self.family, loss)
        return frames, {"type": "stopped", "reason": self.stop_reason, "step": self.step, "message": message}

    # --- steering --------------------------------------------------------------------------

    def update(self, msg: Update) -> list[dict]:
        """Apply a mid-run change; the run goes on from its current q (call inside x64).
        Returns the messages that announce it (a ``direction`` message when the KL direction changed)."""
        changes = {k: v for k, v in msg.model_dump(exclude={"type"}).items() if v is not None}
        if self.config.optimizer not in MOMENTUM_OPTIMIZERS and changes.get("momentum", 0.0) != 0.0:
            raise ProtocolError(f"momentum applies to the {', '.join(MOMENTUM_OPTIMIZERS)} optimizers, "
                                f"not {self.config.optimizer!r}.", "momentum")
        try:
            config = RunConfig.model_validate({**self.config.model_dump(), **changes})
            _optimizer(config.optimizer, _schedule_signature(config))
        except ValueError as exc:   # pydantic's ValidationError is a ValueError too
            raise ProtocolError(str(exc).splitlines()[-1] if "validation error" in str(exc) else str(exc)) from None
        if self.stop_reason == "diverged" and set(changes) - {"speed"}:
            raise ProtocolError("the run diverged; press reset to start again from the starting q.")
        if "divergence" in changes:
            self.pending = []      # a direction chosen by hand replaces the switches still to replay
        return self._apply(config, changes)

    def _switch(self, divergence: str) -> None:
        """A scheduled direction switch: exactly what ``update`` with that divergence does."""
        self._apply(self.config.model_copy(update={"divergence": divergence}), {"divergence": divergence})

    def _apply(self, config: RunConfig, changes: dict) -> list[dict]:
        direction_changed = config.divergence != self.config.divergence
        self.config = config
        self.programs.clear()         # a schedule or an objective of its own compiles its own chunk
        if direction_changed:
            self.objective = kl_objective(self.spec, self.family, config.divergence)
        self.carry = self.carry._replace(opt_state=self._hyperparams(self.carry.opt_state))
        if set(changes) - {"speed"} and (direction_changed or self.stop_reason is not None):
            self._restart_stopping_window()
        return [{"type": "direction", "divergence": config.divergence}] if direction_changed else []

    def _restart_stopping_window(self) -> None:
        """Let a stopped run (or one whose loss changed meaning) go on: stopping starts afresh here."""
        loss = float(_jitted(self.objective.loss)(self.carry.params, self.objective.data))
        self.carry = self.carry._replace(reason=jnp.zeros((), jnp.int32),
                                         first_loss=jnp.asarray(loss, self.carry.first_loss.dtype),
                                         recent_losses=stopping.recent_losses_init(self.criteria, self.carry.params.dtype))
        self.stop_reason = None


SHARED_CHUNK = 8                   # steps per chunk while many runs play: ~1 ms of an explorer run's compute
FULL_CHUNK_RUNS = 8                # up to this many runs play full chunks: 8 turns of ≤ ~4 ms, a round ≤ ~30 ms


def fair_chunk(length: int, playing: int) -> int:
    """The chunk length for a run whose turn comes round once every other playing run has had one.

    Up to :data:`FULL_CHUNK_RUNS` runs play in the chunks their speed asks for (``length``;
    compare mode's three runs among them, so that its table is exactly ``gdlab fit``'s: a chunk's
    length can move a borderline stop by a step through the compiled program's rounding); when
    more play, each plays in chunks of at most :data:`SHARED_CHUNK` steps, so that the round of
    turns stays short and no page waits long for its next frames. The explorer's objectives cost at most
    ~50 µs a step (closed forms, 1-D quadrature, small data sets), so 8 steps are ~0.4 ms of
    compute, and tab 1's runs of a kind (eight or more waiting) take these turns together, in one
    compiled call (:mod:`gdlab.web.turns`): with 50 runs, a page waited ~20 ms (median) for its
    next frames. A rule by measured pace was tried and dropped: under load every run measured
    itself slow, chunks fell to single steps and throughput collapsed.

    Args:
      length: the chunk length the run's speed asks for (:func:`chunk_for_speed`).
      playing: runs playing on this server now, this one included.

    Returns:
      Steps in the next chunk.

    Example:
      >>> fair_chunk(64, playing=3), fair_chunk(64, playing=50), fair_chunk(1, playing=50)
      (64, 8, 1)
    """
    return length if playing <= FULL_CHUNK_RUNS else min(length, SHARED_CHUNK)


def chunk_for_speed(speed: int) -> tuple[int, float]:
    """(steps per chunk, seconds between chunks) to play ``speed`` steps per second at about
    FRAMES_PER_SECOND messages per second or fewer."""
    length = max((n for n in CHUNK_LENGTHS if n <= max(1.0, speed / FRAMES_PER_SECOND)), default=1)
    return length, length / speed
