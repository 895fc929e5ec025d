"""The explorer's tab 2 (landscapes) as a person uses it: real chromium, real server (see conftest.py).

Expected points come from gdlab.landscapes' recorded minima, never from earlier output.
Each test saves a screenshot under test-artifacts/ (git-ignored) when it ends.
"""

from __future__ import annotations

import csv
import io

from gdlab.landscapes import LANDSCAPES
from test_explorer import readout, set_field

FAST = "1000000"           # the speed select's "as fast as possible"
DOUBLE_WELL = LANDSCAPES["double-well"]
HIMMELBLAU = LANDSCAPES["himmelblau"]


def open_tab(page, url: str, query: str = "") -> None:
    page.goto(url + "landscape" + query)
    wait_started(page)


def wait_started(page, timeout: float = 60) -> None:
    """Wait until the server has answered the page's run (the readouts show numbers)."""
    page.wait_for_function("document.getElementById('x').textContent !== '–' && "
                           "document.querySelector('#plot-main .main-svg') !== null", timeout=timeout * 1000)


def wait_stopped(page, previous: str = "", timeout: float = 120) -> str:
    """Wait for the end-of-run banner (one whose text differs from ``previous``); return its text."""
    page.wait_for_function("([prev]) => { const b = document.getElementById('banner');"
                           " return !b.hidden && b.textContent !== '' && b.textContent !== prev; }",
                           arg=[previous], timeout=timeout * 1000)
    return page.inner_text("#banner")


def test_page_loads_with_no_console_errors(page, explorer_url):
    open_tab(page, explorer_url)
    for label in ("x =", "f =", "Step:", "lr:", "Best f:", "Global minima found:"):
        assert label in page.inner_text("#readouts")
    assert page.get_attribute('nav a[href="/landscape"]', "aria-current") == "page"
    assert readout(page, "x") == DOUBLE_WELL.start[0]          # the landscape's own start
    assert page.inner_text("#found") == f"0 of {len(DOUBLE_WELL.global_minima)}"
    assert page.locator("#plot-main .scatterlayer .trace").count() > 0
    # a narrow window: one column, nothing wider than the window
    page.set_viewport_size({"width": 480, "height": 800})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 480
    assert page.console_errors == []


def test_double_well_gd_stays_local_and_warm_restarts_reach_the_global_minimum(page, explorer_url):
    open_tab(page, explorer_url)
    set_field(page, "#init-x", "1.5")
    set_field(page, "#lr", "0.01")
    page.select_option("#speed", FAST)
    wait_started(page)
    page.click("#play")
    first = wait_stopped(page)
    local = DOUBLE_WELL.local_minima[0].x[0]
    assert abs(readout(page, "x") - local) < 1e-3, first
    assert "local minimum" in first
    assert page.inner_text("#found") == "0 of 1"

    # the CLI example: --lr 0.1 --schedule warm-restarts --period 50 --period-mult 2
    set_field(page, "#lr", "0.1")
    page.select_option("#schedule", "warm-restarts")
    set_field(page, "#period", "50")
    set_field(page, "#period-mult", "2")
    page.click("#play")                       # the run had stopped, so Play starts the new settings
    second = wait_stopped(page, first)
    assert abs(readout(page, "x") - DOUBLE_WELL.global_minima[0].x[0]) < 1e-3, second
    assert page.inner_text("#found") == "1 of 1"
    assert "warm-restarts" in page.url and "period=50" in page.url and "period_mult=2" in page.url
    # the learning-rate plot restarts: its largest value returns after the first cycle
    assert page.locator("#plot-lr .scatterlayer .trace").count() >= 1
    assert page.console_errors == []


def test_himmelblau_multistart_finds_all_four_global_minima(page, explorer_url):
    open_tab(page, explorer_url)
    page.select_option("#function-name", "himmelblau")
    set_field(page, "#multistart", "64")
    set_field(page, "#seed", "0")
    page.select_option("#speed", FAST)
    wait_started(page)
    page.click("#play")
    banner = wait_stopped(page)
    n = len(HIMMELBLAU.global_minima)
    assert n == 4
    assert page.inner_text("#found") == f"{n} of {n}", banner
    assert readout(page, "best-f") < 1e-6
    # 64 paths drawn on the contours, one CSV row per step and run
    assert page.locator("#plot-main .scatterlayer .trace").count() >= 64
    with page.expect_download() as info:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    assert set(rows[0]) == {"step", "run", "x", "y", "f", "lr"}
    steps = {int(r["step"]) for r in rows}
    assert len(rows) == 64 * len(steps) and max(steps) == int(page.inner_text("#step-count"))
    with page.expect_download() as info:
        page.click("#save-png")
    assert open(info.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert page.console_errors == []


def test_a_click_on_the_plot_sets_the_start(page, explorer_url):
    open_tab(page, explorer_url, "?function=himmelblau")
    area = page.locator("#plot-main .nsewdrag").first.bounding_box()
    page.mouse.click(area["x"] + 0.25 * area["width"], area["y"] + 0.75 * area["height"])
    lo_x, hi_x = HIMMELBLAU.box[0]
    lo_y, hi_y = HIMMELBLAU.box[1]
    want_x, want_y = lo_x + 0.25 * (hi_x - lo_x), lo_y + 0.25 * (hi_y - lo_y)    # screen y grows downwards
    page.wait_for_function(f"Math.abs(Number(document.getElementById('init-x').value) - {want_x}) < 0.2")
    assert abs(float(page.input_value("#init-y")) - want_y) < 0.2
    # the server's run starts there: the readout shows the clicked point at step 0
    page.wait_for_function("Math.abs(Number(document.getElementById('x').textContent) - "
                           "Number(document.getElementById('init-x').value)) < 1e-3")
    assert page.inner_text("#step-count") == "0"
    assert f"x={page.input_value('#init-x')}" in page.url
    assert page.console_errors == []


def test_a_bad_expression_shows_an_inline_error_and_nothing_runs(page, explorer_url):
    open_tab(page, explorer_url)
    page.select_option("#function-name", "expression")
    wait_started(page)
    for bad, word in (("__import__('os')", "__import__"), ("x +", "expected")):
        set_field(page, "#expression", bad)
        page.wait_for_function("document.getElementById('function-error').textContent !== ''")
        assert word in page.inner_text("#function-error")
        assert page.get_attribute("#expression", "aria-invalid") == "true"
        page.click("#play")
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(500)
        assert page.inner_text("#step-count") == "0"
        assert page.inner_text("#play") == "Play"
        assert page.is_hidden("#banner")
    # a good expression runs again: nothing else broke
    set_field(page, "#expression", "x**4 - 3*x**2 + x")
    set_field(page, "#init-x", "2")
    page.wait_for_function("document.getElementById('function-error').textContent === ''")
    wait_started(page)
    page.evaluate("document.activeElement.blur()")      # keys typed into a field are not commands
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.getElementById('step-count').textContent === '1'")
    assert page.console_errors == []


def test_the_url_reproduces_the_run_after_a_reload(page, explorer_url):
    open_tab(page, explorer_url)
    page.select_option("#function-name", "six-hump-camel")
    set_field(page, "#multistart", "16")
    set_field(page, "#seed", "7")
    page.select_option("#optimizer", "momentum")
    set_field(page, "#lr", "0.02")
    set_field(page, "#momentum", "0.5")
    page.select_option("#speed", FAST)
    wait_started(page)
    page.click("#play")
    banner = wait_stopped(page)
    shown = {k: page.inner_text(f"#{k}") for k in ("x", "y", "f", "step-count", "best-f", "found")}
    url = page.url
    assert "seed=7" in url and "multistart=16" in url and "run=1" in url
    page.reload()
    again = wait_stopped(page)
    assert again == banner
    assert {k: page.inner_text(f"#{k}") for k in shown} == shown
    assert page.input_value("#optimizer") == "momentum" and page.input_value("#momentum") == "0.5"
    assert page.console_errors == []


def test_the_lr_plot_is_linked_to_the_path(page, explorer_url):
    open_tab(page, explorer_url, "?function=double-well&x=1.5&lr=0.1&schedule=warm-restarts&period=50"
                                 "&period_mult=2&speed=" + FAST)
    page.click("#play")
    wait_stopped(page)
    area = page.locator("#plot-lr .nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + 0.3 * area["width"], area["y"] + 0.5 * area["height"])
    page.wait_for_function("[...document.querySelectorAll('#plot-main .legendtext')]"
                           ".some((t) => t.textContent.startsWith('step '))")
    page.keyboard.press(" ")                 # keyboard: space plays (a stopped run starts again)
    assert page.console_errors == []
