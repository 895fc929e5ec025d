"""Tests for gdlab.landscapes: the recorded minima, the double well's story, multistart.

Every recorded minimum is checked by independent routes: the autodiff gradient vanishes there,
the value is the recorded one, the Hessian is positive definite, no point of a dense random
sample of the box goes lower, and the formulas agree with NumPy versions written from the
literature (and, for the double well, with a quadrature of its derivative).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gdlab import optim, schedules
from gdlab.landscapes import (LANDSCAPES, double_well, get_landscape, minima_found, minimize, multistart,
                              random_starts)

jax.config.update("jax_enable_x64", True)

# The functions written again from the literature, in NumPy (independent of the JAX code).
NUMPY = {
    "bowl": lambda x, y: x ** 2,
    "himmelblau": lambda x, y: (x ** 2 + y - 11) ** 2 + (x + y ** 2 - 7) ** 2,
    "rosenbrock": lambda x, y: (1 - x) ** 2 + 100 * (y - x ** 2) ** 2,
    "rastrigin": lambda x, y: 20 + x ** 2 - 10 * np.cos(2 * np.pi * x) + y ** 2 - 10 * np.cos(2 * np.pi * y),
    "ackley": lambda x, y: (-20 * np.exp(-0.2 * np.sqrt(0.5 * (x ** 2 + y ** 2)))
                            - np.exp(0.5 * (np.cos(2 * np.pi * x) + np.cos(2 * np.pi * y))) + np.e + 20),
    "beale": lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2,
    "six-hump-camel": lambda x, y: (4 - 2.1 * x ** 2 + x ** 4 / 3) * x ** 2 + x * y + (-4 + 4 * y ** 2) * y ** 2,
}
# Minima as the literature prints them (Surjanovic & Bingham's library, 4-6 decimals).
LITERATURE = {
    "himmelblau": [((3.0, 2.0), 0.0), ((-2.805118, 3.131312), 0.0), ((-3.779310, -3.283186), 0.0),
                   ((3.584428, -1.848126), 0.0)],
    "six-hump-camel": [((0.0898, -0.7126), -1.0316), ((-0.0898, 0.7126), -1.0316)],
    "rosenbrock": [((1.0, 1.0), 0.0)], "beale": [((3.0, 0.5), 0.0)], "rastrigin": [((0.0, 0.0), 0.0)],
    "ackley": [((0.0, 0.0), 0.0)], "bowl": [((0.0,), 0.0)],
}


def double_well_derivative(x):
    """f'(x) as documented: 30 (x + 1.5)(x - 0.7)(x - 1.2) / (1 + 4 (x - 1.2)²)."""
    return 30.0 * (x + 1.5) * (x - 0.7) * (x - 1.2) / (1.0 + ((x - 1.2) / 0.5) ** 2)


ALL_MINIMA = [(name, m, kind) for name, ls in LANDSCAPES.items()
              for kind, ms in (("global", ls.global_minima), ("local", ls.local_minima)) for m in ms]


@pytest.mark.parametrize("name, minimum, kind", ALL_MINIMA,
                         ids=[f"{n}-{k}-{i}" for i, (n, _, k) in enumerate(ALL_MINIMA)])
def test_each_recorded_minimum_is_a_stationary_point_with_its_recorded_value(name, minimum, kind):
    ls = LANDSCAPES[name]
    x = jnp.asarray(minimum.x)
    assert float(ls.fn(x)) == pytest.approx(minimum.f, abs=1e-12)
    grad = np.asarray(jax.grad(ls.fn)(x))
    assert np.linalg.norm(grad) < 1e-9, grad
    if name == "ackley":     # a cone: not differentiable, but every direction goes up
        for d in np.eye(2):
            assert float(ls.fn(x + 1e-6 * d)) > minimum.f and float(ls.fn(x - 1e-6 * d)) > minimum.f
    else:
        assert np.all(np.linalg.eigvalsh(np.asarray(jax.hessian(ls.fn)(x)).reshape(ls.dim, ls.dim)) > 0)


@pytest.mark.parametrize("name", list(NUMPY))
def test_formulas_agree_with_numpy_versions_from_the_literature(name):
    ls = LANDSCAPES[name]
    pts = random_starts(ls.box, 200, seed=1)
    ours = np.asarray(jax.vmap(ls.fn)(jnp.asarray(pts)))
    cols = [pts[:, 0], pts[:, 1] if ls.dim == 2 else None]
    np.testing.assert_allclose(ours, NUMPY[name](*cols), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("name", list(LITERATURE))
def test_recorded_minima_are_the_literatures(name):
    recorded = LANDSCAPES[name].global_minima
    assert len(recorded) == len(LITERATURE[name])
    for (x, f), m in zip(LITERATURE[name], recorded):
        np.testing.assert_allclose(m.x, x, atol=1e-4)   # printed to 4-6 decimals
        assert m.f == pytest.approx(f, abs=1e-4)


@pytest.mark.parametrize("name", list(LANDSCAPES))
def test_no_point_of_the_box_goes_below_the_global_minimum(name):
    ls = LANDSCAPES[name]
    pts = random_starts(ls.box, 20_000, seed=2)
    values = np.asarray(jax.jit(jax.vmap(ls.fn))(jnp.asarray(pts)))
    assert values.min() >= ls.global_minima[0].f - 1e-12
    assert all(m.f == ls.global_minima[0].f for m in ls.global_minima)


def test_double_well_is_the_integral_of_its_documented_derivative():
    for x in (-2.4, -1.5, -0.3, 0.7, 1.2, 2.3):
        quad = integrate.quad(double_well_derivative, -1.5, x, epsabs=1e-13, epsrel=1e-13)[0]
        assert float(double_well(jnp.array([x]))) == pytest.approx(quad, abs=1e-11)
        assert float(jax.grad(double_well)(jnp.array([x]))[0]) == pytest.approx(double_well_derivative(x), abs=1e-11)


def test_double_well_mirrors_the_source_picture():
    """Deep global well on the left, shallow local well on the right, a barrier between; the
    local well is sharp enough that lr = 0.1 cannot stay in it while the global one can."""
    ls = LANDSCAPES["double-well"]
    (glob,), (loc,) = ls.global_minima, ls.local_minima
    assert glob.x[0] < 0 < loc.x[0] and glob.f < loc.f
    barrier = float(double_well(jnp.array([0.7])))
    assert barrier > loc.f and barrier - loc.f < loc.f - glob.f      # shallow on the right
    curv = lambda x: float(jax.hessian(double_well)(jnp.array([x]))[0, 0])  # noqa: E731
    assert curv(glob.x[0]) == pytest.approx(5.91, abs=0.01) and curv(loc.x[0]) == pytest.approx(40.5, abs=1e-9)
    assert 0.1 * curv(glob.x[0]) < 2 < 0.1 * curv(loc.x[0])


# ------------------------------------------------------------------------------ the acceptance runs

def test_a_constant_small_step_from_the_right_basin_stays_in_the_local_minimum():
    res = minimize("double-well", 1.5, optim.gd(0.01))
    assert res.stop_reason == "converged"
    assert res.x[0] == pytest.approx(1.2, abs=1e-6)
    assert res.f == pytest.approx(LANDSCAPES["double-well"].local_minima[0].f, abs=1e-12)


def test_warm_restarts_reach_the_global_minimum():
    rate = schedules.make_schedule("warm-restarts", 0.1, period=50, period_mult=2)
    res = minimize("double-well", 1.5, optim.gd(rate))
    assert res.stop_reason == "converged"
    assert res.x[0] == pytest.approx(-1.5, abs=1e-6) and abs(res.f) < 1e-12
    assert np.any(res.trace.lr < 0.01) and res.trace.lr[0] == pytest.approx(0.1)    # annealed, restarted


def test_warm_restarts_leave_the_bottom_of_the_local_well_where_a_small_step_stays():
    start = 1.2 + 1e-6
    stays = minimize("double-well", start, optim.gd(0.01), max_steps=3000, tol=0.0)
    rate = schedules.make_schedule("warm-restarts", 0.1, period=50, period_mult=2)
    leaves = minimize("double-well", start, optim.gd(rate), max_steps=3000, tol=0.0)
    assert stays.x[0] == pytest.approx(1.2, abs=1e-9)
    assert leaves.x[0] == pytest.approx(-1.5, abs=1e-9)


def test_momentum_0_9_rolls_over_the_barrier_to_the_global_minimum():
    res = minimize("double-well", 1.5, optim.momentum(0.01, 0.9))
    assert res.stop_reason == "converged" and res.x[0] == pytest.approx(-1.5, abs=1e-6)


def test_user_expression_with_momentum_reaches_the_deeper_well():
    """The issue's expression x⁴ − 3x² + x: its minima are roots of 4x³ − 6x + 1 (NumPy's roots)."""
    roots = np.sort(np.roots([4.0, 0.0, -6.0, 1.0]).real)
    res = minimize("x**4 - 3*x**2 + x", 2.0, optim.momentum(0.01, 0.9))
    assert res.x[0] == pytest.approx(roots[0], abs=1e-6)
    plain = minimize("x**4 - 3*x**2 + x", 2.0, optim.gd(0.01))
    assert plain.x[0] == pytest.approx(roots[2], abs=1e-6)


def test_himmelblau_multistart_64_finds_all_four_minima_to_1e_6():
    res = multistart("himmelblau", 64, optim.gd(0.01), seed=0)
    assert res.global_minima_found == 4
    for m in LANDSCAPES["himmelblau"].global_minima:
        dist = np.linalg.norm(res.x - np.asarray(m.x), axis=1)
        assert dist.min() < 1e-6
    assert res.reached_global == int(np.sum(np.min(np.linalg.norm(
        res.x[:, None, :] - np.asarray([m.x for m in LANDSCAPES["himmelblau"].global_minima])[None], axis=-1),
        axis=1) < 1e-6))
    assert res.f[res.best] == pytest.approx(0.0, abs=1e-12)
    assert res.starts.shape == (64, 2) and len(res.stop_reason) == 64


def test_each_multistart_run_is_the_single_run_from_its_start_bit_for_bit_without_vectorizing():
    res = multistart("six-hump-camel", 5, optim.momentum(0.01, 0.5), seed=3, keep_traces=True, vectorize=False)
    for i in range(5):
        one = minimize("six-hump-camel", res.starts[i], optim.momentum(0.01, 0.5))
        np.testing.assert_array_equal(res.x[i], one.x)
        assert res.steps[i] == one.steps and res.stop_reason[i] == one.stop_reason
        np.testing.assert_array_equal(res.traces[i].loss, one.trace.loss)


def test_vectorized_multistart_agrees_with_single_runs_to_rounding():
    """vmap's vectorised arithmetic may round differently from a single run; with a tolerance above
    the rounding level the stops agree and the ends agree to rounding."""
    res = multistart("six-hump-camel", 8, optim.momentum(0.01, 0.5), seed=3, tol=1e-12)
    for i in range(8):
        one = minimize("six-hump-camel", res.starts[i], optim.momentum(0.01, 0.5), tol=1e-12)
        assert (res.stop_reason[i], int(res.steps[i])) == (one.stop_reason, one.steps)
        np.testing.assert_allclose(res.x[i], one.x, rtol=0, atol=1e-12)
        assert res.f[i] == pytest.approx(one.f, abs=1e-14)


def test_random_starts_are_seeded_and_inside_the_box():
    box = ((-1.0, 2.0), (3.0, 4.0))
    a, b = random_starts(box, 100, seed=7), random_starts(box, 100, seed=7)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= [-1, 3]) & (a <= [2, 4]))
    assert not np.array_equal(a, random_starts(box, 100, seed=8))


def test_minima_found_counts_points_and_minima():
    ms = LANDSCAPES["himmelblau"].global_minima
    pts = np.array([ms[0].x, ms[0].x, [0.0, 0.0], np.array(ms[2].x) + 1e-7])
    assert minima_found(pts, ms) == (3, 2)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("text, mentions", [
    ("himmelbau", ["unknown landscape", "himmelblau", "double-well"]),
    ("open", ["unknown landscape", "expression"]),
])
def test_unknown_names_list_the_known_ones(text, mentions):
    with pytest.raises(ValueError) as info:
        get_landscape(text)
    assert all(m in str(info.value) for m in mentions)


@pytest.mark.parametrize("kwargs, mention", [
    (dict(function="himmelblau", init=[1.0]), "2-D"),
    (dict(function="bowl", init=[float("nan")]), "finite"),
    (dict(function="x**2 + 1"), "no default start"),
])
def test_bad_starts_are_refused(kwargs, mention):
    with pytest.raises(ValueError, match=mention):
        minimize(**kwargs)


@pytest.mark.parametrize("box", [((1.0, -1.0), (0.0, 1.0)), ((0.0, 1.0),), ((0.0, float("inf")), (0.0, 1.0))])
def test_bad_boxes_are_refused(box):
    with pytest.raises(ValueError, match="box|interval"):
        get_landscape("himmelblau", box=box)
