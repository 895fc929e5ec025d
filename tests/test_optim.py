"""Tests for gdlab.optim: the optimizers, their injected hyperparameters, ``by_name``, ``learning_rate``.

In the style of optax's own tests: one table of every optimizer drives parametrized property
tests; exact-formula tests compare against the update rules written out in NumPy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdlab import optim

# ---------------------------------------------------------------------------------------------
# The table: every optimizer in gdlab.optim with hyperparameters that suit both test problems.
# ---------------------------------------------------------------------------------------------

OPTIMIZERS = [
    ("gd", optim.gd, dict(lr=1e-3)),
    ("momentum", optim.momentum, dict(lr=1e-4, momentum=0.9)),
    ("nesterov", optim.nesterov, dict(lr=1e-4, momentum=0.9)),
    ("adam", optim.adam, dict(lr=1e-2)),
]
TABLE_IDS = [name for name, _, _ in OPTIMIZERS]

# A well-scaled 2-D quadratic with a non-diagonal Hessian (eigenvalues 250 ± 50√5 ≈ 138, 362)
# and its minimum at C.
A_BIG = np.array([[300.0, 100.0], [100.0, 200.0]])
C = np.array([1.0, -2.0])


def quadratic(theta):
    d = theta - C
    return 0.5 * d @ A_BIG @ d


def rosenbrock(theta):
    return (1.0 - theta[0]) ** 2 + 100.0 * (theta[1] - theta[0] ** 2) ** 2


def run_jit(opt, loss, x0, n):
    """n optimizer steps on ``loss`` from ``x0`` under jit (lax.scan). Returns θ_0..θ_n and L(θ_0..θ_n)."""

    @jax.jit
    def go(x0):
        def step(carry, _):
            x, s = carry
            g = jax.grad(loss)(x)
            u, s = opt.update(g, s, x)
            x = optax.apply_updates(x, u)
            return (x, s), x

        _, xs = jax.lax.scan(step, (x0, opt.init(x0)), None, length=n)
        xs = jnp.concatenate([x0[None], xs])
        return xs, jax.vmap(loss)(xs)

    xs, ls = go(jnp.asarray(x0, jnp.float64))
    return np.asarray(xs), np.asarray(ls)


def run_eager(opt, loss, x0, n):
    """The same as :func:`run_jit`, one Python-level update at a time, nothing compiled by us."""
    x = jnp.asarray(x0, jnp.float64)
    s = opt.init(x)
    xs = [np.asarray(x)]
    for _ in range(n):
        u, s = opt.update(jax.grad(loss)(x), s, x)
        x = optax.apply_updates(x, u)
        xs.append(np.asarray(x))
    return np.stack(xs)


def test_table_covers_every_first_order_optimizer():
    # natural needs a Fisher at every update: its table-style checks are in tests/test_natural.py
    assert sorted(TABLE_IDS) == sorted(set(optim.OPTIMIZERS) - {"natural"})


# ---------------------------------------------------------------------------------------------
# Property tests driven by the table.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_descends_on_quadratic_and_reaches_minimum(name, factory, kwargs):
    xs, ls = run_jit(factory(**kwargs), quadratic, np.zeros(2), 2000)
    assert ls[-1] < ls[0]
    np.testing.assert_allclose(xs[-1], C, rtol=0, atol=1e-8)
    assert ls[-1] <= 1e-12


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_progress_on_rosenbrock(name, factory, kwargs):
    x0 = np.array([-1.2, 1.0])
    xs, ls = run_jit(factory(**kwargs), rosenbrock, x0, 2000)
    assert ls[0] == pytest.approx(24.2, rel=1e-12)  # (1 + 1.2)² + 100 (1 − 1.44)²
    assert np.all(np.isfinite(ls))
    assert ls[-1] < 0.01 * ls[0]
    assert np.linalg.norm(xs[-1] - 1.0) < np.linalg.norm(x0 - 1.0)


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_keeps_float64(name, factory, kwargs):
    opt = factory(**kwargs)
    x = jnp.array([0.3, -0.7], jnp.float64)
    s = opt.init(x)
    for _ in range(2):
        u, s = opt.update(jax.grad(quadratic)(x), s, x)
        assert u.dtype == jnp.float64
        x = optax.apply_updates(x, u)
        assert x.dtype == jnp.float64
    floats = [leaf for leaf in jax.tree_util.tree_leaves(s) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert floats and all(leaf.dtype == jnp.float64 for leaf in floats)
    assert s.hyperparams["learning_rate"].dtype == jnp.float64


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_works_under_jit(name, factory, kwargs):
    opt = factory(**kwargs)
    x0 = np.array([0.5, 0.5])
    jitted, _ = run_jit(opt, quadratic, x0, 5)
    eager = run_eager(opt, quadratic, x0, 5)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(jitted[-1], jitted[0])  # it moved


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_learning_rate_is_injected(name, factory, kwargs):
    """Doubling state.hyperparams['learning_rate'] doubles every later update, without a rebuild.

    All four rules are linear in η given the gradients (the moments do not depend on η), so
    with the same gradient sequence the modified state's updates are exactly twice the others.
    """
    opt = factory(**kwargs)
    update = jax.jit(opt.update)
    x = jnp.array([0.5, -0.25])
    s_a = opt.init(x)
    lr = float(s_a.hyperparams["learning_rate"])
    assert lr == kwargs["lr"]
    s_b = s_a._replace(hyperparams={**s_a.hyperparams, "learning_rate": jnp.asarray(2 * lr, jnp.float64)})
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = jnp.asarray(rng.normal(size=2))
        u_a, s_a = update(g, s_a, x)
        u_b, s_b = update(g, s_b, x)
        np.testing.assert_allclose(np.asarray(u_b), 2 * np.asarray(u_a), rtol=1e-12, atol=0)
        assert float(s_b.hyperparams["learning_rate"]) == 2 * lr  # the state carries it on
    assert update._cache_size() == 1  # one compilation served both rates


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_negative_lr_is_accepted_and_ascends(name, factory, kwargs):
    kwargs = {**kwargs, "lr": -kwargs["lr"]}
    _, ls = run_jit(factory(**kwargs), quadratic, np.zeros(2), 10)
    assert np.all(np.diff(ls) > 0)


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_scheduled_learning_rate_is_applied(name, factory, kwargs):
    """With lr = schedule, update t equals (update with lr=1) · schedule(t)."""
    schedule = lambda t: 0.1 * 0.5 ** t  # noqa: E731
    scheduled = factory(**{**kwargs, "lr": schedule})
    unit = factory(**{**kwargs, "lr": 1.0})
    x = jnp.array([0.5, -0.25])
    s, s1 = scheduled.init(x), unit.init(x)
    rng = np.random.default_rng(1)
    for t in range(5):
        g = jnp.asarray(rng.normal(size=2))
        u, s = scheduled.update(g, s, x)
        u1, s1 = unit.update(g, s1, x)
        np.testing.assert_allclose(np.asarray(u), 0.1 * 0.5 ** t * np.asarray(u1), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# Exact formulas: 50 steps against the update rules written in NumPy, on a quadratic with a
# non-diagonal Hessian.
# ---------------------------------------------------------------------------------------------

A = np.array([[3.0, 1.0], [1.0, 2.0]])
B = np.array([1.0, -1.0])
X0 = np.array([2.0, 1.0])
STEPS = 50


def small_quadratic(theta):
    return 0.5 * theta @ A @ theta - B @ theta


def grad_np(theta):
    return A @ theta - B


def heavy_ball_np(lr, beta):
    theta, v, out = X0.copy(), np.zeros(2), [X0.copy()]
    for _ in range(STEPS):
        g = grad_np(theta)
        v = beta * v + g
        theta = theta - lr * v
        out.append(theta)
    return np.stack(out)


def nesterov_np(lr, beta):
    theta, v, out = X0.copy(), np.zeros(2), [X0.copy()]
    for _ in range(STEPS):
        g = grad_np(theta)
        v = beta * v + g
        theta = theta - lr * (g + beta * v)
        out.append(theta)
    return np.stack(out)


def adam_np(lr, b1, b2, eps):
    theta, m, v, out = X0.copy(), np.zeros(2), np.zeros(2), [X0.copy()]
    for t in range(1, STEPS + 1):
        g = grad_np(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return np.stack(out)


def test_heavy_ball_momentum_formula():
    xs, _ = run_jit(optim.momentum(lr=0.05, momentum=0.9), small_quadratic, X0, STEPS)
    np.testing.assert_allclose(xs, heavy_ball_np(0.05, 0.9), rtol=1e-12, atol=1e-12)


def test_nesterov_formula():
    xs, _ = run_jit(optim.nesterov(lr=0.05, momentum=0.8), small_quadratic, X0, STEPS)
    expected = nesterov_np(0.05, 0.8)
    np.testing.assert_allclose(xs, expected, rtol=1e-12, atol=1e-12)
    # and it is a different method from heavy ball with the same settings
    assert np.max(np.abs(expected - heavy_ball_np(0.05, 0.8))) > 1e-3


def test_adam_formula_with_bias_correction():
    xs, _ = run_jit(optim.adam(lr=0.05, b1=0.8, b2=0.99, eps=1e-6), small_quadratic, X0, STEPS)
    np.testing.assert_allclose(xs, adam_np(0.05, 0.8, 0.99, 1e-6), rtol=1e-12, atol=1e-12)


def test_gd_formula():
    xs, _ = run_jit(optim.gd(lr=0.1), small_quadratic, X0, STEPS)
    expected = [X0]
    for _ in range(STEPS):
        expected.append(expected[-1] - 0.1 * grad_np(expected[-1]))
    np.testing.assert_allclose(xs, np.stack(expected), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("factory", [optim.momentum, optim.nesterov], ids=["momentum", "nesterov"])
def test_zero_momentum_is_gd_exactly(factory):
    xs, _ = run_jit(factory(lr=0.1, momentum=0.0), small_quadratic, X0, STEPS)
    ref, _ = run_jit(optim.gd(lr=0.1), small_quadratic, X0, STEPS)
    np.testing.assert_array_equal(xs, ref)


def test_negative_lr_gd_is_gradient_ascent_formula():
    xs, _ = run_jit(optim.gd(lr=-0.1), small_quadratic, X0, 10)
    expected = [X0]
    for _ in range(10):
        expected.append(expected[-1] + 0.1 * grad_np(expected[-1]))
    np.testing.assert_allclose(xs, np.stack(expected), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# by_name
# ---------------------------------------------------------------------------------------------


def _trajectory(opt):
    return run_eager(opt, small_quadratic, X0, 3)


@pytest.mark.parametrize("name, momentum, reference", [
    ("gd", None, lambda: optim.gd(0.05)),
    ("gd", 0, lambda: optim.gd(0.05)),
    ("momentum", None, lambda: optim.momentum(0.05, 0.9)),
    ("momentum", 0.5, lambda: optim.momentum(0.05, 0.5)),
    ("nesterov", None, lambda: optim.nesterov(0.05, 0.9)),
    ("nesterov", 0.5, lambda: optim.nesterov(0.05, 0.5)),
    ("adam", None, lambda: optim.adam(0.05)),
])
def test_by_name_builds_the_right_optimizer(name, momentum, reference):
    opt = optim.by_name(name, 0.05, momentum)
    np.testing.assert_array_equal(_trajectory(opt), _trajectory(reference()))
    state = opt.init(jnp.zeros(2))
    assert float(state.hyperparams["learning_rate"]) == 0.05
    if name in ("momentum", "nesterov"):
        assert float(state.hyperparams["momentum"]) == (0.9 if momentum is None else momentum)


def test_by_name_optimizers_differ():
    trajectories = {name: _trajectory(optim.by_name(name, 0.05)) for name in TABLE_IDS}
    names = list(trajectories)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(trajectories[a], trajectories[b]), (a, b)


def test_by_name_rejects_unknown_name_and_lists_choices():
    with pytest.raises(ValueError) as info:
        optim.by_name("sgd", 0.1)
    message = str(info.value)
    assert "sgd" in message
    for name in optim.OPTIMIZERS:
        assert name in message


@pytest.mark.parametrize("name", ["gd", "adam"])
def test_by_name_rejects_momentum_for_optimizers_without_it(name):
    with pytest.raises(ValueError) as info:
        optim.by_name(name, 0.1, 0.9)
    message = str(info.value)
    assert "momentum" in message and "nesterov" in message and name in message


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_by_name_rejects_momentum_out_of_range(name, bad):
    with pytest.raises(ValueError, match="momentum"):
        optim.by_name(name, 0.1, bad)
    with pytest.raises(ValueError, match="momentum"):
        getattr(optim, name)(0.1, bad)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_rejects_non_finite_lr(name, bad):
    with pytest.raises(ValueError, match=r"\blr\b"):
        optim.by_name(name, bad)


# ---------------------------------------------------------------------------------------------
# learning_rate(state)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=TABLE_IDS)
def test_learning_rate_reads_the_rate_used(name, factory, kwargs):
    opt = factory(**kwargs)
    x = jnp.array([0.5, -0.25])
    _, s = opt.update(jax.grad(quadratic)(x), opt.init(x), x)
    assert float(optim.learning_rate(s)) == kwargs["lr"]


def test_learning_rate_follows_schedule():
    from gdlab.schedules import make_schedule

    schedule = make_schedule("exponential", 0.1, decay=0.5)
    opt = optim.momentum(schedule, 0.9)
    x = jnp.array([0.5, -0.25])
    s = opt.init(x)
    for t in range(5):
        _, s = opt.update(jax.grad(quadratic)(x), s, x)
        assert float(optim.learning_rate(s)) == pytest.approx(0.1 * 0.5 ** t, rel=1e-12)


def test_learning_rate_is_nan_without_injected_hyperparams():
    opt = optax.sgd(0.1)
    assert math.isnan(float(optim.learning_rate(opt.init(jnp.zeros(2)))))


@pytest.mark.parametrize("name", ["exponential", "step", "cosine", "warm-restarts"])
def test_scheduled_rate_is_float64_in_the_state(name):
    """The rate an optimizer takes from a gdlab schedule is the schedule's float64 value."""
    from gdlab.schedules import make_schedule

    schedule = make_schedule(name, 0.1, decay=0.9, decay_steps=3, period=4, horizon=20)
    opt = optim.gd(schedule)
    x = jnp.array([0.5, -0.25])
    s = opt.init(x)
    g = jnp.array([1.0, -2.0])
    for t in range(6):
        u, s = opt.update(g, s, x)
        rate = s.hyperparams["learning_rate"]
        assert rate.dtype == jnp.float64
        expected = float(schedule(np.int64(t)))
        assert float(rate) == pytest.approx(expected, rel=1e-15)
        np.testing.assert_allclose(np.asarray(u), -expected * np.asarray(g), rtol=1e-15)


def test_equal_settings_share_one_transform_and_one_compilation():
    from gdlab import engine, fit

    assert optim.gd(0.1) is optim.gd(0.1) and optim.natural(damping=1e-6) is optim.natural(damping=1e-6)
    assert optim.momentum(0.1, 0.9) is optim.momentum(0.1, 0.9)
    assert optim.momentum(0.1, 0.9) is not optim.momentum(0.1, 0.5)
    s1, s2 = optax.constant_schedule(0.1), optax.constant_schedule(0.1)
    assert optim.gd(s1) is optim.gd(s1) and optim.gd(s1) is not optim.gd(s2)   # a schedule by identity
    fit("N(2, 1)", "N(0, 5)", optimizer=optim.momentum(0.05, 0.9), max_steps=50)
    before = engine._compiled_chunk.cache_info().misses
    res = fit("N(-1, 2)", "N(0, 5)", optimizer=optim.momentum(0.05, 0.9), max_steps=50)
    assert engine._compiled_chunk.cache_info().misses == before and res.steps == 50   # the loop was reused


SHARED_KINDS = [
    (optim.gd, [dict(lr=0.1), dict(lr=-0.3)]),
    (optim.momentum, [dict(lr=0.1, momentum=0.9), dict(lr=0.02, momentum=0.0)]),
    (optim.nesterov, [dict(lr=0.1, momentum=0.5), dict(lr=0.3, momentum=0.99)]),
    (optim.adam, [dict(lr=0.01), dict(lr=0.2, b1=0.5, b2=0.9, eps=1e-3)]),
    (optim.natural, [dict(lr=1.0), dict(lr=0.4, damping=0.1, momentum=0.3)]),
    (optim.natural, [dict(lr=1.0, trust_region=0.01), dict(lr=0.5, damping=1e-3, trust_region=0.2)]),
]


@pytest.mark.parametrize("factory, settings", SHARED_KINDS)
def test_settings_that_differ_in_injected_numbers_share_one_update(factory, settings):
    """The shared update reads the numbers from the state, so every transform of the kind computes
    exactly what a transform built on its own (the factory unmemoised) computes."""
    first, second = (factory(**kw) for kw in settings)
    assert first is not second and first.update is second.update
    params = jnp.array([0.3, -1.2])
    fisher = jnp.array([[2.0, 0.3], [0.3, 0.5]])
    for opt, kw in ((first, settings[0]), (second, settings[1])):
        alone = factory.__wrapped__(**kw)
        assert alone.update is not opt.update
        state, alone_state = opt.init(params), alone.init(params)
        for g in (jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25]), jnp.array([-3.0, 1.0])):
            u, state = opt.update(g, state, params, fisher=fisher)
            v, alone_state = alone.update(g, alone_state, params, fisher=fisher)
            np.testing.assert_array_equal(u, v)
            params = params + u


def test_a_schedule_or_a_missing_number_makes_another_kind():
    assert optim.gd(optax.constant_schedule(0.1)).update is not optim.gd(0.1).update
    assert optim.natural(trust_region=0.1).update is not optim.natural().update    # None: no trust region
    assert optim.natural(solver="cg").update is not optim.natural().update          # a static setting
    assert optim.momentum(0.1, 0.9).update is not optim.nesterov(0.1, 0.9).update


def test_fits_at_other_step_sizes_reuse_the_compiled_loop():
    from gdlab import engine, fit

    fit("N(2, 1)", "N(0, 5)", optimizer=optim.momentum(0.05, 0.9), max_steps=300)
    before = engine._compiled_chunk.cache_info().misses
    res = fit("N(2, 1)", "N(0, 5)", optimizer=optim.momentum(0.2, 0.5), max_steps=300)
    assert engine._compiled_chunk.cache_info().misses == before                      # no new program
    # the same numbers as a transform of its own, compiled apart
    alone = fit("N(2, 1)", "N(0, 5)", optimizer=optim.momentum.__wrapped__(0.2, 0.5), max_steps=300)
    assert (res.steps, res.loss, res.q.mean, res.q.var) == (alone.steps, alone.loss, alone.q.mean, alone.q.var)
