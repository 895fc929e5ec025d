r"""Data for :func:`gdlab.train`: bundled datasets, CSV and Parquet files, splits, mini-batches.

Sources:

- scikit-learn's bundled datasets by name (no download): ``breast_cancer``, ``diabetes`` (the
  raw, unscaled features), ``digits``, ``iris``, ``wine``;
- a ``.csv`` or ``.parquet`` file with a ``target`` column and optional ``features`` (default:
  every other column), read with pyarrow in record batches;
- a tuple ``(X, y)`` of arrays.

**Train/test split.** Row i goes to the test split when u(seed, i) < test_size, where u is a
uniform number in [0, 1) made by hashing the pair (splitmix64). Each row is decided on its own,
so a file streamed in any order is split the same way as when loaded whole, with no pass over
the data; the test share is test_size on average (binomially distributed, like any coin flip).

**Standardisation** (x − mean) / std uses the population standard deviation (ddof = 0) of the
*training* rows, like scikit-learn's ``StandardScaler`` (which computes it here, with
``partial_fit`` over record batches when streaming); a constant column keeps scale 1.

**Streaming.** A file whose numeric columns would take more than a quarter of
``memory_limit`` in float64 (loading, splitting and the copy JAX makes take about four times
that) is never loaded whole: one pass computes the split counts, the standardisation and the
labels, and writes the decoded rows to a spill file beside the data (:mod:`gdlab.spill`; not
where the disk lacks room); each epoch reads the record batches again, from the spill or the
file (Parquet row groups in a new random order each epoch), and a shuffle buffer of
``buffer_rows`` rows mixes them: each incoming row takes the place of a randomly chosen row in
the buffer, which goes out into the next mini-batch
(the scheme of tf.data's ``shuffle``). With a buffer at least as large as the training split
this is a uniform random permutation per epoch. Every epoch uses whole mini-batches only:
the last partial one (fewer than ``batch_size`` rows, different rows each epoch) is dropped,
so that every step has the same shape and the compiled step is reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from gdlab.spill import Spill, open_spill

DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
MAX_CLASSES = 10_000
DEFAULT_MEMORY_LIMIT = 1 << 30          # 1 GiB
_FLOAT_BYTES = 8


class DataError(ValueError):
    """Bad data or a bad data option: one sentence saying what is wrong and how to fix it."""


# ------------------------------------------------------------------------------- the split

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Steele, Lea & Flood's splitmix64 finaliser, vectorised over uint64 (wrapping arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def in_test_split(rows: np.ndarray, seed: int, test_size: float) -> np.ndarray:
    """True for the rows (0-based numbers in the file) that belong to the test split.

    Each row's number and the seed are hashed (splitmix64) to u ∈ [0, 1); the row is a test row
    when u < ``test_size``, so a streamed file splits exactly as a loaded one.

    Args:
      rows: row numbers.
      seed: seeds the hash.
      test_size: the expected fraction of test rows, in [0, 1).

    Returns:
      A boolean array like ``rows``.

    Example:
      >>> mask = in_test_split(np.arange(100_000), seed=0, test_size=0.2)
      >>> bool(0.19 < mask.mean() < 0.21), bool((mask == in_test_split(np.arange(100_000), 0, 0.2)).all())
      (True, True)
    """
    if test_size <= 0:                # u ≥ 0: no row is a test row (and no hash to compute)
        return np.zeros(np.shape(rows), dtype=bool)
    key = _splitmix64(np.array([seed], dtype=np.uint64))
    u = (_splitmix64(np.asarray(rows, dtype=np.uint64) + key) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return u < test_size


# ------------------------------------------------------------------------------- data sets

class Dataset(NamedTuple):
    """A data set in memory, split and standardised.

    Attributes:
      name: the dataset name or the file's path. features: the feature names. target: its name.
      classes: for classifiers, the label of each class index (logistic: (0, 1)); None for linear.
      X_train, y_train, X_test, y_test: float64 arrays; X standardised when asked; y holds class
        indices 0 … K−1 for softmax, 0/1 for logistic, the values for linear.
      mean, scale: the standardisation, x_std = (x − mean) / scale (0 and 1 when it is off).
      target_mean: the training mean of y (for softmax: of its one-hot encoding, the class
        frequencies), for the bias the training starts from.
    """

    name: str
    features: tuple
    target: str
    classes: tuple | None
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    target_mean: Any

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    import sklearn.datasets as skd

    loader = getattr(skd, f"load_{name}")
    bunch = loader(scaled=False) if name == "diabetes" else loader()
    names = [str(f) for f in getattr(bunch, "feature_names", [f"x{j}" for j in range(bunch.data.shape[1])])]
    return np.asarray(bunch.data, dtype=float), np.asarray(bunch.target), names, "target"


def _select(names: Sequence[str], features: Sequence[str] | None, target: str | None) -> list[int]:
    """Indices of the chosen features among ``names`` (all but the target when None)."""
    if features is None:
        return [i for i, n in enumerate(names) if n != target]
    features = list(features)
    if not features:
        raise DataError("features is empty; name at least one column, e.g. --features a,b.")
    missing = [f for f in features if f not in names]
    if missing:
        raise DataError(f"no feature column {missing[0]!r}; the columns are {_listing(names)}.")
    if target is not None and target in features:
        raise DataError(f"the target {target!r} is also listed as a feature; drop it from the features.")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:
        raise DataError(f"the feature {repeated[0]!r} is listed twice; list each column once.")
    return [list(names).index(f) for f in features]


def _listing(names: Sequence[str], limit: int = 40) -> str:
    shown = ", ".join(str(n) for n in list(names)[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _labels(kind: str, y: np.ndarray, target: str, classes: tuple | None = None) -> tuple[np.ndarray, tuple | None]:
    """y as float64 for the model ``kind`` (class indices for softmax) and the class labels."""
    if kind == "linear":
        if y.dtype.kind not in "biuf":
            raise DataError(f"the target {target!r} is not numeric (it holds values like {y[0]!r}); "
                            f"linear regression needs a numeric target.")
        y = y.astype(float)
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DataError(f"the target {target!r} has a missing or infinite value in row {bad[0] + 1}; "
                            f"fill or drop such rows first.")
        return y, None
    values = _unique_labels(y, target)
    if kind == "logistic":
        _check_binary(values, target)
        return y.astype(float), (0, 1)
    classes = tuple(values) if classes is None else classes
    if isinstance(classes[0], str):
        y = y.astype(str)
    if len(classes) > MAX_CLASSES:
        raise DataError(f"the target {target!r} has {len(classes):,} distinct values, more than the "
                        f"{MAX_CLASSES:,} classes softmax regression takes; is it a regression target (--model linear)?")
    return np.searchsorted(np.asarray(classes), y).astype(float), classes


def _unique_labels(y: np.ndarray, target: str) -> list:
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DataError(f"the target {target!r} has a missing value in row {bad[0] + 1}; "
                            f"fill or drop such rows first.")
        values = np.unique(y)
        if np.any(values != np.round(values)):
            odd = values[values != np.round(values)][0]
            raise DataError(f"the target {target!r} holds {odd:g}, not a class label; a classifier needs whole "
                            f"numbers or names as labels (use --model linear for a numeric target).")
        return [int(v) if float(v).is_integer() else v for v in values.tolist()]
    return sorted(np.unique(y).tolist())


def _check_binary(values: Sequence, target: str) -> None:
    odd = [v for v in values if not (isinstance(v, (int, float, bool, np.integer, np.floating)) and v in (0, 1))]
    if odd:
        shown = ", ".join(repr(v) for v in list(values)[:6]) + (", …" if len(values) > 6 else "")
        raise DataError(f"logistic regression needs labels 0 and 1, but the target {target!r} holds {shown}; "
                        f"recode it to 0/1, or use --model softmax for {len(values)} classes.")


def _target_mean(kind: str, y: np.ndarray, n_classes: int) -> Any:
    if kind == "softmax":
        return np.bincount(y.astype(np.int64), minlength=n_classes) / len(y)
    return float(y.mean())


def _check_split(kind: str, n_train: int, train_counts: np.ndarray | None, classes: tuple | None,
                 test_size: float, seed: int) -> None:
    """Refuse an empty training split, and a class without training rows."""
    if n_train == 0:
        raise DataError(f"the training split is empty (test_size={test_size}, seed={seed}); "
                        f"use a smaller --test-size.")
    if kind == "linear":
        return
    absent = [classes[k] for k in range(len(classes)) if train_counts[k] == 0]
    if not absent:
        return
    if kind == "logistic":
        present = classes[1 - classes.index(absent[0])]
        raise DataError(f"the training rows hold only the label {present!r}; logistic regression needs both 0 "
                        f"and 1 (with one label its best fit puts the bias at infinity).")
    raise DataError(f"the class {absent[0]!r} has no training rows (only test rows); use a smaller "
                    f"--test-size or another --seed.")


def _all_finite(X: np.ndarray) -> bool:
    """Whether every entry is finite, without the boolean copy of X that ``np.isfinite(X).all()``
    makes. One pass: a finite sum has only finite terms (NaN and ±inf propagate; +inf and −inf
    make NaN), and the row sums X·1 are BLAS's threaded matrix-vector product (twice as fast as
    ``X.sum()`` at 10⁶ × 100). A sum that is not finite may also be an overflow of finite entries
    near 1e308, so then min and max decide (NaN propagates through them, ±inf shows in them)."""
    if X.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(X @ np.ones(X.shape[1], X.dtype))):
            return True
    return bool(np.isfinite(X.min()) and np.isfinite(X.max()))


def _split_and_scale(name: str, X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], target: str,
                     kind: str, classes: tuple | None, test_size: float, seed: int, standardize: bool) -> Dataset:
    from sklearn.preprocessing import StandardScaler

    test = in_test_split(np.arange(len(y)), seed, test_size)
    if test.any():
        X_train, y_train, X_test, y_test = X[~test], y[~test], X[test], y[test]
    else:                                  # test_size = 0: the rows themselves, not a copy of them
        X_train, y_train, X_test, y_test = X, y, X[:0], y[:0]
    counts = None if classes is None else np.bincount(y_train.astype(np.int64), minlength=len(classes))
    _check_split(kind, len(y_train), counts, classes, test_size, seed)
    if standardize:
        scaler = StandardScaler().fit(X_train)
        mean, scale = scaler.mean_, scaler.scale_
        X_train, X_test = (X_train - mean) / scale, (X_test - mean) / scale
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    n_classes = len(classes) if classes is not None else 1
    return Dataset(name, tuple(feature_names), target, classes, X_train, y_train, X_test, y_test,
                   mean, scale, _target_mean(kind, y_train, n_classes))


# ------------------------------------------------------------------------------- files

def _arrow_numeric(typ) -> bool:
    import pyarrow as pa

    t = pa.types
    return t.is_integer(typ) or t.is_floating(typ) or t.is_boolean(typ) or t.is_decimal(typ) or t.is_null(typ)


def _kind_of(typ) -> str:
    import pyarrow as pa

    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_temporal(typ):
        return "dates or times"
    return str(typ)


@dataclass
class TableFile:
    """A CSV or Parquet file opened for reading in record batches (never loaded whole)."""

    path: str
    format: str
    schema: Any
    num_rows: int | None
    size_bytes: int
    row_group_rows: list = field(default_factory=list)

    @classmethod
    def open(cls, path: str) -> "TableFile":
        import pyarrow as pa

        fmt = EXTENSIONS.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise DataError(f"{path!r} is neither a .csv nor a .parquet file; give one of those, or a dataset "
                            f"name ({', '.join(DATASETS)}).")
        if not os.path.isfile(path):
            raise DataError(f"no file {path!r}; check the path, or give a dataset name ({', '.join(DATASETS)}).")
        size = os.path.getsize(path)
        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(path).metadata
                groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
                return cls(path, fmt, pq.read_schema(path), meta.num_rows, size, groups)
            if size == 0:
                raise DataError(f"the file {path!r} is empty; give a file with a header and data rows.")
            import pyarrow.csv as pacsv

            return cls(path, fmt, pacsv.open_csv(path).schema, None, size)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {path!r} as {fmt.upper()}: {_first_line(exc)}.") from None

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def check_columns(self, features: Sequence[str] | None, target: str | None, kind: str) -> list[str]:
        """The feature names to read, after checking the target and that the features are numeric."""
        names = self.columns
        if target is None:
            raise DataError(f"a file needs --target COLUMN (the labels); the columns of {self.path!r} are "
                            f"{_listing(names)}.")
        if target not in names:
            raise DataError(f"no target column {target!r} in {self.path!r}; its columns are {_listing(names)}.")
        chosen = [names[i] for i in _select(names, features, target)]
        if not chosen:
            raise DataError(f"{self.path!r} has no column besides the target {target!r}; a model needs features.")
        for name in chosen:
            typ = self.schema.field(name).type
            if not _arrow_numeric(typ):
                raise DataError(f"the feature column {name!r} is not numeric (it holds {_kind_of(typ)}); "
                                f"choose numeric columns with --features, or encode it as numbers first.")
        ttype = self.schema.field(target).type
        if kind != "softmax" and not _arrow_numeric(ttype):
            if kind == "logistic":
                raise DataError(f"logistic regression needs labels 0 and 1, but the target {target!r} holds "
                                f"{_kind_of(ttype)}; recode it to 0/1, or use --model softmax.")
            raise DataError(f"the target {target!r} is not numeric (it holds {_kind_of(ttype)}); linear regression "
                            f"needs a numeric target.")
        return chosen

    def float_bytes(self, n_columns: int) -> float:
        """About how many bytes ``n_columns`` columns take in memory as float64."""
        if self.num_rows is not None:
            return float(self.num_rows) * n_columns * _FLOAT_BYTES
        # CSV: a number takes about as many characters as its float64 takes bytes, or more
        return self.size_bytes * n_columns / max(1, len(self.columns))

    def batches(self, columns: Sequence[str], rows: int, rng: np.random.Generator | None = None,
                text_target: str | None = None) -> Iterator[tuple[int, Any]]:
        """(number of the batch's first row in the file, record batch) for ``columns``, ``rows`` at a time.

        Parquet row groups come in a random order when ``rng`` is given (rows within a group stay
        in order; the order is drawn now, so the reading may go on in another thread). CSV is read
        front to back; numeric columns are read as float64.
        """
        return self._batches(list(columns), rows, self.group_order(rng), text_target)

    def group_order(self, rng: np.random.Generator | None) -> np.ndarray | None:
        """The order a pass reads the Parquet row groups in: random with ``rng``, else the file's (None)."""
        if rng is not None and self.format == "parquet":
            return rng.permutation(len(self.row_group_rows))
        return None

    @property
    def group_starts(self) -> np.ndarray:
        """The first row of each row group (a CSV file is one group)."""
        return np.concatenate([[0], np.cumsum(self.row_group_rows)[:-1]]).astype(np.int64)

    def _batches(self, columns: list[str], rows: int, order: np.ndarray | None,
                 text_target: str | None) -> Iterator[tuple[int, Any]]:
        import pyarrow as pa

        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                # pre_buffer=False with a small read buffer, one thread: the column chunks are read
                # page by page, not a whole row group at once (measured on 2·10⁶ × 51 float64 in
                # row groups of 50,000: +46 MB resident, against +75 MB with 1 MiB buffers and
                # +110 MB with threads)
                pf = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 16)
                starts = np.concatenate([[0], np.cumsum(self.row_group_rows)])
                for g in range(len(self.row_group_rows)) if order is None else order:
                    offset = int(starts[g])
                    for batch in pf.iter_batches(batch_size=rows, row_groups=[int(g)], columns=list(columns),
                                                 use_threads=False):
                        yield offset, batch
                        offset += batch.num_rows
                return
            import pyarrow.csv as pacsv

            types = {c: pa.float64() for c in columns if c != text_target
                     and not pa.types.is_boolean(self.schema.field(c).type)}
            reader = pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=max(1 << 16, rows * 64)),
                                    convert_options=pacsv.ConvertOptions(include_columns=list(columns),
                                                                         column_types=types))
            offset = 0
            for batch in reader:
                yield offset, batch
                offset += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise DataError(f"cannot read {self.path!r}: {self._explain(exc)}") from None

    def _explain(self, exc: Exception) -> str:
        import re

        text = _first_line(exc)
        found = re.search(r"CSV column #(\d+).*invalid value '([^']*)'", text)
        if found:
            name = self.columns[int(found.group(1))]
            return (f"the column {name!r} holds the non-numeric value {found.group(2)!r}; choose numeric columns "
                    f"with --features, or clean the file.")
        return text + "."


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


def _column_numpy(batch, name: str) -> np.ndarray:
    """One column as float64 (NaN where missing); text stays text (a softmax target)."""
    import pyarrow as pa

    col = batch.column(name)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        if col.null_count:
            raise DataError(f"the target {name!r} has a missing value; fill or drop such rows first.")
        return np.asarray(col.to_pylist(), dtype=object)
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _block_arrays(batch, features: Sequence[str], target: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a record batch; missing or infinite feature values are refused with their row."""
    import pyarrow as pa

    if all(batch.schema.field(name).type == pa.float64() for name in features):
        # Arrow's own row-major copy (missing values as NaN) is ~2x faster than filling X column by column
        X = batch.select(list(features)).to_tensor(null_to_nan=True, row_major=True).to_numpy()
    else:
        X = np.empty((batch.num_rows, len(features)), dtype=np.float64)
        for j, name in enumerate(features):
            X[:, j] = _column_numpy(batch, name)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"the feature {features[j]!r} has a missing or infinite value in row {offset + i + 1}; "
                        f"fill or drop such rows first.")
    return X, _column_numpy(batch, target)


# ------------------------------------------------------------------------------- column moments

class Moments(NamedTuple):
    """Count, mean and sum of squared deviations of each column: enough to merge variances."""

    count: int
    mean: np.ndarray
    m2: np.ndarray


def moments(X: np.ndarray) -> Moments:
    r"""The :class:`Moments` of the rows of X (two passes: the mean, then the squared deviations).

    .. math::  n,\quad \bar x = \tfrac1n \sum_i x_i,\quad M_2 = \sum_i (x_i - \bar x)^2 \quad\text{(per column)}

    Args:
      X: rows, shape (n, d).

    Returns:
      :class:`Moments`.

    Example:
      >>> m = moments(np.array([[1.0], [3.0]]))
      >>> m.count, m.mean.tolist(), m.m2.tolist()
      (2, [2.0], [2.0])
    """
    mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
    return Moments(len(X), mean, ((X - mean) ** 2).sum(axis=0))


def merge_moments(a: Moments, b: Moments) -> Moments:
    r"""The moments of two sets of rows together (Chan, Golub & LeVeque's pairwise update).

    .. math::  n = n_a + n_b,\quad \delta = \bar x_b - \bar x_a,\quad \bar x = \bar x_a + \delta\,\frac{n_b}{n},
               \quad M_2 = M_{2,a} + M_{2,b} + \delta^2\,\frac{n_a n_b}{n}

    Args:
      a, b: the moments of two sets of rows.

    Returns:
      The moments of their union.

    Example:
      >>> x = np.array([[1.0], [2.0], [4.0], [7.0]])
      >>> m = merge_moments(moments(x[:1]), moments(x[1:]))
      >>> m.count, m.mean.tolist(), (m.m2 / m.count).tolist() == [float(x.var())]
      (4, [3.5], True)
    """
    n = a.count + b.count
    if n == 0:
        return a
    delta = b.mean - a.mean
    return Moments(n, a.mean + delta * (b.count / n), a.m2 + b.m2 + delta ** 2 * (a.count * b.count / n))


def standard_scale(m: Moments) -> tuple[np.ndarray, np.ndarray]:
    r"""(mean, population std) of the columns, scale 1 for a column that is constant to rounding:
    scikit-learn's ``StandardScaler`` rule (var ≤ n ε var + (n ε mean)²), which :func:`gdlab.train` uses.

    .. math::  \sigma^2 = M_2 / n

    Args:
      m: the columns' :class:`Moments`.

    Returns:
      (mean, scale), each of shape (d,).

    Example:
      >>> mean, scale = standard_scale(moments(np.array([[1.0, 5.0], [3.0, 5.0]])))
      >>> mean.tolist(), scale.tolist()          # the constant column keeps scale 1
      ([2.0, 5.0], [1.0, 1.0])
    """
    var = m.m2 / m.count
    eps = np.finfo(np.float64).eps
    constant = var <= m.count * eps * var + (m.count * m.mean * eps) ** 2
    return m.mean, np.where(constant, 1.0, np.sqrt(var))


def _row_blocks(batches: Iterator[tuple[int, Any]], features: Sequence[str],
                target: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for offset, batch in batches:
        X, y = _block_arrays(batch, features, target, offset)
        yield offset, X, y


# Threads decoding Parquet row groups when a file is loaded whole: a pass of the out-of-core benchmark's
# file took 1.1-1.3 s with one, 0.65-0.8 s with two (2 cores). Streaming passes use one: with two, the
# peak memory of that benchmark's run grew by 195 MiB over its warm-up instead of 105 (cap 128 MiB).
DECODERS = 2


def decoded_blocks(file: TableFile, features: Sequence[str], target: str, rows: int,
                   order: np.ndarray | None = None, *, text_target: str | None = None,
                   workers: int = 1) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, X, y) of each record batch of ``file``, decoded ahead of the consumer by threads.

    Parquet row groups are shared out between ``workers`` threads (the i-th group of ``order``
    to thread i mod workers, each reading its groups in turn), and the batches come out in the
    order of ``order`` (default: the file's), so the consumer sees the sequence one reader would
    give. A CSV file, or a single row group, is read by one thread.

    Args:
      file: the file; features, target: the columns; rows: rows per record batch.
      order: the row groups in the order to yield them (a permutation), or None.
      text_target: the target, when it may hold text (a softmax target in a CSV file).
      workers: decoding threads for Parquet (each holds its own record batches: more memory).

    Returns:
      An iterator of (first row, X as float64, y).

    Example:
      >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq
      >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
      >>> pq.write_table(pa.table({"a": np.arange(10.0), "label": np.arange(10) % 2}), path, row_group_size=4)
      >>> blocks = decoded_blocks(TableFile.open(path), ["a"], "label", 3, order=np.array([2, 0, 1]), workers=2)
      >>> [(offset, X[:, 0].tolist()) for offset, X, y in blocks]
      [(8, [8.0, 9.0]), (0, [0.0, 1.0, 2.0]), (3, [3.0]), (4, [4.0, 5.0, 6.0]), (7, [7.0])]
    """
    columns = [*features, target]

    def read(groups: np.ndarray | None, depth: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        batches = file._batches(columns, rows, groups, text_target)
        return read_ahead(_row_blocks(batches, features, target), depth=depth)

    groups = np.arange(len(file.row_group_rows)) if order is None else np.asarray(order)
    if file.format != "parquet" or len(groups) < 2 or workers < 2:
        return read(order, 2)
    return _in_group_order(file, groups, [read(groups[w::workers], 1) for w in range(min(workers, len(groups)))])


def _in_group_order(file: TableFile, groups: np.ndarray,
                    feeds: list[Iterator]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    try:
        for i, g in enumerate(groups):
            feed, left = feeds[i % len(feeds)], file.row_group_rows[int(g)]
            while left > 0:           # a group's batches come from one feed, in order
                offset, X, y = next(feed)
                left -= len(y)
                yield offset, X, y
    finally:
        for feed in feeds:
            feed.close()


# ------------------------------------------------------------------------------- streaming

class Budget(NamedTuple):
    """Rows per record batch read, rows in the shuffle buffer, mini-batches per compiled chunk."""

    block_rows: int
    buffer_rows: int
    chunk_steps: int


def budget(memory_limit: int, n_columns: int, batch_size: int, buffer_rows: int | None = None) -> Budget:
    """How to spend ``memory_limit`` bytes when streaming rows of ``n_columns`` float64 values.

    A record batch is held about four times (Arrow's buffers, its float64 copy, the standardised
    copy, the rows on their way out), the shuffle buffer once, a chunk of mini-batches twice
    (NumPy's and JAX's copy): 1/16 of the limit for the batch, 1/4 for the buffer, 1/16 for a chunk.

    Args:
      memory_limit: bytes.
      n_columns: float64 values per row (features and label).
      batch_size: rows per mini-batch.
      buffer_rows: the shuffle buffer's rows, or None for a quarter of the limit.

    Returns:
      A :class:`Budget`: rows per record batch, rows in the shuffle buffer, steps per chunk.

    Example:
      >>> # 128 MiB, rows of 51 × 8 bytes: L/(64·408) = 5140, L/(4·408) = 82241, L/(32·408)/1024 = 10
      >>> budget(128 * 2**20, n_columns=51, batch_size=1024)
      Budget(block_rows=5140, buffer_rows=82241, chunk_steps=10)
    """
    row = n_columns * _FLOAT_BYTES
    block = int(np.clip(memory_limit // (16 * 4 * row), 1024, 1 << 16))
    if buffer_rows is None:
        buffer_rows = int(np.clip(memory_limit // (4 * row), batch_size, 1 << 22))
    steps = int(max(1, memory_limit // (16 * 2 * row) // max(batch_size, 1)))
    return Budget(block, int(buffer_rows), steps)


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """``items``, produced by a thread that runs up to ``depth`` items ahead of the consumer.

    Reading and decoding a file (Arrow and NumPy release the GIL) then overlaps with what the
    consumer does with the rows it has (the steps of SGD, an evaluation). An exception in the
    thread is raised in the consumer; a consumer that stops early stops the thread.

    Args:
      items: an iterator (a generator reading record batches).
      depth: how many items may wait, produced but not consumed.

    Returns:
      An iterator of the same items in the same order.

    Example:
      >>> list(read_ahead(iter(range(5)), depth=1))
      [0, 1, 2, 3, 4]
    """
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    break
            else:
                put((False, None))
        except BaseException as exc:        # noqa: BLE001 - handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator:
        worker = threading.Thread(target=produce, name="gdlab-read-ahead", daemon=True)
        worker.start()
        try:
            while True:
                more, item = box.get()
                if more:
                    yield item
                elif item is None:
                    return
                else:
                    raise item
        finally:
            stop.set()
            worker.join()

    return consume()


def shuffled_batches(blocks: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int, buffer_rows: int,
                     rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of exactly ``batch_size`` rows mixed by a shuffle buffer of ``buffer_rows`` rows.

    The buffer fills with the first rows; then each incoming row replaces a randomly chosen row
    of the buffer, which goes out. At the end the buffer is emptied in random order and the
    rows that do not fill a whole mini-batch are dropped.

    Args:
      blocks: (X, y) blocks of rows in file order.
      batch_size: rows per mini-batch.
      buffer_rows: the shuffle buffer's size in rows.
      rng: the generator that shuffles.

    Returns:
      An iterator of (X, y) mini-batches.

    Example:
      >>> blocks = iter([(np.arange(10.0)[:, None], np.arange(10.0))])
      >>> out = list(shuffled_batches(blocks, 3, buffer_rows=100, rng=np.random.default_rng(0)))
      >>> [b[0].shape for b in out], len(set(np.concatenate([b[1] for b in out])))
      ([(3, 1), (3, 1), (3, 1)], 9)
    """
    pool_X = pool_y = None
    filled = 0
    carry_X = carry_y = None          # fewer than batch_size rows waiting for the next ones

    def batches_of(out_X: np.ndarray, out_y: np.ndarray):
        nonlocal carry_X, carry_y
        start = 0
        if carry_X is not None:       # complete the waiting rows first (a copy of < batch_size rows)
            start = batch_size - len(carry_y)
            if len(out_y) < start:
                carry_X, carry_y = np.concatenate([carry_X, out_X]), np.concatenate([carry_y, out_y])
                return
            yield np.concatenate([carry_X, out_X[:start]]), np.concatenate([carry_y, out_y[:start]])
            carry_X = carry_y = None
        whole = start + ((len(out_y) - start) // batch_size) * batch_size
        for i in range(start, whole, batch_size):
            yield out_X[i:i + batch_size], out_y[i:i + batch_size]
        if whole < len(out_y):
            carry_X, carry_y = out_X[whole:].copy(), out_y[whole:].copy()

    for X, y in blocks:
        if pool_X is None:
            pool_X = np.empty((buffer_rows, X.shape[1]), dtype=X.dtype)
            pool_y = np.empty(buffer_rows, dtype=y.dtype)
        take = min(buffer_rows - filled, len(y))                  # the buffer is still filling
        pool_X[filled:filled + take], pool_y[filled:filled + take] = X[:take], y[:take]
        filled += take
        for start in range(take, len(y), buffer_rows):            # each new row evicts a random one
            stop = min(start + buffer_rows, len(y))
            slots = rng.choice(buffer_rows, size=stop - start, replace=False)
            out_X, out_y = np.take(pool_X, slots, axis=0), pool_y[slots]       # copies
            _put_rows(pool_X, slots, X[start:stop])
            pool_y[slots] = y[start:stop]
            yield from batches_of(out_X, out_y)
    if pool_X is not None:            # empty the buffer in random order, a few batches' rows at a time
        rest = rng.permutation(filled)
        step = 16 * batch_size
        for i in range(0, filled, step):
            yield from batches_of(np.take(pool_X, rest[i:i + step], axis=0), pool_y[rest[i:i + step]])


def _put_rows(pool: np.ndarray, slots: np.ndarray, rows: np.ndarray) -> None:
    """``pool[slots] = rows`` for C-contiguous 2-D arrays, each row moved as one item: 0.14 s
    against 0.19-0.23 s for 256 blocks of 5,140 rows of 50 float64 into 82,241 (as is ``np.take``
    for the other way, 0.16 against 0.29 s)."""
    row = np.dtype((np.void, pool.shape[1] * pool.itemsize))
    np.put(pool.view(row).ravel(), slots, np.ascontiguousarray(rows).view(row).ravel())


@dataclass
class Stream:
    """A file too large to load, split and standardised by one streaming pass; read again per epoch.

    Attributes are those of :class:`Dataset` that do not hold rows (``n_train`` and ``n_test``
    are counts), plus the file and the memory :class:`Budget`.
    """

    name: str
    file: TableFile
    features: tuple
    target: str
    kind: str
    classes: tuple | None
    seed: int
    test_size: float
    n_train: int
    n_test: int
    mean: np.ndarray
    scale: np.ndarray
    target_mean: Any
    budget: Budget
    spill: Spill | None = None

    def blocks(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(X standardised, y, is_test) per record batch, every row of the file.

        The rows come from the scan's spill when there is one (the same arrays, without decoding
        the file again; see :mod:`gdlab.spill`), else from the file, decoded ahead by a thread.
        """
        order = self.file.group_order(rng)
        if self.spill is not None and self.spill.ok:
            return self._blocks(self.spill.blocks(order))
        return self._blocks(decoded_blocks(self.file, self.features, self.target, self.budget.block_rows, order,
                                           text_target=self.target if self.kind == "softmax" else None))

    def close(self) -> None:
        """Free the spill's disk space now (later passes decode the file)."""
        if self.spill is not None:
            self.spill.close()

    def _blocks(self, rows: Iterator[tuple[int, np.ndarray, np.ndarray]]
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for offset, X, y in rows:
            if self.kind == "softmax":      # class indices; 0/1 labels and numbers were checked by the scan
                y, _ = _labels(self.kind, y, self.target, self.classes)
            X -= self.mean
            X /= self.scale
            yield X, y, in_test_split(np.arange(offset, offset + len(y)), self.seed, self.test_size)

    def train_blocks(self, rng: np.random.Generator,
                     each: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(X, y) of the training rows per record batch, row groups in a random order.

        ``each(X, y, is_test)`` is called with every record batch, test rows included, before
        they are dropped: a second use of the pass (:func:`gdlab.training.evaluate`'s sums at a
        fixed θ) costs no second read of the file.
        """
        for X, y, test in self.blocks(rng):
            if each is not None:
                each(X, y, test)
            if not test.any():
                yield X, y
            elif not test.all():
                yield X[~test], y[~test]


def _cannot_spill(file: TableFile, reason: str, fix: str = "free some disk space there, or ") -> DataError:
    return DataError(f"cannot spill the decoded rows of {file.path!r} to disk beside it ({reason}); {fix}pass "
                     f"spill=False (--no-spill) to decode the file on every pass.")


def _open_spill(file: TableFile, features: list[str], spill: bool | None) -> Spill | None:
    if spill is False:
        return None
    try:
        return open_spill(file.path, file.float_bytes(len(features) + 1), len(features), file.group_starts,
                          required=bool(spill))
    except OSError as exc:
        raise _cannot_spill(file, _first_line(exc)) from None


def _scan(file: TableFile, name: str, features: list[str], target: str, kind: str, test_size: float, seed: int,
          standardize: bool, plan: Budget, spill: bool | None = None) -> Stream:
    """The one streaming pass: split counts, standardisation of the training rows, the labels; it
    writes the decoded rows to a :class:`gdlab.spill.Spill` unless ``spill`` is False."""
    kept = _open_spill(file, features, spill)
    try:
        stream = _scan_rows(file, name, features, target, kind, test_size, seed, standardize, plan, kept)
    except BaseException:
        if kept is not None:
            kept.close()
        raise
    if kept is not None and not kept.finish():
        if spill:
            if kept.error is None:
                raise _cannot_spill(file, f"the target {target!r} holds text, and the spill keeps numbers", "")
            raise _cannot_spill(file, _first_line(kept.error))
        kept = None
    stream.spill = kept
    return stream


def _scan_rows(file: TableFile, name: str, features: list[str], target: str, kind: str, test_size: float, seed: int,
               standardize: bool, plan: Budget, spill: Spill | None) -> Stream:
    stats = Moments(0, np.zeros(len(features)), np.zeros(len(features)))
    n_train = n_test = 0
    y_sum = 0.0
    label_counts: dict = {}
    seen_binary: set = set()
    text = target if kind == "softmax" else None
    for offset, X, y in decoded_blocks(file, features, target, plan.block_rows, text_target=text):
        if spill is not None:         # here, not in the decoding thread: decoding is this pass's bottleneck
            spill.add(offset, X, y)
        test = in_test_split(np.arange(offset, offset + len(y)), seed, test_size)
        train = ~test
        n_test += int(test.sum())
        n_train += int(train.sum())
        if kind == "linear":
            y, _ = _labels(kind, y, target)
            y_sum += float(y[train].sum())
        elif kind == "logistic":
            values = _unique_labels(y, target)
            seen_binary.update(values)
            _check_binary(sorted(seen_binary), target)
            y_sum += float(np.sum(y[train]))
        else:
            _unique_labels(y, target)   # whole numbers or names
            for split, rows in ((0, train), (1, test)):
                values, n = np.unique(y[rows], return_counts=True)
                for v, c in zip(values.tolist(), n.tolist()):
                    label_counts.setdefault(int(v) if isinstance(v, float) else v, [0, 0])[split] += c
            if len(label_counts) > MAX_CLASSES:
                raise DataError(f"the target {target!r} has more than {MAX_CLASSES:,} distinct values, more "
                                f"classes than softmax regression takes; is it a regression target (--model linear)?")
        if standardize and train.any():       # Chan's merge: ~3x faster than StandardScaler.partial_fit here
            stats = merge_moments(stats, moments(X if train.all() else X[train]))
    if n_train + n_test == 0:
        raise DataError(f"the file {file.path!r} has no data rows; give a file with at least one row.")
    classes, counts, target_mean = None, None, y_sum / max(n_train, 1)
    if kind == "logistic":
        classes, counts = (0, 1), np.array([n_train - y_sum, y_sum])
    elif kind == "softmax":
        classes = tuple(sorted(label_counts))
        counts = np.array([label_counts[c][0] for c in classes], dtype=float)
        target_mean = counts / max(n_train, 1)
    _check_split(kind, n_train, counts, classes, test_size, seed)
    d = len(features)
    mean, scale = standard_scale(stats) if standardize and stats.count else (np.zeros(d), np.ones(d))
    return Stream(name, file, tuple(features), target, kind, classes, seed, test_size, n_train, n_test,
                  np.asarray(mean, float), np.asarray(scale, float), target_mean, plan)


# ------------------------------------------------------------------------------- the door

def _check_options(test_size: float, seed: int) -> None:
    if not isinstance(test_size, (int, float)) or isinstance(test_size, bool) or not 0.0 <= test_size < 1.0:
        raise DataError(f"test_size must be a fraction in [0, 1) (0 trains on every row; 0.2 holds out a fifth), "
                        f"got {test_size!r}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2 ** 64:
        raise DataError(f"seed must be a whole number ≥ 0, got {seed!r}.")


def load(data: Any, kind: str, *, target: str | None = None, features: Sequence[str] | None = None,
         test_size: float = 0.2, seed: int = 0, standardize: bool = True, stream: bool | None = None,
         memory_limit: int = DEFAULT_MEMORY_LIMIT, batch_size: int = 0,
         buffer_rows: int | None = None, spill: bool | None = None) -> Dataset | Stream:
    """Load, split and standardise ``data`` for a model of ``kind``; stream it when it is too large.

    Args:
      data: a dataset name (``breast_cancer``, ``diabetes``, ``digits``, ``iris``, ``wine``), the
        path of a ``.csv`` or ``.parquet`` file, or a tuple ``(X, y)`` of arrays.
      kind: ``linear``, ``logistic`` or ``softmax``: how the target is read (numbers, 0/1 labels,
        class labels).
      target: the label column of a file (required for files).
      features: the feature columns (default: every column but the target).
      test_size: the expected fraction of rows held out for testing, in [0, 1).
      seed: the seed of the split's hash.
      standardize: standardise the features with the training rows' mean and population std.
      stream: True to stream a file, False to load it, None (default) to stream it when its
        numeric columns would take more than ``memory_limit / 4`` bytes as float64.
      memory_limit: bytes the data may use; sets the streaming buffers (see :func:`budget`).
      batch_size, buffer_rows: the mini-batch size and shuffle buffer used when streaming.
      spill: when streaming, write the decoded rows to a temporary file beside ``data`` so that
        later passes read them without decoding the file (see :mod:`gdlab.spill`): True to
        require it, False never, None (default) when that disk has room for twice the rows.

    Returns:
      A :class:`Dataset` in memory, or a :class:`Stream`.

    Example:
      >>> ds = load("iris", "softmax", test_size=0.0)
      >>> ds.X_train.shape, ds.classes, round(float(ds.X_train[:, 0].std()), 12)
      ((150, 4), (0, 1, 2), 1.0)
    """
    _check_options(test_size, seed)
    if spill not in (None, True, False):
        raise DataError(f"spill must be True, False or None (spill when the disk has room), got {spill!r}.")
    if kind not in ("linear", "logistic", "softmax"):
        raise DataError(f"model must be one of linear, logistic, softmax, got {kind!r}.")
    if isinstance(data, tuple) and len(data) == 2:
        X, y = np.asarray(data[0]), np.asarray(data[1])
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(y) == 0:
            raise DataError(f"data=(X, y) needs X of shape (n, d) and y of shape (n,) with n ≥ 1, got "
                            f"{X.shape} and {y.shape}.")
        if X.dtype.kind not in "biuf":
            raise DataError("X is not numeric; give numbers (encode text columns first).")
        X = np.asarray(X, dtype=float)            # no copy of float64 data (10⁶ × 100: 0.15 s and 800 MB a copy)
        if not _all_finite(X):
            raise DataError("X has a missing or infinite value; fill or drop such rows first.")
        names = [f"x{j}" for j in range(X.shape[1])]
        cols = _select(names, features, None)
        y, classes = _labels(kind, y, "y")
        chosen = X if list(cols) == list(range(X.shape[1])) else X[:, cols]
        return _split_and_scale("arrays", chosen, y, [names[c] for c in cols], "y", kind, classes,
                                test_size, seed, standardize)
    if not isinstance(data, (str, os.PathLike)):
        raise DataError(f"data must be a dataset name ({', '.join(DATASETS)}), a .csv or .parquet path, or a tuple "
                        f"(X, y), got {type(data).__name__}.")
    text = os.fspath(data)
    if text in DATASETS:
        if target is not None:
            raise DataError(f"--target is for files; the dataset {text!r} comes with its labels, so drop --target.")
        X, y, names, tname = _bundled(text)
        cols = _select(names, features, None)
        y, classes = _labels(kind, y, tname)
        return _split_and_scale(text, X[:, cols], y, [names[c] for c in cols], tname, kind, classes,
                                test_size, seed, standardize)
    looks_like_path = os.sep in text or "/" in text or os.path.splitext(text)[1] != "" or os.path.exists(text)
    if not looks_like_path:
        raise DataError(f"unknown dataset {text!r}; the known ones are {', '.join(DATASETS)}, or give the path of a "
                        f".csv or .parquet file.")
    file = TableFile.open(text)
    chosen = file.check_columns(features, target, kind)
    plan = budget(memory_limit, len(chosen) + 1, max(batch_size, 1), buffer_rows)
    too_big = file.float_bytes(len(chosen) + 1) > memory_limit / 4
    if stream or (stream is None and too_big):
        return _scan(file, text, chosen, target, kind, test_size, seed, standardize, plan, spill)
    tname = target
    Xs, ys = [], []
    for _, X, y in decoded_blocks(file, chosen, tname, plan.block_rows,
                                  text_target=tname if kind == "softmax" else None, workers=DECODERS):
        Xs.append(X)
        ys.append(y)
    if not ys or sum(len(y) for y in ys) == 0:
        raise DataError(f"the file {text!r} has no data rows; give a file with at least one row.")
    X, y = np.concatenate(Xs), np.concatenate(ys)
    y, classes = _labels(kind, y, tname)
    return _split_and_scale(text, X, y, chosen, tname, kind, classes, test_size, seed, standardize)
