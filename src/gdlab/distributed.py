r"""Sweeps and full-batch training on a Dask cluster (``dask.distributed``): beyond one machine.

gdlab does not run its own cluster: Dask schedules the work, on a laptop's ``LocalCluster`` or
on a real cluster, with the same code. Dask is an optional extra (``pip install 'gdlab[dask]'``);
it is imported inside this module's functions only, so ``import gdlab`` and every local run
never import it.

**Sweeps** (:func:`distributed_sweep`). The grid's cells, in grid order, are cut into
contiguous blocks; each block is one task, the single-machine sweep
(:func:`gdlab.sweep.sweep_fit`, ``sweep_landscape``, ``sweep_train``) run on that block's cells
(its ``block=(lo, hi)`` argument): one vmapped compiled program per block on a worker. The
blocks' tables are joined in grid order into the table a local sweep makes (the same columns,
one row per cell). A block is pure (seeded), so when a worker is lost Dask computes its blocks
again, elsewhere, and gets the same numbers. Each cell computes what it computes in a local
sweep: bit for bit with ``vectorize=False``; under ``vmap`` a block's width (its cells at once)
may differ from the local sweep's, which changes rounding (about 1e-15 in the loss), so a stop
decided at the rounding level (the default tol = 1e-15) may come at another step, as between
``vmap`` and ``vectorize=False`` locally (see :func:`gdlab.sweep.run_batch`).

**Full-batch training** (:func:`train_dask`). The training rows stay in partitions (Parquet or
CSV files, one task each) read by pyarrow on the workers, split and standardised there exactly
as :func:`gdlab.train` splits and standardises the concatenated rows: row r of the
concatenation (files in sorted order) goes to the test split by the same hash of r, and the
features are scaled by the training rows' mean and population standard deviation, combined from
per-partition counts, means and sums of squares (Chan, Golub & LeVeque). Each step sends θ to
the workers, which return per-partition sums; the client reduces them,

.. math::  J(\theta) = f\Big(\frac1n\sum_p \sum_{i\in p}\ell_i\Big) + \frac{\lambda}{2}\lVert W\rVert^2,
           \qquad F(\theta) = \frac1n \sum_p n_p F_p(\theta),

(with F_p the Fisher of partition p's rows, f the identity or √· for rmse) and takes the step
with the engine's own update and stopping rules (:func:`gdlab.engine.advance`). The parameters
live on the client. The run is :func:`gdlab.train`'s in batch mode; the numbers agree with it to
rounding (the sums are added in another order). Mini-batches are not offered on Dask.

References:
  Chan, Golub & LeVeque, "Algorithms for computing the sample variance: analysis and
  recommendations", The American Statistician, 1983.
  Dask Development Team, "Dask: library for dynamic task scheduling", 2016.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import inspect
import os
import time
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

# the column statistics merged across partitions live with the data reader, which merges them across blocks
from gdlab.data import Moments, merge_moments, moments, standard_scale  # noqa: F401

ENGINES = ("local", "dask")
CONNECT_TIMEOUT_S = 3                 # an unreachable scheduler fails this fast, not after Dask's 30 s
BLOCKS_PER_WORKER = 4                 # blocks per worker thread at most: a lost worker costs a quarter of its share
SWEEPS = {"fit": "sweep_fit", "landscape": "sweep_landscape", "train": "sweep_train"}
RETRIES = 2                           # a task that raised (not bad input) runs again this many times


# =============================================================================== the engine options

def check_engine(engine: str, scheduler: str | None = None, workers: int | None = None) -> None:
    """Refuse a bad combination of ``engine``, ``scheduler`` and ``workers`` in one sentence.

    Args:
      engine: ``"local"`` or ``"dask"``.
      scheduler: a running scheduler's address (``tcp://host:8786``), or None.
      workers: worker processes of a new loopback ``LocalCluster``, or None.

    Returns:
      None; raises ValueError with the sentence for a bad combination (or Dask not installed).

    Example:
      >>> check_engine("local")
      >>> check_engine("local", workers=2)
      Traceback (most recent call last):
      ...
      ValueError: --workers applies to --engine dask; add --engine dask or drop --workers.
    """
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if engine == "local":
        for name, value in (("--scheduler", scheduler), ("--workers", workers)):
            if value is not None:
                raise ValueError(f"{name} applies to --engine dask; add --engine dask or drop {name}.")
        return
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 1):
        raise ValueError(f"--workers must be a whole number ≥ 1 (the local cluster's worker processes), "
                         f"got {workers!r}.")
    if scheduler is not None and workers is not None:
        raise ValueError("--workers starts a local cluster and --scheduler joins a running one; give one of them.")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"--scheduler takes a scheduler's address such as tcp://host:8786, got {scheduler!r}.")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError("--engine dask needs Dask, an optional extra: pip install 'gdlab[dask]'.") from None


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's loggers at ERROR while a cluster runs: a lost worker is handled, not news for stderr."""
    import logging

    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "dask")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a new loopback ``LocalCluster``.

    The local cluster has ``workers`` processes (default: one per CPU core) of one thread each,
    bound to 127.0.0.1, without a dashboard; both close when the block ends. An unreachable
    scheduler fails within :data:`CONNECT_TIMEOUT_S` seconds with one sentence.

    Args:
      scheduler: a running scheduler's address, or None for a local cluster.
      workers: the local cluster's worker processes (None: one per CPU core).

    Returns:
      A context manager that yields the client.

    Example:
      >>> with dask_client(workers=1) as client:            # doctest: +SKIP
      ...     client.submit(sum, [1, 2]).result()
      3
    """
    check_engine("dask", scheduler, workers)
    import logging

    from distributed import Client, LocalCluster

    with _quiet_dask():
        if scheduler is not None:
            try:
                client = Client(scheduler.strip(), timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                why = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
                raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S} s "
                                 f"({why}); start one (dask scheduler) or check the address, or drop --scheduler "
                                 f"to start a local cluster with --workers N.") from None
            try:
                yield client
            finally:
                client.close()
            return
        # no dashboard; the scheduler's small HTTP server (health checks) on a free loopback port
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        try:
            client = Client(cluster, set_as_default=False)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


@contextlib.contextmanager
def _using(client: Any, scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """The caller's ``client``, or one made (and closed) here from ``scheduler``/``workers``."""
    if client is not None:
        if scheduler is not None or workers is not None:
            raise ValueError("give a client, or a scheduler or workers to make one, not both.")
        with _quiet_dask():
            yield client
        return
    with dask_client(scheduler, workers) as made:
        yield made


class _Refused(NamedTuple):
    """Bad input found on a worker: an answer to report, not a failure for Dask to retry."""

    message: str


def _answer(function: Callable, *args, **kwargs) -> Any:
    """``function(*args, **kwargs)`` on a worker; a ValueError (bad input) comes back as a :class:`_Refused`."""
    try:
        return function(*args, **kwargs)
    except ValueError as exc:
        return _Refused(str(exc))


def _checked(value: Any) -> Any:
    """Raise a worker's refusal here, on the client, as the one sentence it is."""
    if isinstance(value, _Refused):
        raise ValueError(value.message)
    return value


def _lost_worker(exc: BaseException) -> ValueError:
    return ValueError(f"the Dask cluster lost the workers running a task too often to go on "
                      f"({type(exc).__name__}); check the workers' memory and logs, then run it again.")


# =============================================================================== sweeps

def block_bounds(n: int, blocks: int) -> list[tuple[int, int]]:
    r"""Cut cells 0 … n − 1 into ``blocks`` contiguous (lo, hi) ranges of near-equal size, in order.

    .. math::  \text{edge}_k = \lfloor n k / B \rfloor, \quad k = 0 \ldots B, \quad B = \min(\text{blocks}, n)

    Args:
      n: the number of cells.
      blocks: how many blocks (at most n are made).

    Returns:
      The (lo, hi) ranges, lo inclusive, hi exclusive.

    Example:
      >>> block_bounds(10, 3)
      [(0, 3), (3, 6), (6, 10)]
      >>> block_bounds(2, 5)
      [(0, 1), (1, 2)]
    """
    if n < 1:
        raise ValueError(f"a sweep needs at least one cell, got {n}.")
    blocks = max(1, min(int(blocks), n))
    edges = [(n * k) // blocks for k in range(blocks + 1)]
    return list(zip(edges[:-1], edges[1:]))


def default_blocks(n: int, threads: int) -> int:
    """How many blocks n cells are cut into for ``threads`` worker threads.

    A whole number of rounds (no thread idles in the last one), at most
    :data:`BLOCKS_PER_WORKER` per thread, and blocks of at least ``gdlab.sweep.VMAP_LANES``
    cells where the grid has that many: the local sweep of a costly objective computes that many
    cells at once, so such a block runs the local program's shape (and its rounding).

    Args:
      n: the number of cells.
      threads: worker threads in the cluster.

    Returns:
      The number of blocks.

    Example:
      >>> default_blocks(160, 2), default_blocks(10_000, 2), default_blocks(10, 2), default_blocks(1, 2)
      (4, 8, 2, 1)
    """
    from gdlab.sweep import VMAP_LANES

    rounds = max(1, min(BLOCKS_PER_WORKER, n // (VMAP_LANES * threads)))
    return max(1, min(n, threads * rounds))


def _run_block(kind: str, call: tuple, block: tuple[int, int]) -> Any:
    """One block of a sweep, on a worker: the single-machine sweep on the grid's cells lo … hi − 1.

    ``call`` is the sweep's ``(args, kwargs)``. The sweep switches JAX to 64-bit inside itself
    (``precision="float64"``), as it does locally, so a worker needs no set-up. Pure: a retry
    gives the same numbers. Bad input comes back as a refusal (:class:`_Refused`), not an error.
    """
    from gdlab import sweep

    args, kwargs = call
    return _answer(getattr(sweep, SWEEPS[kind]), *args, **kwargs, block=tuple(block))


def join_blocks(parts: Sequence[Any], elapsed: float, settings: dict) -> Any:
    """The blocks' tables, in block order, as one :class:`gdlab.sweep.SweepResult` (columns joined).

    Args:
      parts: the blocks' :class:`gdlab.sweep.SweepResult` s, in grid order.
      elapsed: seconds for the whole sweep.
      settings: settings to add to the first block's (``engine``, ``blocks``, ``workers``).

    Returns:
      One :class:`gdlab.sweep.SweepResult` with every cell.

    Example:
      >>> from gdlab.sweep import GridAxis, SweepResult
      >>> axes = (GridAxis("lr", (0.1, 0.2)),)
      >>> a = SweepResult("fit", axes, {"lr": [0.1], "stop_reason": ["converged"]}, 0.0, {"x": 1})
      >>> b = SweepResult("fit", axes, {"lr": [0.2], "stop_reason": ["diverged"]}, 0.0, {"x": 1})
      >>> joined = join_blocks([a, b], 0.5, {"engine": "dask"})
      >>> joined.columns, joined.settings
      ({'lr': [0.1, 0.2], 'stop_reason': ['converged', 'diverged']}, {'x': 1, 'engine': 'dask'})
    """
    from gdlab.sweep import SweepResult

    first = parts[0]
    columns = {name: [v for part in parts for v in part.columns[name]] for name in first.columns}
    return SweepResult(first.kind, first.axes, columns, elapsed, {**first.settings, **settings})


def _cell_count(kind: str, args: tuple, kwargs: dict) -> int:
    """The number of cells of the sweep's grid (read from its ``grid`` argument, as the sweep reads it)."""
    from gdlab import sweep

    bound = inspect.signature(getattr(sweep, SWEEPS[kind])).bind_partial(*args, **kwargs)
    grid = bound.arguments.get("grid", ())
    return len(next(iter(sweep.grid_cells(sweep._axes(grid)).values())))


def distributed_sweep(kind: str, *args, scheduler: str | None = None, workers: int | None = None,
                      client: Any = None, blocks: int | None = None, retries: int = RETRIES,
                      callback: Callable[[int, int], Any] | None = None, **kwargs) -> Any:
    r"""A sweep (``kind``: ``fit``, ``landscape`` or ``train``) on a Dask cluster, block by block.

    .. math::  \text{table} = \text{concat}_{b=1..B}\ \text{sweep}(\ldots,\ \text{block}=(lo_b, hi_b)),
               \qquad 0 = lo_1 < hi_1 = lo_2 < \cdots < hi_B = N

    Args:
      kind: which sweep: ``fit`` (:func:`gdlab.sweep.sweep_fit`), ``landscape`` or ``train``.
      *args, **kwargs: the sweep's own arguments (its ``callback`` excepted).
      scheduler: a running scheduler's address (``tcp://host:8786``); or
      workers: the worker processes of a loopback ``LocalCluster`` started for this sweep
        (default: one per CPU core); or
      client: a ``distributed.Client`` of the caller's (neither scheduler nor workers then).
      blocks: how many tasks the grid is cut into (default: :func:`default_blocks`).
      retries: how many times Dask runs a block again after it raised (a lost worker's blocks
        are recomputed by Dask in any case).
      callback: ``callback(blocks_done, blocks)`` as each block's table arrives (progress bars).

    Returns:
      The :class:`gdlab.sweep.SweepResult` a local sweep returns (the same columns, one row per
      cell in grid order); ``elapsed`` is the wall time, and ``settings`` adds ``engine``,
      ``blocks`` and ``workers``.

    Example:
      >>> res = distributed_sweep("landscape", "double-well", 1.5, "gd", ["lr=0.01,0.1"],
      ...                         workers=1, max_steps=2000)     # doctest: +SKIP
      >>> [round(x, 6) for x in res.columns["x"]]              # doctest: +SKIP
      [1.2, -1.5]
    """
    if kind not in SWEEPS:
        raise ValueError(f"kind must be one of {', '.join(SWEEPS)}, got {kind!r}.")
    if "callback" in kwargs or "block" in kwargs:
        raise ValueError("a distributed sweep reports blocks, not cells: pass callback here, and no block.")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be a whole number ≥ 0, got {retries!r}.")
    if blocks is not None and (not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1):
        raise ValueError(f"blocks must be a whole number ≥ 1, got {blocks!r}.")
    n = _cell_count(kind, args, kwargs)
    with _using(client, scheduler, workers) as client:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        threads = max(1, sum(client.nthreads().values()))
        bounds = block_bounds(n, blocks if blocks is not None else default_blocks(n, threads))
        start = time.perf_counter()
        [call] = client.scatter([(args, kwargs)], hash=False)      # the arguments travel once, not per block
        futures = [client.submit(_run_block, kind, call, b, retries=retries, pure=False) for b in bounds]
        where = {f.key: i for i, f in enumerate(futures)}
        parts: list = [None] * len(bounds)
        try:
            for done, future in enumerate(as_completed(futures, loop=client.loop), 1):
                parts[where[future.key]] = _checked(future.result())
                if callback is not None:
                    callback(done, len(bounds))
        except KilledWorker as exc:
            raise _lost_worker(exc) from None
        finally:
            client.cancel(futures + [call])
        elapsed = time.perf_counter() - start
        settings = {"engine": "dask", "blocks": len(bounds), "workers": len(client.nthreads())}
    return join_blocks(parts, elapsed, settings)


# =============================================================================== training on partitions

def partition_paths(data: Any) -> list[str]:
    """The partition files of ``data``: a glob (``dir/*.parquet``), a folder (its .parquet and .csv
    files), one file, or a list of files; sorted, so row r of their concatenation is well defined.

    Args:
      data: a glob, a folder, a file, or a list of files.

    Returns:
      The sorted paths; ValueError (one sentence) when none matches or one is not .parquet/.csv.

    Example:
      >>> partition_paths("/no/such/dir/*.parquet")
      Traceback (most recent call last):
      ...
      ValueError: no Parquet or CSV file matches '/no/such/dir/*.parquet'; give a folder of partitions, a glob such as 'dir/*.parquet', or a list of files.
    """
    from gdlab.data import EXTENSIONS

    if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        paths = sorted(os.fspath(p) for p in data)
    elif isinstance(data, (str, os.PathLike)):
        text = os.fspath(data)
        if os.path.isdir(text):
            paths = sorted(os.path.join(text, f) for f in os.listdir(text))
            paths = [p for p in paths if os.path.splitext(p)[1].lower() in EXTENSIONS]
        else:
            paths = sorted(glob.glob(text))
    else:
        raise ValueError(f"on Dask, data is a folder of Parquet or CSV partitions, a glob or a list of files, got "
                         f"{type(data).__name__}.")
    if not paths:
        raise ValueError(f"no Parquet or CSV file matches {os.fspath(data)!r}; give a folder of partitions, a glob "
                         f"such as 'dir/*.parquet', or a list of files.")
    odd = [p for p in paths if os.path.splitext(p)[1].lower() not in EXTENSIONS or not os.path.isfile(p)]
    if odd:
        raise ValueError(f"{odd[0]!r} is not a .parquet or .csv file; every partition must be one.")
    return paths


def _read_partition(path: str, features: list[str] | None, target: str | None, kind: str) -> tuple:
    """On a worker: one partition's raw rows ``(X, y, feature names)``, read with pyarrow as
    :func:`gdlab.data.load` reads a file (the same column checks and messages)."""
    from gdlab import data as datamod

    file = datamod.TableFile.open(path)
    chosen = file.check_columns(features, target, kind)
    plan = datamod.budget(datamod.DEFAULT_MEMORY_LIMIT, len(chosen) + 1, 1)
    Xs, ys = [], []
    for offset, batch in file.batches([*chosen, target], plan.block_rows, None, target if kind == "softmax" else None):
        X, y = datamod._block_arrays(batch, chosen, target, offset)
        Xs.append(X)
        ys.append(y)
    if not ys:
        return np.zeros((0, len(chosen))), np.zeros(0), tuple(chosen)
    return np.concatenate(Xs), np.concatenate(ys), tuple(chosen)


def _shape(part: tuple | _Refused) -> tuple[int, tuple] | _Refused:
    """(rows, feature names) of a partition read by :func:`_read_partition` (or why it was not read)."""
    return part if isinstance(part, _Refused) else (len(part[1]), part[2])


def _summarise_partition(part: tuple, offset: int, seed: int, test_size: float, kind: str, target: str) -> dict:
    """On a worker: a partition's split counts, its training rows' :class:`Moments` and its labels.

    Row i of the partition is row ``offset + i`` of the concatenation; it goes to the test split
    by :func:`gdlab.data.in_test_split` of that number, as when the rows are loaded whole.
    """
    from gdlab import data as datamod

    X, y, _ = part
    test = datamod.in_test_split(np.arange(offset, offset + len(y)), seed, test_size)
    train = ~test
    out = {"n_train": int(train.sum()), "n_test": int(test.sum()), "moments": moments(X[train])}
    if kind == "linear":
        values, _ = datamod._labels(kind, y, target)
        out["y_sum"] = float(values[train].sum())
    elif kind == "logistic":
        datamod._check_binary(datamod._unique_labels(y, target), target)
        out["y_sum"] = float(np.sum(y[train].astype(float)))
    else:
        datamod._unique_labels(y, target)            # whole numbers or names
        counts: dict = {}
        for split, rows in ((0, train), (1, test)):
            values, n = np.unique(y[rows], return_counts=True)
            for v, c in zip(values.tolist(), n.tolist()):
                counts.setdefault(int(v) if isinstance(v, float) else v, [0, 0])[split] += c
        out["labels"] = counts
    return out


def _prepare_partition(part: tuple, offset: int, mean: np.ndarray, scale: np.ndarray, kind: str, target: str,
                      classes: tuple | None, seed: int, test_size: float, rows: int) -> tuple:
    """On a worker: a partition ready for the steps, ``(X, y, train, test)``: labels coded, features
    standardised with the whole training split's mean and scale (as :func:`gdlab.data.load`), the
    split as two masks, padded (masked out) to ``rows`` rows so that every partition has one
    compiled shape (as :func:`gdlab.training.evaluate` pads a stream's record batches)."""
    from gdlab import data as datamod
    from gdlab import training

    X, y, _ = part
    y, _ = datamod._labels(kind, y, target, classes)
    test = datamod.in_test_split(np.arange(offset, offset + len(y)), seed, test_size)
    X, y, (train, test) = training._pad((X - mean) / scale, y, (~test, test), rows)
    return X, y, train, test


@functools.lru_cache(maxsize=16)
def _fisher_program(model: Any, kind: str):
    """Compiled: n_p · F_p(θ) of one partition's training rows at λ = 0 (dense or its diagonal).

    For rmse the Fisher of mse, 2X̃ᵀX̃/n_p, is summed instead: rmse's X̃ᵀX̃/(n·RMSE) needs the
    RMSE of all the rows, which only the client knows (:func:`_combine_fisher`)."""
    import jax

    from gdlab import models

    compute = models.fisher_matrix if kind == "dense" else models.fisher_diagonal
    per = model._replace(loss="mse") if model.loss == "rmse" else model
    return jax.jit(lambda theta, X, y, train: compute(per, theta, X, y, 0.0, train) * train.sum())


def _partition_sums(part: tuple, model: Any, theta: np.ndarray, fisher_kind: str, x64: bool) -> tuple:
    """On a worker: (the sums :func:`gdlab.training.evaluate` adds up, n_p · F_p(θ) or None) of one
    partition made by :func:`_prepare_partition`."""
    import jax

    from gdlab import training

    X, y, train, test = part
    with jax.enable_x64(x64):
        sums = training._Sums(model.n_params)
        sums.add(training._block_sums(model)(theta, X, y, train, test))
        fisher = None
        if fisher_kind in ("dense", "diagonal"):
            size = model.n_params
            fisher = (np.asarray(_fisher_program(model, fisher_kind)(theta, X, y, train)) if train.any()
                      else np.zeros((size, size) if fisher_kind == "dense" else size))
    return sums, fisher


def _combine_fisher(model: Any, total: np.ndarray, n_train: int, l2: float, data_loss: float) -> np.ndarray:
    r"""The full data's Fisher from the partitions' n_p F_p(θ) at λ = 0, with the penalty's λ added.

    .. math::  F = \frac1n\sum_p n_p F_p + \lambda\,\mathrm{diag}(\text{weights}) \quad
               (\text{rmse: } F = \frac{1}{2\,\mathrm{RMSE}}\,\frac1n\sum_p n_p F^{\mathrm{mse}}_p + \lambda\ldots)

    For softmax, each F_p holds the same term for the free shift of all logits at λ = 0 (the
    bias and the weight rows; :mod:`gdlab.models`); with λ > 0 only the bias row's is kept.
    """
    import jax.numpy as jnp

    from gdlab import models

    F = np.asarray(total, dtype=float) / n_train
    if model.loss == "rmse":
        F = F / (2.0 * data_loss)
    mask = models.penalty_mask(model)
    if F.ndim == 1:
        return F + l2 * mask
    if model.kind == "softmax" and l2 != 0:
        shift = lambda lam: np.kron(np.diag(np.asarray(models._null_rows(model, jnp.asarray(lam)))),  # noqa: E731
                                    np.full((model.n_classes,) * 2, 1.0 / model.n_classes))
        F = F - shift(0.0) + shift(l2)
    return F + np.diag(l2 * mask)


class Partitions:
    """Training data held by Dask workers, one :class:`gdlab.data.Dataset` per partition; what
    :func:`gdlab.training.evaluate` and :func:`gdlab.training._model_problem` read of a source.

    Attributes: ``name``, ``features``, ``target``, ``classes``, ``n_train``, ``n_test``, ``mean``,
    ``scale``, ``target_mean`` (as :class:`gdlab.data.Dataset`), ``client``, ``futures`` (one per
    partition), ``x64``.
    """

    def __init__(self, name, features, target, classes, n_train, n_test, mean, scale, target_mean, client, futures,
                 x64):
        self.name, self.features, self.target, self.classes = name, features, target, classes
        self.n_train, self.n_test, self.mean, self.scale, self.target_mean = n_train, n_test, mean, scale, target_mean
        self.client, self.futures, self.x64 = client, futures, x64

    def step_sums(self, model: Any, theta: np.ndarray, fisher_kind: str = "none") -> tuple[Any, np.ndarray | None]:
        """(the sums over every partition, Σ n_p F_p or None) at θ: one task per partition, reduced here."""
        from gdlab import training

        theta = np.asarray(theta, dtype=float)
        futures = [self.client.submit(_partition_sums, part, model, theta, fisher_kind, self.x64, retries=RETRIES,
                                      pure=False) for part in self.futures]
        total, fisher = training._Sums(model.n_params), None
        for sums, part_fisher in self.client.gather(futures):
            total.merge(sums)
            if part_fisher is not None:
                fisher = part_fisher if fisher is None else fisher + part_fisher
        return total, fisher

    def sums(self, model: Any, theta: np.ndarray) -> Any:
        """The sums :func:`gdlab.training.evaluate` finishes into J, ‖∇J‖, the metrics and margins."""
        return self.step_sums(model, theta)[0]


def _read_partitions(client: Any, paths: list[str], kind: str, target: str | None, features: list[str] | None,
                    test_size: float, seed: int, standardize: bool, name: str, x64: bool) -> Partitions:
    """Read, split and standardise the partitions on the workers; the rows stay there.

    Three rounds, each small on the wire: read (rows per partition come back), summarise (split
    counts, moments, labels come back), prepare (nothing comes back: the Datasets stay on the workers).
    """
    from gdlab import data as datamod

    # a bad file's one sentence (a DataError) comes back as an answer, not as a failed task that
    # the workers would log and Dask would retry
    raw = [client.submit(_answer, _read_partition, p, features, target, kind, pure=False) for p in paths]
    rows, chosen = zip(*[_checked(s) for s in client.gather([client.submit(_shape, f, pure=False) for f in raw])])
    if any(c != chosen[0] for c in chosen):
        raise ValueError(f"the partitions' columns differ ({paths[0]!r} has {', '.join(chosen[0])}); every "
                         f"partition must have the same columns.")
    offsets = np.concatenate([[0], np.cumsum(rows)])[:-1].astype(int).tolist()
    if sum(rows) == 0:
        raise ValueError(f"the partitions of {name!r} have no data rows; give files with at least one row.")
    summaries = [_checked(s) for s in client.gather([
        client.submit(_answer, _summarise_partition, f, off, seed, test_size, kind, target, pure=False)
        for f, off in zip(raw, offsets)])]
    n_train = sum(s["n_train"] for s in summaries)
    n_test = sum(s["n_test"] for s in summaries)
    merged = summaries[0]["moments"]
    for s in summaries[1:]:
        merged = merge_moments(merged, s["moments"])
    d = len(chosen[0])
    classes, counts, target_mean = None, None, 0.0
    if kind in ("linear", "logistic"):
        y_sum = sum(s["y_sum"] for s in summaries)
        target_mean = y_sum / max(n_train, 1)
        if kind == "logistic":
            classes, counts = (0, 1), np.array([n_train - y_sum, y_sum])
    else:
        labels: dict = {}
        for s in summaries:
            for v, (tr, te) in s["labels"].items():
                both = labels.setdefault(v, [0, 0])
                both[0] += tr
                both[1] += te
        classes = tuple(sorted(labels))
        if len(classes) > datamod.MAX_CLASSES:
            raise ValueError(f"the target {target!r} has {len(classes):,} distinct values, more than the "
                             f"{datamod.MAX_CLASSES:,} classes softmax regression takes; is it a regression target "
                             f"(--model linear)?")
        counts = np.array([labels[c][0] for c in classes], dtype=float)
        target_mean = counts / max(n_train, 1)
    datamod._check_split(kind, n_train, counts, classes, test_size, seed)
    mean, scale = standard_scale(merged) if standardize else (np.zeros(d), np.ones(d))
    parts = [client.submit(_prepare_partition, f, off, mean, scale, kind, target, classes, seed, test_size, max(rows),
                           pure=False) for f, off in zip(raw, offsets)]
    del raw                         # the raw rows go once prepared; the prepared partitions stay on the workers
    return Partitions(name, chosen[0], target, classes, n_train, n_test, mean, scale, target_mean, client, parts, x64)


@functools.lru_cache(maxsize=16)
def _advance_program(optimizer: Any, criteria: Any):
    """Compiled: the loop's start and :func:`gdlab.engine.advance` for this optimizer and stopping rules."""
    import jax

    from gdlab import engine

    return (jax.jit(functools.partial(engine.init_carry, optimizer, criteria=criteria)),
            jax.jit(functools.partial(engine.advance, optimizer, criteria)))


def _run_on_partitions(model, source: Partitions, optimizer, theta0, lam, fisher_kind, plan, tol, patience, grad_tol,
                      callback, classifier):
    """Batch gradient descent with θ on the client and the rows on the workers (``_run_full_batch``'s
    place in :func:`gdlab.training._train_source`): per step one round of per-partition sums, then
    :func:`gdlab.engine.advance`. The trace has the columns of the in-memory run."""
    import jax
    import jax.numpy as jnp

    from gdlab import engine, models, stopping, training

    if fisher_kind == "matvec":
        raise ValueError(f"on Dask the natural gradient forms the Fisher matrix from per-partition sums, up to "
                         f"{training.DENSE_FISHER_LIMIT:,} weights (this model has {model.n_params:,}); conjugate "
                         f"gradient would need a round of the workers per iteration: use --solver cholesky with "
                         f"fewer weights, or natural-diag.")
    criteria = stopping.StopCriteria(max_steps=plan.steps_cap, tol=tol, patience=patience, grad_tol=grad_tol).validate()
    init, advance = _advance_program(optimizer, criteria)
    carry = init(jnp.asarray(theta0))
    metric = training._metric_name(model)
    rows: list[dict] = []
    start = time.perf_counter()
    stop_reason, final = None, None
    while stop_reason is None:
        theta = np.asarray(carry.params, dtype=float)
        sums, fisher = source.step_sums(model, theta, fisher_kind)
        loss, data_loss, grad = training.objective_from_sums(model, theta, sums, source.n_train, lam)
        ev = training._finish(model, theta, sums, source.n_train, source.n_test, lam)
        extra = {}
        if fisher is not None:
            extra["fisher"] = jnp.asarray(_combine_fisher(model, fisher, source.n_train, lam, data_loss))
        carry, row = advance(carry, jnp.asarray(loss), jnp.asarray(grad), extra)
        row = {k: np.asarray(v) for k, v in jax.device_get(row).items()}
        row.update({"data_loss": np.asarray(ev.data_loss), "test_loss": np.asarray(ev.test_loss),
                    metric: np.asarray(ev.metric), "test_" + metric: np.asarray(ev.test_metric),
                    "weight_norm": np.asarray(np.linalg.norm(theta * models.penalty_mask(model)))})
        rows.append(row)
        step = int(row["step"])
        if callback is not None:
            callback({"step": step, "epoch": float(step), "total_steps": plan.steps_cap,
                      "rows": {k: np.asarray([v]) for k, v in row.items()}})
        reason = int(carry.reason)
        if reason != stopping.RUNNING:
            stop_reason, final = stopping.STOP_REASONS[reason], (theta, step)
        elif classifier and lam == 0.0 and np.all(np.isfinite(theta)) and ev.margin > 0:
            stop_reason, final = "diverged", (theta, step)     # separable: train() names it, as in memory
    columns = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    theta, steps = final
    return (engine.RunResult(params=theta, loss=float(columns["loss"][-1]), steps=steps, stop_reason=stop_reason,
                             elapsed=time.perf_counter() - start, trace=engine.Trace(columns)), None, None)


def train_dask(data: Any, model: str = "logistic", loss: str | None = None, optimizer: Any = None, *,
               target: str | None = None, features: list[str] | None = None, epochs: int | None = None,
               max_steps: int | None = None, test_size: float = 0.2, standardize: bool = True, init: str = "zeros",
               seed: int = 0, l2: float | None = None, C: float | None = None, solver: str = "auto",
               tol: float = 1e-15, patience: int = 10, grad_tol: float = 1e-10, scheduler: str | None = None,
               workers: int | None = None, client: Any = None, callback: Callable[[dict], None] | None = None,
               precision: str = "float64") -> Any:
    r"""Full-batch training on partitions held by Dask workers: :func:`gdlab.train` with ``batch_size=0``.

    .. math::  \theta_{t+1} = \theta_t + \text{optimizer}\Big(\nabla J(\theta_t) = \sum_p \nabla J_p(\theta_t),\
               F(\theta_t) = \frac1n\sum_p n_p F_p(\theta_t)\Big)

    Args:
      data: the partitions: a folder of .parquet (or .csv) files, a glob (``"dir/*.parquet"``) or a
        list of files; sorted by name, their rows in that order are the data set.
      model: as :func:`gdlab.train`; so are ``loss``, ``target``, ``features``, ``epochs``,
        ``max_steps``, ``test_size``, ``standardize``, ``init``, ``seed``, ``l2``, ``C``,
        ``solver``, ``tol``, ``patience``, ``grad_tol``, ``callback`` and ``precision`` (batch mode).
      optimizer: any optimizer that needs the gradient, the Fisher matrix (``natural``, up to
        2,048 weights) or its diagonal (``natural-diag``); not conjugate-gradient Fisher-vector
        products.
      scheduler, workers, client: the cluster, as :func:`distributed_sweep`.

    Returns:
      A :class:`gdlab.training.TrainResult`, as :func:`gdlab.train` returns it (``n_train``,
      ``n_test``, ``mean``, ``scale`` over all partitions). Without a penalty, separable data stop
      the run as ``diverged`` at the first step whose weights separate them (no linear program: the
      rows are not on the client).

    Example:
      >>> from gdlab import optim
      >>> res = train_dask("parts/*.parquet", "logistic", optimizer=optim.natural(), target="y",
      ...                  test_size=0.0, workers=2)             # doctest: +SKIP
      >>> res.stop_reason                                         # doctest: +SKIP
      'converged'
    """
    import jax

    from gdlab import data as datamod
    from gdlab import training

    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}.")
    started = time.perf_counter()
    training._check_settings(model, loss, 0, epochs, max_steps, init, tol, patience, grad_tol,
                             datamod.DEFAULT_MEMORY_LIMIT, None)
    datamod._check_options(test_size, seed)
    paths = partition_paths(data)
    name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else f"{len(paths)} partitions"
    x64 = precision == "float64"
    with _using(client, scheduler, workers) as client, jax.enable_x64(x64):
        source = _read_partitions(client, paths, model, target, features, test_size, seed, standardize, name, x64)
        try:
            mdl, lam, plan, theta0 = training._model_problem(source, model, loss, 0, epochs, max_steps, init, seed,
                                                            l2, C)
            return training._train_source(source, mdl, lam, plan, theta0, optimizer, 0, solver, tol, patience,
                                         grad_tol, seed, callback, started, run_full_batch=_run_on_partitions)
        finally:
            client.cancel(source.futures)
