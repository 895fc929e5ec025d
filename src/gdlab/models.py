r"""Supervised models trained by :func:`gdlab.train`: linear, logistic and softmax regression.

A model maps features x ∈ ℝᵈ to outputs z = Wᵀx + b with a weight for each feature (and each
class) and a bias. Its parameters θ are one flat vector, the rows of the (d + 1) × m matrix
[W; bᵀ] one after another (m = 1 output for linear and logistic regression, K for softmax), so
the engine's optimizers (and the natural gradient's Fisher matrix) see a plain vector.

==========  ========================  ==================================================================
model       loss                      per-example loss ℓ(z, y)
==========  ========================  ==================================================================
linear      ``mse`` (default)         (y − z)²                     the objective is the mean
linear      ``rmse``                  (y − z)²                     the objective is √mean (root mean square)
logistic    ``cross-entropy``         log(1 + eᶻ) − y z            y ∈ {0, 1}; binary cross-entropy
softmax     ``cross-entropy``         logsumexp(z) − z_y           y ∈ {0 … K−1}; categorical cross-entropy
==========  ========================  ==================================================================

The objective adds an optional L2 penalty on the weights (never on the bias):

.. math::  J(\theta) = \frac1n\sum_{i=1}^n \ell(z_i, y_i) + \frac{\lambda}{2}\lVert W\rVert^2
           \qquad (\text{rmse: } \sqrt{\tfrac1n\textstyle\sum_i (y_i - z_i)^2} + \tfrac{\lambda}{2}\lVert W\rVert^2)

With λ = 1/(C n) this is scikit-learn's ``LogisticRegression(C=C)`` objective C Σᵢ ℓᵢ + ½‖W‖²
divided by C n: the same minimiser. The cross-entropies come from optax (``log_sigmoid`` and
``logsumexp`` inside): never log(sigmoid(z)), which underflows to log 0 for z < −745.

The Fisher information of the model's predictive distribution (what ``--optimizer natural``
preconditions by), for X̃ = [X, 1]:

- logistic: F = X̃ᵀ diag(pᵢ(1 − pᵢ)) X̃ / n, p = sigmoid(z): the Hessian of the mean
  cross-entropy (the logit link is canonical), so the natural step is Newton's step, i.e. Fisher
  scoring = IRLS.
- softmax: F = (1/n) Σᵢ (diag(pᵢ) − pᵢpᵢᵀ) ⊗ x̃ᵢx̃ᵢᵀ, again the Hessian. Adding one constant to
  every class's logits changes no probability, so F is singular along the unpenalised such
  directions (the bias row always, the weight rows too when λ = 0). The gradient has no
  component along them, so gdlab adds uuᵀ for each such unit direction u: the solve then
  returns F⁺g, the minimum-norm natural direction, which never moves along them.
- linear: F = X̃ᵀX̃ / (n σ²), the Fisher of y ~ N(z, σ²). σ² is the noise variance for which the
  loss is the mean negative log-likelihood up to a constant: the mean of (y − z)² is that of
  N(z, σ² = ½), so F = 2X̃ᵀX̃/n, MSE's Hessian. RMSE = √MSE has gradient ∇MSE / (2 RMSE), and its
  Fisher is scaled alike: F = X̃ᵀX̃ / (n · RMSE(θ)) (the positive part of RMSE's Hessian). Either
  way one natural step of size 1 lands on the least-squares solution.

Every Fisher adds λ on the weights' diagonal: the Hessian of the penalty.

References:
  McCullagh & Nelder, "Generalized Linear Models", 2nd ed., 1989 (Fisher scoring, IRLS).
  Martens, "New insights and perspectives on the natural gradient method", JMLR, 2020.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

MODELS = ("linear", "logistic", "softmax")
LOSSES = {"linear": ("mse", "rmse"), "logistic": ("cross-entropy",), "softmax": ("cross-entropy",)}
INITS = ("zeros", "normal")


class Model(NamedTuple):
    """A model's shape: ``kind`` (linear, logistic, softmax), ``loss``, d features, K classes.

    Hashable and immutable, so compiled functions are cached per model shape.
    """

    kind: str
    loss: str
    n_features: int
    n_classes: int = 1

    @property
    def n_outputs(self) -> int:
        """m: the number of outputs z per example (K for softmax, else 1)."""
        return self.n_classes if self.kind == "softmax" else 1

    @property
    def n_params(self) -> int:
        """P = (d + 1) · m: the length of θ."""
        return (self.n_features + 1) * self.n_outputs


def make_model(kind: str, n_features: int, *, loss: str | None = None, n_classes: int | None = None) -> Model:
    """The model ``kind`` on ``n_features`` features, checked.

    Args:
      kind: ``linear``, ``logistic`` or ``softmax``.
      n_features: d ≥ 1.
      loss: ``mse`` or ``rmse`` for linear (default ``mse``); ``cross-entropy`` for the others.
      n_classes: K ≥ 2 for softmax; ignored otherwise.

    Returns:
      A :class:`Model` with (d + 1)·m parameters.

    Example:
      >>> make_model("softmax", 4, n_classes=3).n_params
      15
    """
    if kind not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {kind!r}.")
    allowed = LOSSES[kind]
    loss = allowed[0] if loss is None else loss
    if loss not in allowed:
        raise ValueError(f"the {kind} model takes the loss {' or '.join(allowed)}, got {loss!r}"
                         + ("; mse and rmse are for --model linear." if kind != "linear" else "."))
    if not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"a model needs at least one feature, got {n_features!r}.")
    if kind == "softmax":
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"softmax regression needs at least 2 classes, got {n_classes!r}.")
        return Model(kind, loss, n_features, n_classes)
    return Model(kind, loss, n_features, 2 if kind == "logistic" else 1)


# ------------------------------------------------------------------------------- parameters

def unravel(model: Model, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(W, b): W of shape (d, m) and b of shape (m,) from the flat θ of length (d + 1) m.

    Args:
      model: the model.
      theta: θ, the rows of [W; bᵀ] one after another.

    Returns:
      (W, b).

    Example:
      >>> import jax.numpy as jnp
      >>> W, b = unravel(make_model("logistic", 2), jnp.array([1.0, 2.0, 3.0]))
      >>> W.tolist(), b.tolist()
      ([[1.0], [2.0]], [3.0])
    """
    matrix = theta.reshape(model.n_features + 1, model.n_outputs)
    return matrix[:-1], matrix[-1]


def ravel(weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The flat θ of W (d, m) or (d,) and b (m,) or a scalar: the inverse of :func:`unravel`.

    Args:
      weights: W, shape (d, m) or (d,).
      bias: b, shape (m,) or a scalar.

    Returns:
      θ, length (d + 1) m.

    Example:
      >>> ravel(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 6.0])).tolist()
      [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    """
    weights = np.asarray(weights, dtype=float)
    weights = weights[:, None] if weights.ndim == 1 else weights
    return np.vstack([weights, np.atleast_1d(np.asarray(bias, dtype=float))[None, :]]).ravel()


def penalty_mask(model: Model) -> np.ndarray:
    """1 for the entries of θ that are weights (penalised), 0 for the bias.

    Args:
      model: the model.

    Returns:
      The mask, length (d + 1) m.

    Example:
      >>> penalty_mask(make_model("linear", 2)).tolist()
      [1.0, 1.0, 0.0]
    """
    mask = np.ones((model.n_features + 1, model.n_outputs))
    mask[-1] = 0.0
    return mask.ravel()


def prior_bias(model: Model, target_mean) -> np.ndarray:
    """The bias of the best constant model, from the training mean of the target.

    ``target_mean`` is the mean of y (linear), the fraction of 1 labels (logistic) or the class
    frequencies, the mean of one-hot y (softmax). The bias is that mean (linear), its log-odds
    (logistic), the log frequencies, centred (softmax). Training starts there, with the weights
    at zero or random, so that the steps go to the features rather than to the offset (on an
    uncentred target such as diabetes', mean 152, a zero bias costs thousands of steps).

    Args:
      model: the model.
      target_mean: the training mean of y (one-hot for softmax).

    Returns:
      b, shape (m,).

    Example:
      >>> prior_bias(make_model("logistic", 2), 0.75).round(6).tolist()       # log 3
      [1.098612]
    """
    if model.kind == "linear":
        return np.array([float(target_mean)])
    if model.kind == "logistic":
        p = float(target_mean)
        return np.array([np.log(p) - np.log1p(-p)])
    logs = np.log(np.asarray(target_mean, dtype=float))
    return logs - logs.mean()


def init_params(model: Model, init: str, seed: int, bias: np.ndarray) -> np.ndarray:
    """θ₀: weights 0 (``zeros``) or drawn from N(0, 1/d) (``normal``, from ``seed``), bias ``bias``.

    The variance 1/d gives logits of variance about 1 on standardised features.

    Args:
      model: the model.
      init: ``zeros`` or ``normal``.
      seed: seeds the ``normal`` draws.
      bias: b (:func:`prior_bias`).

    Returns:
      θ₀.

    Example:
      >>> m = make_model("logistic", 3)
      >>> init_params(m, "zeros", 0, prior_bias(m, 0.75)).round(6).tolist()
      [0.0, 0.0, 0.0, 1.098612]
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}.")
    shape = (model.n_features, model.n_outputs)
    if init == "zeros":
        weights = np.zeros(shape)
    else:
        weights = np.random.default_rng(seed).normal(0.0, 1.0 / np.sqrt(model.n_features), shape)
    return ravel(weights, np.broadcast_to(np.asarray(bias, dtype=float), (model.n_outputs,)))


# ------------------------------------------------------------------------------- outputs, losses

@jax.custom_vjp
def _rows_dot(X: jax.Array, w: jax.Array) -> jax.Array:
    """X w for X (n, d), w (d,), with the pullback w̄ = Σᵢ z̄ᵢ xᵢ written as a row reduction.

    Autodiff of X @ w pulls back through Xᵀ z̄, which XLA:CPU runs at about 3 GB/s; the same
    sum written as (X ⊙ z̄[:, None]).sum(0) streams X once, about 7 times faster at 10⁶ × 100
    (DESIGN.md, numerics notes). Same numbers up to the order of the additions.
    """
    return X @ w


def _rows_dot_fwd(X, w):
    return X @ w, (X, w)


def _rows_dot_bwd(saved, z_bar):
    X, w = saved
    return z_bar[:, None] * w[None, :], jnp.sum(X * z_bar[:, None], axis=0)


_rows_dot.defvjp(_rows_dot_fwd, _rows_dot_bwd)


def logits(model: Model, theta: jax.Array, X: jax.Array) -> jax.Array:
    """z = XW + b: shape (n,) for linear and logistic, (n, K) for softmax.

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).

    Returns:
      z.

    Example:
      >>> import jax.numpy as jnp
      >>> logits(make_model("linear", 2), jnp.array([1.0, 2.0, 0.5]), jnp.array([[1.0, 1.0], [0.0, 1.0]])).tolist()
      [3.5, 2.5]
    """
    W, b = unravel(model, theta)
    if model.kind != "softmax":
        return _rows_dot(X, W[:, 0]) + b[0]
    return X @ W + b


def example_losses(model: Model, z: jax.Array, y: jax.Array) -> jax.Array:
    r"""ℓ(zᵢ, yᵢ) per example, shape (n,): squared error, or a cross-entropy from optax.

    .. math::  \ell = (y - z)^2 \ (\text{linear}),\quad \log(1 + e^z) - y z \ (\text{logistic}),\quad
               \operatorname{logsumexp}(z) - z_y \ (\text{softmax})

    Args:
      model: the model.
      z: the logits (:func:`logits`).
      y: the labels or targets, shape (n,).

    Returns:
      ℓ per example, shape (n,).

    Example:
      >>> import jax.numpy as jnp
      >>> l = example_losses(make_model("logistic", 1), jnp.array([0.0, -800.0]), jnp.array([1.0, 1.0]))
      >>> [round(float(v), 6) for v in l]          # log 2, and 800 without underflow
      [0.693147, 800.0]
    """
    if model.kind == "linear":
        return optax.losses.squared_error(z, y)
    if model.kind == "logistic":
        return optax.losses.sigmoid_binary_cross_entropy(z, y)
    return optax.losses.softmax_cross_entropy_with_integer_labels(z, y.astype(jnp.int32))


def finish(model: Model, mean_loss: jax.Array) -> jax.Array:
    """The data term from the mean per-example loss: √· for rmse, itself otherwise.

    Args:
      model: the model (its ``loss`` decides).
      mean_loss: the mean of ℓ over the examples.

    Returns:
      The data term of J.

    Example:
      >>> float(finish(make_model("linear", 1, loss="rmse"), 9.0)), float(finish(make_model("linear", 1), 9.0))
      (3.0, 9.0)
    """
    return jnp.sqrt(mean_loss) if model.loss == "rmse" else mean_loss


def penalty(model: Model, theta: jax.Array, l2: jax.Array) -> jax.Array:
    r"""(λ/2)‖W‖², the bias left out.

    .. math::  \frac{\lambda}{2}\lVert W\rVert^2

    Args:
      model: the model.
      theta: θ.
      l2: λ.

    Returns:
      The penalty.

    Example:
      >>> import jax.numpy as jnp
      >>> float(penalty(make_model("linear", 2), jnp.array([3.0, 4.0, 100.0]), 0.1))   # 0.05 · 25
      1.25
    """
    W, _ = unravel(model, theta)
    return 0.5 * l2 * jnp.sum(W * W)


def data_loss(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
    r"""The data term of J: the mean loss (its square root for rmse); NaN on no examples.

    .. math::  \frac1n \sum_i \ell(z_i, y_i) \qquad \Big(\text{rmse: } \sqrt{\tfrac1n \textstyle\sum_i (y_i - z_i)^2}\Big)

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels or targets, shape (n,).

    Returns:
      The data loss.

    Example:
      >>> import jax.numpy as jnp
      >>> m = make_model("linear", 1, loss="rmse")
      >>> float(data_loss(m, jnp.array([0.0, 0.0]), jnp.array([[1.0], [2.0]]), jnp.array([3.0, 4.0])))   # √((9+16)/2)
      3.5355339059327378
    """
    return finish(model, jnp.mean(example_losses(model, logits(model, theta, X), y)))


def objective(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array, l2: jax.Array) -> jax.Array:
    r"""J(θ) = data loss + (λ/2)‖W‖² on the examples (X, y).

    .. math::  J(\theta) = \frac1n\sum_{i=1}^n \ell(z_i, y_i) + \frac{\lambda}{2}\lVert W\rVert^2

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels or targets, shape (n,).
      l2: λ.

    Returns:
      J(θ).

    Example:
      >>> import jax.numpy as jnp
      >>> m = make_model("logistic", 1)
      >>> X, y = jnp.array([[1.0], [-1.0]]), jnp.array([1.0, 0.0])
      >>> round(float(objective(m, jnp.zeros(2), X, y, 0.0)), 12) == round(float(jnp.log(2.0)), 12)
      True
    """
    return data_loss(model, theta, X, y) + penalty(model, theta, l2)


# ------------------------------------------------------------------------------- metrics

def predict(model: Model, theta: jax.Array, X: jax.Array) -> jax.Array:
    """Predictions: z for linear, the label 0/1 (z > 0) for logistic, argmax z for softmax.

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).

    Returns:
      The predictions, shape (n,).

    Example:
      >>> import jax.numpy as jnp
      >>> predict(make_model("logistic", 1), jnp.array([1.0, 0.0]), jnp.array([[-2.0], [3.0]])).tolist()
      [0.0, 1.0]
    """
    z = logits(model, theta, X)
    if model.kind == "linear":
        return z
    if model.kind == "logistic":
        return (z > 0).astype(z.dtype)
    return jnp.argmax(z, axis=-1).astype(z.dtype)


def example_scores(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
    """Per example: 1/0 for a right/wrong class (classifiers), the squared error (linear).

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels or targets, shape (n,).

    Returns:
      Scores, shape (n,): their mean is the accuracy or the MSE.

    Example:
      >>> import jax.numpy as jnp
      >>> example_scores(make_model("logistic", 1), jnp.array([1.0, 0.0]), jnp.array([[-2.0], [3.0]]),
      ...                jnp.array([0.0, 0.0])).tolist()
      [1.0, 0.0]
    """
    guess = predict(model, theta, X)
    if model.kind == "linear":
        return (guess - y) ** 2
    return (guess == y).astype(guess.dtype)


def margins(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
    """Per example: how far the true class's logit lies above the others' (classifiers).

    Logistic: (2y − 1) z; softmax: z_y − max_{k≠y} z_k. All positive means the weights
    separate the classes strictly: then J without a penalty falls towards 0 as W is scaled up,
    and has no finite minimiser. Linear regression: +inf (there is nothing to separate).

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels, shape (n,).

    Returns:
      Margins, shape (n,).

    Example:
      >>> import jax.numpy as jnp
      >>> margins(make_model("logistic", 1), jnp.array([1.0, 0.0]), jnp.array([[-2.0], [3.0]]),
      ...         jnp.array([0.0, 0.0])).tolist()
      [2.0, -3.0]
    """
    z = logits(model, theta, X)
    if model.kind == "linear":
        return jnp.full(z.shape, jnp.inf, z.dtype)
    if model.kind == "logistic":
        return (2.0 * y - 1.0) * z
    labels = y.astype(jnp.int32)
    true = jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, model.n_classes, dtype=bool), -jnp.inf, z)
    return true - jnp.max(others, axis=1)


# ------------------------------------------------------------------------------- Fisher information

def _augmented(X: jax.Array) -> jax.Array:
    return jnp.concatenate([X, jnp.ones((X.shape[0], 1), X.dtype)], axis=1)


GRAM_BLOCK_ROWS = 4096      # rows per block of weighted_gram: X's block stays in cache for its product


def weighted_gram(X: jax.Array, w: jax.Array, block_rows: int = GRAM_BLOCK_ROWS) -> jax.Array:
    r"""X̃ᵀ diag(w) X̃ for X̃ = [X, 1], shape (d + 1, d + 1), summed over blocks of rows.

    .. math::  X̃^\top W X̃ = \sum_{\text{blocks } B} \begin{bmatrix} X_B^\top W_B X_B & X_B^\top w_B \\
               w_B^\top X_B & \mathbf 1^\top w_B \end{bmatrix}

    The same sum as ``(X̃ * w[:, None]).T @ X̃``, without building X̃ (a copy of X) or the scaled
    copy of it: a ``lax.scan`` over blocks of ``block_rows`` rows (the rest in one last block)
    keeps each block in cache for its product, about twice as fast as the one product on
    XLA:CPU at 10⁶ × 100.

    Args:
      X: features, shape (n, d).
      w: weights per row, shape (n,).
      block_rows: rows per block.

    Returns:
      X̃ᵀ diag(w) X̃, shape (d + 1, d + 1).

    Example:
      >>> import jax.numpy as jnp
      >>> weighted_gram(jnp.array([[1.0], [2.0], [3.0]]), jnp.array([1.0, 1.0, 2.0]), block_rows=2).tolist()
      [[23.0, 9.0], [9.0, 4.0]]
    """
    n, d = X.shape

    def block(Xb, wb):
        Xw = Xb * wb[:, None]
        top = jnp.concatenate([Xw.T @ Xb, jnp.sum(Xw, axis=0)[:, None]], axis=1)
        bottom = jnp.concatenate([jnp.sum(Xw, axis=0), jnp.sum(wb)[None]])[None, :]
        return jnp.concatenate([top, bottom], axis=0)

    full = (n // block_rows) * block_rows
    total = jnp.zeros((d + 1, d + 1), jnp.result_type(X, w))
    if full:
        blocks = (X[:full].reshape(-1, block_rows, d), w[:full].reshape(-1, block_rows))
        total = jax.lax.scan(lambda acc, xs: (acc + block(*xs), None), total, blocks)[0]
    if full < n:
        total = total + block(X[full:], w[full:])
    return total


def _output_weights(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array, rows: jax.Array | None = None
                    ) -> jax.Array:
    """The per-example weight of x̃x̃ᵀ in F (linear, logistic), shape (n,); 0 where ``rows`` is 0."""
    n = X.shape[0]
    if rows is not None:
        keep = rows.astype(X.dtype)
        if model.loss == "rmse":                    # 1 / RMSE(θ) over the rows kept
            per = example_losses(model, logits(model, theta, X), y)
            return keep / jnp.sqrt(jnp.sum(per * keep) / jnp.sum(keep))
        return keep * _output_weights(model, theta, X, y)
    if model.kind == "logistic":
        p = jax.nn.sigmoid(logits(model, theta, X))
        return p * (1.0 - p)
    if model.loss == "mse":                         # σ² = ½: 1/σ² = 2
        return jnp.full((n,), 2.0, X.dtype)
    return jnp.full((n,), 1.0, X.dtype) / data_loss(model, theta, X, y)   # 1 / RMSE(θ)


def _null_rows(model: Model, l2: jax.Array) -> jax.Array:
    """Softmax: 1 for the rows of [W; bᵀ] along which a shift of every class's logits is free
    (the bias always; the weights when λ = 0), shape (d + 1,)."""
    rows = jnp.full((model.n_features + 1,), jnp.asarray(l2 == 0, dtype=jnp.result_type(float)))
    return rows.at[-1].set(1.0)


def fisher_matrix(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array, l2: jax.Array,
                  rows: jax.Array | None = None) -> jax.Array:
    r"""The Fisher information F(θ) + λ·diag(weights), a dense (P, P) matrix (see the module text).

    .. math::  F = \tfrac1n \tilde X^\top \operatorname{diag}(p_i(1 - p_i)) \tilde X + \lambda\,\mathrm{diag}(\text{mask})
               \quad\text{(logistic; the module text gives linear and softmax)}

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels or targets, shape (n,) (used by rmse's scale).
      l2: λ.
      rows: optional, 1 or 0 per example: F of the rows marked 1 only, as if the others were not
        there (padding that gives blocks of rows one compiled shape).

    Returns:
      F, shape (P, P).

    Example:
      >>> import jax.numpy as jnp
      >>> m = make_model("linear", 1)
      >>> X, y = jnp.array([[1.0], [-1.0]]), jnp.array([0.0, 0.0])
      >>> fisher_matrix(m, jnp.zeros(2), X, y, 0.0).tolist()   # 2 X̃ᵀX̃ / n
      [[2.0, 0.0], [0.0, 2.0]]
    """
    n = X.shape[0] if rows is None else jnp.sum(rows.astype(X.dtype))
    mask = jnp.asarray(penalty_mask(model), X.dtype)
    if model.kind != "softmax":
        F = weighted_gram(X, _output_weights(model, theta, X, y, rows)) / n
        return F + jnp.diag(l2 * mask)
    Xa = _augmented(X)
    p = jax.nn.softmax(logits(model, theta, X), axis=-1)            # (n, K)
    if rows is not None:        # (diag p − ppᵀ)·m = diag(mp) − (mp)(mp)ᵀ for m ∈ {0, 1}
        p = p * rows.astype(X.dtype)[:, None]
    K, P = model.n_classes, model.n_params
    Q = (Xa[:, :, None] * p[:, None, :]).reshape(X.shape[0], P)      # x̃_ij p_ik, the (j, k) order of θ
    diagonal = jnp.einsum("ijk,il->jkl", Q.reshape(X.shape[0], -1, K), Xa) / n   # Σᵢ x̃_ij x̃_il p_ik / n
    F = jnp.einsum("jkl,km->jklm", diagonal, jnp.eye(K, dtype=X.dtype)).reshape(P, P) - Q.T @ Q / n
    null = jnp.kron(jnp.diag(_null_rows(model, l2)), jnp.full((K, K), 1.0 / K, X.dtype))
    return F + null + jnp.diag(l2 * mask)


def fisher_vector_product(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array,
                          l2: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """v ↦ (F(θ) + λ·diag(weights)) v without forming F: two passes over X per product.

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels or targets, shape (n,).
      l2: λ.

    Returns:
      The product as a function of v (length P).

    Example:
      >>> import jax.numpy as jnp
      >>> m = make_model("logistic", 1)
      >>> X, y = jnp.array([[1.0], [-1.0]]), jnp.array([1.0, 0.0])
      >>> fvp = fisher_vector_product(m, jnp.zeros(2), X, y, 0.0)
      >>> fvp(jnp.array([1.0, 0.0])).tolist()                  # p(1-p) = 1/4, x̃ᵀx̃ / n
      [0.25, 0.0]
    """
    n = X.shape[0]
    Xa = _augmented(X)
    mask = jnp.asarray(penalty_mask(model), X.dtype)
    if model.kind != "softmax":
        w = _output_weights(model, theta, X, y)

        def product(v):
            return Xa.T @ (w * (Xa @ v)) / n + l2 * mask * v

        return product
    z = logits(model, theta, X)
    null = _null_rows(model, l2)[:, None]
    shape = (model.n_features + 1, model.n_classes)

    def product(v):
        V = v.reshape(shape)
        U = Xa @ V                                                   # J v: the logits' change
        # (diag p − ppᵀ) J v is the softmax's Jacobian applied to it: let jax.jvp do it. (Written
        # out as p⊙U − p⊙Σₖ(p⊙U), XLA:CPU in jaxlib 0.10.2 returned uninitialised memory for it
        # when v is the constant zero vector conjugate gradient starts from; cf. jax#39120.)
        S = jax.jvp(lambda logit: jax.nn.softmax(logit, axis=-1), (z,), (U,))[1]
        Fv = Xa.T @ S / n + null * jnp.mean(V, axis=1, keepdims=True)
        return Fv.ravel() + l2 * mask * v

    return product


def fisher_diagonal(model: Model, theta: jax.Array, X: jax.Array, y: jax.Array, l2: jax.Array,
                    rows: jax.Array | None = None) -> jax.Array:
    """diag(F(θ)) + λ·weights, shape (P,): what ``natural-diag`` divides the gradient by
    (``rows``: as :func:`fisher_matrix`).

    It is the diagonal of the model's Fisher (an expectation over the model's predictive
    distribution), not the empirical Fisher (the mean of squared per-example gradients, which
    uses the labels and is a poor curvature estimate away from the optimum; Kunstner et al. 2019).

    Args:
      model: the model (:func:`make_model`).
      theta: θ, the flat parameters, length (d + 1) m.
      X: features, shape (n, d).
      y: labels or targets, shape (n,).
      l2: λ.
      rows: optional, 1 or 0 per example (as :func:`fisher_matrix`).

    Returns:
      diag(F) + λ·mask, shape (P,).

    Example:
      >>> import jax.numpy as jnp
      >>> m = make_model("logistic", 1)
      >>> fisher_diagonal(m, jnp.zeros(2), jnp.array([[1.0], [-1.0]]), jnp.array([1.0, 0.0]), 0.5).tolist()
      [0.75, 0.25]
    """
    n = X.shape[0] if rows is None else jnp.sum(rows.astype(X.dtype))
    Xa = _augmented(X)
    mask = jnp.asarray(penalty_mask(model), X.dtype)
    if model.kind != "softmax":
        d = (Xa * Xa).T @ _output_weights(model, theta, X, y, rows) / n
        return d + l2 * mask
    p = jax.nn.softmax(logits(model, theta, X), axis=-1)
    if rows is not None:
        p = p * rows.astype(X.dtype)[:, None]          # p(1 − p)·m = mp(1 − mp) for m ∈ {0, 1}
    d = (Xa * Xa).T @ (p * (1.0 - p)) / n                            # (d + 1, K)
    return d.ravel() + l2 * mask


# ------------------------------------------------------------------------------- separability

LP_SIZE_LIMIT = 1_000_000      # constraint-matrix entries; digits' softmax LP (8·10⁶) takes 15 s here


def linearly_separable(model: Model, X: np.ndarray, y: np.ndarray) -> bool | None:
    """Whether some weights classify every row right with a positive margin; None if not checked.

    Decided by a feasibility linear program (scipy's HiGHS): is there θ with margin ≥ 1 on every
    row (logistic: (2yᵢ − 1) zᵢ ≥ 1; softmax: z_{i,yᵢ} − z_{i,k} ≥ 1 for k ≠ yᵢ)? Margins scale
    with θ, so ≥ 1 is as good as > 0. Then J without a penalty has no minimiser: it falls towards
    0 along a separating direction. Linear regression: False. Problems larger than
    ``LP_SIZE_LIMIT`` matrix entries are not checked (None).

    Args:
      model: the model.
      X: features, shape (n, d).
      y: labels, shape (n,).

    Returns:
      True, False, or None when the problem is too large to check.

    Example:
      >>> m = make_model("logistic", 1)
      >>> linearly_separable(m, np.array([[-1.0], [1.0]]), np.array([0.0, 1.0])), \\
      ...     linearly_separable(m, np.array([[-1.0], [0.0], [1.0]]), np.array([0.0, 1.0, 0.0]))
      (True, False)
    """
    import scipy.sparse
    from scipy.optimize import linprog

    if model.kind == "linear":
        return False
    n, d1 = len(y), model.n_features + 1
    K = model.n_outputs if model.kind == "softmax" else 1
    rows = n * max(K - 1, 1)
    if rows * d1 * K > LP_SIZE_LIMIT:
        return None
    Xa = np.hstack([np.asarray(X, dtype=float), np.ones((n, 1))])
    if model.kind == "logistic":
        A = -((2.0 * np.asarray(y, dtype=float) - 1.0)[:, None] * Xa)
    else:
        labels = np.asarray(y).astype(np.int64)
        i = np.repeat(np.arange(n), K - 1)
        others = (labels[i] + 1 + np.tile(np.arange(K - 1), n)) % K       # every k ≠ yᵢ
        j = np.arange(d1)[None, :]
        cols = np.concatenate([j * K + labels[i][:, None], j * K + others[:, None]], axis=1).ravel()
        vals = np.concatenate([-Xa[i], Xa[i]], axis=1).ravel()
        A = scipy.sparse.csr_matrix((vals, (np.repeat(np.arange(rows), 2 * d1), cols)), shape=(rows, d1 * K))
    found = linprog(np.zeros(d1 * K), A_ub=A, b_ub=-np.ones(rows), bounds=(None, None), method="highs")
    return {0: True, 2: False}.get(found.status)       # 0 feasible, 2 infeasible; else undecided
