"""Tab 1's compare mode in a real browser: three optimizers race on the same p from the same q,
one WebSocket each, and the table's steps to tolerance are gdlab.fit's (see conftest.py)."""

from __future__ import annotations

import pytest
from test_explorer import FAST, open_page, set_field

from gdlab import fit, optim

RACE = [("gd", "0.1", "0"), ("momentum", "0.1", "0.9"), ("natural", "0.1", "0")]


def table(page) -> list[dict]:
    return page.eval_on_selector_all("#race-table tbody tr", """rows => rows.map(r => ({
        lane: r.dataset.lane, optimizer: r.cells[1].textContent, settings: r.cells[2].textContent,
        reason: r.querySelector('.steps').dataset.reason, steps: r.querySelector('.steps').dataset.steps,
        kl: r.querySelector('.kl').textContent}))""")


def set_up_race(page) -> None:
    page.select_option("#optimizer", "gd")
    set_field(page, "#lr", "0.1")
    page.select_option("#speed", FAST)
    page.check("#compare")
    page.wait_for_selector("#race-opt-2")
    page.click("#race-add")
    page.wait_for_selector("#race-opt-3")
    for n, (name, lr, momentum) in enumerate(RACE[1:], start=2):
        page.select_option(f"#race-opt-{n}", name)
        set_field(page, f"#race-lr-{n}", lr)
        if name != "gd":
            set_field(page, f"#race-mom-{n}", momentum)
    page.wait_for_function("document.querySelectorAll('#race-table tbody tr').length === 3")


def wait_all_stopped(page, timeout: float = 90) -> None:
    page.wait_for_function("""[...document.querySelectorAll('#race-table .steps')].length === 3 &&
        [...document.querySelectorAll('#race-table .steps')].every(c => c.dataset.steps !== undefined)""",
                           timeout=timeout * 1000)


def test_three_optimizers_race_and_the_table_is_gdlab_fit(page, explorer_url):
    open_page(page, explorer_url)
    set_up_race(page)
    assert page.is_disabled("#race-add")                   # three at most
    page.click("#play")
    wait_all_stopped(page)
    rows = table(page)
    refs = [fit("N(2, 1)", "N(0, 5)", "forward", optim.by_name(name, float(lr), float(momentum) if name != "gd" else None))
            for name, lr, momentum in RACE]
    assert [r["reason"] for r in rows] == ["converged"] * 3 == [ref.stop_reason for ref in refs]
    steps = [int(r["steps"]) for r in rows]
    assert steps == [ref.steps for ref in refs]
    gd, momentum, natural = steps
    assert natural < momentum < gd, f"natural gradient should need the fewest steps, then momentum: {steps}"
    for r, ref in zip(rows, refs):
        assert float(r["kl"]) == pytest.approx(float(ref.trace.kl_forward[-1]), rel=1e-2, abs=1e-15)
    # every view draws every run in its colour
    for plot, traces in (("plot-density", 3), ("plot-kl", 3), ("plot-lr", 3)):
        colours = page.evaluate(f"document.getElementById('{plot}').data.map(t => t.line && t.line.color)")
        assert {"#2b6cb0", "#d53f8c", "#b7791f"} <= set(colours), (plot, colours)
    assert "compare=momentum%3A0.1%3A0.9%2Cnatural%3A0.1%3A0" in page.url
    assert page.console_errors == []


def test_compare_settings_come_back_from_the_url(page, explorer_url):
    open_page(page, explorer_url)
    set_up_race(page)
    page.click("#play")
    wait_all_stopped(page)
    before = table(page)
    page.reload()
    wait_all_stopped(page)
    assert page.is_checked("#compare")
    assert page.input_value("#race-opt-2") == "momentum" and page.input_value("#race-mom-2") == "0.9"
    assert page.input_value("#race-opt-3") == "natural"
    assert table(page) == before
    page.uncheck("#compare")                               # back to one run: the table goes away
    page.wait_for_function("document.getElementById('race-table').hidden")
    assert "compare=" not in page.url
