"""Tests for gdlab.distributed: sweeps and full-batch training on a Dask cluster.

One ``LocalCluster`` of 2 worker processes on 127.0.0.1 serves the module. The references are
independent routes to the same numbers: the local sweep (one compiled program in this process)
for the distributed sweep, and ``gdlab.train`` on the concatenated rows (read, split and
standardised in memory, the Fisher formed from every row at once) for the training on
partitions. The fault test kills a worker process while blocks are running and is last, so
the cluster it leaves (the nanny restarts the worker) serves no other test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from test_cli import assert_one_line_error, invoke, strict_loads

import gdlab
from gdlab import distributed, optim
from gdlab.sweep import grid_cells, parse_grid, sweep_landscape, sweep_train

pytest.importorskip("distributed")

@pytest.fixture(scope="module")
def client():
    with distributed.dask_client(workers=2) as c:
        yield c


def assert_tables_equal(local, remote, tol: float) -> None:
    """Same columns in the same order, same cells in grid order, numbers within tol·max(1, |v|)."""
    assert list(remote.columns) == list(local.columns)
    assert remote.axes == local.axes and len(remote) == len(local)
    axes = {a.name for a in local.axes}
    for name, values in local.columns.items():
        other = remote.columns[name]
        if name in ("stop_reason", "steps", "steps_to_converge", "at_global_minimum") or name in axes:
            assert other == values, name
            continue
        for a, b in zip(values, other):
            assert (a is None) == (b is None), name
            if a is not None:
                assert abs(a - b) <= tol * max(1.0, abs(a)), (name, a, b)


def write_partitions(folder, X, y, cuts) -> list[str]:
    """X, y cut at ``cuts`` into Parquet files p0, p1, ... (columns x0 … and y), in row order."""
    folder.mkdir()
    paths = []
    for k, idx in enumerate(np.split(np.arange(len(y)), cuts)):
        path = folder / f"p{k}.parquet"
        pq.write_table(pa.table({**{f"x{j}": X[idx, j] for j in range(X.shape[1])}, "y": y[idx]}), path)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------------------ sweeps

def test_a_sweep_on_dask_is_the_local_sweep_to_1e_12(client):
    """Under vmap, tol = 1e-10 puts every stop above the rounding level (where a block's vmap width,
    unlike the local sweep's, could move it by a step: see gdlab.distributed), so the tables agree
    to rounding. (benchmarks/bench_dask.py checks the fit sweep of issue 5 the same way.)"""
    args = ("himmelblau", None, "momentum", ["lr=0.001:0.03:4:log", "momentum=0,0.9", "x0=-3,0,3"])
    settings = dict(max_steps=3000, tol=1e-10)
    local = sweep_landscape(*args, **settings)
    seen = []
    remote = distributed.distributed_sweep("landscape", *args, client=client, blocks=3,
                                           callback=lambda done, total: seen.append((done, total)), **settings)
    assert_tables_equal(local, remote, 1e-12)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert remote.settings["engine"] == "dask" and remote.settings["blocks"] == 3 and remote.settings["workers"] == 2
    assert set(local.columns["stop_reason"]) >= {"converged", "max_steps"}      # not a table of one kind of cell


def test_exact_blocks_are_bit_for_bit_the_local_exact_sweep(client):
    """vectorize=False runs each cell alone inside the program: its numbers cannot depend on the block."""
    args = ("double-well", 1.5, "momentum", ["lr=0.001:0.3:5:log", "momentum=0,0.9"])
    local = sweep_landscape(*args, max_steps=2000, vectorize=False)
    remote = distributed.distributed_sweep("landscape", *args, client=client, blocks=4, max_steps=2000,
                                           vectorize=False)
    assert_tables_equal(local, remote, 0.0)


def test_a_train_sweep_on_dask_is_the_local_train_sweep(client):
    """Each block reads the data itself (a dataset name here; a path on storage the workers share)."""
    args = ("breast_cancer", "logistic", "momentum", ["lr=0.3,3", "momentum=0,0.9"])
    settings = dict(test_size=0.2, max_steps=300, tol=1e-10)
    assert_tables_equal(sweep_train(*args, **settings),
                        distributed.distributed_sweep("train", *args, client=client, blocks=2, **settings), 1e-12)


def test_bad_sweep_input_is_one_sentence_from_the_worker(client):
    with pytest.raises(ValueError, match="not something this sweep can vary"):
        distributed.distributed_sweep("landscape", "double-well", 1.5, "gd", ["momentum=0,0.5"], client=client)


# ------------------------------------------------------------------------------ training on partitions

def test_fisher_scoring_over_8_parquet_partitions_equals_the_in_memory_fit(client, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    y = y.astype(float)
    cuts = [40, 95, 160, 230, 300, 390, 480]                       # 8 partitions of unequal sizes
    write_partitions(tmp_path / "parts", X, y, cuts)
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(X.shape[1])}, "y": y}), whole)
    common = dict(target="y", test_size=0.2, seed=3)
    ref = gdlab.train(str(whole), "logistic", optimizer=optim.natural(), **common)
    res = distributed.train_dask(str(tmp_path / "parts" / "*.parquet"), "logistic", optimizer=optim.natural(),
                                 client=client, **common)
    assert ref.stop_reason == res.stop_reason == "converged"
    assert (res.n_train, res.n_test) == (ref.n_train, ref.n_test) and res.n_test > 0   # the same rows held out
    assert abs(res.loss - ref.loss) <= 1e-8
    assert abs(res.test_loss - ref.test_loss) <= 1e-8
    assert res.metrics["accuracy"] == ref.metrics["accuracy"]
    np.testing.assert_allclose(res.mean, ref.mean, rtol=1e-12)
    np.testing.assert_allclose(res.scale, ref.scale, rtol=1e-12)
    assert abs(res.steps - ref.steps) <= 1 and res.steps <= 12           # Fisher scoring's few steps
    assert sorted(res.trace.columns) == sorted(ref.trace.columns)


@pytest.mark.parametrize("load, model, loss, optimizer, steps", [
    (load_iris, "softmax", None, optim.gd(0.5), 20),                     # the gradient, step by step
    (load_diabetes, "linear", "rmse", optim.natural(), 3),              # rmse's Fisher needs the global RMSE
    (load_breast_cancer, "logistic", None, gdlab.training.natural_diag(0.1), 30),   # the Fisher's diagonal
], ids=["softmax-gd", "linear-rmse-natural", "logistic-natural-diag"])
def test_each_step_on_partitions_is_the_in_memory_step(client, tmp_path, load, model, loss, optimizer, steps):
    """A run cut short: every step's loss and θ agree with the in-memory run's to rounding, not just the optimum."""
    X, y = load(return_X_y=True)
    cuts = [len(y) // 5, len(y) // 2, len(y) - 7]
    paths = write_partitions(tmp_path / "parts", X, y.astype(float), cuts)
    common = dict(test_size=0.25, max_steps=steps, tol=0.0, grad_tol=0.0)
    ref = gdlab.train((X, y.astype(float)), model, loss, optimizer, **common)
    res = distributed.train_dask(paths, model, loss, optimizer, target="y", client=client, **common)
    assert res.steps == ref.steps == steps and res.stop_reason == ref.stop_reason
    np.testing.assert_allclose(res.trace.loss, ref.trace.loss, rtol=1e-11, atol=0)
    np.testing.assert_allclose(res.trace.test_loss, ref.trace.test_loss, rtol=1e-11, atol=0)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-9, atol=1e-11)


def test_partition_problems_are_one_sentence(client, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(ValueError, match="no Parquet or CSV file matches"):
        distributed.train_dask(str(tmp_path / "none" / "*.parquet"), target="y", client=client)
    write_partitions(tmp_path / "parts", X, y * 2.0, [100])               # labels 0 and 2
    with pytest.raises(ValueError, match="logistic regression needs labels 0 and 1"):
        distributed.train_dask(str(tmp_path / "parts"), target="y", client=client)
    with pytest.raises(ValueError, match="Fisher matrix from per-partition sums"):
        distributed.train_dask(str(tmp_path / "parts"), "linear", target="y", client=client,
                               optimizer=optim.natural(solver="cg"), solver="cg")


def test_block_bounds_cover_every_cell_once():
    for n in (1, 7, 100):
        for blocks in (1, 3, 8, 200):
            bounds = distributed.block_bounds(n, blocks)
            cells = [i for lo, hi in bounds for i in range(lo, hi)]
            assert cells == list(range(n)) and all(hi > lo for lo, hi in bounds)


def test_merged_moments_are_the_whole_columns_moments():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, (101, 3))
    X[:, 2] = 5.0                                                          # a constant column keeps scale 1
    m = distributed.moments(X[:0])
    for part in np.split(X, [10, 11, 60]):
        m = distributed.merge_moments(m, distributed.moments(part))
    mean, scale = distributed.standard_scale(m)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(scale[:2], X[:, :2].std(axis=0), rtol=1e-13)
    assert scale[2] == 1.0


# ------------------------------------------------------------------------------ the command line

def test_cli_train_on_a_running_scheduler(client, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    write_partitions(tmp_path / "parts", X, y.astype(float), [200, 400])
    rc, out, err = invoke("train", "--data", str(tmp_path / "parts" / "*.parquet"), "--target", "y", "--model",
                          "logistic", "--optimizer", "natural", "--test-size", "0", "--engine", "dask", "--scheduler",
                          client.scheduler.address, "--json", "-")
    assert rc == 0, err
    d = strict_loads(out)
    assert d["stop_reason"] == "converged" and d["n_train"] == 569
    assert abs(d["loss"] - 0.06636018622473808) < 1e-8                 # train's own example: Fisher scoring, C = 1


def test_cli_sweep_landscape_on_a_running_scheduler(client):
    rc, out, err = invoke("sweep", "landscape", "--function", "double-well", "--init", "1.5", "--grid",
                          "lr=0.01,0.1", "--max-steps", "2000", "--engine", "dask", "--scheduler",
                          client.scheduler.address, "--json", "-")
    assert rc == 0, err
    d = strict_loads(out)
    assert [round(c["x"], 6) for c in d["cells"]] == [1.2, -1.5] and d["settings"]["engine"] == "dask"


def test_an_unreachable_scheduler_fails_in_seconds_with_one_sentence():
    """Dask's own default waits 30 s; gdlab gives up after 3 (the bound here leaves room for a loaded machine)."""
    start = time.perf_counter()
    rc, out, err = invoke("sweep", "landscape", "--function", "double-well", "--init", "1.5", "--grid", "lr=0.01,0.1",
                          "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1")
    line = assert_one_line_error(rc, out, err)
    assert time.perf_counter() - start < 20
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'" in line


TRAIN = ("train", "--data", "breast_cancer", "--model", "logistic")
BAD = [
    ("scheduler-without-dask", [*TRAIN, "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler applies to --engine dask"),
    ("workers-without-dask", ["sweep", "fit", "--target", "N(2, 1)", "--grid", "lr=0.1", "--workers", "2"],
     "--workers applies to --engine dask"),
    ("workers-zero", [*TRAIN, "--engine", "dask", "--workers", "0"], "--workers must be a whole number ≥ 1"),
    ("scheduler-and-workers", [*TRAIN, "--engine", "dask", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "give one of them"),
    ("mini-batches", [*TRAIN, "--engine", "dask", "--batch-size", "32"], "trains on full batches"),
    ("stream", [*TRAIN, "--engine", "dask", "--stream"], "--stream is for --engine local"),
    ("bad-engine", [*TRAIN, "--engine", "spark"], "'spark' is not one of"),
]


@pytest.mark.parametrize("args, mention", [(a, m) for _, a, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_engine_options_are_one_sentence_exit_2(args, mention):
    line = assert_one_line_error(*invoke(*args))
    assert mention in line, line


def test_engine_dask_without_dask_installed_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)                 # as if the extra were not installed
    line = assert_one_line_error(*invoke(*TRAIN, "--engine", "dask", "--workers", "2"))
    assert "pip install 'gdlab[dask]'" in line


def test_the_local_path_never_imports_dask():
    code = ("import sys, gdlab, gdlab.distributed\n"
            "from gdlab.cli import main\n"
            "assert main(['sweep', 'landscape', '--function', 'double-well', '--init', '1.5', '--grid', 'lr=0.01,0.1', "
            "'--max-steps', '50', '--json', '-']) == 0\n"
            "gdlab.distributed.check_engine('local')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------------ a lost worker (last: it restarts one)

def test_a_worker_killed_mid_sweep_every_cell_comes_back_exactly_once(client):
    args = ("rosenbrock", None, "momentum", ["lr=1e-5:3e-3:12:log", "momentum=0,0.5,0.9"])
    settings = dict(max_steps=20_000, tol=1e-10, vectorize=False)       # blocks long enough to be caught running
    n = len(grid_cells([parse_grid(g) for g in args[3]])["lr"])
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker(done, total):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(pids[busy[0]])

    remote = distributed.distributed_sweep("landscape", *args, client=client, blocks=12, callback=kill_a_busy_worker,
                                           **settings)
    assert killed, "no block was running when the first one finished"
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.run(os.getpid).values()            # that process is gone
    assert len(remote) == n
    cells = grid_cells([parse_grid(g) for g in args[3]])
    assert remote.columns["lr"] == cells["lr"].tolist() and remote.columns["momentum"] == cells["momentum"].tolist()
    assert_tables_equal(sweep_landscape(*args, **settings), remote, 0.0)
