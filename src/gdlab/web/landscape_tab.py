r"""The explorer's tab 2, landscapes: its WebSocket messages and its run.

Gradient descent on a 1-D or 2-D function of :mod:`gdlab.landscapes` (a named one, or a safe
expression in x, y), from one start or from N random starts at once (multistart, ``vmap``),
with a constant or scheduled step size (warm restarts among them), streamed to the page step
by step. The configuration's names and limits are those of ``gdlab landscape``
(``--function``, ``--init``, ``--optimizer``, ``--lr``, ``--momentum``, ``--schedule``,
``--period``, ``--period-mult``, ``--multistart``, ``--seed``, ``--box``, ...), so a run on the
page is a run on the command line.

Client → server: ``start`` ``{"type": "start", "config": LandscapeConfig, "play": true, "id": n}``,
``pause``, ``resume``, ``step`` ``{"n": 1}``, ``reset`` and ``update`` (``lr``, ``momentum``, the
schedule's options, ``speed``; no recompilation for a constant step size or the momentum), as
tab 1 (:mod:`gdlab.web.protocol`).

Server → client: ``started`` (the landscape: its grid of f values, recorded global and local
minima, the start points), ``frames`` (per step ``{step, x, f, grad, lr, best_f, best_run, found,
runs}``: ``x``/``f``/``grad`` are those of the run lowest now, ``best_f`` the lowest f seen so
far, ``found`` how many recorded global minima some run sits at now (within ``found_tol``) or
null when none is recorded, ``runs`` every run's ``{"x": [...], "f": [...]}`` in multistart, null
otherwise; NaN and ±inf as null), ``state``, ``stopped`` and ``error``, as tab 1.

The run drives the engine's compiled chunk itself, like :class:`gdlab.web.runner.Run`: one
start uses :func:`gdlab.web.runner._program` (the same compiled-chunk cache as tab 1),
multistart the ``vmap``-ed chunk of :func:`gdlab.sweep.run_batch`; the step size and momentum
are injected hyperparameters written into the carry (:func:`gdlab.web.runner.set_hyperparams`,
:func:`gdlab.sweep.with_hyperparams` for the stacked state of many runs).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, field_validator, model_validator

from gdlab import landscapes, schedules, stopping, sweep
from gdlab.expressions import ExpressionError
from gdlab.web import protocol, runner
from gdlab.web.protocol import MAX_SPEED, MAX_STEPS_LIMIT, MOMENTUM_MAX, ProtocolError, _Strict

OPTIMIZERS = ("gd", "momentum", "nesterov", "adam")       # the CLI's, less natural (it needs a distribution)
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")
MAX_RUNS = 512                    # the CLI draws at most this many multistart runs (cli.landscape.MAX_DRAWN_RUNS)
MAX_FUNCTION_CHARS = 2_000        # gdlab.expressions.MAX_LENGTH
GRID_1D = 401                     # points of the curve
GRID_2D = 81                      # points per axis of the contours


class LandscapeConfig(_Strict):
    """One run of tab 2; the field names are ``gdlab landscape``'s options."""

    function: str = Field("double-well", min_length=1, max_length=MAX_FUNCTION_CHARS,
                          description="a named landscape or an expression in x (1-D) or x and y (2-D)")
    init: Optional[list[float]] = Field(None, min_length=1, max_length=2,
                                        description="the start point [x] or [x, y]; null: the landscape's own")
    optimizer: Literal[OPTIMIZERS] = "gd"  # type: ignore[valid-type]
    lr: float = Field(0.01, description="step size; negative runs gradient ascent (it runs away)")
    momentum: Optional[float] = Field(None, ge=0.0, le=MOMENTUM_MAX, description="momentum/nesterov (default 0.9)")
    schedule: Literal[schedules.SCHEDULES] = "constant"  # type: ignore[valid-type]
    decay: Optional[float] = Field(None, gt=0.0, le=1.0)
    decay_steps: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    alpha: float = Field(0.0, ge=0.0, le=1.0)
    period: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    period_mult: float = Field(1.0, ge=1.0, le=100.0)
    max_steps: int = Field(10_000, ge=0, le=MAX_STEPS_LIMIT)
    tol: float = Field(1e-15, ge=0.0, le=1.0)
    patience: int = Field(20, ge=1, le=100_000)
    grad_tol: float = Field(0.0, ge=0.0)
    multistart: Optional[int] = Field(None, ge=1, le=MAX_RUNS, description="N random starts at once")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    box: Optional[list[float]] = Field(None, min_length=2, max_length=4,
                                       description="[lo, hi] for every axis or [xlo, xhi, ylo, yhi]")
    found_tol: float = Field(landscapes.FOUND_TOL, gt=0.0)
    speed: int = Field(200, ge=1, le=MAX_SPEED, description="steps per second streamed")

    @field_validator("lr", "momentum", "decay", "alpha", "period_mult", "tol", "grad_tol", "found_tol")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        return protocol.finite(v)

    @field_validator("init", "box")
    @classmethod
    def _finite_points(cls, v: Optional[list[float]]) -> Optional[list[float]]:
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError("must hold finite numbers")
        return v

    @model_validator(mode="after")
    def _options_apply(self) -> "LandscapeConfig":
        # As on the CLI, an option that does not apply is refused rather than silently ignored.
        if self.optimizer not in MOMENTUM_OPTIMIZERS and self.momentum not in (None, 0.0):
            raise ValueError(f"momentum applies to the momentum and nesterov optimizers, not {self.optimizer!r}; "
                             f"set it to 0 or choose one of those")
        protocol.check_schedule_options(self.schedule, self.decay, self.decay_steps, self.period, self.period_mult)
        return self


class Start(_Strict):
    type: Literal["start"]
    config: LandscapeConfig = LandscapeConfig()
    play: bool = True
    id: Optional[int] = None    # echoed in "started" and in an error refusing it: starts may overlap


class Update(_Strict):
    """Fields left out (null) keep their values."""

    type: Literal["update"]
    lr: Optional[float] = None
    momentum: Optional[float] = Field(None, ge=0.0, le=MOMENTUM_MAX)
    schedule: Optional[Literal[schedules.SCHEDULES]] = None  # type: ignore[valid-type]
    decay: Optional[float] = Field(None, gt=0.0, le=1.0)
    decay_steps: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    alpha: Optional[float] = Field(None, ge=0.0, le=1.0)
    period: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    period_mult: Optional[float] = Field(None, ge=1.0, le=100.0)
    speed: Optional[int] = Field(None, ge=1, le=MAX_SPEED)

    @field_validator("lr", "momentum", "decay", "alpha", "period_mult")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        return protocol.finite(v)


Message = Union[Start, protocol.Pause, protocol.Resume, protocol.Step, protocol.Reset, Update]
MESSAGES = {"start": Start, "pause": protocol.Pause, "resume": protocol.Resume, "step": protocol.Step,
            "reset": protocol.Reset, "update": Update}


def parse_message(text: str) -> Message:
    """Tab 2's message in ``text``, or :class:`ProtocolError` naming the field at fault."""
    return protocol.parse_message(text, MESSAGES)


def message_type(text: str) -> tuple[Optional[str], Optional[int]]:
    """(``type``, ``id``) of a readable tab-2 message, else (None, None); never raises."""
    return protocol.message_type(text, MESSAGES)


# ----------------------------------------------------------------------------- the landscape

@functools.lru_cache(maxsize=128)
def _landscape(function: str) -> landscapes.Landscape:
    """The landscape by name or expression, one object per text: the same expression reuses its
    compiled chunks (the engine's caches key on the function object)."""
    return landscapes.get_landscape(function)


def landscape_for(config: LandscapeConfig) -> landscapes.Landscape:
    """The configured landscape (with its box), or :class:`ProtocolError` on ``function``/``box``."""
    try:
        land = _landscape(config.function.strip())
    except ExpressionError as exc:
        raise ProtocolError(str(exc), "function") from None
    except ValueError as exc:
        raise ProtocolError(str(exc), "function") from None
    if config.box is not None:
        values = list(config.box)
        if len(values) == 2:
            values = values * land.dim
        if len(values) != 2 * land.dim:
            raise ProtocolError(f"box takes [lo, hi] (every axis) or {'[xlo, xhi, ylo, yhi]' if land.dim == 2 else '[lo, hi]'}; "
                                f"got {len(config.box)} numbers for a {land.dim}-D landscape.", "box")
        try:
            land = landscapes.get_landscape(land, [values[2 * i:2 * i + 2] for i in range(land.dim)])
        except ValueError as exc:
            raise ProtocolError(str(exc), "box") from None
    return land


@functools.lru_cache(maxsize=64)
def _values_on(fn):
    """f at many points at once, compiled: (M, d) → (M,)."""
    return jax.jit(jax.vmap(fn))


@functools.lru_cache(maxsize=64)
def _value_and_grad(fn):
    """(f, ∇f) at many points at once, compiled: (M, d) → ((M,), (M, d))."""
    return jax.jit(jax.vmap(jax.value_and_grad(fn)))


@functools.lru_cache(maxsize=64)
def _schedule(signature: tuple):
    """The learning rate at a step of a scheduled run, compiled (signature: runner._schedule_signature)."""
    sched, lr, decay, decay_steps, alpha, period, period_mult, horizon = signature
    return jax.jit(schedules.make_schedule(sched, lr, decay=decay, decay_steps=decay_steps, alpha=alpha,
                                           period=period, period_mult=period_mult, horizon=horizon))


def _finite_or_none(x: float) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def _point(x) -> list:
    return [_finite_or_none(v) for v in np.atleast_1d(x)]


def view_box(land: landscapes.Landscape, starts: np.ndarray) -> list[list[float]]:
    """The plotted range per axis: the landscape's box, widened to hold every start."""
    out = []
    for k, (lo, hi) in enumerate(land.box):
        s_lo, s_hi = float(np.min(starts[:, k])), float(np.max(starts[:, k]))
        pad = 0.05 * (hi - lo)
        out.append([min(lo, s_lo - pad) if s_lo < lo else lo, max(hi, s_hi + pad) if s_hi > hi else hi])
    return out


def grid(land: landscapes.Landscape, box: list[list[float]]) -> dict:
    """f on a grid over ``box``: the curve (1-D, ``{"x", "f"}``) or the contours (2-D,
    ``{"x", "y", "f"}`` with ``f[i][j]`` at (x[j], y[i])); non-finite values as null."""
    if land.dim == 1:
        xs = np.linspace(box[0][0], box[0][1], GRID_1D)
        f = np.asarray(_values_on(land.fn)(jnp.asarray(xs[:, None])))
        return {"x": xs.tolist(), "f": [_finite_or_none(v) for v in f]}
    xs = np.linspace(box[0][0], box[0][1], GRID_2D)
    ys = np.linspace(box[1][0], box[1][1], GRID_2D)
    xx, yy = np.meshgrid(xs, ys)
    f = np.asarray(_values_on(land.fn)(jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=1)))).reshape(xx.shape)
    return {"x": xs.tolist(), "y": ys.tolist(), "f": [[_finite_or_none(v) for v in row] for row in f]}


def _minima(ms) -> list[dict]:
    return [{"x": list(m.x), "f": m.f} for m in ms]


# ----------------------------------------------------------------------------- the run

@dataclass
class Run:
    """One tab-2 run: one start, or N starts stepped together (multistart)."""

    config: LandscapeConfig
    landscape: landscapes.Landscape
    starts: np.ndarray                  # (N, d)
    criteria: stopping.StopCriteria
    carry: Any = field(default=None, repr=False)
    stop_reason: Optional[str] = None
    positions: np.ndarray = field(default=None, repr=False)     # (N, d): where each run is now
    values: np.ndarray = field(default=None, repr=False)        # (N,): f there
    grads: np.ndarray = field(default=None, repr=False)         # (N,): ‖∇f‖ there
    reasons: np.ndarray = field(default=None, repr=False)       # (N,): stop codes
    best_f: float = math.inf

    @property
    def multistart(self) -> bool:
        return self.config.multistart is not None

    # --- building ------------------------------------------------------------------------

    @classmethod
    def build(cls, config: LandscapeConfig) -> "Run":
        """Check the configuration like ``gdlab landscape`` does and set up step 0 (call inside x64)."""
        land = landscape_for(config)
        if config.multistart is not None:
            starts = landscapes.random_starts(land.box, config.multistart, config.seed)
        else:
            init = config.init if config.init is not None else land.start
            if init is None:
                raise ProtocolError(f"the expression has no default start; give init, a point with {land.dim} "
                                    f"coordinate{'s' if land.dim > 1 else ''} (click on the plot), or multistart N.",
                                    "init")
            if len(init) != land.dim:
                raise ProtocolError(f"init has {len(init)} coordinate{'s' if len(init) != 1 else ''} but the landscape "
                                    f"is {land.dim}-D; give {land.dim}.", "init")
            starts = np.asarray([init], dtype=float)
        try:
            criteria = stopping.StopCriteria(max_steps=config.max_steps, tol=config.tol, patience=config.patience,
                                             grad_tol=config.grad_tol).validate()
            runner._optimizer(config.optimizer, runner._schedule_signature(config))   # schedule options checked here
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        run = cls(config, land, starts, criteria)
        run.reset()
        return run

    def _opt(self):
        return runner._optimizer(self.config.optimizer, runner._schedule_signature(self.config))

    def _hyperparams(self) -> dict:
        values: dict = {}
        if self.config.schedule == "constant":
            values["learning_rate"] = self.config.lr
        if self.config.optimizer in MOMENTUM_OPTIMIZERS:
            values["momentum"] = 0.9 if self.config.momentum is None else self.config.momentum   # the CLI's default
        return values

    def _with_hyperparams(self, state: Any) -> Any:
        values = self._hyperparams()
        if not self.multistart:
            return runner.set_hyperparams(state, **values)
        n = len(self.starts)
        return sweep.with_hyperparams(state, {k: np.full(n, v) for k, v in values.items()}) if values else state

    def reset(self) -> None:
        """Back to step 0 at the start point(s), with the configured step size and momentum."""
        opt = self._opt()
        if self.multistart:
            carry = sweep._batched_init(opt, self.criteria)(jnp.asarray(self.starts))
        else:
            from gdlab import engine

            carry = engine.init_carry(opt, jnp.asarray(self.starts[0]), self.criteria)
        self.carry = carry._replace(opt_state=self._with_hyperparams(carry.opt_state))
        self.stop_reason = None
        self.positions = np.array(self.starts, dtype=float)
        values_on = _values_on(self.landscape.fn)
        self.values = np.array(values_on(jnp.asarray(self.starts)), dtype=float)
        grads = jax.vmap(jax.grad(self.landscape.fn))(jnp.asarray(self.starts))
        self.grads = np.array(np.linalg.norm(np.asarray(grads), axis=1), dtype=float)
        self.reasons = np.zeros(len(self.starts), dtype=np.int64)
        finite = self.values[np.isfinite(self.values)]
        self.best_f = float(finite.min()) if finite.size else math.inf

    # --- what the page shows first -------------------------------------------------------------

    def started(self) -> dict:
        """The ``started`` message: the landscape (grid, minima), the start points, step 0."""
        land = self.landscape
        box = view_box(land, self.starts)
        return {
            "type": "started",
            "config": self.config.model_dump(),
            "landscape": {"name": land.name, "dim": land.dim, "formula": land.formula, "box": box,
                          "global_minima": _minima(land.global_minima), "local_minima": _minima(land.local_minima),
                          "grid": grid(land, box)},
            "starts": self.starts.tolist(),
            "start": self._frame(0, self.config.lr),
        }

    # --- stepping ------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return int(np.max(np.asarray(self.carry.step)))

    def _found(self) -> Optional[int]:
        if not self.landscape.global_minima:
            return None
        return landscapes.minima_found(self.positions, self.landscape.global_minima, self.config.found_tol)[1]

    def _frame(self, step: int, lr: float) -> dict:
        finite = np.where(np.isfinite(self.values), self.values, np.inf)
        best = int(np.argmin(finite))
        return {
            "step": step, "x": _point(self.positions[best]), "f": _finite_or_none(self.values[best]),
            "grad": _finite_or_none(self.grads[best]), "lr": _finite_or_none(lr),
            "best_f": _finite_or_none(self.best_f), "best_run": best, "found": self._found(),
            "runs": ({"x": [_point(p) for p in self.positions], "f": [_finite_or_none(v) for v in self.values]}
                     if self.multistart else None),
        }

    def advance(self, length: int) -> tuple[list[dict], Optional[dict]]:
        """One compiled chunk of ``length`` steps (one of runner.CHUNK_LENGTHS): its frames and, once
        every run has stopped, the ``stopped`` message. Call inside x64."""
        if self.stop_reason is not None:
            return [], None
        opt = self._opt()
        loss = landscapes.landscape_objective(self.landscape).loss
        if self.multistart:
            program = sweep._batched_chunk(loss, None, None, None, opt, self.criteria, length, True)
            self.carry, rows = program(self.carry, None)
            rows = {k: np.asarray(v) for k, v in jax.device_get(rows).items()}
        else:
            program = runner._program(loss, None, None, None, opt, self.criteria, length)
            self.carry, rows = program(self.carry, None, None)
            rows = {k: np.asarray(v)[None] for k, v in jax.device_get(rows).items()}   # one run: a batch of one
        valid = rows["valid"]                                   # (N, length)
        frames = []
        for i in range(valid.shape[1]):
            live = valid[:, i]
            if not live.any():
                break
            self.positions[live] = rows["params"][live, i]
            self.values[live] = rows["loss"][live, i]
            self.grads[live] = rows["grad_norm"][live, i]
            now = self.values[live]
            now = now[np.isfinite(now)]
            if now.size:
                self.best_f = min(self.best_f, float(now.min()))
            k = int(np.argmax(live))
            frames.append(self._frame(int(rows["step"][k, i]), float(rows["lr"][k, i])))
        self.reasons = np.atleast_1d(np.asarray(self.carry.reason))
        if np.any(self.reasons == stopping.RUNNING):
            frames.append(self._where_now())
            return frames, None
        return frames, self._stopped()

    def _where_now(self) -> dict:
        """The frame of the point the chunk's last update reached (the engine records a point
        with the update made from it, so the next chunk's first row repeats it, with its lr):
        a step on the page moves the point at once."""
        params = np.asarray(self.carry.params).reshape(len(self.starts), -1)
        running = self.reasons == stopping.RUNNING
        f, g = _value_and_grad(self.landscape.fn)(jnp.asarray(params))
        self.positions[running] = params[running]
        self.values[running] = np.asarray(f)[running]
        self.grads[running] = np.linalg.norm(np.asarray(g), axis=1)[running]
        now = self.values[running]
        now = now[np.isfinite(now)]
        if now.size:
            self.best_f = min(self.best_f, float(now.min()))
        step = self.step
        lr = self.config.lr if self.config.schedule == "constant" else float(_schedule(runner._schedule_signature(self.config))(step))
        return self._frame(step, lr)

    def _stopped(self) -> dict:
        names = [stopping.STOP_REASONS[int(c)] for c in self.reasons]
        finite = np.where(np.isfinite(self.values), self.values, np.inf)
        best = int(np.argmin(finite))
        self.stop_reason = names[best]
        step = self.step
        if not self.multistart:
            message = self._ending(self.stop_reason, step, self.positions[0], float(self.values[0]))
        else:
            counts = ", ".join(f"{names.count(r)} {r.replace('_', ' ')}" for r in ("converged", "max_steps", "diverged")
                               if names.count(r))
            found = self._found()
            message = (f"all {len(names)} runs stopped by step {step} ({counts}); the best, run {best}, ended at "
                       f"{_fmt_point(self.positions[best])} with f = {_fmt(self.values[best])}")
            if found is not None:
                message += f"; {found} of {len(self.landscape.global_minima)} global minima found"
            message += "."
        return {"type": "stopped", "reason": self.stop_reason, "step": step, "message": message,
                "reasons": names, "found": self._found()}

    def _ending(self, reason: str, step: int, x: np.ndarray, f: float) -> str:
        """One sentence on how a single run stopped, naming the recorded minimum it ended at."""
        if reason == "diverged":
            return (f"diverged at step {step}: f became non-finite or grew far past its start; the step size is "
                    f"too large or negative (gradient ascent runs away).")
        head = (f"converged at step {step}" if reason == "converged"
                else f"stopped at max_steps = {step} before f stopped changing")
        where = ""
        tol = self.config.found_tol
        for kind, ms in (("the global minimum", self.landscape.global_minima),
                         ("a local minimum", self.landscape.local_minima)):
            if ms and landscapes.minima_found(x, ms, tol)[0]:
                where = f": {kind}"
                if kind == "a local minimum":
                    g = self.landscape.global_minima[0]
                    where += f" (the global one is f{_fmt_point(g.x)} = {_fmt(g.f)})"
                break
        return f"{head} at {_fmt_point(x)}, f = {_fmt(f)}{where}."

    # --- steering --------------------------------------------------------------------------

    def update(self, msg: Update) -> list[dict]:
        """Apply a mid-run change of step size, momentum, schedule or speed; the run goes on from
        where it is (call inside x64). Returns no extra messages."""
        changes = {k: v for k, v in msg.model_dump(exclude={"type"}).items() if v is not None}
        if self.config.optimizer not in MOMENTUM_OPTIMIZERS and changes.get("momentum", 0.0) != 0.0:
            raise ProtocolError(f"momentum applies to the momentum and nesterov optimizers, not "
                                f"{self.config.optimizer!r}.", "momentum")
        if "schedule" in changes:     # a new schedule brings its own options (null: its defaults)
            for k in ("decay", "decay_steps", "period"):
                changes.setdefault(k, None)
            changes.setdefault("period_mult", 1.0)
        try:
            config = LandscapeConfig.model_validate({**self.config.model_dump(), **changes})
            runner._optimizer(config.optimizer, runner._schedule_signature(config))
        except ValueError as exc:   # pydantic's ValidationError is a ValueError too
            text = str(exc)
            raise ProtocolError(text.splitlines()[-1] if "validation error" in text else text) from None
        if self.stop_reason == "diverged" and set(changes) - {"speed"}:
            raise ProtocolError("the run diverged; press reset to start again from the start point.")
        self.config = config
        self.carry = self.carry._replace(opt_state=self._with_hyperparams(self.carry.opt_state))
        return []


def _fmt(x: float) -> str:
    return f"{x:.6g}" if math.isfinite(x) else "nan"


def _fmt_point(x) -> str:
    return "(" + ", ".join(_fmt(float(v)) for v in np.atleast_1d(x)) + ")"
