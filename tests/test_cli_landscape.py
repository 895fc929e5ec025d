"""Tests for ``gdlab landscape``: the issue's commands, the JSON contract, pictures, bad input.

Expected points come from the recorded minima (checked in test_landscapes.py against autodiff,
quadrature and the literature) and, for the user expression, from NumPy's roots of its derivative.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_one_line_error, invoke, strict_loads

JSON_KEYS = {"x", "f", "stop_reason", "steps", "runs", "global_minima", "global_minima_found", "trace"}
RUN_KEYS = {"x", "f", "stop_reason"}
TRACE_KEYS = {"step", "f", "lr"}


def landscape_json(*args: str) -> dict:
    rc, out, err = invoke("landscape", *args, "--json", "-")
    assert rc == 0, err
    payload = strict_loads(out)
    assert JSON_KEYS <= set(payload)
    assert all(RUN_KEYS <= set(r) for r in payload["runs"])
    assert TRACE_KEYS <= set(payload["trace"])
    n = len(payload["trace"]["step"])
    assert len(payload["trace"]["f"]) == len(payload["trace"]["lr"]) == n
    return payload


def assert_png(path, size):
    with Image.open(path) as im:
        assert im.format in ("PNG", "GIF") and im.size == size
        assert im.convert("L").getextrema()[0] < im.convert("L").getextrema()[1]


# ------------------------------------------------------------------------------ the commands

def test_constant_small_step_stays_in_the_local_minimum():
    d = landscape_json("--function", "double-well", "--init", "1.5", "--optimizer", "gd", "--lr", "0.01")
    assert d["stop_reason"] == "converged" and d["x"][0] == pytest.approx(1.2, abs=1e-6)
    assert d["global_minima"] == [[-1.5]] and d["global_minima_found"] == 0
    assert d["local_minima"] == [[1.2]]
    assert len(d["runs"]) == 1 and d["runs"][0]["x"] == d["x"]
    assert d["steps"] == d["trace"]["step"][-1] and d["trace"]["f"][-1] == d["f"]
    assert set(d["trace"]["lr"]) == {0.01}


def test_warm_restarts_escape_to_the_global_minimum():
    d = landscape_json("--function", "double-well", "--init", "1.5", "--optimizer", "gd", "--lr", "0.1",
                       "--schedule", "warm-restarts", "--period", "50", "--period-mult", "2")
    assert d["stop_reason"] == "converged" and d["x"][0] == pytest.approx(-1.5, abs=1e-6)
    assert d["global_minima_found"] == 1 and d["reached_global"] == 1
    lr = np.array(d["trace"]["lr"])
    assert lr[0] == pytest.approx(0.1) and lr[49] < 1e-3 and lr[50] == pytest.approx(0.1)   # the restart


def test_himmelblau_multistart_64_finds_all_four_minima(tmp_path):
    png = tmp_path / "runs.png"
    d = landscape_json("--function", "himmelblau", "--multistart", "64", "--seed", "0", "--plot", str(png),
                       "--plot-size", "600x400")
    assert d["global_minima_found"] == 4 and len(d["runs"]) == 64 and d["multistart"] == 64
    assert d["f"] == pytest.approx(0.0, abs=1e-12)
    ends = np.array([r["x"] for r in d["runs"]])
    for m in d["global_minima"]:
        assert np.min(np.linalg.norm(ends - np.array(m), axis=1)) < 1e-6
    assert min(r["f"] for r in d["runs"]) == d["f"]
    assert_png(png, (600, 400))


def test_expression_with_momentum_and_an_animation(tmp_path):
    gif = tmp_path / "path.gif"
    d = landscape_json("--function", "x**4 - 3*x**2 + x", "--init", "2", "--optimizer", "momentum", "--lr", "0.01",
                       "--momentum", "0.9", "--animate", str(gif), "--plot-size", "400x300")
    roots = np.sort(np.roots([4.0, 0.0, -6.0, 1.0]).real)
    assert d["x"][0] == pytest.approx(roots[0], abs=1e-6)
    assert d["global_minima"] == [] and d["global_minima_found"] is None
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.size == (300, 225) and im.n_frames > 1


def test_the_table_says_where_the_run_ended():
    rc, out, err = invoke("landscape", "--function", "double-well", "--init", "1.5", "--lr", "0.01")
    assert rc == 0, err
    assert "converged" in out and "local minimum" in out and "6.758" in out


def test_compare_runs_each_optimizer_and_draws_them_together(tmp_path):
    png = tmp_path / "cmp.png"
    rc, out, err = invoke("landscape", "--function", "double-well", "--init", "1.5", "--compare", "gd:lr=0.01",
                          "momentum:lr=0.01,momentum=0.9", "gd:lr=0.1,schedule=warm-restarts,period=50,period_mult=2",
                          "--plot", str(png), "--plot-size", "600x400", "--json", "-")
    assert rc == 0, err
    d = strict_loads(out)
    ends = [r["x"][0] for r in d["runs"]]
    assert ends == pytest.approx([1.2, -1.5, -1.5], abs=1e-6)
    assert [r["spec"] for r in d["runs"]][0] == "gd:lr=0.01"
    assert d["x"][0] == pytest.approx(-1.5, abs=1e-6) and d["best_run"] in (1, 2)
    assert all(r["steps_to_converge"] == r["steps"] for r in d["runs"])
    assert_png(png, (600, 400))
    rc, out, _ = invoke("landscape", "--function", "double-well", "--init", "1.5",
                        "--compare", "gd:lr=0.01", "momentum:lr=0.01,momentum=0.9")
    assert rc == 0 and "steps to" in out and "converged" in out and "momentum" in out


def test_exact_multistart_equals_single_runs():
    d = landscape_json("--function", "six-hump-camel", "--multistart", "4", "--seed", "1", "--exact",
                       "--optimizer", "momentum", "--lr", "0.01", "--momentum", "0.5")
    for run in d["runs"]:
        one = landscape_json("--function", "six-hump-camel", "--init", ",".join(repr(v) for v in run["start"]),
                             "--optimizer", "momentum", "--lr", "0.01", "--momentum", "0.5")
        assert one["x"] == run["x"] and one["steps"] == run["steps"] and one["f"] == run["f"]


def test_help_lists_the_options():
    rc, out, _ = invoke("landscape", "--help")
    assert rc == 0
    for option in ("--function", "--init", "--optimizer", "--lr", "--momentum", "--schedule", "--period",
                   "--multistart", "--seed", "--box", "--compare", "--plot", "--animate", "--json", "--exact"):
        assert option in out, option


# ------------------------------------------------------------------------------ bad input: exit 2, one line

LS = ("landscape", "--function")
BAD = [
    ("import", [*LS, "__import__('os')"], ["__import__"]),
    ("dunder-class", [*LS, "x.__class__"], ['"."']),
    ("open", [*LS, "open"], ["open"]),
    ("open-call", [*LS, "open('/etc/passwd')", "--init", "1"], ["open"]),
    ("lambda", [*LS, "lambda x: x"], ["lambda"]),
    ("unbalanced-open", [*LS, "(x + 1", "--init", "1"], ["never closed"]),
    ("unbalanced-close", [*LS, "x + 1)", "--init", "1"], ["no matching"]),
    ("unknown-name", [*LS, "foo(x) + 1", "--init", "1"], ['"foo"']),
    ("three-variables", [*LS, "x*y*z", "--init", "1,1"], ["3 variables"]),
    ("unknown-landscape", [*LS, "himmelbau"], ["unknown landscape", "himmelblau", "six-hump-camel"]),
    ("init-dims", [*LS, "himmelblau", "--init", "1"], ["2-D"]),
    ("init-text", [*LS, "bowl", "--init", "abc"], ["--init"]),
    ("init-nan", [*LS, "bowl", "--init", "nan"], ["--init"]),
    ("no-start", [*LS, "x**2"], ["--init"]),
    ("natural", [*LS, "bowl", "--optimizer", "natural"], ["Fisher"]),
    ("natural-compare", [*LS, "bowl", "--compare", "natural:lr=0.5"], ["Fisher"]),
    ("bad-compare-name", [*LS, "bowl", "--compare", "sgdx:lr=1"], ["sgdx"]),
    ("bad-compare-key", [*LS, "bowl", "--compare", "gd:speed=1"], ["speed"]),
    ("bad-compare-value", [*LS, "bowl", "--compare", "gd:lr=fast"], ["fast"]),
    ("compare-momentum-on-gd", [*LS, "bowl", "--compare", "gd:momentum=0.9"], ["momentum"]),
    ("compare-and-multistart", [*LS, "bowl", "--compare", "gd", "--multistart", "3"], ["--multistart"]),
    ("stray-argument", [*LS, "bowl", "momentum:lr=0.1"], ["--compare"]),
    ("box-count", [*LS, "himmelblau", "--multistart", "3", "--box", "1,2,3"], ["--box"]),
    ("box-order", [*LS, "himmelblau", "--multistart", "3", "--box", "2,1"], ["lo < hi"]),
    ("multistart-0", [*LS, "bowl", "--multistart", "0"], ["--multistart"]),
    ("exact-alone", [*LS, "bowl", "--exact"], ["--exact"]),
    ("plot-suffix", [*LS, "bowl", "--plot", "{tmp}/a.jpg"], [".png"]),
    ("plot-folder", [*LS, "bowl", "--plot", "{tmp}/no/a.png"], ["folder"]),
    ("animate-suffix", [*LS, "bowl", "--animate", "{tmp}/a.png"], [".gif"]),
    ("plot-size", [*LS, "bowl", "--plot-size", "big"], ["WIDTHxHEIGHT"]),
    ("lr-nan", [*LS, "bowl", "--lr", "nan"], ["--lr"]),
    ("momentum-on-gd", [*LS, "bowl", "--momentum", "0.5"], ["momentum"]),
    ("decay-with-constant", [*LS, "bowl", "--decay", "0.5"], ["--decay"]),
    ("period-0", [*LS, "bowl", "--schedule", "warm-restarts", "--period", "0"], ["period"]),
    ("found-tol-0", [*LS, "bowl", "--found-tol", "0"], ["--found-tol"]),
    ("json-folder", [*LS, "bowl", "--json", "{tmp}/no/out.json"], ["{tmp}/no"]),
    ("function-missing", ["landscape", "--init", "1"], ["--function"]),
]


@pytest.mark.parametrize("argv, mentions", [pytest.param(a, m, id=i) for i, a, m in BAD])
def test_bad_input_exits_2_with_one_line(argv, mentions, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    mentions = [m.replace("{tmp}", str(tmp_path)) for m in mentions]
    line = assert_one_line_error(*invoke(*argv))
    assert line.startswith("gdlab: error:"), line
    assert all(m in line for m in mentions), f"{line!r} lacks one of {mentions}"


def test_an_unsafe_expression_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    line = assert_one_line_error(*invoke("landscape", "--function", f"__import__('os').system('touch {marker}')",
                                         "--init", "1"))
    assert "__import__" in line and not marker.exists()


def test_json_to_a_file(tmp_path):
    out = tmp_path / "r.json"
    rc, stdout, err = invoke("landscape", "--function", "bowl", "--json", str(out))
    assert rc == 0, err
    d = json.loads(out.read_text())
    assert d["x"] == [0.0] or abs(d["x"][0]) < 1e-6
    assert "converged" in stdout
