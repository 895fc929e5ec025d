"""Tests for gdlab.engine.run and gdlab.stopping: the compiled loop, its trace and its stop rules.

Expected numbers come from closed forms or NumPy loops: gradient descent on L(θ) = ½θᵀAθ is
θ_t = (I − ηA)^t θ_0, and the stop rules are re-applied in NumPy to those trajectories.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import engine, optim, schedules, stopping
from gdlab.stopping import StopCriteria

# L(θ) = ½ θᵀAθ with a non-diagonal A (eigenvalues 1 and 3); θ0 has weight on both eigenvectors.
A = np.array([[2.0, 1.0], [1.0, 2.0]])
THETA0 = np.array([1.0, 0.5])
LR = 0.1


def quad_loss(theta, data):
    return 0.5 * theta @ data @ theta


QUAD = engine.Objective(loss=quad_loss, data=jnp.asarray(A))
GD = optim.gd(LR)  # one object, so runs with the same criteria share a compiled chunk


def gd_closed_form(a, lr, theta0, steps):
    """θ_0 … θ_steps of gradient descent on ½θᵀaθ: θ_t = (I − ηa)^t θ_0."""
    m = np.eye(len(theta0)) - lr * a
    return np.stack([np.linalg.matrix_power(m, t) @ theta0 for t in range(steps + 1)])


def losses_np(a, thetas):
    return 0.5 * np.einsum("ti,ij,tj->t", thetas, a, thetas)


def first_divergence_step(losses, factor=1e3):
    """The first t with L_t − L_0 > factor · max(1, |L_0|) (the documented running-away rule)."""
    over = np.nonzero(losses - losses[0] > factor * max(1.0, abs(losses[0])))[0]
    return int(over[0])


def first_converged_step(losses, tol, patience):
    """The first t whose window L_{t−patience..t} spans at most tol · max(1, |L_t|)."""
    for t in range(patience, len(losses)):
        window = losses[t - patience:t + 1]
        if window.max() - window.min() <= tol * max(1.0, abs(losses[t])):
            return t
    raise AssertionError("never converged in the given horizon")


# ---------------------------------------------------------------------------------------------
# max_steps, the closed form, the trace columns
# ---------------------------------------------------------------------------------------------

N = 25
FIXED = StopCriteria(max_steps=N, tol=0.0)


@pytest.fixture(scope="module")
def fixed_run():
    return engine.run(QUAD, GD, jnp.asarray(THETA0), FIXED)


def test_max_steps_makes_exactly_n_updates(fixed_run):
    res = fixed_run
    assert res.stop_reason == "max_steps"
    assert res.steps == N
    assert len(res.trace) == N + 1
    np.testing.assert_array_equal(res.trace.step, np.arange(N + 1))


def test_gd_matches_closed_form(fixed_run):
    expected = gd_closed_form(A, LR, THETA0, N)
    np.testing.assert_allclose(fixed_run.trace.params, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fixed_run.params, expected[-1], rtol=1e-12, atol=1e-14)
    assert fixed_run.params.dtype == np.float64


def test_trace_loss_and_grad_norm_are_evaluated_at_the_recorded_params(fixed_run):
    tr = fixed_run.trace
    np.testing.assert_allclose(tr.loss, losses_np(A, tr.params), rtol=1e-13, atol=0)
    np.testing.assert_allclose(tr.grad_norm, np.linalg.norm(tr.params @ A.T, axis=1), rtol=1e-13, atol=0)
    assert fixed_run.loss == pytest.approx(losses_np(A, fixed_run.params[None])[0], rel=1e-13)
    assert fixed_run.loss == tr.loss[-1]
    assert np.all(np.diff(tr.loss) < 0)  # η < 2/λ_max: gd descends


def test_trace_columns_and_errors(fixed_run):
    tr = fixed_run.trace
    for name in ("step", "loss", "grad_norm", "lr", "params"):
        assert name in tr
        assert len(getattr(tr, name)) == N + 1
    assert "valid" not in tr
    with pytest.raises(AttributeError, match="loss"):
        tr.no_such_column


def test_max_steps_zero_evaluates_the_start_only():
    res = engine.run(QUAD, GD, jnp.asarray(THETA0), StopCriteria(max_steps=0, tol=0.0))
    assert (res.steps, len(res.trace), res.stop_reason) == (0, 1, "max_steps")
    np.testing.assert_array_equal(res.params, THETA0)
    assert res.loss == pytest.approx(losses_np(A, THETA0[None])[0], rel=1e-15)


def test_metrics_are_recorded_per_step():
    obj = engine.Objective(loss=quad_loss, data=jnp.asarray(A),
                           metrics=lambda th, data: {"first": th[0], "quad": th @ data @ th})
    res = engine.run(obj, GD, jnp.asarray(THETA0), StopCriteria(max_steps=5, tol=0.0))
    expected = gd_closed_form(A, LR, THETA0, 5)
    np.testing.assert_allclose(res.trace.first, expected[:, 0], rtol=1e-13)
    np.testing.assert_allclose(res.trace.quad, 2 * losses_np(A, expected), rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# learning-rate schedules and the lr column
# ---------------------------------------------------------------------------------------------

SCHEDULE_STEPS = 12
SCHEDULE_CASES = {
    "constant": (lambda: schedules.make_schedule("constant", 0.3), lambda t: 0.3),
    "cosine": (lambda: schedules.make_schedule("cosine", 0.3, decay_steps=8, alpha=0.1),
               lambda t: 0.3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 8) / 8)))),
    "exponential": (lambda: schedules.make_schedule("exponential", 0.3, decay=0.8),
                    lambda t: 0.3 * 0.8 ** t),
}


def _schedule_run(name):
    make, _ = SCHEDULE_CASES[name]
    return engine.run(QUAD, optim.gd(make()), jnp.asarray(THETA0),
                      StopCriteria(max_steps=SCHEDULE_STEPS, tol=0.0), chunk_size=5)


@pytest.mark.parametrize("name", ["constant", "cosine", "exponential"])
def test_scheduled_run_matches_numpy_loop(name):
    _, rate = SCHEDULE_CASES[name]
    res = _schedule_run(name)
    theta, expected = THETA0.copy(), [THETA0.copy()]
    for t in range(SCHEDULE_STEPS):
        theta = theta - rate(t) * (A @ theta)
        expected.append(theta)
    np.testing.assert_allclose(res.trace.params, np.stack(expected), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["constant", "cosine", "exponential"])
def test_trace_lr_is_the_rate_of_each_update(name):
    _, rate = SCHEDULE_CASES[name]
    res = _schedule_run(name)
    expected = np.array([rate(t) for t in range(SCHEDULE_STEPS + 1)])
    np.testing.assert_allclose(res.trace.lr, expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# chunking: the same results whatever the chunk size
# ---------------------------------------------------------------------------------------------

# The gradient norm of gd here decays like 0.9^t; with grad_tol 0.2 the run stops mid-chunk.
GRAD_STOP = StopCriteria(max_steps=100, tol=0.0, grad_tol=0.2)


@pytest.mark.parametrize("criteria", [
    StopCriteria(max_steps=20, tol=0.0),   # 21 rows: three full chunks of 7
    StopCriteria(max_steps=15, tol=0.0),   # 16 rows: stops 2 rows into the third chunk
    GRAD_STOP,                             # early stop by grad_tol, inside a chunk
], ids=["max20", "max15", "grad_tol"])
@pytest.mark.parametrize("chunk_size", [1, 7])
def test_chunk_size_does_not_change_results(criteria, chunk_size):
    ref = engine.run(QUAD, GD, jnp.asarray(THETA0), criteria)
    res = engine.run(QUAD, GD, jnp.asarray(THETA0), criteria, chunk_size=chunk_size)
    assert (res.steps, res.stop_reason, len(res.trace)) == (ref.steps, ref.stop_reason, len(ref.trace))
    assert set(res.trace.columns) == set(ref.trace.columns)
    for name in ref.trace.columns:
        np.testing.assert_allclose(getattr(res.trace, name), getattr(ref.trace, name), rtol=1e-14, atol=0,
                                   equal_nan=True, err_msg=name)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-14, atol=0)
    if criteria is GRAD_STOP:
        assert res.stop_reason == "converged" and res.steps % 7 not in (0, 6)  # really mid-chunk


@pytest.mark.parametrize("optimizer", [optim.momentum(0.001, 0.9), optim.adam(0.01)], ids=["momentum", "adam"])
def test_long_blocks_of_one_run_step_like_the_sweeps_blocks_bit_for_bit(optimizer):
    """engine.run steps cheap objectives in blocks of RUN_BLOCK; the explorer and sweeps in blocks
    of BLOCK. Both are the same scanned step, so a run is the same to the last bit either way
    (a borderline stop must fall on the same step in the explorer as in gdlab fit)."""
    rosenbrock = engine.Objective(loss=lambda p, _: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2)
    criteria = StopCriteria(max_steps=3000, tol=1e-12)
    long = engine.run(rosenbrock, optimizer, jnp.asarray([-1.2, 1.0]), criteria)
    short = engine.run(rosenbrock, optimizer, jnp.asarray([-1.2, 1.0]), criteria, chunk_size=engine.BLOCK)
    assert engine.RUN_BLOCK > engine.BLOCK
    assert (long.steps, long.stop_reason) == (short.steps, short.stop_reason)
    for name in long.trace.columns:
        assert np.array_equal(getattr(long.trace, name), getattr(short.trace, name), equal_nan=True), name


# ---------------------------------------------------------------------------------------------
# convergence
# ---------------------------------------------------------------------------------------------


def test_converges_by_loss_change_with_patience():
    tol, patience = 1e-6, 3
    res = engine.run(QUAD, GD, jnp.asarray(THETA0), StopCriteria(max_steps=1000, tol=tol, patience=patience))
    expected_losses = losses_np(A, gd_closed_form(A, LR, THETA0, 1000))
    t_stop = first_converged_step(expected_losses, tol, patience)
    assert res.stop_reason == "converged"
    assert res.steps == t_stop < 1000
    loss = res.trace.loss
    bound = tol * max(1.0, abs(loss[-1]))
    window = loss[-patience - 1:]
    assert window.max() - window.min() <= bound
    assert np.all(np.abs(np.diff(window)) <= bound)  # so each of the last `patience` changes is too
    earlier = loss[-patience - 2:-1]
    assert earlier.max() - earlier.min() > tol * max(1.0, abs(loss[-2]))  # it did not stop late


def test_converges_by_grad_tol():
    grad_tol = 1e-3
    res = engine.run(QUAD, GD, jnp.asarray(THETA0), StopCriteria(max_steps=1000, tol=0.0, grad_tol=grad_tol))
    thetas = gd_closed_form(A, LR, THETA0, 1000)
    grad_norms = np.linalg.norm(thetas @ A.T, axis=1)
    t_stop = int(np.nonzero(grad_norms <= grad_tol)[0][0])
    assert res.stop_reason == "converged"
    assert res.steps == t_stop
    assert res.trace.grad_norm[-1] <= grad_tol
    assert np.all(res.trace.grad_norm[:-1] > grad_tol)


# ---------------------------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------------------------


def test_too_large_step_diverges_and_keeps_the_trace():
    lr = 1.5  # > 2/λ_max = 2/3
    res = engine.run(QUAD, optim.gd(lr), jnp.asarray(THETA0), StopCriteria(max_steps=1000, tol=0.0))
    thetas = gd_closed_form(A, lr, THETA0, 60)
    t_stop = first_divergence_step(losses_np(A, thetas))
    assert res.stop_reason == "diverged"
    assert res.steps == t_stop
    assert len(res.trace) == res.steps + 1
    np.testing.assert_allclose(res.trace.params, thetas[:t_stop + 1], rtol=1e-12)
    assert np.all(np.isfinite(res.trace.loss))
    assert np.all(np.diff(res.trace.loss) > 0)
    np.testing.assert_array_equal(res.params, res.trace.params[-1])


def nan_beyond_two(theta, data):
    """½(θ − 3)², undefined (NaN) for θ ≥ 2."""
    return jnp.where(theta[0] < 2.0, 0.5 * (theta[0] - 3.0) ** 2, jnp.nan)


def test_nan_loss_diverges():
    # gd with η = 0.5 from 0: θ_1 = 1.5, θ_2 = 2.25, where the loss is NaN
    res = engine.run(engine.Objective(loss=nan_beyond_two), optim.gd(0.5), jnp.zeros(1),
                     StopCriteria(max_steps=100, tol=0.0))
    assert res.stop_reason == "diverged"
    assert res.steps == 2 and len(res.trace) == 3
    np.testing.assert_allclose(res.trace.params[:, 0], [0.0, 1.5, 2.25], rtol=1e-15)
    np.testing.assert_allclose(res.trace.loss[:2], [4.5, 1.125], rtol=1e-15)
    assert math.isnan(res.trace.loss[2]) and math.isnan(res.loss)


def test_negative_lr_runs_away():
    lr = -0.1
    res = engine.run(QUAD, optim.gd(lr), jnp.asarray(THETA0), StopCriteria(max_steps=1000, tol=0.0))
    t_stop = first_divergence_step(losses_np(A, gd_closed_form(A, lr, THETA0, 200)))
    assert res.stop_reason == "diverged"
    assert res.steps == t_stop
    assert np.all(np.diff(res.trace.loss) > 0)


# ---------------------------------------------------------------------------------------------
# StopCriteria.validate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    (dict(max_steps=-1), "max_steps"),
    (dict(max_steps=2.5), "max_steps"),
    (dict(tol=-1.0), "tol"),
    (dict(tol=math.nan), "tol"),
    (dict(tol=math.inf), "tol"),
    (dict(grad_tol=-1.0), "grad_tol"),
    (dict(patience=0), "patience"),
    (dict(divergence_factor=0.0), "divergence_factor"),
])
def test_validate_rejects(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        StopCriteria(**kwargs).validate()
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        engine.run(QUAD, GD, jnp.asarray(THETA0), StopCriteria(**kwargs))


def test_validate_returns_self():
    c = StopCriteria(max_steps=0, tol=0.0, patience=1, grad_tol=0.0)
    assert c.validate() is c


# ---------------------------------------------------------------------------------------------
# data is an argument of the compiled chunk
# ---------------------------------------------------------------------------------------------


def test_data_is_an_argument_and_the_chunk_is_reused():
    criteria = StopCriteria(max_steps=10, tol=0.0)
    a2 = np.array([[4.0, -1.0], [-1.0, 3.0]])
    res1 = engine.run(engine.Objective(quad_loss, jnp.asarray(A)), GD, jnp.asarray(THETA0), criteria)
    before = engine._compiled_chunk.cache_info()
    res2 = engine.run(engine.Objective(quad_loss, jnp.asarray(a2)), GD, jnp.asarray(THETA0), criteria)
    after = engine._compiled_chunk.cache_info()
    np.testing.assert_allclose(res1.params, gd_closed_form(A, LR, THETA0, 10)[-1], rtol=1e-12)
    np.testing.assert_allclose(res2.params, gd_closed_form(a2, LR, THETA0, 10)[-1], rtol=1e-12)
    assert not np.allclose(res1.params, res2.params)
    assert after.hits == before.hits + 1
    assert after.misses == before.misses


# ---------------------------------------------------------------------------------------------
# callback
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("criteria, calls", [
    (StopCriteria(max_steps=20, tol=0.0), 3),  # 21 rows in chunks of 7
    (GRAD_STOP, None),
], ids=["max20", "grad_tol"])
def test_callback_once_per_chunk_covering_all_steps(criteria, calls):
    seen = []
    res = engine.run(QUAD, GD, jnp.asarray(THETA0), criteria, chunk_size=7, callback=seen.append)
    assert len(seen) == (calls if calls is not None else res.steps // 7 + 1)
    for rows in seen:
        assert {"step", "loss", "params"} <= set(rows)
        assert len(rows["step"]) >= 1
        assert np.all(np.diff(rows["step"]) > 0)
    steps = np.concatenate([rows["step"] for rows in seen])
    np.testing.assert_array_equal(steps, np.arange(res.steps + 1))
    np.testing.assert_array_equal(np.concatenate([rows["loss"] for rows in seen]), res.trace.loss)


# ---------------------------------------------------------------------------------------------
# stopping.check, directly
# ---------------------------------------------------------------------------------------------


def check(criteria, step, loss, first_loss=1.0, grad_norm=1.0, params_finite=True, recent=None):
    if recent is None:
        recent = stopping.recent_losses_init(criteria)
    reason, recent = stopping.check(criteria, jnp.int32(step), jnp.float64(loss), jnp.float64(first_loss),
                                    jnp.float64(grad_norm), jnp.bool_(params_finite), recent)
    return int(reason), recent


def check_sequence(criteria, losses):
    """The reasons check gives along a sequence of losses fed from step 0."""
    recent, reasons = None, []
    for step, loss in enumerate(losses):
        reason, recent = check(criteria, step, loss, first_loss=losses[0], recent=recent)
        reasons.append(reason)
    return reasons


R, C = stopping.RUNNING, stopping.CONVERGED


def test_check_running_and_max_steps():
    c = StopCriteria(max_steps=5, tol=0.0)
    assert check(c, 4, 0.5)[0] == stopping.RUNNING
    assert check(c, 5, 0.5)[0] == stopping.MAX_STEPS


@pytest.mark.parametrize("kwargs", [
    dict(loss=math.nan), dict(loss=math.inf), dict(loss=0.5, grad_norm=math.nan),
    dict(loss=0.5, params_finite=False),
])
def test_check_non_finite_is_diverged_first(kwargs):
    c = StopCriteria(max_steps=5, tol=1.0, patience=1, grad_tol=10.0)  # everything else would also fire
    recent = jnp.full((2,), 0.5)
    assert check(c, 5, **{"grad_norm": 0.0, "recent": recent, **kwargs})[0] == stopping.DIVERGED


def test_check_running_away_threshold():
    c = StopCriteria(tol=0.0, divergence_factor=1e3)
    # |L_0| < 1: threshold L_0 + 1000 · 1
    assert check(c, 3, 1000.5, first_loss=0.5)[0] == stopping.RUNNING
    assert check(c, 3, 1000.75, first_loss=0.5)[0] == stopping.DIVERGED
    # |L_0| > 1: threshold L_0 + 1000 · |L_0|
    assert check(c, 3, -2.0 + 2000.0, first_loss=-2.0)[0] == stopping.RUNNING
    assert check(c, 3, -2.0 + 2000.5, first_loss=-2.0)[0] == stopping.DIVERGED
    c10 = StopCriteria(tol=0.0, divergence_factor=10.0)  # threshold 2 + 10 · 2 = 22
    assert check(c10, 3, 22.0, first_loss=2.0)[0] == stopping.RUNNING
    assert check(c10, 3, 22.5, first_loss=2.0)[0] == stopping.DIVERGED


def test_check_needs_a_full_window_of_patience_steps():
    c = StopCriteria(tol=2.0 ** -10, patience=3)
    assert check_sequence(c, [0.5] * 6) == [R, R, R, C, C, C]  # the window L_0..L_3 is full at step 3
    # a jump leaves the window only patience steps later
    assert check_sequence(c, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]) == [R] * 6 + [C]


def test_check_looks_at_the_range_over_the_window_not_one_step():
    tol, patience = 2.0 ** -10, 3
    c = StopCriteria(tol=tol, patience=patience)
    # a steady drift of tol/4 per step spans 3/4 tol over the window: converged
    assert check_sequence(c, [0.5 - k * tol / 4 for k in range(5)]) == [R, R, R, C, C]
    # a drift of tol/2 per step is within tol each step, but spans 3/2 tol: not converged
    assert check_sequence(c, [0.5 - k * tol / 2 for k in range(8)]) == [R] * 8
    # a loss that sits still for two steps and jumps back and forth by 2 tol: some single steps
    # change by 0, but every window spans 2 tol, so it never converges
    assert check_sequence(c, [0.5 + 2 * tol * (k % 3 == 0) for k in range(9)]) == [R] * 9


def test_check_tolerance_is_relative_to_max_one_abs_loss():
    c = StopCriteria(tol=1e-3, patience=3)
    # |L| ≈ 1000: the window may span 1000 · 1e-3 ≈ 1
    assert check_sequence(c, [1000.0, 1000.5, 1000.25, 1000.75]) == [R, R, R, C]
    assert check_sequence(c, [1000.0, 1001.5, 1000.25, 1000.75]) == [R, R, R, R]
    # |L| < 1: the bound is tol itself
    assert check_sequence(c, [0.01, 0.0105, 0.01, 0.0105]) == [R, R, R, C]
    assert check_sequence(c, [0.01, 0.0115, 0.01, 0.0105]) == [R, R, R, R]


def test_check_tol_zero_and_grad_tol_zero_are_off():
    off = StopCriteria(tol=0.0, grad_tol=0.0, patience=1)
    assert check_sequence(off, [1.0] * 4) == [R] * 4
    assert check(off, 3, 1.0, grad_norm=0.0)[0] == R
    on = StopCriteria(tol=0.0, grad_tol=1e-3)
    assert check(on, 3, 1.0, grad_norm=1e-3)[0] == C
    assert check(on, 3, 1.0, grad_norm=2e-3)[0] == R


def test_check_converged_beats_max_steps():
    c = StopCriteria(max_steps=5, tol=0.0, grad_tol=1e-3)
    assert check(c, 5, 1.0, grad_norm=0.0)[0] == stopping.CONVERGED


@pytest.mark.parametrize("criteria", [StopCriteria(max_steps=500), StopCriteria(max_steps=37, tol=0.0),
                                      StopCriteria(max_steps=500, grad_tol=1e-3, tol=0.0)],
                         ids=["converged", "max_steps", "grad_tol"])
def test_blocks_of_steps_stop_where_single_steps_stop(criteria):
    # chunks of 67 steps run in blocks of 1 (67 is prime), chunks of 64 in one block of 64 whose
    # stopping rules are checked after all 64 steps: the same run, row for row
    single = engine.run(QUAD, GD, jnp.asarray(THETA0), criteria, chunk_size=67)
    blocked = engine.run(QUAD, GD, jnp.asarray(THETA0), criteria, chunk_size=64)
    assert (blocked.steps, blocked.stop_reason) == (single.steps, single.stop_reason)
    assert set(blocked.trace.columns) == set(single.trace.columns)
    for name in single.trace.columns:
        np.testing.assert_array_equal(blocked.trace.columns[name], single.trace.columns[name], err_msg=name)
    np.testing.assert_array_equal(blocked.params, single.params)


def test_a_run_that_diverges_inside_a_block_keeps_the_point_where_it_stopped():
    # gradient ascent on a quadratic: the loss runs away inside a block; the run ends at the first
    # step past the divergence threshold, with θ of that step, not θ at the end of the block
    res = engine.run(QUAD, optim.gd(-0.5), jnp.asarray(THETA0), StopCriteria(max_steps=1000), chunk_size=64)
    assert res.stop_reason == "diverged"
    np.testing.assert_array_equal(res.params, res.trace.params[-1])
    first = res.trace.loss[0]
    ran_away = res.trace.loss - first > 1e3 * max(1.0, abs(first))
    assert ran_away[-1] and not ran_away[:-1].any() and len(res.trace) == res.steps + 1


def test_the_fisher_of_the_step_a_run_stops_at_is_not_computed():
    """Costly steps (blocks of one) skip F(θ_t) where the run stops at θ_t: its update is thrown
    away. The run is Newton's method on a least-squares loss (F = the Hessian AᵀA/n, exact), so
    it reaches the minimiser in one update; its rows are checked against NumPy's solve."""
    import jax

    rng = np.random.default_rng(3)
    A, b = rng.standard_normal((400, 3)), rng.standard_normal(400)
    calls = []

    def loss(theta, data):
        A, b = data
        return 0.5 * jnp.mean((A @ theta - b) ** 2)

    def fisher(theta, data):
        A, _ = data
        jax.debug.callback(lambda: calls.append(1))
        return A.T @ A / A.shape[0]

    data = (jnp.asarray(A), jnp.asarray(b))
    assert engine.block_size(loss, jnp.zeros(3), data) == 1          # a costly step
    objective = engine.Objective(loss=loss, data=data, fisher=fisher)
    res = engine.run(objective, optim.natural(1.0), jnp.zeros(3), StopCriteria(max_steps=3, tol=0.0))
    assert res.steps == 3 and len(res.trace) == 4
    assert len(calls) == 3                       # rows 0, 1, 2 made updates; row 3 is where it stopped
    exact = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(res.trace.params[1], exact, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.params, exact, rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(res.trace.lr)) and np.all(res.trace.lr == 1.0)
