"""The explorer's WebSocket protocol, driven directly (no browser): bad input gets an error
frame and the connection stays up; the streamed frames are gdlab.fit's trace."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gdlab import fit, optim
from gdlab.web import runner
from gdlab.web.app import create_app
from gdlab.web.protocol import MAX_MESSAGE_CHARS

BIMODAL = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"
FAST = 1_000_000


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def start(ws, play: bool = True, **config) -> dict:
    ws.send_text(json.dumps({"type": "start", "config": {"speed": FAST, **config}, "play": play}))
    return ws.receive_json()


def until_stopped(ws) -> tuple[list[dict], dict]:
    """Collect frames until the run stops; return (frames, the stopped message)."""
    frames = []
    while True:
        msg = ws.receive_json()
        assert msg["type"] != "error", msg
        if msg["type"] == "frames":
            frames.extend(msg["frames"])
        elif msg["type"] == "stopped":
            return frames, msg


def expect_error(ws, text: str, field=None) -> dict:
    ws.send_text(text)
    msg = ws.receive_json()
    assert msg["type"] == "error", msg
    assert msg["field"] == field
    assert msg["message"].endswith(".")
    try:
        sent = json.loads(text).get("type") if len(text) <= 65_536 else None
    except (ValueError, AttributeError):
        sent = None
    # the error names the message it answers when that message was readable and of a known type
    assert msg["reply_to"] == (sent if sent in ("start", "pause", "resume", "step", "reset", "update") else None)
    return msg


def test_streamed_frames_are_gdlab_fit_with_the_same_settings(client):
    with client.websocket_connect("/ws") as ws:
        started = start(ws, target=BIMODAL, init="N(0.5, 1)", divergence="reverse", optimizer="momentum", lr=0.05,
                        momentum=0.5, param="mean_logstd")
        assert started["type"] == "started" and started["target"]["means"] == [-2.0, 2.0]
        frames, stopped = until_stopped(ws)
    ref = fit(BIMODAL, "N(0.5, 1)", "reverse", optim.momentum(0.05, 0.5), param="mean_logstd")
    assert stopped["reason"] == ref.stop_reason and stopped["step"] == ref.steps
    assert [f["step"] for f in frames] == list(ref.trace.step)
    assert set(frames[0]) == {"step", "params", "mean", "var", "kl_forward", "kl_reverse", "loss", "lr", "grad"}
    for key, column in (("mean", "mean"), ("var", "var"), ("kl_forward", "kl_forward"), ("kl_reverse", "kl_reverse"),
                        ("loss", "loss"), ("lr", "lr"), ("grad", "grad_norm")):
        np.testing.assert_allclose([f[key] for f in frames], getattr(ref.trace, column), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose([f["params"] for f in frames], ref.trace.params, rtol=1e-12, atol=1e-14)


def test_a_second_run_of_the_same_kind_reuses_the_compiled_code(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, target="N(1, 2)", lr=0.1)
        until_stopped(ws)
        misses = runner.compile_cache_info().misses
        start(ws, target="N(-3, 0.5)", init="N(1, 3)", lr=0.07, momentum=0.9)   # other numbers, same kind
        frames, _ = until_stopped(ws)
        assert runner.compile_cache_info().misses == misses
        assert frames[-1]["mean"] == pytest.approx(-3.0, abs=1e-4)


def test_pause_step_resume_reset_and_update_mid_run(client):
    with client.websocket_connect("/ws") as ws:
        assert start(ws, play=False, target="N(2, 1)", lr=0.05)["type"] == "started"
        assert ws.receive_json() == {"type": "state", "state": "paused", "step": 0}
        ws.send_text(json.dumps({"type": "step", "n": 3}))
        steps = []
        while (msg := ws.receive_json())["type"] == "frames":
            steps += [f["step"] for f in msg["frames"]]
        assert steps == [0, 1, 2] and msg == {"type": "state", "state": "paused", "step": 3}
        ws.send_text(json.dumps({"type": "update", "lr": 0.2, "momentum": 0.9}))
        assert ws.receive_json()["type"] == "updated"
        ws.send_text(json.dumps({"type": "resume"}))
        assert ws.receive_json()["state"] == "playing"
        frames, stopped = until_stopped(ws)
        assert frames[0]["step"] == 3 and frames[0]["lr"] == 0.2          # the new step size, no reset
        assert stopped["reason"] == "converged" and frames[-1]["mean"] == pytest.approx(2.0, abs=1e-6)
        ws.send_text(json.dumps({"type": "reset"}))
        assert ws.receive_json()["start"]["mean"] == 0.0
        assert ws.receive_json() == {"type": "state", "state": "paused", "step": 0}


def test_negative_step_size_diverges_with_a_step_number(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, lr=-0.02)
        frames, stopped = until_stopped(ws)
    assert stopped["reason"] == "diverged"
    assert stopped["message"].startswith(f"diverged at step {stopped['step']}:")
    assert frames[-1]["step"] == stopped["step"]


def test_bad_messages_get_error_frames_and_the_connection_stays_up(client):
    with client.websocket_connect("/ws") as ws:
        expect_error(ws, "{not json")
        expect_error(ws, "[1, 2]")
        expect_error(ws, json.dumps({"type": "fly"}), field="type")
        expect_error(ws, json.dumps({"type": "pause"}))                   # no run yet
        assert "momentum" in expect_error(ws, json.dumps({"type": "start", "config": {"momentum": 1.5}}),
                                          field="momentum")["message"]
        assert "'gd', 'momentum', 'nesterov', 'adam' or 'natural'" in expect_error(
            ws, json.dumps({"type": "start", "config": {"optimizer": "sgd"}}), field="optimizer")["message"]
        expect_error(ws, json.dumps({"type": "start", "config": {"lr": "fast"}}), field="lr")
        expect_error(ws, json.dumps({"type": "start", "config": {"max_steps": -1}}), field="max_steps")
        expect_error(ws, json.dumps({"type": "start", "config": {"colour": "red"}}), field="colour")
        expect_error(ws, json.dumps({"type": "start", "config": {"optimizer": "gd", "momentum": 0.9}}), field="momentum")
        msg = expect_error(ws, json.dumps({"type": "start", "config": {"target": "N(0, -1)"}}), field="target")
        assert "variance" in msg["message"]
        expect_error(ws, json.dumps({"type": "start", "config": {"target": "0.5*N(-2, 1) + 0.5*N(2"}}), field="target")
        expect_error(ws, json.dumps({"type": "step", "n": 0}), field="n")
        expect_error(ws, '{"type": "update", "lr": 1e999}', field="lr")
        huge = json.dumps({"type": "start", "config": {"target": "N(0, 1)" + " " * (4 * MAX_MESSAGE_CHARS)}})
        assert "limit" in expect_error(ws, huge)["message"]
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["type"] == "error"
        start(ws, target="N(1, 1)")                                        # still serves a run
        frames, stopped = until_stopped(ws)
        assert stopped["reason"] == "converged" and frames[-1]["mean"] == pytest.approx(1.0, abs=1e-6)


def test_abrupt_disconnect_mid_run_leaves_the_server_serving(client):
    with client.websocket_connect("/ws") as ws:
        start(ws, target=BIMODAL, init="N(0.5, 1)", speed=50, max_steps=100_000, tol=0)
        assert ws.receive_json()["state"] == "playing"
        assert ws.receive_json()["type"] == "frames"
    # the first client vanished mid-run; a new one runs to the end
    with client.websocket_connect("/ws") as ws:
        start(ws, target="N(2, 1)", lr=0.1)
        _, stopped = until_stopped(ws)
        assert stopped["reason"] == "converged"
    assert client.get("/").status_code == 200
    assert client.get("/vendor/plotly.min.js").status_code == 200


def test_a_refused_start_leaves_nothing_to_resume(client):
    """A page that starts p, then starts a malformed p and presses play must not resume the first run."""
    with client.websocket_connect("/ws") as ws:
        assert start(ws, play=False, target="N(2, 1)")["type"] == "started"
        assert ws.receive_json()["type"] == "state"
        refused = expect_error(ws, json.dumps({"type": "start", "config": {"target": "N(2"}, "play": False, "id": 7}),
                               field="target")
        assert refused["id"] == 7
        answer = expect_error(ws, json.dumps({"type": "resume"}))
        assert "start" in answer["message"]


def test_recorded_direction_switches_replay_to_the_same_numbers(client):
    """A page records the step each direction switch applied at (the ``updated`` reply); a start
    with those ``switches`` replays the run to the same numbers, bit for bit."""
    base = dict(target=BIMODAL, init="N(0.5, 1)", divergence="reverse", optimizer="momentum", lr=0.05, momentum=0.5)
    with client.websocket_connect("/ws") as ws:
        start(ws, play=False, **base)
        assert ws.receive_json()["state"] == "paused"
        ws.send_text(json.dumps({"type": "step", "n": 40}))
        while (msg := ws.receive_json())["type"] != "state":
            assert msg["type"] == "frames"
        ws.send_text(json.dumps({"type": "update", "divergence": "forward"}))
        assert ws.receive_json() == {"type": "direction", "divergence": "forward"}
        updated = ws.receive_json()
        assert updated["type"] == "updated" and updated["step"] == 40
        ws.send_text(json.dumps({"type": "resume"}))
        by_hand, stopped = until_stopped(ws)
    with client.websocket_connect("/ws") as ws:
        start(ws, **base, switches=[{"step": 40, "divergence": "forward"}])
        replayed, again = until_stopped(ws)
    assert again == stopped and stopped["reason"] == "converged"
    assert [f["step"] for f in replayed] == list(range(stopped["step"] + 1))
    assert replayed[40:] == by_hand
    with client.websocket_connect("/ws") as ws:
        bad = {"type": "start", "config": {"switches": [{"step": 9, "divergence": "forward"},
                                                        {"step": 3, "divergence": "reverse"}]}}
        assert "in order of step" in expect_error(ws, json.dumps(bad), field="switches")["message"]
        expect_error(ws, json.dumps({"type": "start", "config": {"switches": [{"step": 1, "divergence": "up"}]}}),
                     field="switches.divergence")


@pytest.mark.parametrize("length", runner.CHUNK_LENGTHS)
def test_fair_chunks_shrink_while_other_runs_play(length):
    """A few runs (compare mode's three) play at the length their speed asks for; with many playing,
    never longer than the shared chunk, and never longer than asked for."""
    few = [runner.fair_chunk(length, playing) for playing in range(1, runner.FULL_CHUNK_RUNS + 1)]
    many = [runner.fair_chunk(length, playing) for playing in (runner.FULL_CHUNK_RUNS + 1, 50, 200)]
    assert few == [length] * len(few)
    assert many == [min(length, runner.SHARED_CHUNK)] * len(many)
    assert runner.SHARED_CHUNK in runner.CHUNK_LENGTHS


@pytest.mark.parametrize("optimizer, param", [("momentum", "mean_var"), ("natural", "mean_logstd"), ("adam", "natural")])
def test_a_turn_s_packed_rows_are_the_chunk_s_rows_bit_for_bit(optimizer, param):
    """A playing run's chunk comes back as one float64 table (one copy to the host per turn);
    unpacked, it must hold exactly the plain chunk program's rows and leave the same carry."""
    import jax

    from gdlab import engine
    from gdlab.web.protocol import RunConfig

    config = RunConfig.model_validate({"target": BIMODAL, "init": "N(0.5, 1)", "divergence": "reverse", "lr": 0.05,
                                       "optimizer": optimizer, "param": param, "max_steps": 12, "tol": 0.0})
    with jax.enable_x64(True):
        run = runner.Run.build(config)
        o = run.objective
        opt = runner._optimizer(config.optimizer, None)
        for length in (8, 8):           # the second chunk crosses max_steps = 12: 5 valid rows of 8
            block = engine.block_size(o.loss, run.carry.params, o.data, length)
            plain = runner._program(o.loss, o.metrics, o.fisher, o.in_domain, opt, run.criteria, length, False, block)
            carry, rows = jax.device_get(plain(run.carry, o.data, None))
            valid = rows.pop("valid")
            chunk = run._chunk_program(length)
            packed_carry, table = chunk.program(run.carry, o.data)
            unpacked = runner.unpack_rows(np.asarray(table), chunk.layout)
            assert sorted(unpacked) == sorted(rows)
            for name, column in rows.items():
                assert unpacked[name].dtype == column.dtype
                np.testing.assert_array_equal(unpacked[name], column[valid], err_msg=name)
            for a, b in zip(jax.tree_util.tree_leaves(packed_carry), jax.tree_util.tree_leaves(carry)):
                np.testing.assert_array_equal(np.asarray(a), b)
            run._chunk(length)
        assert run.stop_reason == "max_steps" and run.step == 12
