"""Seeded data files for the training tests, written in row groups so that making a file of
millions of rows holds only one row group in memory.

The logistic generator draws standard-normal ε, features x_j = μ_j + s_j ε_j (offsets and scales
that standardisation has to undo) and labels y ~ Bernoulli(sigmoid(b* + Σ_j w*_j ε_j)). The
logit z = b* + w*·ε is then exactly N(b*, ‖w*‖²), which gives closed-form references
(:func:`population_loss`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Truth(NamedTuple):
    """The generator's parameters: column offsets μ, scales s, weights w* (on ε) and bias b*."""

    offsets: np.ndarray
    scales: np.ndarray
    weights: np.ndarray
    bias: float


def logistic_truth(n_features: int, seed: int) -> Truth:
    rng = np.random.default_rng([seed, 10**9])
    return Truth(rng.uniform(-5.0, 5.0, n_features), rng.uniform(0.5, 3.0, n_features),
                 rng.normal(0.0, 1.5 / math.sqrt(n_features), n_features), 0.3)


def logistic_rows(truth: Truth, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    eps = rng.standard_normal((n, len(truth.weights)))
    z = truth.bias + eps @ truth.weights
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int8)
    return truth.offsets + truth.scales * eps, y


def write_logistic_parquet(path, n_rows: int, n_features: int, seed: int, row_group_rows: int = 50_000,
                           label_type: str = "int8") -> Truth:
    """A Parquet file of ``n_rows`` rows: columns x0 … x{d-1} (float64) and ``label`` (0/1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    truth = logistic_truth(n_features, seed)
    names = [f"x{j}" for j in range(n_features)]
    schema = pa.schema([(n, pa.float64()) for n in names] + [("label", getattr(pa, label_type)())])
    # The float columns PLAIN-encoded: random doubles never fit a dictionary, and trying one first (the
    # default, before falling back to PLAIN) makes writing 3.5x slower (~9 of the 2M-row file's 12 s).
    with pq.ParquetWriter(str(path), schema, use_dictionary=["label"]) as writer:
        for g, start in enumerate(range(0, n_rows, row_group_rows)):
            rows = min(row_group_rows, n_rows - start)
            X, y = logistic_rows(truth, rows, np.random.default_rng([seed, g]))
            columns = {n: X[:, j] for j, n in enumerate(names)}
            columns["label"] = y.astype(label_type)
            writer.write_table(pa.table(columns, schema=schema))
    return truth


def write_csv(path, X: np.ndarray, y, names: list[str] | None = None, target: str = "label") -> None:
    """A small CSV file with a header, one row per example."""
    names = names or [f"x{j}" for j in range(X.shape[1])]
    with open(path, "w") as fh:
        fh.write(",".join([*names, target]) + "\n")
        for row, label in zip(X, y):
            fh.write(",".join([*(repr(float(v)) for v in row), str(label)]) + "\n")


def population_loss(truth: Truth) -> tuple[float, float]:
    """(mean, standard deviation) of the per-row log-loss at the true weights, over the population.

    With z ~ N(b*, ‖w*‖²) and y | z ~ Bernoulli(σ(z)): ℓ = softplus(z) − y z, so
    E ℓ = E_z[softplus(z) − σ(z) z] (the binary entropy of σ(z)) and E ℓ² = E_z[σ(z) softplus(−z)²
    + (1 − σ(z)) softplus(z)²], by quadrature over z.
    """
    from scipy import integrate

    s = float(np.linalg.norm(truth.weights))

    def expect(f):
        phi = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731
        return integrate.quad(lambda t: phi(t) * f(truth.bias + s * t), -12, 12, epsabs=1e-13, epsrel=1e-12)[0]

    softplus = lambda z: max(z, 0.0) + math.log1p(math.exp(-abs(z)))  # noqa: E731
    sigmoid = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731
    mean = expect(lambda z: softplus(z) - sigmoid(z) * z)
    second = expect(lambda z: sigmoid(z) * softplus(-z) ** 2 + (1 - sigmoid(z)) * softplus(z) ** 2)
    return mean, math.sqrt(second - mean * mean)
