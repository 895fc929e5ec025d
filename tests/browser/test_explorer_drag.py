"""Tab 1 by hand: drag a mode of p, add and remove modes, drag the start q (real chromium, see
conftest.py). Mouse positions come from plotly's own axes (``_fullLayout.xaxis.d2p``)."""

from __future__ import annotations

import math

import pytest
from test_explorer import open_page, readout

from gdlab.specs import parse_distribution

TO_PAGE = """([id, x, y]) => {
  const gd = document.getElementById(id), fl = gd._fullLayout, r = gd.getBoundingClientRect();
  return [r.left + fl._size.l + fl.xaxis.d2p(x), r.top + fl._size.t + fl.yaxis.d2p(y)];
}"""


def drag(page, plot: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press on ``start`` and release on ``end`` (data coordinates of ``plot``), as a person drags."""
    page.evaluate("id => window.scrollTo(0, 0) || document.getElementById(id).scrollIntoView({block: 'center'})", plot)
    x0, y0 = page.evaluate(TO_PAGE, [plot, *start])
    x1, y1 = page.evaluate(TO_PAGE, [plot, *end])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()


def peak(w: float, v: float) -> float:
    return w / math.sqrt(2 * math.pi * v)


def spec(page):
    s = parse_distribution(page.input_value("#target"))
    return list(s.weights), list(s.means[:, 0]), list(s.covs[:, 0, 0])


def wait_target(page, n_modes: int) -> None:
    """Wait until the server's p (the modes list, drawn on "started") has ``n_modes`` modes."""
    page.wait_for_function(f"document.querySelectorAll('#modes .mode').length === {n_modes}", timeout=30_000)


def step_twice(page) -> None:
    """Two single steps: the frames then reach step 1 (the first frame is the start, step 0)."""
    page.click("#step")
    page.click("#step")
    page.wait_for_function("document.getElementById('step-count').textContent === '1'", timeout=30_000)


def test_dragging_a_mode_of_p_moves_it_and_restarts_the_run(page, explorer_url):
    open_page(page, explorer_url)
    page.select_option("#preset", "bimodal")
    wait_target(page, 2)
    page.wait_for_function("document.getElementById('mean').textContent === '0.5000'")
    step_twice(page)
    p_before = page.evaluate("document.getElementById('plot-density').data[0].y")
    # mode 2 sits at (2, peak of 0.5*N(2, 0.25)); drag it to mean 1 with a higher peak: a smaller variance
    drag(page, "plot-density", (2.0, peak(0.5, 0.25)), (1.0, peak(0.5, 0.1)))
    page.wait_for_function("document.getElementById('step-count').textContent === '0'", timeout=30_000)
    weights, means, variances = spec(page)
    assert weights == [0.5, 0.5] and means[0] == -2.0 and variances[0] == 0.25
    assert means[1] == pytest.approx(1.0, abs=0.05) and variances[1] == pytest.approx(0.1, rel=0.1)
    assert page.input_value("#preset") == "custom"
    # the server's p is the dragged one (its modes list), and p's curve changed
    page.wait_for_function("document.querySelector('#modes .mode:nth-child(2)').textContent.includes('N(' + "
                           f"'{means[1]:.4g}'.replace(/0+$/, ''))", timeout=30_000)
    assert page.evaluate("document.getElementById('plot-density').data[0].y") != p_before
    assert "target=0.5*N%28-2" in page.url or "target=0.5%2AN%28-2" in page.url
    assert page.console_errors == []


def test_add_and_remove_modes_keep_the_weights_summing_to_one(page, explorer_url):
    open_page(page, explorer_url)
    page.select_option("#preset", "bimodal")
    wait_target(page, 2)
    page.click("#mode-add")
    wait_target(page, 3)
    weights, means, _ = spec(page)
    assert weights == pytest.approx([1 / 3] * 3, abs=1e-4) and sum(weights) == pytest.approx(1, abs=1e-12)
    assert means[:2] == [-2.0, 2.0] and means[2] > 2
    page.click("#mode-remove-1")                            # the mode at -2
    wait_target(page, 2)
    weights, means, _ = spec(page)
    assert weights == [0.5, 0.5] and means[0] == 2.0
    # double-click on the density plot adds a mode where clicked; right-click on a mode removes it
    page.evaluate("document.getElementById('plot-density').scrollIntoView({block: 'center'})")
    x, y = page.evaluate(TO_PAGE, ["plot-density", 0.0, 0.02])
    page.mouse.dblclick(x, y)
    wait_target(page, 3)
    assert spec(page)[1][2] == pytest.approx(0.0, abs=0.1)
    w, m, v = spec(page)
    x, y = page.evaluate(TO_PAGE, ["plot-density", m[0], peak(w[0], v[0])])
    page.mouse.click(x, y, button="right")
    wait_target(page, 2)
    assert spec(page)[1][0] == m[1]
    assert page.get_attribute("#target", "aria-invalid") != "true" and page.inner_text("#target-error") == ""
    assert page.is_enabled("#mode-remove-1")
    page.click("#mode-remove-1")
    wait_target(page, 1)
    assert page.is_disabled("#mode-remove-1")               # p keeps one mode at least
    assert page.console_errors == []


def test_dragging_q_sets_the_start(page, explorer_url):
    open_page(page, explorer_url)                           # q starts at N(0, 5)
    step_twice(page)
    drag(page, "plot-density", (0.0, peak(1, 5.0)), (1.5, peak(1, 2.0)))
    page.wait_for_function("document.getElementById('step-count').textContent === '0'", timeout=30_000)
    mean, var = float(page.input_value("#init-mean")), float(page.input_value("#init-var"))
    assert mean == pytest.approx(1.5, abs=0.05) and var == pytest.approx(2.0, rel=0.1)
    page.wait_for_function(f"document.getElementById('mean').textContent === '{mean:.4f}'", timeout=30_000)
    assert readout(page, "var") == pytest.approx(var, abs=1e-4)
    # on the landscape: the marker of q moves the mean sideways and the log variance up and down
    drag(page, "plot-landscape", (mean, math.log(var)), (-1.0, math.log(0.5)))
    page.wait_for_function("document.getElementById('mean').textContent !== '" + f"{mean:.4f}'", timeout=30_000)
    mean2, var2 = float(page.input_value("#init-mean")), float(page.input_value("#init-var"))
    assert mean2 == pytest.approx(-1.0, abs=0.1) and math.log(var2) == pytest.approx(math.log(0.5), abs=0.1)
    assert "init_mean=" + page.input_value("#init-mean") in page.url
    page.click("#start-reset")                              # back to the preset's start
    page.wait_for_function("document.getElementById('var').textContent === '5.0000'", timeout=30_000)
    assert page.console_errors == []
