r"""The explorer's tab 3, supervised training: its WebSocket messages and its run.

A run is :func:`gdlab.train` stepped by the page: the same data (a bundled dataset, or a 2-D
toy set made on the server from the seed), the same split and standardisation, the same
model, penalty, optimizer, initial weights, mini-batch order and stopping rules, driven one
compiled chunk at a time (:func:`gdlab.engine.chunk_program`, through the runner's chunk cache)
so that the page can pause, step and change the step size mid-run. A full-batch run's losses
are ``gdlab.train``'s to rounding (the protocol test checks 1e-10).

Client → server: ``start`` (``{"type": "start", "config": TrainConfig, "play": true, "id": n}``),
``pause``, ``resume``, ``step`` (``n``), ``reset``, ``update`` (``lr``, ``momentum``,
``damping``, ``speed`` mid-run; constant-schedule step sizes, momentum and damping are injected
hyperparameters, so no recompilation).

Server → client: ``started`` (the data: sizes, features, the toy points in raw coordinates
with the standardisation, the model's shape; the ``start`` frame at θ₀), ``frames`` (one per
step: ``step``, ``loss`` (the minimised loss of that step: J on all training rows in batch
mode, the mini-batch J_B in mini-batch mode), ``full_loss`` (J on all training rows),
``accuracy`` (or ``rmse`` for linear regression, on the training rows), ``test_loss`` and
``test_accuracy`` (every step in batch mode, at epoch ends in mini-batch mode, else null),
``epoch`` (the epochs completed, at epoch ends, else null), ``lr``, ``grad`` (‖∇ of the step's
loss‖), ``weight_norm`` and ``params`` (θ = W then b, when θ has at most
:data:`MAX_PARAMS_IN_FRAMES` entries)), ``state``, ``stopped`` (with gdlab.train's sentence)
and ``error``, as tab 1.

Differences from ``gdlab.train`` worth knowing: without a penalty the separability check runs
on every chunk the page plays (gdlab.train checks on its own, longer chunks), so such a run may
be called ``diverged`` at a different step; the final linear-programming check is not run.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, field_validator, model_validator

from gdlab import data as datamod
from gdlab import engine, models, optim, schedules, stopping, training
from gdlab.schedules import SCHEDULES
from gdlab.web import protocol, runner
from gdlab.web.protocol import MAX_SPEED, ProtocolError, _Strict

TOY_DATASETS = ("blobs", "moons")
DATA_CHOICES = TOY_DATASETS + tuple(datamod.DATASETS)
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov", "natural")
DAMPING_OPTIMIZERS = ("natural", "natural-diag")
MAX_PARAMS_IN_FRAMES = 128        # θ per frame only for small models (the toy's 3, breast_cancer's 31)
MAX_TOY_POINTS = 20_000
_PLACEHOLDER_LR = 0.1             # overwritten in the optimizer state (see gdlab.web.runner)
_PLACEHOLDER_MOMENTUM = 0.5
_PLACEHOLDER_DAMPING = 0.0


class TrainConfig(_Strict):
    """One run of tab 3. Names and limits follow ``gdlab train``'s options; ``data`` also takes
    the toy sets ``blobs`` and ``moons`` (2-D, made from ``seed`` with ``n_points``,
    ``separation`` and ``noise``)."""

    data: Literal[DATA_CHOICES] = "blobs"  # type: ignore[valid-type]
    model: Literal[models.MODELS] = "logistic"  # type: ignore[valid-type]
    n_points: int = Field(200, ge=10, le=MAX_TOY_POINTS, description="toy data: points in all (train and test)")
    separation: float = Field(2.0, ge=0.0, le=20.0, description="blobs: distance between the class means, in std units")
    noise: float = Field(0.25, ge=0.0, le=2.0, description="moons: std of the noise added to the points")
    optimizer: Literal[training.OPTIMIZERS] = "gd"  # type: ignore[valid-type]
    lr: Optional[float] = Field(None, description="step size; default: gdlab train's for the optimizer")
    momentum: Optional[float] = Field(None, ge=0.0, le=1.0)
    damping: Optional[float] = Field(None, ge=0.0, le=1e6)
    schedule: Literal[SCHEDULES] = "constant"  # type: ignore[valid-type]
    decay: Optional[float] = Field(None, gt=0.0, le=1.0)
    decay_steps: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    alpha: float = Field(0.0, ge=0.0, le=1.0)
    period: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    period_mult: float = Field(1.0, ge=1.0, le=100.0)
    batch_size: int = Field(0, ge=0, le=2**31 - 2, description="rows per step; 0 = batch gradient descent")
    epochs: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    max_steps: Optional[int] = Field(None, ge=0, le=protocol.MAX_STEPS_LIMIT)
    test_size: float = Field(0.2, ge=0.0, lt=1.0)
    standardize: bool = True
    init: Literal[models.INITS] = "zeros"  # type: ignore[valid-type]
    seed: int = Field(0, ge=0, le=2**32 - 1)
    l2: Optional[float] = Field(None, ge=0.0)
    C: Optional[float] = Field(None, gt=0.0)
    tol: float = Field(1e-15, ge=0.0, le=1.0)
    patience: int = Field(10, ge=1, le=100_000)
    grad_tol: float = Field(1e-10, ge=0.0)
    speed: int = Field(200, ge=1, le=MAX_SPEED, description="steps per second streamed")

    @field_validator("lr", "momentum", "damping", "decay", "alpha", "period_mult", "separation", "noise", "l2",
                     "C", "tol", "grad_tol")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        return protocol.finite(v)

    @model_validator(mode="after")
    def _options_apply(self) -> "TrainConfig":
        # As on the CLI, an option that does not apply is refused rather than silently ignored.
        if self.optimizer not in MOMENTUM_OPTIMIZERS and self.momentum not in (None, 0.0):
            raise ValueError(f"momentum applies to the {', '.join(MOMENTUM_OPTIMIZERS)} optimizers, "
                             f"not {self.optimizer!r}; leave it empty or choose one of those")
        if self.optimizer not in DAMPING_OPTIMIZERS and self.damping not in (None, 0.0):
            raise ValueError(f"damping applies to the natural and natural-diag optimizers, not {self.optimizer!r}")
        if self.l2 is not None and self.C is not None:
            raise ValueError("l2 and C are two ways to give the penalty (l2 = 1/(C·n)); give one of them")
        protocol.check_schedule_options(self.schedule, self.decay, self.decay_steps, self.period, self.period_mult)
        if self.data in TOY_DATASETS and self.model != "logistic":
            raise ValueError(f"model {self.model!r} does not fit the toy data {self.data!r} (two classes, 0/1 "
                             f"labels): use logistic")
        return self

    @property
    def rate(self) -> float:
        return training.DEFAULT_LR[self.optimizer] if self.lr is None else self.lr


class Start(_Strict):
    type: Literal["start"]
    config: TrainConfig = TrainConfig()
    play: bool = True
    id: Optional[int] = None    # echoed in "started" and in an error refusing it


class Update(_Strict):
    """Fields left out (null) keep their values."""

    type: Literal["update"]
    lr: Optional[float] = None
    momentum: Optional[float] = Field(None, ge=0.0, le=1.0)
    damping: Optional[float] = Field(None, ge=0.0, le=1e6)
    speed: Optional[int] = Field(None, ge=1, le=MAX_SPEED)

    @field_validator("lr", "momentum", "damping")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        return protocol.finite(v)


MESSAGES = {"start": Start, "pause": protocol.Pause, "resume": protocol.Resume, "step": protocol.Step,
            "reset": protocol.Reset, "update": Update}


def parse_message(text: str):
    """Tab 3's message in ``text``, or :class:`ProtocolError` with one sentence."""
    return protocol.parse_message(text, MESSAGES)


def message_type(text: str) -> tuple[Optional[str], Optional[int]]:
    return protocol.message_type(text, MESSAGES)


# ------------------------------------------------------------------------------- toy data

def toy_data(name: str, n_points: int, seed: int, separation: float = 2.0, noise: float = 0.25):
    """A 2-D two-class data set made from ``seed``: (X of shape (n, 2), y of 0/1 labels).

    ``blobs``: classes alternate (n/2 each), x ~ N(±(separation/2)·u, I) with u = (1, 1)/√2,
    so the Bayes classifier is the line u·x = 0 and its accuracy is Φ(separation/2).
    ``moons``: scikit-learn's ``make_moons`` with ``noise`` and ``random_state=seed``.
    """
    if name == "blobs":
        rng = np.random.default_rng(seed)
        y = (np.arange(n_points) % 2).astype(float)
        u = np.array([1.0, 1.0]) / math.sqrt(2.0)
        X = rng.normal(size=(n_points, 2)) + np.outer(2.0 * y - 1.0, u) * (separation / 2.0)
        return X, y
    if name == "moons":
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples=n_points, noise=noise, random_state=seed)
        return np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    raise ValueError(f"toy data must be one of {', '.join(TOY_DATASETS)}, got {name!r}.")


def training_data(cfg: TrainConfig) -> Any:
    """What ``gdlab.train``'s ``data`` argument is for this configuration."""
    if cfg.data in TOY_DATASETS:
        return toy_data(cfg.data, cfg.n_points, cfg.seed, cfg.separation, cfg.noise)
    return cfg.data


def train_kwargs(cfg: TrainConfig) -> dict:
    """The keyword arguments of ``gdlab.train`` that make the same run (tests use it)."""
    return dict(batch_size=cfg.batch_size, epochs=cfg.epochs, max_steps=cfg.max_steps, test_size=cfg.test_size,
                standardize=cfg.standardize, init=cfg.init, seed=cfg.seed, l2=cfg.l2, C=cfg.C, tol=cfg.tol,
                patience=cfg.patience, grad_tol=cfg.grad_tol)


# ------------------------------------------------------------------------------- compiled pieces

class WebBatchConstants(NamedTuple):
    """Mini-batch mode's constants: λ (what gdlab.train's loss reads) and all training rows,
    for the full-data loss and accuracy the page shows at every step."""

    l2: jax.Array
    X: jax.Array
    y: jax.Array


@functools.lru_cache(maxsize=None)
def _mini_batch_metrics(model: models.Model):
    name = training._metric_name(model)
    _, base, _ = training._mini_batch_functions(model, "none")

    def metrics(theta, data):
        consts, _ = data
        return {**base(theta, data), "full_loss": models.objective(model, theta, consts.X, consts.y, consts.l2),
                name: training._metric(model, jnp.mean(models.example_scores(model, theta, consts.X, consts.y)))}

    return metrics


def _schedule_signature(cfg: TrainConfig, horizon: int) -> Optional[tuple]:
    if cfg.schedule == "constant":
        return None
    return (cfg.schedule, cfg.rate, cfg.decay, cfg.decay_steps, cfg.alpha, cfg.period, cfg.period_mult, horizon)


@functools.lru_cache(maxsize=256)
def _optimizer(name: str, schedule_sig: Optional[tuple]):
    """One optimizer object per kind of run, so that compiled chunks are reused (see the runner)."""
    if schedule_sig is None:
        rate: Any = _PLACEHOLDER_LR
    else:
        sched, lr, decay, decay_steps, alpha, period, period_mult, horizon = schedule_sig
        rate = schedules.make_schedule(sched, lr, decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                       period_mult=period_mult, horizon=max(horizon, 1))
    return training.make_optimizer(name, rate, _PLACEHOLDER_MOMENTUM if name in MOMENTUM_OPTIMIZERS else None,
                                   damping=_PLACEHOLDER_DAMPING if name in DAMPING_OPTIMIZERS else None)


def _num(x: Any) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


_FIELD_WORDS = ("batch_size", "test_size", "momentum", "damping", "schedule", "decay", "period", "seed", "lr",
                "l2", "C", "epochs", "max_steps", "init", "model", "data")


def _blame(message: str) -> Optional[str]:
    """The config field a library sentence is about (its first field name), for the inline error."""
    for word in message.replace("--", "").replace("-", "_").split():
        word = word.strip(".,;:'\"()")
        if word in _FIELD_WORDS:
            return word
    return None


# ------------------------------------------------------------------------------- the run

@dataclass
class TrainRun:
    """One tab-3 run: gdlab.train's pieces for a configuration and the engine's carry."""

    config: TrainConfig
    dataset: datamod.Dataset = field(repr=False)
    model: models.Model
    lam: float
    plan: Any
    fisher_kind: str
    theta0: np.ndarray = field(repr=False)
    objective: engine.Objective = field(repr=False)
    criteria: stopping.StopCriteria
    carry: Any = field(repr=False, default=None)
    stop_reason: Optional[str] = None
    rng: Any = field(repr=False, default=None)
    pending: list = field(repr=False, default_factory=list)     # per-step mini-batches not yet used
    epochs_made: int = 0
    records: Any = field(repr=False, default=None)
    first_lr: float = math.nan
    stopped_at: Optional[int] = None     # the step a per-epoch rule stopped at (the carry went past it)

    @property
    def batched(self) -> bool:
        return self.config.batch_size > 0

    @property
    def metric(self) -> str:
        return training._metric_name(self.model)

    # --- building ------------------------------------------------------------------------

    @classmethod
    def build(cls, config: TrainConfig) -> "TrainRun":
        """Check the configuration as ``gdlab train`` does and set up step 0 (call inside x64)."""
        try:
            ds = datamod.load(training_data(config), config.model, test_size=config.test_size, seed=config.seed,
                              standardize=config.standardize, stream=False)
        except ValueError as exc:
            raise ProtocolError(str(exc), _blame(str(exc)) or "data") from None
        if config.batch_size > ds.n_train:
            raise ProtocolError(f"batch_size {config.batch_size} is larger than the {ds.n_train} training rows; use "
                                f"a smaller batch size, or 0 for batch gradient descent.", "batch_size")
        try:
            n_classes = len(ds.classes) if config.model == "softmax" else None
            model = models.make_model(config.model, len(ds.features), n_classes=n_classes)
            lam = training._penalty(config.model, config.l2, config.C, ds.n_train)
            plan = training._plan(config.batch_size, config.epochs, config.max_steps, ds.n_train)
            if config.batch_size:
                criteria = stopping.StopCriteria(max_steps=plan.steps_cap, tol=0.0, patience=1, grad_tol=0.0)
            else:
                criteria = stopping.StopCriteria(max_steps=plan.steps_cap, tol=config.tol, patience=config.patience,
                                                 grad_tol=config.grad_tol)
            criteria.validate()
            optimizer = _optimizer(config.optimizer, _schedule_signature(config, plan.total_steps))
            fisher_kind = training._fisher_kind(optimizer, model.n_params, config.batch_size == 0, "auto")
        except ValueError as exc:
            raise ProtocolError(str(exc), _blame(str(exc))) from None
        theta0 = models.init_params(model, config.init, config.seed, models.prior_bias(model, ds.target_mean))
        if config.batch_size:
            loss, _, fisher = training._mini_batch_functions(model, fisher_kind)
            data = WebBatchConstants(jnp.asarray(lam), jnp.asarray(ds.X_train), jnp.asarray(ds.y_train))
            objective = engine.Objective(loss=loss, data=data, metrics=_mini_batch_metrics(model), fisher=fisher)
        else:
            loss, metrics, fisher = training._full_batch_functions(model, fisher_kind)
            data = training.FullData(jnp.asarray(ds.X_train), jnp.asarray(ds.y_train), jnp.asarray(ds.X_test),
                                     jnp.asarray(ds.y_test), jnp.asarray(lam))
            objective = engine.Objective(loss=loss, data=data, metrics=metrics, fisher=fisher)
        run = cls(config, ds, model, lam, plan, fisher_kind, theta0, objective, criteria)
        run.reset()
        return run

    def _optimizer(self):
        return _optimizer(self.config.optimizer, _schedule_signature(self.config, self.plan.total_steps))

    def _hyperparams(self, state: Any) -> Any:
        cfg = self.config
        values: dict = {}
        if cfg.schedule == "constant":
            values["learning_rate"] = cfg.rate
        if cfg.optimizer in MOMENTUM_OPTIMIZERS:
            values["momentum"] = (0.9 if cfg.optimizer != "natural" else 0.0) if cfg.momentum is None else cfg.momentum
        if cfg.optimizer in DAMPING_OPTIMIZERS:
            values["damping"] = cfg.damping or 0.0
        return runner.set_hyperparams(state, **values)

    def reset(self) -> None:
        """Back to step 0: θ₀, a fresh optimizer state, the first epoch's shuffle (gdlab.train's)."""
        carry = engine.init_carry(self._optimizer(), jnp.asarray(self.theta0), self.criteria)
        self.carry = carry._replace(opt_state=self._hyperparams(carry.opt_state))
        self.stop_reason = None
        self.rng = np.random.default_rng(np.random.SeedSequence(self.config.seed).spawn(2)[1])
        self.pending, self.epochs_made = [], 0
        self.records = training._EpochRecords(self.config.tol, self.config.patience, self.config.grad_tol)
        self.first_lr = math.nan
        self.stopped_at = None

    # --- what the page shows first -------------------------------------------------------------

    def started(self) -> dict:
        ds, cfg = self.dataset, self.config
        ev = training.evaluate(self.model, self.theta0, ds, self.lam)
        data: dict = {"name": cfg.data, "toy": cfg.data in TOY_DATASETS, "n_train": ds.n_train, "n_test": ds.n_test,
                      "features": list(ds.features), "classes": None if ds.classes is None else
                      [c if isinstance(c, str) else _num(c) for c in ds.classes],
                      "mean": ds.mean.tolist(), "scale": ds.scale.tolist()}
        if data["toy"]:
            raw = lambda X: (X * ds.scale + ds.mean).tolist()  # noqa: E731
            data.update(X_train=raw(ds.X_train), y_train=ds.y_train.tolist(), X_test=raw(ds.X_test),
                        y_test=ds.y_test.tolist())
            if cfg.data == "blobs":
                data["bayes_accuracy"] = 0.5 * (1.0 + math.erf(cfg.separation / 2.0 / math.sqrt(2.0)))
        return {
            "type": "started", "config": cfg.model_dump(), "data": data, "metric": self.metric,
            "model": {"kind": self.model.kind, "n_params": self.model.n_params, "n_outputs": self.model.n_outputs,
                      "l2": self.lam, "fisher": self.fisher_kind},
            "per_epoch": self.plan.per_epoch, "total_steps": self.plan.total_steps,
            "start": self._evaluation_frame(0, self.theta0, ev, epoch=0.0, lr=cfg.rate if cfg.schedule == "constant" else None),
        }

    def _evaluation_frame(self, step: int, theta: np.ndarray, ev: training.Evaluation, epoch: Optional[float],
                          lr: Optional[float] = None) -> dict:
        """A frame from a full-data evaluation (the start; the end of a mini-batch run)."""
        name = self.metric
        frame = {"step": step, "loss": _num(ev.loss), "full_loss": _num(ev.loss), name: _num(ev.metric),
                 "test_loss": _num(ev.test_loss), "test_" + name: _num(ev.test_metric), "epoch": epoch,
                 "lr": None if lr is None else _num(lr), "grad": _num(ev.grad_norm),
                 "weight_norm": _num(np.linalg.norm(np.asarray(models.unravel(self.model, jnp.asarray(theta))[0])))}
        if self.model.n_params <= MAX_PARAMS_IN_FRAMES:
            frame["params"] = [_num(x) for x in np.asarray(theta)]
        return frame

    # --- stepping ------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return int(self.carry.step) if self.stopped_at is None else self.stopped_at

    def _next_batches(self, length: int) -> tuple[Optional[tuple], int]:
        """``length`` steps' mini-batches (padded), and how many are real; gdlab.train's order."""
        B, per_epoch = self.config.batch_size, self.plan.per_epoch
        ds = self.dataset
        while len(self.pending) < length and self.epochs_made < self.plan.epochs:
            order = self.rng.permutation(ds.n_train)[:per_epoch * B]
            X = ds.X_train[order].reshape(per_epoch, B, -1)
            y = ds.y_train[order].reshape(per_epoch, B)
            self.pending.extend(zip(X, y))
            self.epochs_made += 1
        take, self.pending = self.pending[:length], self.pending[length:]
        if not take:
            return None, 0
        n = len(take)
        X = np.stack([b[0] for b in take])
        y = np.stack([b[1] for b in take])
        if n < length:
            X = np.concatenate([X, np.zeros((length - n, *X.shape[1:]))])
            y = np.concatenate([y, np.zeros((length - n, *y.shape[1:]))])
        return (X, y), n

    def advance(self, length: int) -> tuple[list[dict], Optional[dict]]:
        """One compiled chunk of ``length`` steps; its frames and, if the run stopped, the
        ``stopped`` message. Call inside x64."""
        if self.stop_reason is not None:
            return [], None
        o, opt = self.objective, self._optimizer()
        program = runner._program(o.loss, o.metrics, o.fisher, o.in_domain, opt, self.criteria, length, self.batched)
        if self.batched:
            batches, n = self._next_batches(length)
            if batches is None:                                   # the epochs ran out (gdlab.train: max_steps)
                return self._finish_mini_batch([], "max_steps")
            self.carry, rows = program(self.carry, o.data, batches, jnp.asarray(n, jnp.int32))
        else:
            self.carry, rows = program(self.carry, o.data, None, jnp.asarray(length, jnp.int32))
        rows = jax.device_get(rows)
        valid = rows.pop("valid")
        rows = {k: np.asarray(v)[valid] for k, v in rows.items()}
        frames = self._frames(rows)
        if frames and math.isnan(self.first_lr) and frames[0]["step"] == 0 and frames[0]["lr"] is not None:
            self.first_lr = frames[0]["lr"]
        code = int(self.carry.reason)
        if self.batched:
            return self._epoch_ends(frames, rows, code)
        reason = stopping.STOP_REASONS[code] if code != stopping.RUNNING else None
        if reason is None and self._separated(rows["params"][-1] if len(rows["step"]) else None):
            reason = "diverged"
        if reason is None:
            return frames, None
        return frames, self._stopped(reason, self.step, np.asarray(self.carry.params, dtype=float))

    def _frames(self, rows: dict) -> list[dict]:
        name, n = self.metric, len(rows["step"])
        small = self.model.n_params <= MAX_PARAMS_IN_FRAMES
        frames = []
        for i in range(n):
            f = {"step": int(rows["step"][i]), "loss": _num(rows["loss"][i]),
                 "full_loss": _num(rows["full_loss"][i] if self.batched else rows["loss"][i]),
                 name: _num(rows[name][i]),
                 "test_loss": None if self.batched else _num(rows["test_loss"][i]),
                 "test_" + name: None if self.batched else _num(rows["test_" + name][i]),
                 "epoch": None if self.batched else float(rows["step"][i]),
                 "lr": _num(rows["lr"][i]), "grad": _num(rows["grad_norm"][i]),
                 "weight_norm": _num(rows["weight_norm"][i])}
            if small:
                f["params"] = [_num(x) for x in rows["params"][i]]
            frames.append(f)
        return frames

    def _separated(self, theta: Optional[np.ndarray]) -> bool:
        """Without a penalty, do the weights reached classify every training row with a margin?"""
        if theta is None or self.model.kind == "linear" or self.lam != 0.0 or not np.all(np.isfinite(theta)):
            return False
        return training.evaluate(self.model, theta, self.dataset, self.lam).margin > 0

    def _epoch_ends(self, frames: list[dict], rows: dict, code: int) -> tuple[list[dict], Optional[dict]]:
        """Mini-batch mode: the full-data evaluation and the per-epoch stopping rules at each
        epoch's start, as gdlab.train applies them."""
        per_epoch, name = self.plan.per_epoch, self.metric
        for i, f in enumerate(frames):
            if f["step"] % per_epoch:
                continue
            epoch = f["step"] // per_epoch
            theta = np.asarray(rows["params"][i], dtype=float)
            ev = training.evaluate(self.model, theta, self.dataset, self.lam)
            self.records.add(float(epoch), f["step"], ev)
            f.update({"epoch": float(epoch), "test_loss": _num(ev.test_loss), "test_" + name: _num(ev.test_metric)})
            reason = self.records.check(epoch, ev)
            if self._separated(theta):
                reason = "diverged"
            if reason != "running":
                self.stop_reason, self.stopped_at = reason, f["step"]
                return frames[:i + 1], self._stopped(reason, f["step"], theta, ev)
        if code != stopping.RUNNING:
            return self._finish_mini_batch(frames, stopping.STOP_REASONS[code])
        return frames, None

    def _finish_mini_batch(self, frames: list[dict], reason: str) -> tuple[list[dict], dict]:
        """The run ended by its budget or blew up: evaluate θ at the end, as gdlab.train does."""
        theta = np.asarray(self.carry.params, dtype=float)
        ev = training.evaluate(self.model, theta, self.dataset, self.lam)
        steps = self.step
        if reason != "diverged":
            self.records.add(steps / self.plan.per_epoch, steps, ev)
            last = self._evaluation_frame(steps, theta, ev, epoch=steps / self.plan.per_epoch)
            if frames and frames[-1]["step"] == steps:
                frames[-1].update({k: v for k, v in last.items() if k.startswith("test_") or k == "epoch"})
            else:
                last["loss"] = None          # no mini-batch loss is computed after the last update
                frames = [*frames, last]
        return frames, self._stopped(reason, steps, theta, ev)

    def _stopped(self, reason: str, steps: int, theta: np.ndarray, ev: Optional[training.Evaluation] = None) -> dict:
        """The ``stopped`` message with gdlab.train's sentence."""
        self.stop_reason = reason
        if ev is None:
            ev = training.evaluate(self.model, theta, self.dataset, self.lam)
        cfg = self.config
        separable = reason == "diverged" and self.model.kind != "linear" and self.lam == 0.0 and ev.margin > 0
        why = "the loss stopped changing" if not cfg.batch_size else "the full-data loss stopped changing from epoch to epoch"
        if cfg.grad_tol > 0 and ev.grad_norm <= cfg.grad_tol:
            why = f"the gradient norm fell to {ev.grad_norm:.3g} (≤ grad_tol {cfg.grad_tol:g})"
        lr_now = float(optim.learning_rate(self.carry.opt_state))
        weight_norm = float(np.linalg.norm(np.asarray(models.unravel(self.model, jnp.asarray(theta))[0])))
        epochs = steps // self.plan.per_epoch
        message = training._ending(reason, steps, epochs, cfg.batch_size, why, separable, False, self.fisher_kind,
                                   self.first_lr, lr_now, ev.grad_norm, math.isfinite(ev.loss), weight_norm)
        name = self.metric
        return {"type": "stopped", "reason": reason, "step": steps, "epochs": epochs, "message": message,
                "loss": _num(ev.loss), "test_loss": _num(ev.test_loss), name: _num(ev.metric),
                "test_" + name: _num(ev.test_metric), "grad": _num(ev.grad_norm), "separable": bool(separable)}

    # --- steering --------------------------------------------------------------------------

    def update(self, msg: Update) -> list[dict]:
        """Change the step size, momentum, damping or speed mid-run (call inside x64)."""
        changes = {k: v for k, v in msg.model_dump(exclude={"type"}).items() if v is not None}
        try:
            config = TrainConfig.model_validate({**self.config.model_dump(), **changes})
            _optimizer(config.optimizer, _schedule_signature(config, self.plan.total_steps))
        except ValueError as exc:   # pydantic's ValidationError is a ValueError too
            text = str(exc).splitlines()[-1] if "validation error" in str(exc) else str(exc)
            raise ProtocolError(text.strip().removeprefix("Value error, "), _blame(text)) from None
        if self.stop_reason == "diverged" and set(changes) - {"speed"}:
            raise ProtocolError("the run diverged; press reset to start again from the initial weights.")
        self.config = config
        self.carry = self.carry._replace(opt_state=self._hyperparams(self.carry.opt_state))
        return []


def build(config: TrainConfig) -> TrainRun:
    return TrainRun.build(config)
