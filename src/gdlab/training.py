r"""Train a supervised model by gradient descent: :func:`train`.

Training minimises the model's objective (:mod:`gdlab.models`) over the weights,

.. math::  J(\theta) = \frac1n\sum_{i=1}^n \ell(z_i(\theta), y_i) + \frac{\lambda}{2}\lVert W\rVert^2,
           \qquad \lambda = \frac{1}{C\,n}\ \text{(scikit-learn's } C\text{)},

with the core's engine (:func:`gdlab.engine.run`), optimizers and stopping rules:

- **batch gradient descent** (``batch_size=0``): every step uses all n training rows; the
  engine's stopping rules apply per step (an epoch is one step): converged when J moved by at
  most tol·max(1, |J|) over the last ``patience`` steps or when ‖∇J‖ ≤ grad_tol.
- **mini-batch SGD** (``batch_size=B``): step t uses B rows, J_B(θ) = (1/B)Σ_batch ℓ + (λ/2)‖W‖²,
  an unbiased estimate of J; each epoch is one pass over the rows in a new random order
  (⌊n/B⌋ steps, the last partial batch dropped). The stopping rules apply per epoch, to the
  full-data J and ‖∇J‖ computed at the end of each epoch (a noisy mini-batch loss never
  "stops changing"), and a run they stop reports the weights of that epoch's end; a run that
  blows up is caught at the step where it does.

The trace records the loss of each step (the full-data J in batch mode, the mini-batch J_B in
mini-batch mode) and, per epoch, the full-data J on the training rows and the mean loss on the
test rows: SGD's noise shows next to batch GD's smooth descent.

**Separable data.** Without a penalty (λ = 0), when some weights classify every training row
correctly with a positive margin, J falls towards 0 as those weights are scaled up and has no
finite minimiser: the iterates run away. gdlab checks the margins of the weights reached (after
every compiled chunk of steps in batch mode, every epoch in mini-batch mode) and, at the end, asks
a linear program whether separating weights exist (data in memory, up to
:data:`gdlab.models.LP_SIZE_LIMIT`); either way the run is reported as ``diverged`` with a
``message`` that says the data are linearly separable and names the penalty to add.

**Natural gradient.** ``gdlab.optim.natural`` receives the model's Fisher information
(:mod:`gdlab.models`): a dense matrix solved by Cholesky in batch mode with at most
2,048 parameters, otherwise (mini-batches, more parameters, or ``solver="cg"``) Fisher-vector
products solved by conjugate gradient; damping λ_F adds λ_F·I. :func:`natural_diag` divides by
the Fisher's diagonal only. For logistic and softmax regression the Fisher is the Hessian, so
natural gradient with lr = 1 is Fisher scoring (Newton's method, IRLS).
"""

from __future__ import annotations

import functools
import math
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdlab import data as datamod
from gdlab import engine, models, optim, stopping
from gdlab.buffers import aligned_empty, aligned_stack
from gdlab.models import Model

OPTIMIZERS = ("gd", "momentum", "nesterov", "adam", "natural", "natural-diag")
DEFAULT_LR = {"gd": 0.1, "momentum": 0.1, "nesterov": 0.1, "adam": 0.01, "natural": 1.0, "natural-diag": 0.1}
SOLVERS = ("auto", "cholesky", "cg")
DENSE_FISHER_LIMIT = 2048          # parameters; a dense Fisher of this size takes 32 MiB
FULL_BATCH_MAX_STEPS = 10_000
DEFAULT_EPOCHS = 20


# ------------------------------------------------------------------------------- natural-diag

class NaturalDiagState(NamedTuple):
    """State of :func:`natural_diag`: none (the hyperparameters live in optax's injected state)."""


def _natural_diag(learning_rate, damping):
    def init_fn(params):
        del params
        return NaturalDiagState()

    def update_fn(updates, state, params=None, *, fisher=None, **extra_args):
        del params, extra_args
        if fisher is None or jnp.ndim(fisher) != 1:
            raise ValueError("natural_diag needs the diagonal of the Fisher information as the extra argument "
                             "`fisher` (a vector); gdlab.train passes it.")
        return jax.tree_util.tree_map(lambda g: -learning_rate * g / (fisher + damping), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@optim.shared(traced=("lr", "damping"))
def natural_diag(lr: optim.LearningRate = 0.1, damping: float = 0.0) -> optax.GradientTransformationExtraArgs:
    r"""Diagonal natural gradient: each coordinate of the gradient divided by its Fisher diagonal.

    .. math::  \delta_{t,j} = -\eta_t\,\frac{g_{t,j}}{F_{jj}(\theta_t) + \lambda}

    F_jj is the diagonal of the model's Fisher information (:func:`gdlab.models.fisher_diagonal`),
    not of the empirical Fisher. It costs one pass over the data per step, like the gradient,
    and ignores the correlations between features that the full natural gradient undoes, so it
    needs a step below 1 where features are correlated.

    Args:
      lr: step size η or an optax schedule.
      damping: λ ≥ 0 added to each diagonal entry.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose update takes ``fisher=diag(F)``.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = natural_diag(lr=0.5)
      >>> u, _ = opt.update(jnp.array([1.0, 1.0]), opt.init(jnp.zeros(2)), fisher=jnp.array([2.0, 4.0]))
      >>> [float(x) for x in u]
      [-0.25, -0.125]

    References:
      Amari, "Natural gradient works efficiently in learning", Neural Computation, 1998.
      Kunstner, Hennig & Balles, "Limitations of the empirical Fisher approximation for natural
      gradient descent", NeurIPS 2019.
    """
    optim._check_lr(lr)
    if not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number ≥ 0, got {damping!r}.")
    return optax.inject_hyperparams(_natural_diag)(learning_rate=lr, damping=float(damping))


def _is_natural_diag(state: Any) -> bool:
    injected = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    is_leaf = lambda x: isinstance(x, injected)  # noqa: E731
    return any(is_leaf(s) and isinstance(s.inner_state, NaturalDiagState)
               for s in jax.tree_util.tree_leaves(state, is_leaf=is_leaf))


def make_optimizer(name: str, lr: optim.LearningRate | None = None, momentum: float | None = None, *,
                   damping: float | None = None, solver: str = "auto") -> optax.GradientTransformation:
    """The optimizer called ``name`` (one of ``OPTIMIZERS``); ``lr`` defaults to ``DEFAULT_LR[name]``.

    ``momentum`` applies to momentum and nesterov (default 0.9) and natural (default 0);
    ``damping`` to natural and natural-diag; ``solver`` (``cholesky``/``cg``) to natural.

    Args:
      name: ``gd``, ``momentum``, ``nesterov``, ``adam``, ``natural`` or ``natural-diag``.
      lr: the step size, a number or an optax schedule (default ``DEFAULT_LR[name]``).
      momentum, damping, solver: the optimizer's options, where it has them.

    Returns:
      The optax transform.

    Example:
      >>> import jax.numpy as jnp
      >>> state = make_optimizer("natural", damping=0.1).init(jnp.zeros(2))
      >>> float(optim.learning_rate(state)), optim.natural_state(state)    # Fisher scoring: a full step
      (1.0, (0.1, nan))
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}.")
    lr = DEFAULT_LR[name] if lr is None else lr
    if solver != "auto" and name != "natural":
        raise ValueError(f"the solver applies to the natural optimizer, not {name!r}; drop --solver.")
    if name == "natural-diag":
        if momentum is not None:
            raise ValueError("momentum does not apply to natural-diag; drop --momentum.")
        return natural_diag(lr, damping or 0.0)
    if name == "natural":
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
        return optim.natural(lr, damping or 0.0, momentum=momentum or 0.0, solver=solver)
    return optim.by_name(name, lr, momentum, damping=damping)


# ------------------------------------------------------------------------------- objectives

class FullData(NamedTuple):
    """The engine's data in batch mode: all training and test rows and λ."""

    X: jax.Array
    y: jax.Array
    X_test: jax.Array
    y_test: jax.Array
    l2: jax.Array


class BatchConstants(NamedTuple):
    """The engine's data in mini-batch mode (each step's rows come as its batch): λ."""

    l2: jax.Array


def _metric_name(model: Model) -> str:
    return "rmse" if model.kind == "linear" else "accuracy"


def _metric(model: Model, score_mean):
    """Accuracy is the mean score; RMSE the root of the mean squared error."""
    return jnp.sqrt(score_mean) if model.kind == "linear" else score_mean


FISHER_ROWS = 1 << 16      # rows a dense full-batch Fisher is estimated from (every k-th row above 2× this)


def fisher_stride(n_rows: int, n_params: int) -> int:
    """k: a dense full-batch Fisher is built from every k-th training row.

    The Fisher only preconditions the exact full-data gradient, so the natural step's fixed point
    (∇J = 0) is the same for any positive definite estimate; a subsample changes how fast the run
    gets there, not where. At most about ``max(FISHER_ROWS, 256 P)`` rows are used: from them the
    estimate's relative error is about √(P/m) (4% at P = 101, m = 6.6·10⁴), so each step still
    shrinks the error by that factor near the optimum, while building XᵀWX (XLA:CPU's float64
    product runs at ~20 GFLOP/s: 1.1 s for all 10⁶ × 100 rows) costs k times less. At 10⁶ × 100
    (benchmarks/bench_logistic.py) m = 2¹⁶ takes as many steps as 2¹⁷ (9) at two thirds of the
    time; 2¹⁵ takes one step more. Data of at most twice that many rows use every row
    (k = 1: the exact Fisher scoring of small problems).

    Args:
      n_rows: training rows.
      n_params: P, the length of θ.

    Returns:
      k ≥ 1.

    Example:
      >>> fisher_stride(569, 31), fisher_stride(1_000_000, 101)
      (1, 15)
    """
    m = max(FISHER_ROWS, 256 * n_params)
    return 1 if n_rows <= 2 * m else n_rows // m


def _fisher_function(model: Model, kind: str, unpack: Callable, subsample: bool = False):
    if kind == "none":
        return None
    compute = {"dense": models.fisher_matrix, "matvec": models.fisher_vector_product,
               "diagonal": models.fisher_diagonal}[kind]

    def fisher(theta, data):
        X, y, l2 = unpack(data)
        k = fisher_stride(X.shape[0], model.n_params) if subsample and kind == "dense" else 1
        if k > 1:
            X, y = X[::k], y[::k]
        return compute(model, theta, X, y, l2)

    return fisher


def _weight_norm(model: Model, theta):
    return jnp.linalg.norm(models.unravel(model, theta)[0])


@functools.lru_cache(maxsize=None)
def _full_batch_functions(model: Model, fisher_kind: str):
    """(loss, metrics, fisher) of batch mode; cached so that runs of one shape share compiled code."""
    name = _metric_name(model)

    def loss(theta, data: FullData):
        return models.objective(model, theta, data.X, data.y, data.l2)

    def metrics(theta, data: FullData):
        return {"data_loss": models.data_loss(model, theta, data.X, data.y),
                "test_loss": models.data_loss(model, theta, data.X_test, data.y_test),
                name: _metric(model, jnp.mean(models.example_scores(model, theta, data.X, data.y))),
                "test_" + name: _metric(model, jnp.mean(models.example_scores(model, theta, data.X_test, data.y_test))),
                "weight_norm": _weight_norm(model, theta)}

    return loss, metrics, _fisher_function(model, fisher_kind, lambda d: (d.X, d.y, d.l2), subsample=True)


@functools.lru_cache(maxsize=None)
def _mini_batch_functions(model: Model, fisher_kind: str):
    """(loss, metrics, fisher) of mini-batch mode: the engine calls them with (constants, batch)."""

    def loss(theta, data):
        consts, (X, y) = data
        return models.objective(model, theta, X, y, consts.l2)

    def metrics(theta, data):
        return {"weight_norm": _weight_norm(model, theta)}

    def unpack(data):
        consts, (X, y) = data
        return X, y, consts.l2

    return loss, metrics, _fisher_function(model, fisher_kind, unpack)


# ------------------------------------------------------------------------------- full-data evaluation

class Evaluation(NamedTuple):
    """Full-data numbers at one θ (the training rows unless named test_)."""

    loss: float            # J: data loss + penalty, what is minimised
    data_loss: float       # the data term alone
    grad_norm: float       # ‖∇J‖
    metric: float          # accuracy, or RMSE for linear regression
    test_loss: float       # the data term on the test rows (NaN without test rows)
    test_metric: float
    margin: float          # the smallest classification margin on the training rows (+inf for linear)


@functools.lru_cache(maxsize=None)
def _block_sums(model: Model):
    """A compiled function of one block of rows: sums over its training and test rows."""

    def train_sum(theta, X, y, train):
        return jnp.sum(jnp.where(train, models.example_losses(model, models.logits(model, theta, X), y), 0.0))

    @jax.jit
    def sums(theta, X, y, train, test):
        total, grad = jax.value_and_grad(train_sum)(theta, X, y, train)
        per = models.example_losses(model, models.logits(model, theta, X), y)
        scores = models.example_scores(model, theta, X, y)
        # XLA:CPU's vectorised min drops NaNs on large arrays: a NaN θ must not read as a positive
        # margin (separable), so a non-finite margin on a training row is made −inf explicitly.
        m = models.margins(model, theta, X, y)
        margin = jnp.where(jnp.any(train & jnp.isnan(m)), -jnp.inf, jnp.min(jnp.where(train, m, jnp.inf)))
        return (total, grad, jnp.sum(jnp.where(train, scores, 0.0)), margin,
                jnp.sum(jnp.where(test, per, 0.0)), jnp.sum(jnp.where(test, scores, 0.0)))

    return sums


class _Sums:
    """Running sums over blocks, in NumPy float64."""

    def __init__(self, n_params: int):
        self.loss, self.grad, self.score = 0.0, np.zeros(n_params), 0.0
        self.margin, self.test_loss, self.test_score = math.inf, 0.0, 0.0

    def merge(self, other: "_Sums") -> "_Sums":
        """Add another set of rows' sums (another partition's) to these."""
        self.add((other.loss, other.grad, other.score, other.margin, other.test_loss, other.test_score))
        return self

    def add(self, parts) -> None:
        total, grad, score, margin, test_loss, test_score = jax.device_get(parts)
        self.loss += float(total)
        self.grad += np.asarray(grad, dtype=float)
        self.score += float(score)
        self.margin = min(self.margin, float(margin))
        self.test_loss += float(test_loss)
        self.test_score += float(test_score)


def objective_from_sums(model: Model, theta: np.ndarray, sums: _Sums, n_train: int,
                        l2: float) -> tuple[float, float, np.ndarray]:
    r"""(J, the data term, ∇J) at θ from the sums of the per-row losses and their gradients.

    .. math::  J = f\Big(\frac1n\sum_i \ell_i\Big) + \frac{\lambda}{2}\lVert W\rVert^2,\qquad
               \nabla J = f'\Big(\frac1n\sum_i \ell_i\Big)\,\frac1n\sum_i \nabla\ell_i + \lambda W

    with f the identity, or √· for rmse (∇√m = ∇m / (2√m)). The sums may come from blocks of
    rows or from partitions held elsewhere (:mod:`gdlab.distributed`).

    Args:
      model: the model (its loss and penalty mask).
      theta: θ, the flat parameters.
      sums: Σᵢ ℓᵢ and Σᵢ ∇ℓᵢ over the training rows (``sums.loss``, ``sums.grad``).
      n_train: n, the training rows.
      l2: λ.

    Returns:
      (J, f(mean loss), ∇J).

    Example:
      >>> m = models.make_model("linear", 1, loss="rmse")        # J = √(Σ ℓ / n)
      >>> sums = _Sums(2); sums.loss, sums.grad = 8.0, np.array([4.0, 0.0])
      >>> J, data, grad = objective_from_sums(m, np.zeros(2), sums, 2, 0.0)
      >>> J, grad.tolist()                                       # √4; (4/2) / (2·2)
      (2.0, [0.5, 0.0])
    """
    mean = sums.loss / n_train
    grad = sums.grad / n_train
    if model.loss == "rmse":                      # ∇√m = ∇m / (2√m)
        data_loss = math.sqrt(mean)
        grad = grad / (2.0 * data_loss) if data_loss > 0 else grad * np.nan
    else:
        data_loss = mean
    mask = models.penalty_mask(model)
    W = theta * mask
    with np.errstate(over="ignore", invalid="ignore"):   # a blown-up θ: inf or NaN, reported as diverged
        loss = data_loss + 0.5 * l2 * float(W @ W)
    return loss, data_loss, grad + l2 * W


def _finish(model: Model, theta: np.ndarray, sums: _Sums, n_train: int, n_test: int, l2: float) -> Evaluation:
    loss, data_loss, grad = objective_from_sums(model, theta, sums, n_train, l2)
    finish_metric = (lambda s: math.sqrt(s)) if model.kind == "linear" else (lambda s: s)
    nan = float("nan")
    test_loss = nan if n_test == 0 else (sums.test_loss / n_test if model.loss != "rmse"
                                         else math.sqrt(sums.test_loss / n_test))
    test_metric = nan if n_test == 0 else finish_metric(sums.test_score / n_test)
    with np.errstate(invalid="ignore", over="ignore"):
        grad_norm = float(np.linalg.norm(grad))
    return Evaluation(loss, data_loss, grad_norm, finish_metric(sums.score / n_train), test_loss, test_metric,
                      sums.margin)


def _pad(X: np.ndarray, y: np.ndarray, masks: tuple[np.ndarray, ...], rows: int):
    """Pad a block to ``rows`` rows (masked out), so that every block has one compiled shape."""
    extra = rows - len(y)
    if extra <= 0:
        return X, y, masks
    return (np.pad(X, ((0, extra), (0, 0))), np.pad(y, (0, extra)),
            tuple(np.pad(m, (0, extra)) for m in masks))


class _DeviceArrays(NamedTuple):
    X_train: jax.Array
    y_train: jax.Array
    X_test: jax.Array
    y_test: jax.Array
    train_ones: jax.Array
    train_zeros: jax.Array
    test_ones: jax.Array
    test_zeros: jax.Array


def on_device(a: Any) -> jax.Array:
    """``a`` as a JAX array, without a copy where JAX can read the NumPy buffer as it is.

    XLA:CPU reads a host buffer in place when it is C-contiguous, of the dtype JAX computes in,
    and aligned to 64 bytes (pyarrow's buffers are). NumPy's own allocations are aligned to 16,
    so an X made by NumPy is copied once, by NumPy into a 64-byte-aligned buffer that JAX then
    reads in place: 0.3 s for 10⁶ × 100 float64 here, where ``jnp.asarray`` took 1.3 s for the
    same copy. The array is only read during the call that made it.

    Args:
      a: an array (NumPy or JAX).

    Returns:
      A JAX array with the same values.

    Example:
      >>> import numpy as np
      >>> float(on_device(np.arange(3.0)).sum())
      3.0
    """
    if not isinstance(a, np.ndarray) or a.dtype != jax.dtypes.canonicalize_dtype(a.dtype):
        return jnp.asarray(a)
    if not (a.flags.c_contiguous and a.ctypes.data % 64 == 0):
        a = _aligned_copy(a)
    return jax.device_put(a)


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` in a buffer that starts at a multiple of 64 bytes."""
    out = aligned_empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


_DEVICE_CACHE: list = []          # [(weak reference to a Dataset's X_train, its _DeviceArrays)]


def _device_arrays(ds: datamod.Dataset) -> _DeviceArrays:
    """A Dataset's arrays on the device, made once per data set (the run and each evaluation share
    them: at 10⁶ × 100 each transfer of X cost about 0.1 s)."""
    for ref, dev in _DEVICE_CACHE:
        if ref() is ds.X_train:
            return dev
    dev = _DeviceArrays(on_device(ds.X_train), on_device(ds.y_train), on_device(ds.X_test),
                        on_device(ds.y_test), jnp.ones(ds.n_train, bool), jnp.zeros(ds.n_train, bool),
                        jnp.ones(ds.n_test, bool), jnp.zeros(ds.n_test, bool))
    try:
        _DEVICE_CACHE[:] = [(weakref.ref(ds.X_train), dev)]
    except TypeError:                 # an array type without weak references: not cached
        pass
    return dev


def evaluate(model: Model, theta: np.ndarray, source: datamod.Dataset | datamod.Stream, l2: float) -> Evaluation:
    """J, ‖∇J‖, the metric and the margin on the training rows, the loss and metric on the test rows.

    One pass over a :class:`gdlab.data.Stream` (its record batches, padded to one shape), over
    the arrays of a :class:`gdlab.data.Dataset`, or over rows held elsewhere (a source with a
    ``sums(model, theta)`` method, :class:`gdlab.distributed.Partitions`). :func:`train` calls it
    with JAX in 64-bit mode; called directly, it computes in the precision JAX is set to.

    Args:
      model: the model.
      theta: θ.
      source: the data (:func:`gdlab.data.load`), or a source with a ``sums`` method.
      l2: λ.

    Returns:
      An :class:`Evaluation`.

    Example:
      >>> import numpy as np
      >>> from gdlab import data as datamod, models
      >>> ds = datamod.load((np.array([[1.0], [-1.0]]), np.array([1.0, 0.0])), "logistic", test_size=0,
      ...                   standardize=False)
      >>> ev = evaluate(models.make_model("logistic", 1), np.zeros(2), ds, 0.0)
      >>> # at θ = 0: J = log 2, ∇J = (mean((½ − y) x), mean(½ − y)) = (−½, 0), both rows called 0
      >>> round(ev.loss, 12) == round(float(np.log(2)), 12), ev.grad_norm, ev.metric, abs(ev.margin)
      (True, 0.5, 0.5, 0.0)
    """
    if not isinstance(source, (datamod.Dataset, datamod.Stream)):
        return _finish(model, np.asarray(theta, dtype=float), source.sums(model, theta), source.n_train,
                       source.n_test, l2)
    if isinstance(source, datamod.Stream):
        pass_sums = _PassSums(model, theta, source.budget.block_rows)
        for X, y, test in source.blocks():
            pass_sums(X, y, test)
        return _finish(model, np.asarray(theta, dtype=float), pass_sums.total(), source.n_train, source.n_test, l2)
    sums = _Sums(model.n_params)
    block = _block_sums(model)
    theta_j = jnp.asarray(theta)
    dev = _device_arrays(source)
    sums.add(block(theta_j, dev.X_train, dev.y_train, dev.train_ones, dev.train_zeros))
    if source.n_test:
        sums.add(block(theta_j, dev.X_test, dev.y_test, dev.test_zeros, dev.test_ones))
    return _finish(model, np.asarray(theta, dtype=float), sums, source.n_train, source.n_test, l2)


_IN_FLIGHT = 4


class _PassSums:
    """The sums of :func:`evaluate` at a fixed θ, fed one record batch of a pass at a time.

    Each batch is padded to ``rows`` rows (one compiled shape) and dispatched without waiting:
    the results are fetched once, at :meth:`total`, so the device adds while the next batch is
    read (in order, so the sums are those of a block-by-block loop).
    """

    def __init__(self, model: Model, theta: Any, rows: int):
        self.block, self.theta, self.rows = _block_sums(model), jnp.asarray(theta), rows
        self.n_params, self.parts, self.complete = model.n_params, [], False

    def __call__(self, X: np.ndarray, y: np.ndarray, test: np.ndarray) -> None:
        X, y, (train, test) = _pad(X, y, (~test, test), self.rows)
        self.parts.append(self.block(self.theta, X, y, train, test))
        if len(self.parts) > _IN_FLIGHT:            # bounded: a batch's rows are held until it is summed
            jax.block_until_ready(self.parts[-_IN_FLIGHT - 1])

    def total(self) -> _Sums:
        sums = _Sums(self.n_params)
        for part in jax.device_get(self.parts):
            sums.add(part)
        return sums


# ------------------------------------------------------------------------------- mini-batches

class _Chunk(NamedTuple):
    epoch: int           # 0-based epoch the chunk belongs to
    first: bool          # whether it starts the epoch: its first row is the θ that ended the last one


def _chunk_bounds(steps: int, chunk_steps: int) -> list[tuple[int, int]]:
    """[start, stop) of the chunks of one epoch of ``steps`` steps: all of ``chunk_steps`` steps
    but the last, so that at most two chunk lengths are ever compiled."""
    bounds = list(range(0, steps, chunk_steps)) + [steps]
    return list(zip(bounds[:-1], bounds[1:]))


def _in_memory_chunks(ds: datamod.Dataset, batch_size: int, epochs: int, rng: np.random.Generator,
                      chunk_steps: int, where: list) -> Iterator[tuple]:
    steps = ds.n_train // batch_size
    d = ds.X_train.shape[1]
    for epoch in range(epochs):
        order = rng.permutation(ds.n_train)[:steps * batch_size]
        X = ds.X_train[order].reshape(steps, batch_size, d)
        y = ds.y_train[order].reshape(steps, batch_size)
        for start, stop in _chunk_bounds(steps, chunk_steps):
            where[:] = [_Chunk(epoch, start == 0)]
            yield X[start:stop], y[start:stop]


def _stream_chunks(stream: datamod.Stream, batch_size: int, epochs: int, rng: np.random.Generator,
                   where: list, first_pass: _PassSums | None = None) -> Iterator[tuple]:
    """Chunks of mini-batches, epoch after epoch; ``first_pass`` is fed every record batch of
    the first epoch's read (and marked complete at its end).

    A thread makes the next chunk (reading, shuffling, stacking: ~0.6 s of one epoch over
    1.3·10⁶ rows of 50 features here) while the device runs the last one; ``where`` is set as
    each chunk is taken, not as it is made.
    """
    made = _made_chunks(stream, batch_size, epochs, rng, first_pass, bool(jax.config.jax_enable_x64))
    for chunk, X, y in datamod.read_ahead(made, depth=1):
        where[:] = [chunk]
        yield X, y


def _made_chunks(stream: datamod.Stream, batch_size: int, epochs: int, rng: np.random.Generator,
                 first_pass: _PassSums | None, x64: bool) -> Iterator[tuple[_Chunk, np.ndarray, np.ndarray]]:
    with jax.enable_x64(x64):         # the caller's precision (thread-local) for first_pass's sums
        yield from _epoch_chunks(stream, batch_size, epochs, rng, first_pass)


def _epoch_chunks(stream: datamod.Stream, batch_size: int, epochs: int, rng: np.random.Generator,
                  first_pass: _PassSums | None) -> Iterator[tuple[_Chunk, np.ndarray, np.ndarray]]:
    chunk_steps = stream.budget.chunk_steps
    for epoch in range(epochs):
        each = first_pass if epoch == 0 else None
        batches = datamod.shuffled_batches(stream.train_blocks(rng, each), batch_size, stream.budget.buffer_rows,
                                           rng)
        pending: list = []
        first = True
        for batch in batches:
            pending.append(batch)
            if len(pending) == chunk_steps:
                yield _Chunk(epoch, first), *_stacked(pending)
                pending, first = [], False
        if each is not None:          # the shuffle buffer drains only after the last record batch
            each.complete = True
        if pending:
            yield _Chunk(epoch, first), *_stacked(pending)


def _stacked(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's (X, y) stacked in buffers the device reads in place (see :mod:`gdlab.buffers`)."""
    return aligned_stack([X for X, _ in batches]), aligned_stack([y for _, y in batches])


# ------------------------------------------------------------------------------- the result

@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
      weights: W, shape (d,) (linear, logistic) or (d, K) (softmax), in units of the standardised
        features when ``standardize`` was on. bias: b, a float or shape (K,).
      loss: J at the final weights on the training rows: the data loss plus the penalty (what
        was minimised). test_loss: the data loss on the test rows (no penalty; NaN without test rows).
      metrics: ``accuracy`` and ``test_accuracy`` (classifiers) or ``rmse`` and ``test_rmse``
        (linear), ``data_loss`` (J without the penalty), ``grad_norm`` (‖∇J‖), ``weight_norm``.
      steps: updates made. epochs: whole passes over the training rows (= steps in batch mode).
      stop_reason: ``converged``, ``max_steps`` (the step or epoch budget ran out) or ``diverged``.
      message: one sentence on how the run ended (names separable data and the penalty to add).
      separable: whether the final weights separate the training classes with λ = 0.
      trace: per step ``step, loss, grad_norm, lr, params, weight_norm`` (batch mode adds
        ``data_loss, test_loss`` and the metrics); per epoch ``epoch, epoch_step, epoch_loss,
        epoch_test_loss, epoch_grad_norm`` and ``epoch_<metric>``, ``epoch_test_<metric>``.
      model: the :class:`gdlab.models.Model`; likewise ``features``, ``target``, ``classes``, ``mean``,
        ``scale``, ``l2``, ``batch_size``, ``n_train``, ``n_test``, ``elapsed`` and ``params`` (the flat θ).
    """

    weights: np.ndarray
    bias: Any
    loss: float
    test_loss: float
    metrics: dict
    steps: int
    epochs: int
    stop_reason: str
    message: str
    separable: bool
    trace: engine.Trace
    model: Model
    features: tuple
    target: str
    classes: tuple | None
    mean: np.ndarray
    scale: np.ndarray
    l2: float
    batch_size: int
    n_train: int
    n_test: int
    elapsed: float
    params: np.ndarray

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for raw (unstandardised) features X: values, or class labels."""
        X = (np.atleast_2d(np.asarray(X, dtype=float)) - self.mean) / self.scale
        with jax.enable_x64(True):
            out = np.asarray(models.predict(self.model, jnp.asarray(self.params), jnp.asarray(X)))
        if self.model.kind == "linear":
            return out
        return np.asarray(self.classes, dtype=object)[out.astype(int)] if self.classes is not None else out


# ------------------------------------------------------------------------------- train

def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be a whole number ≥ {low}, got {value!r}.")


def _batch_size(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() == "full":
        return 0
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"batch_size must be a whole number of rows ≥ 1 for mini-batch SGD, or 0 or 'full' for "
                         f"batch gradient descent, got {value!r}.")
    return int(value)


def _penalty(kind: str, l2: float | None, C: float | None, n_train: int) -> float:
    if l2 is not None and C is not None:
        raise ValueError("give the penalty as l2 or as C, not both (l2 = 1/(C·n)).")
    if C is not None:
        if not isinstance(C, (int, float)) or not math.isfinite(C) or C <= 0:
            raise ValueError(f"C must be a positive finite number (scikit-learn's inverse penalty; C=1 is its "
                             f"default; for no penalty use l2=0), got {C!r}.")
        return 1.0 / (C * n_train)
    if l2 is not None:
        if not isinstance(l2, (int, float)) or not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite number ≥ 0 (0 is no penalty), got {l2!r}.")
        return float(l2)
    return 1.0 / n_train if kind != "linear" else 0.0


def _fisher_kind(optimizer: optax.GradientTransformation, n_params: int, full_batch: bool, solver: str) -> str:
    state = optimizer.init(jnp.zeros(n_params))
    if _is_natural_diag(state):
        return "diagonal"
    if optim.natural_state(state) is None:
        if solver != "auto":
            raise ValueError(f"solver={solver!r} applies to the natural-gradient optimizer only; drop it.")
        return "none"
    if solver == "cholesky":
        return "dense"
    if solver == "cg":
        return "matvec"
    if solver != "auto":
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
    return "dense" if full_batch and n_params <= DENSE_FISHER_LIMIT else "matvec"


class _Plan(NamedTuple):
    """How long a run may go: epochs, steps per epoch, the cap on updates, the planned total."""

    batch_size: int
    epochs: int
    per_epoch: int
    steps_cap: int
    total_steps: int


def _plan(batch_size: int, epochs: int | None, max_steps: int | None, n_train: int) -> _Plan:
    if batch_size == 0:              # an epoch is one step
        cap = FULL_BATCH_MAX_STEPS if max_steps is None else max_steps
        cap = cap if epochs is None else min(cap, epochs)
        return _Plan(0, cap, 1, cap, cap)
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    per_epoch = n_train // batch_size
    cap = stopping.MAX_STEPS_LIMIT if max_steps is None else max_steps
    return _Plan(batch_size, epochs, per_epoch, cap, min(cap, epochs * per_epoch))


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _ending(stop_reason: str, steps: int, epochs: int, batch_size: int, converged_why: str, separable: bool,
            by_program: bool, fisher_kind: str, lr_start: float, lr_end: float, grad_norm: float, loss_finite: bool,
            weight_norm: float) -> str:
    if separable:
        how = (" (a linear program finds weights that classify every training row correctly)" if by_program
               else " (the weights reached classify every training row correctly)")
        return (f"the training data are linearly separable{how}, so without a penalty the loss has no minimum: it "
                f"goes to 0 only as the weights grow without bound (‖W‖ = {weight_norm:.3g} after "
                f"{_count(steps, 'step')}); "
                f"add an L2 penalty such as C=1 (scikit-learn's default; --C 1) or l2=1e-3 (--l2 1e-3).")
    if stop_reason == "diverged":
        why = "the loss became non-finite" if not loss_finite else "the loss rose more than 1,000 times above its start"
        hint = ""
        if fisher_kind != "none":
            hint = ("; a mini-batch's Fisher is a poor estimate, so damp it and shorten the step "
                    "(e.g. --damping 0.1 --lr 0.1)" if batch_size else
                    "; or the Fisher is singular (a constant feature without a penalty): add --damping 1e-6")
        return (f"diverged at step {steps}: {why}; the step size is too large: try a smaller learning rate "
                f"(e.g. a tenth){hint}.")
    if stop_reason == "converged":
        when = _count(steps, "step") + (f" ({_count(epochs, 'epoch')})" if batch_size else "")
        text = f"converged after {when}: {converged_why}."
        if (math.isfinite(lr_start) and math.isfinite(lr_end) and lr_start != 0
                and abs(lr_end) < 1e-6 * abs(lr_start)):
            text = (text[:-1] + f"; but the learning rate had decayed to {lr_end:.3g} (from {lr_start:.3g}), so it may "
                    f"be the steps, not the gradient (‖∇J‖ = {grad_norm:.3g}), that vanished: anneal more slowly.")
        return text
    if batch_size:
        return (f"stopped after {_count(epochs, 'epoch')} ({_count(steps, 'step')}), the epoch or step budget, "
                f"before a convergence rule was met (full-data ‖∇J‖ = {grad_norm:.3g}).")
    return f"stopped at max_steps = {steps} before the loss stopped changing (‖∇J‖ = {grad_norm:.3g})."


def train(data: Any, model: str = "logistic", loss: str | None = None,
          optimizer: optax.GradientTransformation | None = None, *, target: str | None = None,
          features: list[str] | None = None, batch_size: int | str = 0, epochs: int | None = None,
          max_steps: int | None = None, test_size: float = 0.2, standardize: bool = True, init: str = "zeros",
          seed: int = 0, l2: float | None = None, C: float | None = None, solver: str = "auto",
          tol: float = 1e-15, patience: int = 10, grad_tol: float = 1e-10, stream: bool | None = None,
          memory_limit: int = datamod.DEFAULT_MEMORY_LIMIT, shuffle_buffer: int | None = None,
          callback: Callable[[dict], None] | None = None, precision: str = "float64",
          spill: bool | None = None) -> TrainResult:
    r"""Train a linear, logistic or softmax regression by gradient descent.

    .. math::  \min_\theta\ J(\theta) = \frac1n\sum_i \ell(z_i, y_i) + \frac{\lambda}{2}\lVert W\rVert^2,
               \qquad \theta_{t+1} = \theta_t + \text{optimizer}(\nabla J_{\text{batch}}(\theta_t))

    Args:
      data: a dataset name (``breast_cancer``, ``diabetes``, ``digits``, ``iris``, ``wine``), a
        ``.csv``/``.parquet`` path (with ``target``), or a tuple ``(X, y)`` of arrays.
      model: ``linear``, ``logistic`` (labels 0/1) or ``softmax`` (class labels).
      loss: ``mse`` (default) or ``rmse`` for linear; ``cross-entropy`` for the others.
      optimizer: an optax transform, e.g. ``gdlab.optim.momentum(lr=0.1, momentum=0.9)``,
        ``gdlab.optim.natural()`` (Fisher scoring) or :func:`natural_diag`; default ``gd(0.1)``.
        Or a function of the run's planned length in steps returning one, for a schedule that
        spans the run: ``lambda steps: optim.gd(optax.cosine_decay_schedule(0.5, steps))``.
      target, features: the label column and feature columns of a file.
      batch_size: 0 or ``"full"`` for batch gradient descent (default), B ≥ 1 for mini-batches of B rows.
      epochs: passes over the data (mini-batch default 20; in batch mode an epoch is a step and
        ``epochs`` caps the steps).
      max_steps: cap on the updates (batch mode default 10,000; mini-batch default none).
      test_size: expected fraction of rows held out (0 trains on all), split by a seeded hash per row.
      standardize: scale features to mean 0, population std 1 on the training rows.
      init: ``zeros`` or ``normal`` (N(0, 1/d) from ``seed``) for the weights; the bias starts at the
        best constant (mean of y; log-odds; log class frequencies).
      seed: seeds the split, the initial weights and the shuffling.
      l2, C: the penalty (λ/2)‖W‖² with λ = ``l2`` or λ = 1/(C·n) (n = training rows; C as in
        scikit-learn). Default: C = 1 for logistic and softmax (scikit-learn's), 0 for linear.
      solver: natural gradient only: ``auto`` (dense Cholesky in batch mode up to 2,048
        parameters, else conjugate gradient with Fisher-vector products), ``cholesky`` or ``cg``.
      tol, patience, grad_tol: converged when J moved by at most tol·max(1, |J|) over the last
        ``patience`` steps (batch mode) or epochs (mini-batch mode), or when the full-data
        ‖∇J‖ ≤ grad_tol; 0 turns a rule off.
      stream: stream a file in record batches (True), load it (False) or decide by ``memory_limit``
        (None). memory_limit: bytes the data may take; shuffle_buffer: rows of the shuffle buffer.
      spill: when streaming, keep the rows the first pass decodes in a temporary file beside the
        data, so that each later pass (an epoch, an evaluation) reads them without decoding the
        file again (:mod:`gdlab.spill`): True to require it, False never, None (default) when that
        disk has room for twice the rows as float64.
      callback: called after each compiled chunk with a dict: ``step``, ``epoch`` (completed, a
        float), ``total_steps`` (planned, or None), ``rows`` (the chunk's trace rows).
      precision: ``float64`` (default; JAX is switched to 64-bit inside this call only) or ``float32``.

    Returns:
      A :class:`TrainResult`: ``weights``, ``bias``, ``loss``, ``test_loss``, ``metrics``,
      ``steps``, ``epochs``, ``stop_reason``, ``message``, ``trace``, ``predict(X)``.

    Example:
      >>> from gdlab import optim
      >>> res = train("breast_cancer", "logistic", optimizer=optim.natural(), test_size=0.0)
      >>> res.stop_reason, res.steps <= 10, round(res.loss, 6)          # Fisher scoring, C = 1
      ('converged', True, 0.06636)

    References:
      Robbins & Monro, "A stochastic approximation method", 1951 (SGD).
      McCullagh & Nelder, "Generalized Linear Models", 1989 (Fisher scoring).
    """
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")
    with jax.enable_x64(precision == "float64"):
        try:
            return _train(data, model, loss, optimizer, target, features, batch_size, epochs, max_steps, test_size,
                          standardize, init, seed, l2, C, solver, tol, patience, grad_tol, stream, memory_limit,
                          shuffle_buffer, callback, spill)
        finally:
            _DEVICE_CACHE.clear()          # the data's device copy goes with the run


def _train(data, kind, loss_name, optimizer, target, features, batch_size, epochs, max_steps, test_size,
           standardize, init, seed, l2, C, solver, tol, patience, grad_tol, stream, memory_limit, shuffle_buffer,
           callback, spill=None) -> TrainResult:
    started = time.perf_counter()
    batch_size = _check_settings(kind, loss_name, batch_size, epochs, max_steps, init, tol, patience, grad_tol,
                                 memory_limit, shuffle_buffer)

    source, model, lam, plan, theta0 = _read_problem(data, kind, loss_name, target, features, batch_size, epochs,
                                                     max_steps, test_size, standardize, init, seed, l2, C, stream,
                                                     memory_limit, shuffle_buffer, spill)
    try:
        return _train_source(source, model, lam, plan, theta0, optimizer, batch_size, solver, tol, patience,
                             grad_tol, seed, callback, started)
    finally:
        if isinstance(source, datamod.Stream):
            source.close()              # the spill's disk space goes with the run


def _train_source(source, model: Model, lam: float, plan: _Plan, theta0: np.ndarray, optimizer, batch_size: int,
                 solver: str, tol: float, patience: int, grad_tol: float, seed: int, callback, started: float,
                 run_full_batch: Callable | None = None) -> TrainResult:
    """The run and the report of :func:`train` on data already read (:func:`_model_problem` built the rest).

    ``run_full_batch`` replaces the in-memory batch-mode run (same arguments and result as
    ``_run_full_batch``): :func:`gdlab.distributed.train_dask` passes one whose steps sum over
    partitions held by Dask workers. Call it with JAX in 64-bit mode for float64.
    """
    kind = model.kind
    if optimizer is None:
        optimizer = optim.gd(DEFAULT_LR["gd"])
    elif callable(optimizer) and not isinstance(optimizer, optax.GradientTransformation):
        optimizer = optimizer(plan.total_steps)       # a schedule that spans the run (cosine) needs its length
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"optimizer must be an optax GradientTransformation (e.g. gdlab.optim.gd(0.1)) or a function "
                         f"of the run's length in steps returning one, got {type(optimizer).__name__}.")
    fisher_kind = _fisher_kind(optimizer, model.n_params, batch_size == 0, solver)
    rngs = np.random.SeedSequence(seed).spawn(2)
    classifier = kind != "linear"
    name = _metric_name(model)

    if batch_size == 0:
        run, boundary, records = (run_full_batch or _run_full_batch)(model, source, optimizer, theta0, lam,
                                                                     fisher_kind, plan, tol, patience, grad_tol,
                                                                     callback, classifier)
    else:
        run, boundary, records = _run_mini_batch(model, source, optimizer, theta0, lam, fisher_kind, plan, tol,
                                                 patience, grad_tol, callback, classifier,
                                                 np.random.default_rng(rngs[1]))
    per_epoch = plan.per_epoch

    columns = dict(run.trace.columns)
    stop_reason, steps, theta = run.stop_reason, run.steps, np.asarray(run.params, dtype=float)
    separable_seen = False
    if boundary is not None and boundary[0] == run.stop_reason:   # an epoch rule stopped it at an epoch's end
        stop_reason, steps, theta, separable_seen = boundary
        keep = columns["step"] <= steps
        columns = {k: v[keep] for k, v in columns.items()}
    final = None
    if batch_size == 0 and run_full_batch is None and not (classifier and lam == 0.0):
        final = _last_row_evaluation(columns, theta, name)
    if final is None:
        final = evaluate(model, theta, source, lam)
    if batch_size:
        records.add(steps / per_epoch, steps, final)
    separable, by_program = False, False
    if classifier and lam == 0.0:
        separable, by_program = _separable(model, source, lam, theta, final, columns, separable_seen)
        if separable:
            stop_reason = "diverged"
    epoch_columns = _full_batch_epochs(columns, name) if batch_size == 0 else records.columns(name)
    lrs = columns["lr"]
    converged_why = ("the loss stopped changing" if batch_size == 0 else "the full-data loss stopped changing "
                     "from epoch to epoch")
    if grad_tol > 0 and final.grad_norm <= grad_tol:
        converged_why = f"the gradient norm fell to {final.grad_norm:.3g} (≤ grad_tol {grad_tol:g})"
    W, b = (np.asarray(a) for a in models.unravel(model, jnp.asarray(theta)))
    weight_norm = float(np.linalg.norm(W))
    n_epochs = steps // per_epoch
    message = _ending(stop_reason, steps, n_epochs, batch_size, converged_why, separable, by_program, fisher_kind,
                      float(lrs[0]) if len(lrs) else math.nan, float(lrs[-1]) if len(lrs) else math.nan,
                      final.grad_norm, math.isfinite(final.loss), weight_norm)
    metrics = {name: final.metric, "test_" + name: final.test_metric, "data_loss": final.data_loss,
               "grad_norm": final.grad_norm, "weight_norm": weight_norm}
    weights = W[:, 0] if model.n_outputs == 1 else W
    bias = float(b[0]) if model.n_outputs == 1 else b
    return TrainResult(weights=weights, bias=bias, loss=final.loss, test_loss=final.test_loss, metrics=metrics,
                       steps=steps, epochs=n_epochs, stop_reason=stop_reason, message=message, separable=separable,
                       trace=engine.Trace({**columns, **epoch_columns}), model=model, features=source.features,
                       target=source.target, classes=source.classes, mean=source.mean, scale=source.scale, l2=lam,
                       batch_size=batch_size, n_train=source.n_train, n_test=source.n_test,
                       elapsed=time.perf_counter() - started, params=theta)


def _read_problem(data, kind, loss_name, target, features, batch_size, epochs, max_steps, test_size, standardize,
                  init, seed, l2, C, stream, memory_limit, shuffle_buffer, spill=None):
    """One reading of the data, the model, the penalty, the run's length and θ₀ (train and the sweep share it)."""
    source = datamod.load(data, kind, target=target, features=features, test_size=test_size, seed=seed,
                          standardize=standardize, stream=stream, memory_limit=memory_limit,
                          batch_size=max(batch_size, 1), buffer_rows=shuffle_buffer, spill=spill)
    if isinstance(source, datamod.Stream) and batch_size == 0:
        source.close()
        raise ValueError(f"batch gradient descent needs every training row in memory at each step, and "
                         f"{source.name!r} is streamed (too large for memory_limit); give a mini-batch size "
                         f"(--batch-size 1024) or allow more memory (--memory-limit).")
    return (source, *_model_problem(source, kind, loss_name, batch_size, epochs, max_steps, init, seed, l2, C))


def _model_problem(source, kind, loss_name, batch_size, epochs, max_steps, init, seed, l2, C):
    """(model, λ, the run's plan, θ₀) for data already read: what :func:`train` builds from the source's
    feature count, classes, training rows and target mean (a :class:`gdlab.data.Dataset`, a Stream, or
    :class:`gdlab.distributed.Partitions`)."""
    if batch_size > source.n_train:
        raise ValueError(f"batch_size {batch_size} is larger than the {source.n_train} training rows; use a smaller "
                         f"batch size, or 0 for batch gradient descent.")
    n_classes = len(source.classes) if kind == "softmax" else None
    model = models.make_model(kind, len(source.features), loss=loss_name, n_classes=n_classes)
    lam = _penalty(kind, l2, C, source.n_train)
    plan = _plan(batch_size, epochs, max_steps, source.n_train)
    theta0 = models.init_params(model, init, seed, models.prior_bias(model, source.target_mean))
    return model, lam, plan, theta0


def _check_settings(kind, loss_name, batch_size, epochs, max_steps, init, tol, patience, grad_tol, memory_limit,
                    shuffle_buffer) -> int:
    """Refuse bad settings before any reading; returns the batch size in rows (0: full batch)."""
    batch_size = _batch_size(batch_size)
    _check_int("epochs", epochs, 1, allow_none=True)
    _check_int("max_steps", max_steps, 0, allow_none=True)
    _check_int("memory_limit", memory_limit, 1 << 20)
    _check_int("shuffle_buffer", shuffle_buffer, 1, allow_none=True)
    if init not in models.INITS:
        raise ValueError(f"init must be one of {', '.join(models.INITS)}, got {init!r}.")
    if kind not in models.MODELS:
        raise ValueError(f"model must be one of {', '.join(models.MODELS)}, got {kind!r}.")
    models.make_model(kind, 1, loss=loss_name, n_classes=2)          # the loss fits the model, before any reading
    stopping.StopCriteria(max_steps=max_steps or 0, tol=tol, patience=patience, grad_tol=grad_tol).validate()
    if shuffle_buffer is not None and batch_size and shuffle_buffer < batch_size:
        raise ValueError(f"shuffle_buffer ({shuffle_buffer}) must hold at least one mini-batch ({batch_size} rows).")
    return batch_size


class FullBatchEnd(NamedTuple):
    """How a full-batch run ended, as :func:`train` reports it: the full-data numbers at the final θ,
    the stop reason (``diverged`` for separable data without a penalty) and whether they are separable."""

    evaluation: Evaluation
    stop_reason: str
    separable: bool


class FullBatchProblem(NamedTuple):
    """Batch gradient descent on a model, as :func:`train` runs it, for other drivers (sweeps).

    Attributes:
      objective: the engine's :class:`gdlab.engine.Objective` (J, the metrics, the Fisher the optimizer needs).
      theta0: θ₀, a flat float array. criteria: the stopping rules of the run.
      finish: ``finish(theta, stop_reason) -> FullBatchEnd``: what :func:`train` reports at the end.
      model: the model; likewise ``source`` (the :class:`gdlab.data.Dataset`), ``l2`` (λ) and ``fisher_kind``.
    """

    objective: engine.Objective
    theta0: np.ndarray
    criteria: stopping.StopCriteria
    finish: Callable[[np.ndarray, str], FullBatchEnd]
    model: Model
    source: datamod.Dataset
    l2: float
    fisher_kind: str


def full_batch_problem(data: Any, model: str = "logistic", loss: str | None = None,
                       optimizer: optax.GradientTransformation | None = None, *, target: str | None = None,
                       features: list[str] | None = None, epochs: int | None = None, max_steps: int | None = None,
                       test_size: float = 0.2, standardize: bool = True, init: str = "zeros", seed: int = 0,
                       l2: float | None = None, C: float | None = None, solver: str = "auto", tol: float = 1e-15,
                       patience: int = 10, grad_tol: float = 1e-10,
                       memory_limit: int = datamod.DEFAULT_MEMORY_LIMIT) -> FullBatchProblem:
    r"""The objective, start and stopping rules that :func:`train` runs in batch mode (``batch_size=0``).

    .. math::  J(\theta) = \frac1n\sum_{i=1}^n \ell(z_i(\theta), y_i) + \frac{\lambda}{2}\lVert W\rVert^2

    One reading of the data, the model and the penalty, shared by :func:`train` and
    :func:`gdlab.sweep.sweep_train`: ``engine.run(p.objective, optimizer, p.theta0, p.criteria)``
    followed by ``p.finish(theta, stop_reason)`` is the run :func:`train` makes (which also
    stops, with ``diverged``, at the chunk where the weights first separate data trained without
    a penalty). Call it with JAX in 64-bit mode for float64 (``jax.enable_x64``).

    Args:
      data: as :func:`train`, and so are ``model``, ``loss``, ``target``, ``features``, ``epochs``,
        ``max_steps``, ``test_size``, ``standardize``, ``init``, ``seed``, ``l2``, ``C``, ``solver``,
        ``tol``, ``patience``, ``grad_tol`` and ``memory_limit``.
      optimizer: the optax transform that will run (it decides which Fisher the objective carries:
        none, dense, Fisher-vector products or the diagonal); default ``gd``.

    Returns:
      A :class:`FullBatchProblem`.

    Example:
      >>> import jax
      >>> from gdlab import engine
      >>> with jax.enable_x64(True):
      ...     p = full_batch_problem("breast_cancer", "logistic", optimizer=optim.natural(), test_size=0.0)
      ...     run = engine.run(p.objective, optim.natural(), p.theta0, p.criteria)
      ...     end = p.finish(run.params, run.stop_reason)
      >>> end.stop_reason, round(end.evaluation.loss, 6)          # as train's example
      ('converged', 0.06636)
    """
    _check_settings(model, loss, 0, epochs, max_steps, init, tol, patience, grad_tol, memory_limit, None)
    source, mdl, lam, plan, theta0 = _read_problem(data, model, loss, target, features, 0, epochs, max_steps,
                                                   test_size, standardize, init, seed, l2, C, None, memory_limit,
                                                   None)
    optimizer = optim.gd(DEFAULT_LR["gd"]) if optimizer is None else optimizer
    fisher_kind = _fisher_kind(optimizer, mdl.n_params, True, solver)
    criteria = stopping.StopCriteria(max_steps=plan.steps_cap, tol=tol, patience=patience, grad_tol=grad_tol).validate()
    classifier = model != "linear"
    separable_data: list = []            # the linear program's answer, asked at most once

    def finish(theta, stop_reason: str) -> FullBatchEnd:
        theta = np.asarray(theta, dtype=float)
        final = evaluate(mdl, theta, source, lam)
        separable = False
        if classifier and lam == 0.0:
            separable, _ = _separable(mdl, source, lam, theta, final, None, False, separable_data)
            if separable:
                stop_reason = "diverged"
        return FullBatchEnd(final, stop_reason, separable)

    return FullBatchProblem(_full_batch_objective(mdl, source, lam, fisher_kind), np.asarray(theta0, dtype=float),
                            criteria, finish, mdl, source, lam, fisher_kind)


def _full_batch_objective(model: Model, ds: datamod.Dataset, lam: float, fisher_kind: str) -> engine.Objective:
    loss, metrics, fisher = _full_batch_functions(model, fisher_kind)
    dev = _device_arrays(ds)
    full = FullData(dev.X_train, dev.y_train, dev.X_test, dev.y_test, jnp.asarray(lam))
    return engine.Objective(loss=loss, data=full, metrics=metrics, fisher=fisher)


def _last_row_evaluation(columns: dict, theta: np.ndarray, name: str) -> Evaluation | None:
    """The final :class:`Evaluation` read from a batch-mode trace whose last row is at ``theta``
    (the engine evaluated J, ‖∇J‖ and the metrics there on every row: a second pass over the data
    would repeat them), or None when it is not. The margin is not in the trace: NaN (it is read
    only for a classifier without a penalty, which this is not used for)."""
    if not len(columns["step"]) or not np.array_equal(columns["params"][-1], theta):
        return None
    last = {k: float(columns[k][-1]) for k in ("loss", "data_loss", "grad_norm", name, "test_loss", "test_" + name)}
    return Evaluation(last["loss"], last["data_loss"], last["grad_norm"], last[name], last["test_loss"],
                      last["test_" + name], math.nan)


def _separable(model: Model, source, lam: float, theta: np.ndarray, final: Evaluation, columns: dict | None,
               seen: bool, cache: list | None = None) -> tuple[bool, bool]:
    """(separable, decided by the linear program): the weights reached separate the training rows
    (the last finite ones if the run blew up), or a linear program finds weights that do."""
    if seen:
        return True, False
    if np.all(np.isfinite(theta)):
        if final.margin > 0:
            return True, False
    elif columns is not None:
        finite = np.flatnonzero(np.isfinite(columns["loss"]) & np.all(np.isfinite(columns["params"]), axis=1))
        if finite.size and evaluate(model, columns["params"][finite[-1]], source, lam).margin > 0:
            return True, False
    if not isinstance(source, datamod.Dataset):       # rows not in memory: no linear program over them
        return False, False
    # the optimizer may not have found a separating direction yet
    if cache:
        found = cache[0]
    else:
        found = bool(models.linearly_separable(model, source.X_train, source.y_train))
        if cache is not None:
            cache.append(found)
    return found, found


def _full_batch_epochs(columns: dict, name: str) -> dict:
    """In batch mode every step is an epoch: the epoch columns are the step columns."""
    return {"epoch": columns["step"].astype(float), "epoch_step": columns["step"], "epoch_loss": columns["loss"],
            "epoch_test_loss": columns["test_loss"], "epoch_grad_norm": columns["grad_norm"],
            f"epoch_{name}": columns[name], f"epoch_test_{name}": columns["test_" + name]}


def _run_full_batch(model, ds, optimizer, theta0, lam, fisher_kind, plan, tol, patience, grad_tol, callback,
                    classifier):
    steps_cap = plan.steps_cap
    criteria = stopping.StopCriteria(max_steps=steps_cap, tol=tol, patience=patience, grad_tol=grad_tol).validate()
    objective = _full_batch_objective(model, ds, lam, fisher_kind)
    watch_separation = classifier and lam == 0.0

    def on_chunk(rows):
        if callback is not None and len(rows["step"]):
            step = int(rows["step"][-1])
            callback({"step": step, "epoch": float(step), "total_steps": steps_cap, "rows": rows})
        if watch_separation and len(rows["step"]):
            theta = rows["params"][-1]
            if np.all(np.isfinite(theta)) and evaluate(model, theta, ds, lam).margin > 0:
                return "diverged"         # separable: train() names it, from the final weights
        return None

    result = engine.run(objective, optimizer, jnp.asarray(theta0), criteria, callback=on_chunk)
    return result, None, None


class _EpochRecords:
    """The full-data evaluations at epoch ends, and the per-epoch stopping rule (the core's
    :func:`gdlab.stopping.check` applied with epochs for steps)."""

    def __init__(self, tol: float, patience: int, grad_tol: float):
        self.criteria = stopping.StopCriteria(max_steps=stopping.MAX_STEPS_LIMIT, tol=tol, patience=patience,
                                              grad_tol=grad_tol)
        self.recent = stopping.recent_losses_init(self.criteria)
        self.rows: list[tuple[float, int, Evaluation]] = []

    def add(self, epoch: float, step: int, ev: Evaluation) -> None:
        if self.rows and self.rows[-1][1] == step:
            return
        self.rows.append((epoch, step, ev))

    def check(self, epoch: int, ev: Evaluation) -> str:
        reason, self.recent = stopping.check(
            self.criteria, jnp.asarray(epoch, jnp.int32), jnp.asarray(ev.loss), jnp.asarray(self.rows[0][2].loss),
            jnp.asarray(ev.grad_norm), jnp.bool_(True), self.recent)
        return stopping.STOP_REASONS[int(reason)]

    def columns(self, name: str) -> dict:
        get = lambda f: np.array([getattr(ev, f) for _, _, ev in self.rows], dtype=float)  # noqa: E731
        return {"epoch": np.array([e for e, _, _ in self.rows], dtype=float),
                "epoch_step": np.array([s for _, s, _ in self.rows], dtype=np.int64),
                "epoch_loss": get("loss"), "epoch_test_loss": get("test_loss"), "epoch_grad_norm": get("grad_norm"),
                f"epoch_{name}": get("metric"), f"epoch_test_{name}": get("test_metric")}


def _run_mini_batch(model, source, optimizer, theta0, lam, fisher_kind, plan, tol, patience, grad_tol, callback,
                    classifier, rng):
    batch_size, epochs, per_epoch, steps_cap, total_steps = plan
    # per step only divergence is checked; the convergence rules run per epoch on the full data
    criteria = stopping.StopCriteria(max_steps=steps_cap, tol=0.0, patience=1, grad_tol=0.0).validate()
    loss, metrics, fisher = _mini_batch_functions(model, fisher_kind)
    objective = engine.Objective(loss=loss, data=BatchConstants(jnp.asarray(lam)), metrics=metrics, fisher=fisher)
    where: list = [_Chunk(0, True)]
    theta0 = np.asarray(theta0, dtype=float)
    first_pass = None
    if isinstance(source, datamod.Dataset):
        row_bytes = (source.X_train.shape[1] + 1) * 8
        chunk_steps = max(1, (64 << 20) // (row_bytes * batch_size))     # about 64 MiB of rows per chunk
        chunks = _in_memory_chunks(source, batch_size, epochs, rng, chunk_steps, where)
    else:
        # θ_0's evaluation rides on the first epoch's read of the file rather than a read of its own;
        # its stopping rule is applied when that read ends (a stop at θ_0 returns the run to it)
        first_pass = _PassSums(model, theta0, source.budget.block_rows)
        chunks = _stream_chunks(source, batch_size, epochs, rng, where, first_pass)
    records = _EpochRecords(tol, patience, grad_tol)
    boundary: list = []

    def epoch_end(epoch: int, step: int, theta: np.ndarray, ev: Evaluation) -> str | None:
        records.add(float(epoch), step, ev)
        reason = records.check(epoch, ev)
        separated = classifier and lam == 0.0 and bool(np.all(np.isfinite(theta))) and ev.margin > 0
        if separated:
            reason = "diverged"
        if reason != "running":
            boundary.append((reason, step, np.asarray(theta, dtype=float), separated))
            return reason
        return None

    def first_epoch_end() -> str | None:
        sums = first_pass.total() if first_pass.complete else None
        ev = (_finish(model, theta0, sums, source.n_train, source.n_test, lam) if sums is not None
              else evaluate(model, theta0, source, lam))      # the run ended inside the first epoch
        return epoch_end(0, 0, theta0, ev)

    def on_chunk(rows):
        chunk = where[0]
        if callback is not None and len(rows["step"]):
            step = int(rows["step"][-1]) + 1
            callback({"step": step, "epoch": step / per_epoch, "total_steps": total_steps, "rows": rows})
        if not (chunk.first and len(rows["step"])):
            return None
        if first_pass is not None:
            if chunk.epoch == 0:
                return None
            if not records.rows and (asked := first_epoch_end()) is not None:
                return asked
        theta, step = rows["params"][0], int(rows["step"][0])    # θ after `chunk.epoch` whole epochs
        return epoch_end(chunk.epoch, step, theta, evaluate(model, theta, source, lam))

    result = engine.run(objective, optimizer, jnp.asarray(theta0), criteria, callback=on_chunk, batches=chunks)
    if first_pass is not None and not records.rows and (asked := first_epoch_end()) is not None:
        result = result._replace(stop_reason=asked)
    return result, (boundary[0] if boundary else None), records
