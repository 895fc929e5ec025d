"""The explorer's tab 1 as a person uses it: real chromium, real server (see conftest.py).

Each test saves a screenshot under test-artifacts/ (git-ignored) when it ends.
"""

from __future__ import annotations

import csv
import io
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

FAST = "1000000"           # the speed select's "as fast as possible"


def set_field(page, selector: str, value: str) -> None:
    """Type a value and commit it, as leaving the field does."""
    page.fill(selector, value)
    page.dispatch_event(selector, "change")


def readout(page, name: str) -> float:
    text = page.inner_text(f"#{name}")
    return float("nan") if text in ("–", "NaN") else float(text)


def wait_started(page, timeout: float = 60) -> None:
    """Wait until the server has answered the page's first run (the readouts show numbers)."""
    page.wait_for_function("document.getElementById('kl-forward').textContent !== '–'", timeout=timeout * 1000)


def wait_until_stops_falling(page, name: str, timeout: float = 60, calm: float = 1.5) -> float:
    """Poll the displayed value until it has not fallen for ``calm`` seconds; return it."""
    deadline = time.time() + timeout
    best, since = readout(page, name), time.time()
    while time.time() < deadline:
        page.wait_for_timeout(250)
        value = readout(page, name)
        if value < best:
            best, since = value, time.time()
        elif time.time() - since >= calm and page.inner_text("#step-count") != "0":
            return best
    pytest.fail(f"the displayed {name} kept falling for {timeout} s")


def press_direction(page, divergence: str) -> None:
    """Click KL(p,q) or KL(q,p) and wait until the page shows that direction chosen; a click the
    page did not take (seen once on a loaded CI machine right after a preset change) is made once
    more, as a person would."""
    button = f"#btn-{divergence}"
    for _ in range(2):
        page.click(button)
        try:
            page.wait_for_function(f"document.querySelector('{button}').getAttribute('aria-pressed') === 'true'",
                                   timeout=5_000)
            return
        except PlaywrightTimeout:
            continue
    pytest.fail(f"the page did not take a click on {button}")


def wait_running_or_stopped(page, timeout: float = 60) -> None:
    """A direction button starts the run by itself (as in the source text): wait until the page
    says so. Never click Play here: its label can turn to "Pause" between a read and a click,
    and the click would then pause the run."""
    page.wait_for_function("document.getElementById('play').textContent === 'Pause' || "
                           "!document.getElementById('banner').hidden", timeout=timeout * 1000)


def open_page(page, url: str) -> None:
    page.goto(url)
    wait_started(page)


def test_page_loads_with_no_console_errors(page, explorer_url):
    open_page(page, explorer_url)
    for label in ("KL(p,q) =", "KL(q,p) =", "Mean:", "Variance:"):
        assert label in page.inner_text("#readouts")
    assert page.locator("#plot-density .main-svg").count() > 0       # plotly drew, from the local copy
    assert page.locator("#plot-landscape .contour").count() > 0
    assert page.inner_text("#mean") == "0.0000" and page.inner_text("#var") == "5.0000"   # the source's start
    assert page.console_errors == []


def test_reverse_kl_finds_one_mode_then_forward_kl_the_mixture_mean(page, explorer_url):
    open_page(page, explorer_url)
    page.select_option("#preset", "bimodal")
    page.select_option("#speed", FAST)
    set_field(page, "#lr", "0.05")
    press_direction(page, "reverse")
    wait_running_or_stopped(page)
    wait_until_stops_falling(page, "kl-reverse")
    mean = readout(page, "mean")
    assert abs(abs(mean) - 2.0) < 0.05, f"reverse KL should settle on a mode at ±2, the page shows Mean {mean}"
    press_direction(page, "forward")
    page.wait_for_function("Math.abs(parseFloat(document.getElementById('mean').textContent)) < 0.01",
                           timeout=60_000)
    wait_until_stops_falling(page, "kl-forward", calm=1.0)
    assert abs(readout(page, "mean")) < 0.01
    assert page.console_errors == []


def test_negative_step_size_runs_away_with_a_banner(page, explorer_url):
    open_page(page, explorer_url)
    page.select_option("#speed", "10000")
    set_field(page, "#lr", "-0.02")
    page.click("#play")
    banner = page.locator("#banner")
    banner.wait_for(state="visible", timeout=60_000)
    assert "diverged at step" in banner.inner_text()
    steps = int(banner.inner_text().split("diverged at step ")[1].split(":")[0])
    assert steps > 0 and str(steps) == page.inner_text("#step-count")


def test_malformed_spec_shows_an_inline_error(page, explorer_url):
    open_page(page, explorer_url)
    set_field(page, "#target", "0.5*N(-2, 0.25) + 0.5*N(2")
    error = page.locator("#target-error")
    error.wait_for(state="visible", timeout=30_000)
    assert "target" in error.inner_text()
    assert page.get_attribute("#target", "aria-invalid") == "true"
    page.click("#play")                          # the run does not start
    page.wait_for_timeout(500)
    assert page.inner_text("#step-count") == "0"
    set_field(page, "#target", "N(1, 2)")        # fixing it clears the message
    page.wait_for_function("document.getElementById('target-error').textContent === ''", timeout=30_000)
    assert page.console_errors == []


def test_the_url_reproduces_the_run_after_a_reload(page, explorer_url):
    open_page(page, explorer_url)
    page.select_option("#preset", "asymmetric")
    page.select_option("#optimizer", "nesterov")
    page.click("button[data-momentum='0.9']")
    set_field(page, "#lr", "0.02")
    page.select_option("#speed", FAST)
    press_direction(page, "reverse")
    wait_running_or_stopped(page)
    page.locator("#banner").wait_for(state="visible", timeout=60_000)
    before = {k: page.inner_text(f"#{k}") for k in ("kl-forward", "kl-reverse", "mean", "var", "step-count")}
    url = page.url
    assert "optimizer=nesterov" in url and "divergence=reverse" in url and "momentum=0.9" in url
    page.reload()
    page.locator("#banner").wait_for(state="visible", timeout=60_000)
    after = {k: page.inner_text(f"#{k}") for k in before}
    assert after == before
    assert page.input_value("#optimizer") == "nesterov" and page.input_value("#lr") == "0.02"


def test_csv_download_has_one_row_per_step(page, explorer_url):
    open_page(page, explorer_url)
    page.select_option("#preset", "bimodal")
    page.select_option("#speed", FAST)
    press_direction(page, "reverse")
    wait_running_or_stopped(page)
    page.locator("#banner").wait_for(state="visible", timeout=60_000)
    steps = int(page.inner_text("#step-count"))
    with page.expect_download() as info:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    assert [int(r["step"]) for r in rows] == list(range(steps + 1))
    assert set(rows[0]) >= {"step", "mean", "var", "kl_forward", "kl_reverse", "loss", "lr", "grad"}
    assert float(rows[-1]["mean"]) == pytest.approx(readout(page, "mean"), abs=1e-4)
    with page.expect_download() as png:
        page.click("#save-png")
    assert open(png.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_url_replays_a_mid_run_direction_switch(page, explorer_url):
    """A run switched from KL(q,p) to KL(p,q) mid-run: the URL records the step of the switch
    (switches=reverse@0,forward@N) and the reloaded page replays it to the same readouts."""
    open_page(page, explorer_url)
    page.select_option("#preset", "bimodal")
    page.select_option("#speed", "200")
    press_direction(page, "reverse")
    page.wait_for_function("Number(document.getElementById('step-count').textContent) >= 30", timeout=60_000)
    press_direction(page, "forward")                            # mid-run
    page.wait_for_function("new URLSearchParams(location.search).has('switches')", timeout=30_000)
    page.select_option("#speed", FAST)
    switches = page.evaluate("new URLSearchParams(location.search).get('switches')")
    first, second = switches.split(",")
    switch_step = int(second.split("@")[1])
    assert first == "reverse@0" and second.startswith("forward@") and switch_step >= 30
    page.wait_for_function(f"!document.getElementById('banner').hidden && "
                           f"Number(document.getElementById('step-count').textContent) > {switch_step}", timeout=60_000)
    before = {k: page.inner_text(f"#{k}") for k in ("kl-forward", "kl-reverse", "mean", "var", "step-count")}
    assert abs(float(before["mean"])) < 0.01                     # forward KL: the mixture mean
    page.reload()
    page.wait_for_function(f"!document.getElementById('banner').hidden && "
                           f"document.getElementById('step-count').textContent === '{before['step-count']}'",
                           timeout=60_000)
    after = {k: page.inner_text(f"#{k}") for k in before}
    assert after == before
    assert page.get_attribute("#btn-forward", "aria-pressed") == "true"
    assert page.evaluate("new URLSearchParams(location.search).get('switches')") == switches
    assert page.console_errors == []
