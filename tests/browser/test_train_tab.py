"""The explorer's tab 3 (supervised training) as a person uses it: real chromium, real server.

Each test saves a screenshot under test-artifacts/ (see conftest.py). The page keeps the frames
it received in ``window.trainState`` (what its plots draw); tests read them there.
"""

from __future__ import annotations

import math

import numpy as np

from gdlab import training
from gdlab.web import train_tab

FAST = "1000000"
STOPPED = "!document.getElementById('banner').hidden"


def open_train(page, url: str, query: str = "") -> None:
    page.goto(url + "train" + (("?" + query) if query else ""))
    page.wait_for_function("document.getElementById('loss').textContent !== '–'", timeout=60_000)


def play_until_stopped(page, both: bool = False, timeout: float = 120) -> None:
    page.click("#play")     # the page is paused at step 0 after loading: this click plays
    page.wait_for_function(STOPPED + (" && !document.getElementById('banner-b').hidden" if both else ""),
                           timeout=timeout * 1000)


def trace(page, run: str = "a") -> list[dict]:
    return page.evaluate(f"window.trainState.runs.{run}.trace.filter(Boolean)")


def test_page_loads_with_no_console_errors(page, explorer_url):
    open_train(page, explorer_url)
    text = page.inner_text("#readouts")
    for label in ("Step:", "Loss:", "Accuracy:", "Test accuracy:", "lr:"):
        assert label in text
    assert page.locator("#plot-boundary .main-svg").count() > 0
    assert page.locator("#plot-loss .main-svg").count() > 0
    for control in ("data", "model", "optimizer", "lr", "batch-size", "seed", "compare", "speed"):
        assert page.locator(f"label[for='{control}'], #{control}[aria-label]").count() > 0, control
    assert page.get_attribute("a[href='/train']", "aria-current") == "page"
    assert page.console_errors == []


def test_logistic_regression_on_blobs_reaches_the_bayes_rate_and_draws_the_boundary(page, explorer_url):
    separation, n = 3.0, 400
    open_train(page, explorer_url, f"data=blobs&n_points={n}&separation={separation}&optimizer=gd&lr=0.5"
                                   f"&batch_size=full&speed={FAST}")
    assert float(page.inner_text("#accuracy")) < 0.6          # the start: zero weights, one class
    play_until_stopped(page)
    # The Bayes classifier of N(±(s/2)u, I) is the line u·x = 0, accurate with probability Φ(s/2)
    # (0.933 at s = 3); a fitted line on 320 training points gets at least that minus 3 standard errors.
    bayes = 0.5 * (1 + math.erf(separation / 2 / math.sqrt(2)))
    n_train = page.evaluate("window.trainState.runs.a.started.data.n_train")
    floor = bayes - 3 * math.sqrt(bayes * (1 - bayes) / n_train)
    shown = float(page.inner_text("#accuracy"))
    assert shown >= floor, f"the displayed accuracy {shown} is below the Bayes rate {bayes:.3f} minus 3 SE"
    boundary = page.evaluate("document.getElementById('plot-boundary').data"
                             ".filter(t => t.name && t.name.startsWith('boundary')).map(t => [t.x, t.y])")
    assert len(boundary) == 1
    xs, ys = boundary[0]
    assert len(xs) == 2 and all(v is not None and math.isfinite(v) for v in xs + ys)
    # the drawn line is near the Bayes line x0 + x1 = 0: nearly parallel to it, and close to the origin
    d = np.array([xs[1] - xs[0], ys[1] - ys[0]])
    d /= np.linalg.norm(d)
    assert abs(d @ np.array([1.0, -1.0]) / math.sqrt(2)) > 0.97
    assert abs(d[0] * ys[0] - d[1] * xs[0]) < 0.5          # the origin's distance from the line
    assert page.console_errors == []


def test_batch_size_one_is_noisy_beside_batch_gd(page, explorer_url):
    open_train(page, explorer_url, f"data=blobs&optimizer=gd&lr=0.1&batch_size=1&epochs=3&compare=full&speed={FAST}")
    assert page.inner_text("#batch-label").startswith("1 row")
    play_until_stopped(page, both=True)
    sgd = [f["loss"] for f in trace(page, "a") if f["loss"] is not None]
    gd = [f["loss"] for f in trace(page, "b")]
    rises_sgd = int(np.sum(np.diff(sgd) > 0))
    rises_gd = int(np.sum(np.diff(gd) > 1e-12))
    assert rises_gd == 0, "batch gradient descent with a small step is monotone"
    assert rises_sgd > len(sgd) // 5, f"mini-batch loss of 1 row should jump up often, rose {rises_sgd} times"
    assert np.std(np.diff(sgd)) > 10 * np.std(np.diff(gd))
    # the slider moves to "full" and the next run is batch GD
    page.fill("#batch-slider", page.get_attribute("#batch-slider", "max"))
    page.dispatch_event("#batch-slider", "change")
    page.wait_for_function("document.getElementById('batch-label').textContent.startsWith('full')")
    assert "batch_size=full" in page.url
    assert page.console_errors == []


def test_natural_gradient_reaches_the_optimum_in_ten_steps_on_breast_cancer(page, explorer_url):
    open_train(page, explorer_url, f"data=breast_cancer&model=logistic&optimizer=natural&lr=&batch_size=full"
                                   f"&compare=momentum&speed=20")
    play_until_stopped(page)
    steps = int(page.inner_text("#step-count"))
    assert steps <= 10 and "converged" in page.inner_text("#banner")
    res = training.train("breast_cancer", "logistic", optimizer=training.make_optimizer("natural"))
    assert res.steps == steps
    last = trace(page)[-1]
    assert abs(last["full_loss"] - res.loss) < 1e-10
    # momentum, beside it, is still far from the optimum after those steps
    page.wait_for_function("window.trainState.runs.b.trace.filter(Boolean).length > 10")
    b = trace(page, "b")
    assert b[steps]["full_loss"] > res.loss + 1e-3
    assert page.console_errors == []


def test_a_bad_field_shows_an_inline_error_and_nothing_runs(page, explorer_url):
    open_train(page, explorer_url, "data=blobs")
    page.fill("#lr", "fast")
    page.dispatch_event("#lr", "change")
    page.click("#play")
    page.wait_for_function("document.getElementById('lr-error').textContent !== ''")
    assert "lr must be" in page.inner_text("#lr-error")
    assert page.get_attribute("#lr", "aria-invalid") == "true"
    page.wait_for_timeout(500)
    assert page.inner_text("#play") == "Play" and page.inner_text("#step-count") == "0"
    # a value only the server can judge: more rows per batch than the training set has
    page.fill("#lr", "0.1")
    page.fill("#batch-size", "5000")
    page.dispatch_event("#batch-size", "change")
    page.wait_for_function("document.getElementById('batch-size-error').textContent !== ''")
    assert "larger than the" in page.inner_text("#batch-size-error")
    page.click("#play")
    page.wait_for_timeout(500)
    assert page.inner_text("#step-count") == "0" and page.inner_text("#play") == "Play"
    assert page.inner_text("#lr-error") == ""
    # fixing the field runs again
    page.fill("#batch-size", "16")
    page.dispatch_event("#batch-size", "change")
    page.wait_for_function("document.getElementById('batch-size-error').textContent === ''")
    assert page.console_errors == []


def test_the_url_reproduces_the_run_after_reload(page, explorer_url):
    open_train(page, explorer_url, f"data=moons&noise=0.3&seed=4&optimizer=momentum&lr=0.05&momentum=0.9"
                                   f"&batch_size=16&epochs=4&speed={FAST}")
    play_until_stopped(page)
    first = trace(page)
    url = page.url
    assert "run=1" in url and "seed=4" in url and "batch_size=16" in url
    page.goto(url)        # run=1: the link plays the run by itself
    page.wait_for_function(STOPPED, timeout=120_000)
    again = trace(page)
    assert [f["step"] for f in again] == [f["step"] for f in first]
    assert [f["loss"] for f in again] == [f["loss"] for f in first]
    cfg = train_tab.TrainConfig(data="moons", noise=0.3, seed=4, optimizer="momentum", lr=0.05, momentum=0.9,
                                batch_size=16, epochs=4)
    res = training.train(train_tab.training_data(cfg), "logistic",
                         optimizer=training.make_optimizer("momentum", 0.05, 0.9), **train_tab.train_kwargs(cfg))
    assert abs(again[-1]["full_loss"] - res.loss) < 1e-10
    # the CSV has one row per frame
    with page.expect_download() as info:
        page.click("#download-csv")
    lines = open(info.value.path()).read().strip().splitlines()
    assert lines[0].startswith("run,step,epoch,loss") and len(lines) == len(again) + 1
    assert page.console_errors == []
