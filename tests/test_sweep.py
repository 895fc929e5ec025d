"""Tests for gdlab.sweep: grids, traced schedules, the batched engine loop, sweeps of fits and landscapes.

A sweep cell is checked against the single run with the same settings (gdlab.fit,
gdlab.landscapes.minimize): bit for bit when the cells run one after another inside the
compiled program (vectorize=False), to rounding under vmap. Schedules are checked against
gdlab.schedules at every step, and "one compiled program" by counting compilations.
"""

from __future__ import annotations

import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest

from gdlab import engine, fit, optim, schedules, stopping
from gdlab.landscapes import minimize
from gdlab.sweep import (GridAxis, ScaledSchedule, _batched_chunk, _batched_final, grid_cells, parse_grid, run_batch,
                         sweep_fit, sweep_landscape, write_table)

jax.config.update("jax_enable_x64", True)

MIXTURE = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"


# ------------------------------------------------------------------------------ grids

def test_parse_grid_forms():
    assert parse_grid("lr=0.001:1:4:log") == GridAxis("lr", (0.001, 0.01, 0.1, 1.0), True)
    axis = parse_grid("momentum=0:0.9:4")
    np.testing.assert_allclose(axis.values, [0.0, 0.3, 0.6, 0.9], rtol=1e-15)
    assert axis.values[-1] == 0.9 and not axis.log
    assert parse_grid(" period = 10, 20 ,40").values == (10.0, 20.0, 40.0)
    assert parse_grid("lr=0.5").values == (0.5,)
    assert parse_grid("lr=0.1:0.2:1").values == (0.1,)
    log = parse_grid("lr=0.001:1:40:log").values
    assert len(log) == 40 and log[0] == 0.001 and log[-1] == 1.0
    np.testing.assert_allclose(np.diff(np.log(log)), math.log(1000) / 39, rtol=1e-12)


@pytest.mark.parametrize("text, mention", [
    ("lr", "name=values"), ("=1,2", "name=values"), ("lr=", "name=values"),
    ("lr=a,b", "'a' is not a number"), ("lr=1:2", "2 parts"), ("lr=1:2:3:4:5", "5 parts"),
    ("lr=0:1:0", "whole number"), ("lr=0:1:2.5", "whole number"), ("lr=0:1:-3", "whole number"),
    ("lr=0:1:5:log", "log spacing"), ("lr=-1:-0.1:5:log", "log spacing"), ("lr=1:2:3:cubic", "'log' or 'lin'"),
    ("lr=nan,1", "finite"), ("lr=1,inf", "finite"), ("lr=0.1,0.1", "twice"),
])
def test_parse_grid_refuses_bad_text_in_one_sentence(text, mention):
    with pytest.raises(ValueError) as info:
        parse_grid(text)
    assert mention in str(info.value) and "\n" not in str(info.value)


def test_grid_cells_is_the_product_with_the_first_axis_slowest():
    cells = grid_cells([GridAxis("a", (1.0, 2.0, 3.0)), GridAxis("b", (10.0, 20.0))])
    assert cells["a"].tolist() == [1, 1, 2, 2, 3, 3] and cells["b"].tolist() == [10, 20] * 3
    with pytest.raises(ValueError, match="twice"):
        grid_cells([GridAxis("a", (1.0,)), GridAxis("a", (2.0,))])


# ------------------------------------------------------------------------------ schedules with traced η

@pytest.mark.parametrize("name, options", [
    ("exponential", dict(decay=0.97)), ("exponential", dict(decay=0.5, decay_steps=7)),
    ("step", dict(decay=0.5, decay_steps=10)), ("cosine", dict(decay_steps=40, alpha=0.1)),
    ("warm-restarts", dict(period=10, period_mult=2.0, alpha=0.05)), ("warm-restarts", dict(period=7)),
])
def test_scaled_schedule_is_the_schedule_built_with_that_lr(name, options):
    lr = 0.37
    reference = schedules.make_schedule(name, lr, horizon=100, **options)
    shapes = [schedules.make_schedule("exponential", 1.0, decay=0.5),       # another cell's shape
              schedules.make_schedule(name, 1.0, horizon=100, **options)]
    sched = ScaledSchedule(shapes)
    state = sched.init()._replace(peak=jnp.asarray(lr), shape=jnp.asarray(1, jnp.int32))
    ours, theirs = [], []
    for t in range(100):
        ours.append(float(jax.jit(sched)(state)))
        theirs.append(float(jax.jit(reference)(jnp.asarray(t, jnp.int32))))
        state = sched.update(state)
    # the same number up to the last bit or two (compiled code may evaluate a**p as exp(p log a))
    np.testing.assert_allclose(ours, theirs, rtol=4e-16, atol=0)


# ------------------------------------------------------------------------------ the batched engine loop

def quad_objective():
    return engine.Objective(loss=lambda th, _: 0.5 * jnp.sum(jnp.array([1.0, 10.0]) * th ** 2))


def test_run_batch_gives_each_run_its_own_learning_rate_and_stop():
    """GD on ½(x² + 10y²) from (1, 1) with η: x_t = (1−η)^t, y_t = (1−10η)^t (closed form)."""
    lrs = np.array([0.05, 0.15, 0.25])
    crit = stopping.StopCriteria(max_steps=30, tol=0.0)
    res = run_batch(quad_objective(), optim.gd(0.1), np.ones((3, 2)), crit, hyperparams={"learning_rate": lrs})
    assert res.stop_reason == ("max_steps", "max_steps", "diverged")
    for i in range(2):
        np.testing.assert_allclose(res.params[i], [(1 - lrs[i]) ** 30, (1 - 10 * lrs[i]) ** 30], rtol=1e-12)
    assert res.steps[2] < 30       # |1 − 2.5| > 1: the y-coordinate runs away


def test_run_batch_traces_and_reach_match_single_runs():
    crit = stopping.StopCriteria(max_steps=200)
    starts = np.array([[1.0, 1.0], [-2.0, 0.5], [0.3, -0.1]])
    res = run_batch(quad_objective(), optim.momentum(0.05, 0.5), starts, crit, keep_traces=True, reach=1e-6,
                    vectorize=False, chunk_size=16, lanes=2)
    for i, start in enumerate(starts):
        one = engine.run(quad_objective(), optim.momentum(0.05, 0.5), jnp.asarray(start), crit)
        np.testing.assert_array_equal(res.traces[i].params, one.trace.params)
        np.testing.assert_array_equal(res.traces[i].lr, one.trace.lr)
        assert res.loss[i] == one.loss and res.steps[i] == one.steps and res.stop_reason[i] == one.stop_reason
        assert res.first_reach[i] == int(np.argmax(one.trace.loss <= 1e-6))


@pytest.mark.parametrize("keep_traces", [True, False])
def test_run_batch_compiles_once_for_any_number_of_lanes_refills_and_learning_rates(keep_traces):
    cache = _batched_chunk if keep_traces else _batched_final
    cache.cache_clear()
    objective, opt, crit = quad_objective(), optim.gd(0.1), stopping.StopCriteria(max_steps=50)
    run_batch(objective, opt, np.random.default_rng(0).normal(size=(7, 2)), crit, keep_traces=keep_traces,
              hyperparams={"learning_rate": np.linspace(0.01, 0.15, 7)}, lanes=3, chunk_size=16)
    assert cache.cache_info().misses == 1
    block = engine.block_size(objective.loss, jnp.zeros(2), objective.data, 16)   # blocks that divide 16
    if keep_traces:
        program = _batched_chunk(objective.loss, objective.metrics, None, None, opt, crit, 16, True, block)
    else:
        program = _batched_final(objective.loss, None, None, opt, crit, 16, True, block)
    assert program._cache_size() == 1          # 3 lanes refilled as runs stop, many chunks: one compilation


def test_run_batch_without_traces_equals_the_traced_runs():
    """The record-nothing program (engine.final_program) and the chunk program with rows agree on
    every outcome, lanes refilled in between, the first step reaching a level included."""
    objective, opt = quad_objective(), optim.momentum(0.1, 0.5)
    crit = stopping.StopCriteria(max_steps=300)
    starts = np.random.default_rng(1).normal(size=(9, 2))
    common = dict(hyperparams={"learning_rate": np.linspace(-0.05, 0.9, 9)}, lanes=4, chunk_size=32, reach=1e-6)
    traced = run_batch(objective, opt, starts, crit, keep_traces=True, **common)
    final = run_batch(objective, opt, starts, crit, **common)
    assert final.stop_reason == traced.stop_reason and len(set(final.stop_reason)) >= 2
    np.testing.assert_array_equal(final.steps, traced.steps)
    np.testing.assert_array_equal(final.first_reach, traced.first_reach)
    np.testing.assert_array_equal(final.params, traced.params)
    # two vmapped programs that evaluate L in differently fused code: equal to the last bit or so
    np.testing.assert_allclose(final.loss, traced.loss, rtol=1e-15, atol=0)
    for trace, first in zip(traced.traces, final.first_reach):   # the reach column, from the rows themselves
        hit = np.nonzero(trace.loss <= 1e-6)[0]
        assert first == (trace.step[hit[0]] if hit.size else -1)


def test_a_calm_window_across_a_block_that_recorded_nothing_stops_where_it_should():
    """GD (η = 1) on L(θ) = max(θ, 0) from θ₀ = 62.5: θ_t = 62.5 − t until θ_63 = −0.5, where ∇L
    = 0, so L_t = 0 from t = 63 on. With patience 1 the first calm window is (L_63, L_64): it
    straddles the first block of 64 steps, which had no close pair and so recorded nothing. The
    run converges at step 64 with θ = −0.5, as a single traced run does."""
    objective = engine.Objective(loss=lambda th, _: jnp.sum(jnp.maximum(th, 0.0)))
    assert engine.block_size(objective.loss, jnp.zeros(1), None) == 64
    crit = stopping.StopCriteria(max_steps=200, tol=1e-12, patience=1)
    with jax.enable_x64(True):
        res = run_batch(objective, optim.gd(1.0), np.array([[62.5], [62.5]]), crit)
        one = engine.run(objective, optim.gd(1.0), jnp.asarray([62.5]), crit)
    assert (one.stop_reason, one.steps, float(one.params[0])) == ("converged", 64, -0.5)
    assert res.stop_reason == ("converged", "converged") and list(res.steps) == [64, 64]
    assert list(res.first_reach) == [-1, -1]                    # no level asked for
    np.testing.assert_array_equal(res.params, [[-0.5], [-0.5]])


@pytest.mark.parametrize("patience", [1, 5])
def test_blocks_that_record_nothing_unless_a_rule_can_fire_equal_the_traced_runs(patience):
    """Under vmap, a block of cheap steps records no rows unless some lane's screen flag is up
    (engine._flagged_block); then it is made again with rows. 600 Rosenbrock cells with momentum,
    calm windows (2 or 6 losses) that straddle blocks of 64, runs that converge, run away or
    overflow, max_steps inside a block, a level reached: every outcome equals the traced runs'."""
    def rosenbrock(th, _):
        return (1 - th[0]) ** 2 + 100 * (th[1] - th[0] ** 2) ** 2

    objective = engine.Objective(loss=rosenbrock)
    assert engine.block_size(objective.loss, jnp.zeros(2), None) == 64
    lr, beta = (a.ravel() for a in np.meshgrid(np.geomspace(1e-4, 5e-3, 30), np.linspace(0.0, 0.98, 20)))
    crit = stopping.StopCriteria(max_steps=700, tol=1e-9, patience=patience)
    common = dict(hyperparams={"learning_rate": lr, "momentum": beta}, reach=1e-2)
    starts = np.tile([-1.2, 1.0], (lr.size, 1))
    with jax.enable_x64(True):
        traced = run_batch(objective, optim.momentum(0.1, 0.5), starts, crit, keep_traces=True, **common)
        final = run_batch(objective, optim.momentum(0.1, 0.5), starts, crit, **common)
    assert {"converged", "diverged", "max_steps"} <= set(traced.stop_reason)
    assert final.stop_reason == traced.stop_reason
    np.testing.assert_array_equal(final.steps, traced.steps)
    np.testing.assert_array_equal(final.params, traced.params)
    np.testing.assert_array_equal(final.first_reach, traced.first_reach)
    assert (final.first_reach >= 0).any() and (final.first_reach < 0).any()
    np.testing.assert_allclose(final.loss, traced.loss, rtol=1e-15, atol=0)


@jax.custom_jvp
def square_with_a_broken_gradient(x):
    return jnp.sum(x ** 2)


@square_with_a_broken_gradient.defjvp
def _broken_gradient(primals, tangents):
    (x,), (dx,) = primals, tangents
    grad = jnp.where(jnp.abs(x) > 5.0, jnp.nan, 2.0 * x)     # the loss stays finite where ∇L is NaN
    return jnp.sum(x ** 2), jnp.sum(grad * dx)


@pytest.mark.parametrize("vectorize", [True, False])
def test_runs_without_traces_stop_where_the_gradient_stops_being_finite(vectorize):
    """Rows of losses only (the cheap-step program) miss a NaN gradient under a finite loss; the
    stop must still come at that step, with θ there, as in a single run. Gradient ascent
    (η < 0) multiplies x by 1 − 2η each step: from x₀ = 1 with η = −0.1, x_t = 1.2ᵗ first passes 5
    at t = 9 (L = 1.2¹⁸ ≈ 26.6, nowhere near the ran-away rule); the other runs converge, stop
    at max_steps, or run away."""
    objective = engine.Objective(loss=lambda th, _: square_with_a_broken_gradient(th))
    assert engine.block_size(objective.loss, jnp.zeros(1), None) > 1          # lean rows, screened
    lrs = np.array([-0.1, 0.25, 0.001, -0.4, -0.1])
    starts = np.array([[1.0], [3.0], [2.0], [0.5], [-1.3]])
    crit = stopping.StopCriteria(max_steps=100)
    res = run_batch(objective, optim.gd(0.1), starts, crit, hyperparams={"learning_rate": lrs}, lanes=3,
                    vectorize=vectorize)
    assert res.stop_reason[0] == "diverged" and res.steps[0] == 9
    np.testing.assert_allclose(res.params[0], [1.2 ** 9], rtol=1e-14)
    for i, (lr, start) in enumerate(zip(lrs, starts)):
        one = engine.run(objective, optim.gd(lr), jnp.asarray(start), crit)
        assert (res.stop_reason[i], res.steps[i]) == (one.stop_reason, one.steps), i
        np.testing.assert_array_equal(res.params[i], one.params)
        assert res.loss[i] == one.loss
    assert set(res.stop_reason) == {"diverged", "converged", "max_steps"}


# ------------------------------------------------------------------------------ sweeps of fits

FIT_GRID = ["lr=0.02,0.3", "period=15,40"]
FIT_SETTINGS = dict(schedule="warm-restarts", period_mult=2.0, max_steps=400)


@pytest.fixture(scope="module")
def fit_sweeps():
    common = dict(target=MIXTURE, init="N(0.5, 5)", divergence="reverse", optimizer="momentum", grid=FIT_GRID,
                  momentum=0.9, **FIT_SETTINGS)
    return sweep_fit(**common, vectorize=False), sweep_fit(**common)


def single_fit(row):
    rate = schedules.make_schedule("warm-restarts", row["lr"], period=row["period"], period_mult=2.0)
    return fit(MIXTURE, "N(0.5, 5)", "reverse", optim.momentum(rate, 0.9), max_steps=400)


def test_each_sweep_cell_is_the_single_fit_with_its_settings(fit_sweeps):
    exact, vectorized = fit_sweeps
    assert len(exact) == 4 and exact.settings["schedule_shapes"] == 2
    for row, vrow in zip(exact.rows(), vectorized.rows()):
        one = single_fit(row)
        assert row["stop_reason"] == one.stop_reason and row["steps"] == one.steps
        for key, value in (("loss", one.loss), ("mean", one.q.mean), ("var", one.q.var),
                           ("kl_forward", one.kl_forward), ("kl_reverse", one.kl_reverse)):
            assert abs(row[key] - value) <= 1e-10, (key, row[key], value)
        assert row["steps_to_converge"] == (one.steps if one.stop_reason == "converged" else None)
        assert row["loss"] == one.loss and row["var"] == one.q.var               # bit for bit
        # vmap rounds differently; the loss agrees to rounding (a stop decided at tol = 1e-15 may come
        # at another step, see test_vectorized_sweep_equals_single_fits_above_the_rounding_level)
        assert abs(vrow["loss"] - one.loss) <= 1e-12


def test_vectorized_sweep_equals_single_fits_above_the_rounding_level():
    res = sweep_fit(MIXTURE, "N(0.5, 5)", "reverse", "momentum", ["lr=0.02,0.3", "momentum=0,0.9"], max_steps=600,
                    tol=1e-10)
    for row in res.rows():
        one = fit(MIXTURE, "N(0.5, 5)", "reverse", optim.momentum(row["lr"], row["momentum"]), max_steps=600,
                  tol=1e-10)
        assert (row["stop_reason"], row["steps"]) == (one.stop_reason, one.steps)
        for key, value in (("loss", one.loss), ("mean", one.q.mean), ("var", one.q.var)):
            assert abs(row[key] - value) <= 1e-10, (key, row[key], value)


def test_sweep_over_start_points_and_momentum_matches_single_fits():
    res = sweep_fit("N(2, 1)", "N(0, 5)", "forward", "momentum", ["init_mean=-1,3", "init_var=0.5"],
                    lr=0.2, momentum=0.5, max_steps=300, vectorize=False)
    for row in res.rows():
        one = fit("N(2, 1)", f"N({row['init_mean']!r}, {row['init_var']!r})", "forward",
                  optim.momentum(0.2, 0.5), max_steps=300)
        assert row["steps"] == one.steps and row["loss"] == one.loss and row["var"] == one.q.var


def test_natural_gradient_sweeps_damping_and_trust_region_as_single_fits():
    res = sweep_fit("N(3, 0.5)", "N(0, 5)", "forward", "natural", ["lr=0.3,1", "damping=0,0.1"], max_steps=200,
                    vectorize=False)
    for row in res.rows():
        one = fit("N(3, 0.5)", "N(0, 5)", "forward", optim.natural(row["lr"], row["damping"]), max_steps=200)
        assert (row["steps"], row["loss"], row["mean"]) == (one.steps, one.loss, one.q.mean)
    res = sweep_fit("N(3, 0.5)", "N(0, 5)", "forward", "natural", ["trust_region=0.01,0.1"], max_steps=300,
                    vectorize=False)
    for row in res.rows():      # lr defaults to 1 for natural, as in gdlab fit
        one = fit("N(3, 0.5)", "N(0, 5)", "forward", optim.natural(1.0, trust_region=row["trust_region"]),
                  max_steps=300)
        assert (row["steps"], row["loss"]) == (one.steps, one.loss)


def test_diverged_cells_and_steps_to_reach():
    res = sweep_fit("N(2, 1)", "N(0, 5)", "reverse", "gd", ["lr=0.1,2.5,-0.5"], max_steps=300, reach=1e-8)
    assert res.columns["stop_reason"][1:] == ["diverged", "diverged"] or res.columns["stop_reason"][1] == "diverged"
    assert res.columns["steps_to_converge"][1] is None and res.columns["steps_to_reach"][1] is None
    one = fit("N(2, 1)", "N(0, 5)", "reverse", optim.gd(0.1), max_steps=300)
    assert res.columns["steps_to_reach"][0] == int(np.argmax(one.trace.loss <= 1e-8))


@pytest.mark.parametrize("grid, kwargs, mention", [
    (["momentum=0,0.9"], dict(optimizer="gd"), "momentum belongs to"),
    (["decay=0.9,0.99"], dict(optimizer="gd"), "belongs to --schedule exponential or step"),
    (["max_steps=10,20"], dict(optimizer="gd"), "stopping rules"),
    (["bogus=1,2"], dict(optimizer="gd"), "can vary lr"),
    (["period=10,12.5"], dict(optimizer="gd", schedule="warm-restarts"), "whole numbers"),
    (["momentum=0.5,1.5"], dict(optimizer="momentum"), "1.5"),
    (["decay=0.5,2"], dict(optimizer="gd", schedule="exponential"), "decay"),
    (["init_var=1,-1"], dict(optimizer="gd"), "positive"),
    ([], dict(optimizer="gd"), "at least one --grid"),
    (["lr=0.1"], dict(optimizer="sgdx"), "optimizer must be one of"),
])
def test_bad_sweeps_are_refused_before_running(grid, kwargs, mention):
    with pytest.raises(ValueError) as info:
        sweep_fit("N(2, 1)", "N(0, 5)", "forward", grid=grid, max_steps=10, **kwargs)
    assert mention in str(info.value), str(info.value)


# ------------------------------------------------------------------------------ sweeps of landscapes

def test_landscape_sweep_small_step_stays_large_step_escapes():
    res = sweep_landscape("double-well", 1.5, "gd", ["lr=0.01,0.1"], max_steps=2000, vectorize=False)
    for row in res.rows():
        one = minimize("double-well", 1.5, optim.gd(row["lr"]), max_steps=2000)
        assert row["x"] == float(one.x[0]) and row["f"] == one.f and row["steps"] == one.steps
    assert [round(x, 6) for x in res.columns["x"]] == [1.2, -1.5]


def test_landscape_sweep_over_start_points():
    res = sweep_landscape("himmelblau", None, "gd", ["x0=-4,4", "y0=-4,4"], lr=0.01, max_steps=3000)
    assert res.counts()["converged"] == 4
    assert all(abs(f) < 1e-12 for f in res.columns["f"])
    with pytest.raises(ValueError, match="natural gradient needs a Fisher"):
        sweep_landscape("himmelblau", None, "natural", ["lr=0.1"])


# ------------------------------------------------------------------------------ tables

def test_tables_round_trip_in_every_format(tmp_path, fit_sweeps):
    exact, _ = fit_sweeps
    paths = {s: tmp_path / f"cells{s}" for s in (".csv", ".parquet", ".json")}
    for p in paths.values():
        write_table(exact, str(p))
    with open(paths[".csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["loss"]) for r in rows] == exact.columns["loss"]
    assert [r["stop_reason"] for r in rows] == exact.columns["stop_reason"]
    table = pq.read_table(paths[".parquet"]).to_pydict()
    assert table["loss"] == exact.columns["loss"] and table["period"] == exact.columns["period"]
    payload = json.loads(paths[".json"].read_text())
    assert payload["cells"] == exact.rows() and payload["axes"] == {"lr": [0.02, 0.3], "period": [15.0, 40.0]}
    with pytest.raises(ValueError, match="must end in"):
        write_table(exact, str(tmp_path / "cells.xlsx"))
    with pytest.raises(ValueError, match="folder does not exist"):
        write_table(exact, str(tmp_path / "missing" / "cells.csv"))


# ------------------------------------------------------------------------------ sweeps of training runs

def single_train(optimizer, row, **kwargs):
    """gdlab.train with the cell's settings: the optimizer as gdlab train builds it."""
    from gdlab import train, training

    rate = row.get("lr", kwargs.pop("lr", None))
    schedule = kwargs.pop("schedule", None)
    build = (lambda steps: training.make_optimizer(optimizer, schedule(rate, row, steps), row.get("momentum"),
                                                   damping=row.get("damping"))) if schedule else \
        training.make_optimizer(optimizer, rate, row.get("momentum"), damping=row.get("damping"))
    return train("breast_cancer", "logistic", optimizer=build, **kwargs)


@pytest.mark.parametrize("optimizer, grid, kwargs", [
    ("momentum", ["lr=0.3,3", "momentum=0,0.9"], {}),
    ("natural", ["lr=0.5,1", "damping=0,0.01"], {}),
    ("momentum", ["lr=1,3", "decay=0.999,0.9999"], {"schedule": "exponential"}),
], ids=["momentum", "natural", "exponential-decay"])
def test_each_train_sweep_cell_is_the_single_train_run_with_its_settings(optimizer, grid, kwargs):
    """--exact: the cells one after another in the compiled program, bit for bit gdlab.train
    (same data reading, objective, optimizer and stopping rules), so steps agree exactly even
    where the stop is decided at the rounding level (tol = 1e-15)."""
    from gdlab.sweep import sweep_train

    res = sweep_train("breast_cancer", "logistic", optimizer, grid, max_steps=1500, vectorize=False, **kwargs)
    assert res.kind == "train" and len(res) == 4 and res.settings["compiled_programs"] == 1
    sched = None
    if kwargs.get("schedule") == "exponential":
        sched = lambda rate, row, steps: schedules.make_schedule("exponential", rate, decay=row["decay"],  # noqa: E731
                                                                 horizon=steps)
    for row in res.rows():
        single = single_train(optimizer, row, max_steps=1500, schedule=sched)
        assert row["stop_reason"] == single.stop_reason
        assert row["steps"] == single.steps
        assert abs(row["loss"] - single.loss) <= 1e-10
        assert abs(row["test_loss"] - single.test_loss) <= 1e-10
        assert row["accuracy"] == single.metrics["accuracy"]
        assert (row["steps_to_converge"] is not None) == (single.stop_reason == "converged")
    assert {r["stop_reason"] for r in res.rows()} & {"converged"}, "the grid should have converging cells"


def test_vectorized_train_sweep_equals_single_runs_when_the_stop_is_the_gradient_rule():
    """Under vmap the arithmetic rounds differently; with tol = 0 the stop is ‖∇J‖ ≤ 1e-8, which
    rounding does not move, so the steps agree exactly and the losses to rounding."""
    from gdlab.sweep import sweep_train

    res = sweep_train("breast_cancer", "logistic", "nesterov", ["lr=1,3", "momentum=0.5,0.9"], max_steps=3000, tol=0.0,
                      grad_tol=1e-8)
    for row in res.rows():
        single = single_train("nesterov", row, max_steps=3000, tol=0.0, grad_tol=1e-8)
        assert (row["stop_reason"], row["steps"]) == (single.stop_reason, single.steps)
        assert abs(row["loss"] - single.loss) <= 1e-10


def test_train_sweep_reaches_the_least_squares_loss():
    """Linear regression without a penalty: the minimum of J is the mean squared residual of the
    least-squares fit (numpy.linalg.lstsq with an intercept: standardising the features does not
    change the fitted values)."""
    from sklearn.datasets import load_diabetes

    from gdlab.sweep import sweep_train

    X, y = load_diabetes(return_X_y=True)
    A = np.column_stack([X, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    mse = float(np.mean((A @ coef - y) ** 2))
    res = sweep_train("diabetes", "linear", "natural", ["lr=0.5,1"], test_size=0.0, l2=0.0, max_steps=200)
    assert res.columns["stop_reason"] == ["converged", "converged"]
    assert res.columns["steps"][1] <= 3                      # lr = 1 is Newton's step: exact at once
    np.testing.assert_allclose(res.columns["loss"], [mse, mse], rtol=1e-10)
    np.testing.assert_allclose(res.columns["rmse"], [math.sqrt(mse)] * 2, rtol=1e-10)


def test_train_sweep_reports_separable_data_without_a_penalty_as_diverged():
    from gdlab.sweep import sweep_train

    res = sweep_train("breast_cancer", "logistic", "gd", ["lr=0.5,1"], l2=0.0, test_size=0.0, max_steps=200)
    assert res.columns["stop_reason"] == ["diverged", "diverged"]
    assert res.columns["separable"] == [True, True] and res.columns["steps_to_converge"] == [None, None]


@pytest.mark.parametrize("optimizer, grid, kwargs, mention", [
    ("gd", ["speed=1,2"], {}, "can vary lr"),
    ("gd", ["momentum=0,0.9"], {}, "momentum"),
    ("natural", ["trust_region=0.1,0.2"], {}, "damping"),
    ("adam", ["damping=0.1"], {}, "natural-gradient"),
    ("natural", ["trust_region=0.1"], {}, "no trust region"),
    ("gd", ["C=0.5,1"], {}, "one sweep per"),
    ("gd", ["lr=0.1"], {"data": "no_such_data"}, "no_such_data"),
    ("sgd", ["lr=0.1"], {}, "natural-diag"),
    ("gd", ["l2=0,1"], {}, "can vary lr"),
])
def test_bad_train_sweeps_are_refused_in_one_sentence(optimizer, grid, kwargs, mention):
    from gdlab.sweep import sweep_train

    data = kwargs.pop("data", "breast_cancer")
    with pytest.raises(ValueError, match=None) as info:
        sweep_train(data, "logistic", optimizer, grid, max_steps=5, **kwargs)
    assert mention in str(info.value) and "\n" not in str(info.value)
