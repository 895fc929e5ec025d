"""The stopping rules under vmap at batch sizes where XLA's reductions vectorise differently."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import stopping


@pytest.mark.parametrize("lanes", [1, 8, 256, 1024])
def test_a_window_not_yet_full_never_reads_as_converged(lanes):
    # At step 0 the window holds one loss and 20 empty (NaN) slots: no run can have "stopped
    # changing" yet, whatever the batch size (XLA:CPU's max/min reductions drop NaNs at 256 lanes).
    criteria = stopping.StopCriteria(max_steps=100)
    check = jax.jit(jax.vmap(lambda loss: stopping.check(criteria, jnp.asarray(0), loss, loss, jnp.asarray(1.0),
                                                         jnp.asarray(True), stopping.recent_losses_init(criteria))))
    reason, _ = check(jnp.linspace(1.0, 30.0, lanes))
    assert np.all(np.asarray(reason) == stopping.RUNNING)


@pytest.mark.parametrize("lanes", [8, 512])
def test_a_constant_loss_converges_when_the_window_fills(lanes):
    criteria = stopping.StopCriteria(max_steps=100, patience=5)

    def run(loss):
        recent = stopping.recent_losses_init(criteria)
        reasons = []
        for t in range(8):
            r, recent = stopping.check(criteria, jnp.asarray(t), loss, loss, jnp.asarray(1.0), jnp.asarray(True), recent)
            reasons.append(r)
        return jnp.stack(reasons)

    reasons = np.asarray(jax.jit(jax.vmap(run))(jnp.full(lanes, 2.5)))
    # the window of patience + 1 = 6 losses is full at step 5: converged there, not before
    assert np.all(reasons[:, :5] == stopping.RUNNING) and np.all(reasons[:, 5:] == stopping.CONVERGED)


# ------------------------------------------------------------- the block check against the step-by-step check

from hypothesis import given, settings, strategies as st  # noqa: E402


def brute_range(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    return windows.max(axis=1), windows.min(axis=1)


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 21, 33])
def test_sliding_range_is_the_max_and_min_of_each_window(width):
    values = np.random.default_rng(width).normal(size=width + 40)
    hi, lo = stopping.sliding_range(jnp.asarray(values), width)
    want_hi, want_lo = brute_range(values, width)
    np.testing.assert_array_equal(np.asarray(hi), want_hi)
    np.testing.assert_array_equal(np.asarray(lo), want_lo)


def first_stop_step_by_step(criteria, losses, grad_norms, finite_params, recent=None, step0=0, first=0.0):
    """:func:`stopping.check` applied one step at a time (its ring buffer), the reference."""
    recent = stopping.recent_losses_init(criteria) if recent is None else recent
    for j, (loss, g, ok) in enumerate(zip(losses, grad_norms, finite_params)):
        t = step0 + j
        first = loss if t == 0 else first
        reason, recent = stopping.check(criteria, jnp.asarray(t), jnp.asarray(loss), jnp.asarray(first),
                                        jnp.asarray(g), jnp.asarray(ok), recent)
        if int(reason) != stopping.RUNNING:
            return j, int(reason)
    return len(losses), stopping.RUNNING


# check_block as the engine runs it: compiled, with the criteria fixed at compile time. One program
# per (criteria, block size) rather than hundreds of small ones per call, op by op (~3x faster);
# the reference, check() step by step, stays op by op.
check_block_compiled = jax.jit(stopping.check_block, static_argnums=0)

plateau_runs = st.lists(st.tuples(st.sampled_from([1.0, 1.0 + 1e-16, 2.0, 5.0, 0.5, float("nan"), float("inf"), 3e3]),
                                  st.integers(1, 6)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(runs=plateau_runs, patience=st.integers(1, 5), tol=st.sampled_from([0.0, 1e-15, 1e-3]),
       grad_tol=st.sampled_from([0.0, 0.5]), max_steps=st.integers(0, 40), block=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_check_block_stops_where_the_step_by_step_rules_stop(runs, patience, tol, grad_tol, max_steps, block, seed):
    # losses that sit on plateaus (converging), jump, run away (3e3) or turn non-finite, with
    # random gradient norms and θ now and then non-finite; cut into blocks of any size
    criteria = stopping.StopCriteria(max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol)
    losses = np.array([v for v, n in runs for _ in range(n)])
    rng = np.random.default_rng(seed)
    grads = rng.choice([0.1, 1.0, 2.0], size=losses.size)
    finite_params = rng.random(losses.size) > 0.03
    want = first_stop_step_by_step(criteria, losses, grads, finite_params)

    recent, first, got = stopping.recent_losses_init(criteria), jnp.asarray(0.0), None
    for start in range(0, losses.size, block):
        piece = slice(start, start + block)
        n = losses[piece].size
        stop, reason, first, recent = check_block_compiled(
            criteria, jnp.int32(start), jnp.asarray(losses[piece]), jnp.asarray(grads[piece]),
            jnp.asarray(finite_params[piece]), first, recent)
        if int(stop) < n:
            got = (start + int(stop), int(reason))
            break
    assert (got or (losses.size, stopping.RUNNING)) == want


def test_check_block_after_a_reset_waits_for_a_full_window():
    # the explorer resets the window at a direction switch (all NaN) in the middle of a run:
    # the constant losses after it converge only once patience + 1 of them are in the window
    criteria = stopping.StopCriteria(max_steps=1000, tol=1e-12, patience=4)
    stop, reason, _, _ = stopping.check_block(criteria, jnp.int32(50), jnp.full(8, 2.0), jnp.ones(8), jnp.ones(8, bool),
                                              jnp.asarray(2.0), stopping.recent_losses_init(criteria))
    assert (int(stop), int(reason)) == (4, stopping.CONVERGED)


@pytest.mark.parametrize("lanes", [8, 512])
def test_check_block_under_vmap_never_reads_an_unfilled_window_as_calm(lanes):
    criteria = stopping.StopCriteria(max_steps=100, patience=20)
    check = jax.jit(jax.vmap(lambda loss: stopping.check_block(
        criteria, jnp.int32(0), jnp.full(16, loss), jnp.ones(16), jnp.ones(16, bool), loss,
        stopping.recent_losses_init(criteria))[:2]))
    stop, reason = check(jnp.linspace(1.0, 30.0, lanes))
    assert np.all(np.asarray(stop) == 16) and np.all(np.asarray(reason) == stopping.RUNNING)
