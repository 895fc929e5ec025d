"""The explorer's tab 2 (landscapes) protocol, driven directly on ``/ws/landscape`` (no browser):
the streamed runs are gdlab.landscapes' runs, bad input gets an error frame naming its field, and
the connection stays up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gdlab import optim, schedules
from gdlab.landscapes import LANDSCAPES, minimize, multistart
from gdlab.web import runner
from gdlab.web.app import create_app

FAST = 1_000_000
DOUBLE_WELL = LANDSCAPES["double-well"]
HIMMELBLAU = LANDSCAPES["himmelblau"]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def start(ws, play: bool = True, ident: int = 1, **config) -> dict:
    ws.send_text(json.dumps({"type": "start", "config": {"speed": FAST, **config}, "play": play, "id": ident}))
    return ws.receive_json()


def until_stopped(ws) -> tuple[dict, dict]:
    """Frames by step (a later frame of a step replaces an earlier one) until the run stops."""
    frames = {}
    while True:
        msg = ws.receive_json()
        assert msg["type"] != "error", msg
        if msg["type"] == "frames":
            frames.update({f["step"]: f for f in msg["frames"]})
        elif msg["type"] == "stopped":
            return frames, msg


def expect_error(ws, payload, field=None) -> dict:
    ws.send_text(payload if isinstance(payload, str) else json.dumps(payload))
    msg = ws.receive_json()
    assert msg["type"] == "error", msg
    assert msg["field"] == field, msg
    assert msg["message"].endswith("."), msg
    return msg


def test_the_page_and_its_socket_are_served(client):
    page = client.get("/landscape")
    assert page.status_code == 200 and "/static/landscape.js" in page.text and 'aria-current="page"' in page.text
    for name in ("landscape.js", "landscape.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_a_single_run_streams_gdlab_minimize_and_ends_in_the_local_minimum(client):
    with client.websocket_connect("/ws/landscape") as ws:
        started = start(ws, function="double-well", init=[1.5], optimizer="gd", lr=0.01)
        assert started["type"] == "started" and started["id"] == 1
        land = started["landscape"]
        assert land["dim"] == 1 and land["global_minima"] == [{"x": list(m.x), "f": m.f} for m in DOUBLE_WELL.global_minima]
        assert land["local_minima"][0]["x"] == list(DOUBLE_WELL.local_minima[0].x)
        assert len(land["grid"]["x"]) == len(land["grid"]["f"]) > 100
        assert started["start"]["x"] == [1.5] and started["start"]["step"] == 0
        frames, stopped = until_stopped(ws)
    ref = minimize("double-well", 1.5, optim.gd(0.01))
    assert stopped["reason"] == ref.stop_reason == "converged" and stopped["step"] == ref.steps
    assert sorted(frames) == list(ref.trace.step)
    np.testing.assert_allclose([frames[s]["x"][0] for s in sorted(frames)], ref.trace.params[:, 0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose([frames[s]["f"] for s in sorted(frames)], ref.trace.loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose([frames[s]["lr"] for s in sorted(frames)], ref.trace.lr, rtol=1e-12)
    last = frames[max(frames)]
    assert abs(last["x"][0] - DOUBLE_WELL.local_minima[0].x[0]) < 1e-6 and last["found"] == 0
    assert "local minimum" in stopped["message"]


def test_warm_restarts_reach_the_global_minimum_with_the_scheduled_lr(client):
    with client.websocket_connect("/ws/landscape") as ws:
        start(ws, function="double-well", init=[1.5], lr=0.1, schedule="warm-restarts", period=50, period_mult=2)
        frames, stopped = until_stopped(ws)
    rate = schedules.make_schedule("warm-restarts", 0.1, period=50, period_mult=2.0)
    ref = minimize("double-well", 1.5, optim.gd(rate))
    assert stopped["step"] == ref.steps
    np.testing.assert_allclose([frames[s]["lr"] for s in sorted(frames)], ref.trace.lr, rtol=1e-12)
    last = frames[max(frames)]
    assert abs(last["x"][0] - DOUBLE_WELL.global_minima[0].x[0]) < 1e-6
    assert last["found"] == 1 and "the global minimum" in stopped["message"]


def test_multistart_is_gdlab_multistart_and_finds_all_four_himmelblau_minima(client):
    with client.websocket_connect("/ws/landscape") as ws:
        started = start(ws, function="himmelblau", multistart=64, seed=0)
        ref = multistart("himmelblau", 64, seed=0)
        np.testing.assert_array_equal(started["starts"], ref.starts)
        assert len(started["start"]["runs"]["x"]) == 64
        frames, stopped = until_stopped(ws)
    last = frames[max(frames)]
    assert last["found"] == ref.global_minima_found == len(HIMMELBLAU.global_minima) == 4
    np.testing.assert_allclose(last["runs"]["x"], ref.x, atol=1e-9)
    assert last["best_f"] == pytest.approx(float(ref.f[ref.best]), abs=1e-12)
    assert stopped["found"] == 4 and stopped["reasons"] == list(ref.stop_reason)
    assert "4 of 4 global minima found" in stopped["message"]


def test_step_pause_reset_and_a_live_lr_change_without_recompiling(client):
    with client.websocket_connect("/ws/landscape") as ws:
        start(ws, play=False, function="rosenbrock", optimizer="momentum", lr=0.001, momentum=0.5)
        assert ws.receive_json() == {"type": "state", "state": "paused", "step": 0}
        ws.send_text(json.dumps({"type": "step", "n": 1}))
        frames = ws.receive_json()["frames"]
        assert [f["step"] for f in frames] == [0, 1]          # the start's row, then the point reached
        assert ws.receive_json()["step"] == 1
        misses = runner.compile_cache_info().misses
        ws.send_text(json.dumps({"type": "update", "lr": 0.0005, "momentum": 0.9}))
        updated = ws.receive_json()
        assert updated["type"] == "updated" and updated["config"]["lr"] == 0.0005 and updated["step"] == 1
        ws.send_text(json.dumps({"type": "step", "n": 1}))
        frames = ws.receive_json()["frames"]
        assert frames[0]["lr"] == 0.0005
        ws.receive_json()
        assert runner.compile_cache_info().misses == misses
        ws.send_text(json.dumps({"type": "reset"}))
        again = ws.receive_json()
        assert again["type"] == "started" and again["start"]["x"] == list(LANDSCAPES["rosenbrock"].start)
        assert ws.receive_json() == {"type": "state", "state": "paused", "step": 0}


def test_an_expression_runs_and_unsafe_or_malformed_ones_are_refused(client):
    with client.websocket_connect("/ws/landscape") as ws:
        started = start(ws, function="x**4 - 3*x**2 + x", init=[2], optimizer="momentum", lr=0.01, momentum=0.9)
        assert started["landscape"]["dim"] == 1 and started["landscape"]["global_minima"] == []
        _, stopped = until_stopped(ws)
        assert stopped["reason"] in ("converged", "max_steps")
        for bad in ("__import__('os')", "x.__class__", "open", "lambda: 1", "(x + 1", "x + y + z", "x +"):
            msg = expect_error(ws, {"type": "start", "config": {"function": bad, "init": [1]}, "id": 7}, "function")
            assert msg["reply_to"] == "start" and msg["id"] == 7
        msg = expect_error(ws, {"type": "resume"})             # a refused start leaves no run behind
        assert "no run" in msg["message"]
        # a new run on the same connection works: nothing broke
        assert start(ws, function="x**2 + y**2", init=[1, 1], play=False)["type"] == "started"


@pytest.mark.parametrize("config, field", [
    ("NaN", "lr"),                                    # NaN is not JSON, but Python's json reads it: refused
    ({"lr": "fast"}, "lr"),
    ({"momentum": 1.5, "optimizer": "momentum"}, "momentum"),
    ({"momentum": 0.9, "optimizer": "gd"}, "momentum"),
    ({"optimizer": "natural"}, "optimizer"),
    ({"schedule": "sometimes"}, "schedule"),
    ({"period": 50}, "period"),
    ({"schedule": "warm-restarts", "period": 0}, "period"),
    ({"schedule": "warm-restarts", "period_mult": 0.5}, "period_mult"),
    ({"multistart": 0}, "multistart"),
    ({"multistart": 100_000}, "multistart"),
    ({"init": [1, 2]}, "init"),                       # the double well is 1-D
    ({"init": [1, 2, 3]}, "init"),
    ({"function": "nowhere"}, "function"),
    ({"function": "x**2 + y**2"}, "init"),            # an expression has no default start
    ({"box": [1, 1]}, "box"),
    ({"seed": -1}, "seed"),
    ({"max_steps": -5}, "max_steps"),
    ({"colour": "red"}, "colour"),
])
def test_bad_configs_get_an_error_naming_the_field(client, config, field):
    with client.websocket_connect("/ws/landscape") as ws:
        if config == "NaN":
            expect_error(ws, '{"type": "start", "config": {"lr": NaN}}', "lr")
            return
        expect_error(ws, {"type": "start", "config": config}, field)
        assert start(ws, play=False)["type"] == "started"       # the connection still serves


def test_malformed_messages_and_an_abrupt_disconnect(client):
    with client.websocket_connect("/ws/landscape") as ws:
        assert expect_error(ws, "{not json")["reply_to"] is None
        expect_error(ws, {"type": "explode"}, "type")
        expect_error(ws, "x" * 70_000)
        expect_error(ws, {"type": "step", "n": 0}, "n")
        expect_error(ws, {"type": "update", "direction": "reverse"}, "direction")    # tab 1's field, not this tab's
        start(ws, function="rastrigin", lr=0.001, max_steps=1_000_000)
    # the connection closed mid-run; a new client still runs
    with client.websocket_connect("/ws/landscape") as ws:
        assert start(ws, function="bowl", init=[2], lr=0.1)["type"] == "started"
        _, stopped = until_stopped(ws)
        assert stopped["reason"] == "converged"
