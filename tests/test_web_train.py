"""The explorer's tab 3 protocol (``/ws/train``), driven directly: the streamed numbers are
gdlab.train's with the same settings and seed; bad input gets an error frame naming the field
and the connection stays up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gdlab import training
from gdlab.web import train_tab
from gdlab.web.app import create_app
from test_web_protocol import until_stopped

FAST = 1_000_000


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def start(ws, play: bool = True, **config) -> dict:
    ws.send_text(json.dumps({"type": "start", "config": {"speed": FAST, **config}, "play": play, "id": 7}))
    return ws.receive_json()


def library_run(**config):
    """gdlab.train with the settings the page sent."""
    cfg = train_tab.TrainConfig(**config)
    opt = training.make_optimizer(cfg.optimizer, cfg.rate, cfg.momentum, damping=cfg.damping)
    return training.train(train_tab.training_data(cfg), cfg.model, optimizer=opt, **train_tab.train_kwargs(cfg))


@pytest.mark.parametrize("config", [
    {"data": "breast_cancer", "optimizer": "natural"},
    {"data": "blobs", "optimizer": "momentum", "lr": 0.1, "momentum": 0.9, "seed": 3},
    {"data": "moons", "optimizer": "gd", "lr": 0.5, "max_steps": 150},
])
def test_full_batch_run_is_gdlab_train(client, config):
    with client.websocket_connect("/ws/train") as ws:
        started = start(ws, **config)
        assert started["type"] == "started" and started["id"] == 7
        frames, stopped = until_stopped(ws)
    res = library_run(**config)
    assert stopped["reason"] == res.stop_reason and stopped["step"] == res.steps
    assert stopped["message"] == res.message
    assert abs(frames[-1]["loss"] - res.loss) <= 1e-10
    assert abs(stopped["loss"] - res.loss) <= 1e-10
    np.testing.assert_allclose([f["loss"] for f in frames], res.trace.loss, rtol=0, atol=1e-10)
    np.testing.assert_allclose([f["accuracy"] for f in frames], res.trace.accuracy, atol=1e-12)
    np.testing.assert_allclose(frames[-1]["params"], res.params, atol=1e-9)
    assert [f["step"] for f in frames] == list(range(len(frames)))
    for key in ("step", "loss", "full_loss", "lr", "grad", "accuracy", "test_loss", "params", "epoch"):
        assert key in frames[0]


def test_natural_gradient_on_breast_cancer_takes_at_most_ten_steps(client):
    with client.websocket_connect("/ws/train") as ws:
        start(ws, data="breast_cancer", optimizer="natural")
        _, stopped = until_stopped(ws)
    assert stopped["reason"] == "converged" and stopped["step"] <= 10


def test_mini_batch_run_is_gdlab_train_step_by_step(client):
    config = {"data": "blobs", "optimizer": "gd", "lr": 0.2, "batch_size": 8, "epochs": 4, "seed": 5}
    with client.websocket_connect("/ws/train") as ws:
        start(ws, **config)
        frames, stopped = until_stopped(ws)
    res = library_run(**config)
    assert stopped["reason"] == res.stop_reason == "max_steps" and stopped["step"] == res.steps
    minibatch = [f["loss"] for f in frames if f["loss"] is not None]
    np.testing.assert_allclose(minibatch, res.trace.loss, atol=1e-12)        # the same shuffles, the same steps
    ends = [f for f in frames if f["epoch"] is not None]
    np.testing.assert_allclose([f["full_loss"] for f in ends], res.trace.epoch_loss, atol=1e-12)
    np.testing.assert_allclose([f["test_loss"] for f in ends], res.trace.epoch_test_loss, atol=1e-12)
    assert abs(stopped["loss"] - res.loss) <= 1e-10
    # SGD's noise: the mini-batch loss goes up and down, the full-data loss is smoother
    assert np.sum(np.diff(minibatch) > 0) > 5


def test_steering_pause_step_update_reset(client):
    with client.websocket_connect("/ws/train") as ws:
        assert start(ws, play=False, data="blobs", optimizer="momentum", lr=0.1)["type"] == "started"
        assert ws.receive_json() == {"type": "state", "state": "paused", "step": 0}
        ws.send_text(json.dumps({"type": "step", "n": 3}))
        frames = []
        while (msg := ws.receive_json())["type"] != "state":
            frames.extend(msg["frames"])
        assert [f["step"] for f in frames] == [0, 1, 2] and msg["step"] == 3
        ws.send_text(json.dumps({"type": "update", "lr": 0.02, "momentum": 0.5}))
        updated = ws.receive_json()
        assert updated["type"] == "updated" and updated["config"]["lr"] == 0.02
        ws.send_text(json.dumps({"type": "step", "n": 1}))
        msg = ws.receive_json()
        assert msg["frames"][0]["step"] == 3 and msg["frames"][0]["lr"] == pytest.approx(0.02)
        ws.receive_json()
        ws.send_text(json.dumps({"type": "reset"}))
        again = ws.receive_json()
        assert again["type"] == "started" and again["start"]["step"] == 0


@pytest.mark.parametrize("config, field, words", [
    ({"data": "nope"}, "data", "must be one of"),
    ({"data": "blobs", "batch_size": 5000}, "batch_size", "larger than the"),
    ({"data": "blobs", "optimizer": "gd", "momentum": 0.9}, "momentum", "momentum applies"),
    ({"data": "blobs", "l2": -1}, "l2", "greater than or equal"),
    ({"data": "blobs", "model": "softmax"}, "model", "does not fit the toy data"),
    ({"data": "breast_cancer", "model": "softmax", "l2": 1, "C": 1}, "l2", "give one of them"),
    ({"data": "blobs", "lr": "fast"}, "lr", "valid number"),
    ({"data": "blobs", "n_points": 3}, "n_points", "greater than or equal to 10"),
    ({"data": "digits", "model": "logistic"}, "model", "0/1"),
])
def test_bad_configs_get_an_error_naming_the_field_and_the_connection_stays_up(client, config, field, words):
    with client.websocket_connect("/ws/train") as ws:
        msg = start(ws, **config)
        assert msg["type"] == "error" and msg["reply_to"] == "start" and msg["id"] == 7, msg
        assert msg["field"] == field, msg
        assert words in msg["message"] and msg["message"].endswith("."), msg
        ws.send_text(json.dumps({"type": "resume"}))           # a refused start leaves no run behind
        assert "no run yet" in ws.receive_json()["message"]
        ws.send_text("{not json")
        assert ws.receive_json()["type"] == "error"
        assert start(ws, play=False, data="blobs")["type"] == "started"


def test_the_page_is_served_with_the_tab_marked_current(client):
    html = client.get("/train").text
    assert 'href="/train" aria-current="page"' in html and "/static/train.js" in html
    assert client.get("/static/train.js").status_code == 200


def test_toy_blobs_bayes_rate_and_points(client):
    with client.websocket_connect("/ws/train") as ws:
        started = start(ws, play=False, data="blobs", separation=2.0, n_points=100, test_size=0.0)
    data = started["data"]
    assert data["toy"] and len(data["X_train"]) == 100 and len(data["X_test"]) == 0
    X, y = train_tab.toy_data("blobs", 100, 0, 2.0)
    np.testing.assert_allclose(data["X_train"], X, atol=1e-12)
    assert data["bayes_accuracy"] == pytest.approx(0.8413447460685429)
