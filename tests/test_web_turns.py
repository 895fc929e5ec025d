"""Playing runs stepped together (gdlab.web.turns): one compiled call for many runs must give each
run exactly the frames its turns alone give, and the explorer's streams stay gdlab.fit's traces."""

from __future__ import annotations

import contextlib
import json

import jax
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gdlab import fit, optim
from gdlab.web import runner, turns
from gdlab.web.app import create_app
from gdlab.web.protocol import RunConfig

BIMODAL = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"


def config(**values) -> RunConfig:
    base = {"target": BIMODAL, "init": "N(0.5, 1)", "divergence": "reverse", "optimizer": "momentum", "lr": 0.02,
            "momentum": 0.9, "tol": 0.0, "max_steps": 40, "speed": 1_000_000}
    return RunConfig.model_validate({**base, **values})


CONFIGS = [
    config(),
    config(lr=0.05, init="N(-1, 2)"),
    config(lr=0.01, momentum=0.5, max_steps=13),          # stops inside its second chunk
    config(lr=400.0, momentum=0.0),                        # diverges
    config(tol=1e-6, patience=2, lr=0.1, momentum=0.5, init="N(1.5, 0.5)"),   # converges (step 19 in gdlab fit)
    config(target="0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)", lr=0.03),
    config(target="N(2, 1)", divergence="forward", optimizer="gd", lr=0.3, momentum=None),   # a kind of its own
    config(optimizer="natural", lr=0.5, momentum=None, param="mean_logstd"),
    config(optimizer="natural", lr=0.3, momentum=None, param="mean_logstd", init="N(-0.5, 3)"),
]


def test_runs_stepped_together_get_the_frames_their_turns_alone_give():
    with jax.enable_x64(True):
        together = [runner.Run.build(c) for c in CONFIGS]
        alone = [runner.Run.build(c) for c in CONFIGS]
        calls = sum(turns.STEPPED_TOGETHER.values())
        for _ in range(6):
            playing = [i for i, run in enumerate(together) if run.stop_reason is None]
            assert playing == [i for i, run in enumerate(alone) if run.stop_reason is None]
            if not playing:
                break
            results = turns.take_turns([together[i] for i in playing], runner.SHARED_CHUNK, wait=True, min_together=2)
            for i, result in zip(playing, results):
                assert result == alone[i].advance(runner.SHARED_CHUNK)      # frames and stop message, exactly
                for a, b in zip(jax.tree_util.tree_leaves(together[i].carry), jax.tree_util.tree_leaves(alone[i].carry)):
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        # the bimodal momentum runs shared one call; the gd run had a kind of its own
        assert sum(turns.STEPPED_TOGETHER.values()) > calls
    reasons = [run.stop_reason for run in together]
    assert reasons[2:5] == ["max_steps", "diverged", "converged"] and None not in reasons
    assert together[2].step == 13 and together[4].step == 19


def test_a_run_stepped_together_then_alone_goes_on_exactly():
    """After a shared turn a run's carry holds NumPy arrays; its next turn alone (a page pressed
    step, or few runs play) must continue the same numbers."""
    with jax.enable_x64(True):
        pair = [runner.Run.build(config()), runner.Run.build(config(lr=0.03))]
        twin = runner.Run.build(config())
        turns.take_turns(pair, runner.SHARED_CHUNK, wait=True, min_together=2)
        twin.advance(runner.SHARED_CHUNK)
        assert pair[0].advance(1) == twin.advance(1)
        assert pair[0].advance(64) == twin.advance(64)


def test_many_pages_playing_at_once_stream_gdlab_fit_s_trace(monkeypatch):
    """More than FULL_CHUNK_RUNS pages play: their turns go through the shared program, and every
    page's frames are still gdlab.fit's trace."""
    monkeypatch.setattr(turns, "BATCH_MIN", 2)      # two takers share eleven runs' turns
    lrs = [0.01 + 0.002 * i for i in range(runner.FULL_CHUNK_RUNS + 3)]
    with jax.enable_x64(True):       # the kind's shared program, compiled before the pages play
        turns.compiled_lanes(runner.Run.build(config(max_steps=300))._chunk_program(runner.SHARED_CHUNK), wait=True)
    calls = sum(turns.STEPPED_TOGETHER.values())
    with TestClient(create_app()) as client, contextlib.ExitStack() as stack:
        pages = [stack.enter_context(client.websocket_connect("/ws")) for _ in lrs]
        for ws, lr in zip(pages, lrs):
            ws.send_text(json.dumps({"type": "start", "config": config(lr=lr, max_steps=300).model_dump()}))
        streams = []
        for ws in pages:
            frames = []
            while (msg := ws.receive_json())["type"] != "stopped":
                assert msg["type"] != "error", msg
                frames += msg.get("frames", [])
            streams.append((frames, msg))
    assert sum(turns.STEPPED_TOGETHER.values()) > calls
    for (frames, stopped), lr in zip(streams, lrs):
        ref = fit(BIMODAL, "N(0.5, 1)", "reverse", optim.momentum(lr, 0.9), param="mean_var", tol=0.0, max_steps=300)
        assert stopped["reason"] == ref.stop_reason == "max_steps" and stopped["step"] == ref.steps == 300
        assert [f["step"] for f in frames] == list(ref.trace.step)
        np.testing.assert_allclose([f["loss"] for f in frames], ref.trace.loss, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose([f["params"] for f in frames], ref.trace.params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", [1, 3, turns.BATCH_LANES])
def test_lanes_past_n_are_left_as_they_are(n):
    import jax.numpy as jnp

    add = runner.PackedChunk(lambda c, d: (c + d, jnp.reshape(c, (1, 1))), {}, None)
    carries, tables = jax.jit(turns.lanes_program(add))(jnp.arange(64.0), jnp.ones(64), n)
    np.testing.assert_array_equal(carries, np.arange(64.0) + (np.arange(64) < n))
    np.testing.assert_array_equal(tables[:, 0, 0], np.where(np.arange(64) < n, np.arange(64.0), 0.0))
