"""Tests for gdlab.schedules: every schedule against its formula written independently in NumPy."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import schedules
from gdlab.schedules import make_schedule

T = np.arange(0, 200)


def evaluate(schedule, steps=T, dtype=jnp.int64):
    """The schedule at integer steps (int32 is what an optimizer state's step count is)."""
    values = schedule(jnp.asarray(steps, dtype))
    assert values.dtype == jnp.float64
    return np.asarray(values)


def evaluate_one_by_one(schedule, steps, dtype=jnp.int32):
    return np.array([float(schedule(jnp.asarray(int(t), dtype))) for t in steps])


# -- NumPy formulas, from the table in the module docstring ------------------------------------


def exponential_np(lr, decay, k, t):
    return lr * decay ** (t / k)


def step_np(lr, decay, k, t):
    return lr * decay ** np.floor(t / k)


def cosine_np(lr, steps, alpha, t):
    tt = np.minimum(t, steps)
    return lr * (alpha + (1 - alpha) * 0.5 * (1 + np.cos(np.pi * tt / steps)))


def warm_restarts_np(lr, period, period_mult, alpha, n_cycles, t):
    """SGDR laid out by hand: cycle i has length P·r^i (n_cycles of them; past those, α·η)."""
    out = np.empty(len(t))
    for j, step in enumerate(t):
        start, length = 0, period
        for _ in range(n_cycles):
            if step < start + length:
                local = step - start
                out[j] = lr * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * local / length)))
                break
            start, length = start + length, length * period_mult
        else:
            out[j] = alpha * lr
    return out


# -- the schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.1, -0.02])
def test_constant(lr):
    assert make_schedule("constant", lr) == lr


@pytest.mark.parametrize("lr", [0.1, -0.02])
def test_exponential_decays_per_step_by_default(lr):
    s = make_schedule("exponential", lr, decay=0.9)
    np.testing.assert_allclose(evaluate(s), exponential_np(lr, 0.9, 1, T), rtol=1e-12, atol=0)


def test_exponential_default_decay_is_0_99_per_step():
    s = make_schedule("exponential", 0.5)
    np.testing.assert_allclose(evaluate(s), exponential_np(0.5, 0.99, 1, T), rtol=1e-12, atol=0)


def test_exponential_with_decay_steps():
    s = make_schedule("exponential", 0.1, decay=0.5, decay_steps=7)
    np.testing.assert_allclose(evaluate(s), exponential_np(0.1, 0.5, 7, T), rtol=1e-12, atol=0)
    assert float(s(jnp.int64(7))) == pytest.approx(0.05, rel=1e-15)
    assert float(s(jnp.int64(14))) == pytest.approx(0.025, rel=1e-15)
    assert 0.05 < float(s(jnp.int64(3))) < 0.1  # smooth, not a staircase


@pytest.mark.parametrize("lr", [0.1, -0.02])
def test_step_is_a_staircase(lr):
    s = make_schedule("step", lr, decay=0.5, decay_steps=10)
    values = evaluate(s)
    np.testing.assert_allclose(values, step_np(lr, 0.5, 10, T), rtol=1e-12, atol=0)
    assert np.all(values[:10] == lr) and np.all(values[10:20] == lr * 0.5)


def test_step_default_decay_steps_is_100():
    s = make_schedule("step", 1.0, decay=0.5)
    np.testing.assert_allclose(evaluate(s), step_np(1.0, 0.5, 100, T), rtol=1e-12, atol=0)


@pytest.mark.parametrize("lr", [0.1, -0.02])
@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine(lr, alpha):
    s = make_schedule("cosine", lr, decay_steps=50, alpha=alpha)
    values = evaluate(s)
    np.testing.assert_allclose(values, cosine_np(lr, 50, alpha, T), rtol=1e-12, atol=1e-15)
    assert values[0] == pytest.approx(lr, rel=1e-15)
    assert values[25] == pytest.approx(lr * (alpha + (1 - alpha) / 2), rel=1e-12)  # half way
    np.testing.assert_allclose(values[50:], alpha * lr, rtol=1e-12, atol=1e-15)  # stays at α·η


def test_cosine_decay_length_defaults_to_horizon():
    s = make_schedule("cosine", 0.1, horizon=120)
    np.testing.assert_allclose(evaluate(s), cosine_np(0.1, 120, 0.0, T), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("lr", [0.1, -0.02])
def test_warm_restarts_formula(lr):
    # cycles 5, 10, 20, 40, 80, 160: T = 200 steps lie inside the first six
    s = make_schedule("warm-restarts", lr, period=5, period_mult=2.0, alpha=0.25, horizon=100)
    expected = warm_restarts_np(lr, 5, 2, 0.25, 6, T)
    np.testing.assert_allclose(evaluate(s), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(evaluate_one_by_one(s, [0, 4, 5, 14, 15, 34, 35, 74, 75, 154, 155, 199]),
                               expected[[0, 4, 5, 14, 15, 34, 35, 74, 75, 154, 155, 199]], rtol=1e-12)


def test_warm_restarts_restart_exactly_at_the_boundaries():
    lr, alpha = 0.1, 0.25
    s = make_schedule("warm-restarts", lr, period=5, period_mult=2.0, alpha=alpha, horizon=100)
    boundaries = [5, 5 + 10, 5 + 10 + 20, 5 + 10 + 20 + 40, 155]  # P, P+Pr, P+Pr+Pr², ...
    values = evaluate(s)
    assert values[0] == lr
    for b in boundaries:
        assert values[b] == lr, b
        assert values[b - 1] < lr
    # within each cycle the rate falls monotonically towards α·η
    for start, end in zip([0] + boundaries, boundaries):
        cycle = values[start:end]
        assert np.all(np.diff(cycle) < 0)
        length = end - start
        # last step of the cycle: one step short of α·η on the cosine
        gap = (1 - alpha) * lr * 0.5 * (1 + math.cos(math.pi * (length - 1) / length))
        assert cycle[-1] == pytest.approx(alpha * lr + gap, rel=1e-12)
        assert alpha * lr < cycle[-1] < alpha * lr + (1 - alpha) * lr * (math.pi / length) ** 2 / 4
    # cycles go on for ever: the sixth starts at 155 and decays over 160 steps
    assert values[155] == lr and values[199] < values[156] < lr


def test_warm_restarts_constant_period_matches_docstring():
    s = make_schedule("warm-restarts", 0.1, period=10)
    np.testing.assert_allclose(evaluate(s, [0, 5, 10, 15, 20, 25]), [0.1, 0.05, 0.1, 0.05, 0.1, 0.05],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(evaluate(s, T), warm_restarts_np(0.1, 10, 1, 0.0, 10**6, T),
                               rtol=1e-12, atol=1e-15)


def test_warm_restarts_function_is_the_named_schedule():
    a = make_schedule("warm-restarts", 0.3, period=7, period_mult=3.0, alpha=0.5, horizon=60)
    b = schedules.warm_restarts(0.3, 7, 3.0, 0.5)
    np.testing.assert_array_equal(evaluate(a), evaluate(b))
    np.testing.assert_allclose(evaluate(a), warm_restarts_np(0.3, 7, 3, 0.5, 10, T), rtol=1e-12)


FORMULAS = {
    "exponential": lambda t: exponential_np(0.1, 0.9, 3, t),
    "step": lambda t: step_np(0.1, 0.9, 3, t),
    "cosine": lambda t: cosine_np(0.1, 3, 0.0, t),
    "warm-restarts": lambda t: warm_restarts_np(0.1, 3, 1, 0.0, 10**6, t),
}


@pytest.mark.parametrize("name", ["exponential", "step", "cosine", "warm-restarts"])
def test_float64_at_int32_step_counts_and_under_jit(name):
    import jax

    s = make_schedule(name, 0.1, decay=0.9, decay_steps=3, period=3, horizon=40)
    steps = np.arange(0, 40)
    expected = FORMULAS[name](steps)
    np.testing.assert_allclose(evaluate(s, steps), expected, rtol=1e-12, atol=1e-15)
    for t in (1, 5, 7):
        value = jax.jit(s)(jnp.int32(t))
        assert value.dtype == jnp.float64
        assert float(value) == pytest.approx(expected[t], rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(evaluate(s, steps, jnp.int32), expected, rtol=1e-12, atol=1e-15)


def test_warm_restarts_graph_does_not_grow_with_the_number_of_cycles():
    import jax

    def size(period, mult):
        s = make_schedule("warm-restarts", 0.1, period=period, period_mult=mult, horizon=10_000)
        return len(jax.make_jaxpr(s)(jnp.int32(0)).eqns)

    assert size(1, 1.0) <= size(1000, 1.0) < 50
    assert size(1, 1.5) <= size(1000, 1.5) < 60
    # period 1 for 10,000 steps: 10,000 restarts, every step back at lr
    s = make_schedule("warm-restarts", 0.1, period=1)
    np.testing.assert_allclose(evaluate(s, np.arange(9990, 10000)), 0.1, rtol=1e-15)


# -- validation ---------------------------------------------------------------------------------


def error_message(*args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        make_schedule(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("name", ["exponential", "step"])
@pytest.mark.parametrize("decay", [0, 0.0, 1.5, -0.5])
def test_rejects_bad_decay(name, decay):
    message = error_message(name, 0.1, decay=decay)
    assert "decay" in message and "decay_steps" not in message


@pytest.mark.parametrize("name", ["exponential", "step", "cosine"])
@pytest.mark.parametrize("decay_steps", [0, -3])
def test_rejects_bad_decay_steps(name, decay_steps):
    assert "decay_steps" in error_message(name, 0.1, decay_steps=decay_steps)


@pytest.mark.parametrize("period", [0, -1])
def test_rejects_bad_period(period):
    message = error_message("warm-restarts", 0.1, period=period)
    assert "period" in message and "period_mult" not in message


def test_rejects_period_mult_below_one():
    assert "period_mult" in error_message("warm-restarts", 0.1, period=10, period_mult=0.5)


@pytest.mark.parametrize("name", ["cosine", "warm-restarts"])
@pytest.mark.parametrize("alpha", [2, -0.5])
def test_rejects_bad_alpha(name, alpha):
    assert "alpha" in error_message(name, 0.1, alpha=alpha, decay_steps=10, period=10)


def test_rejects_unknown_schedule_and_lists_names():
    message = error_message("linear", 0.1)
    assert "linear" in message
    for name in schedules.SCHEDULES:
        assert name in message


@pytest.mark.parametrize("name", schedules.SCHEDULES)
@pytest.mark.parametrize("lr", [math.nan, math.inf])
def test_rejects_non_finite_lr(name, lr):
    assert "lr" in error_message(name, lr)
