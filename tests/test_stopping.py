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
