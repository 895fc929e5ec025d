"""Tests for the ``gdlab`` command line (``gdlab fit``).

Most tests call :func:`gdlab.cli.main` in-process (it returns the exit code); a few run the
installed console script to check what a user really sees: exit codes, no traceback, and
``--json -`` leaving stdout as pure JSON. Every expected number comes from theory: closed-form
Gaussian KL divergences, moment matching, the gradient-descent / heavy-ball recursions on the
closed-form gradients, or a quadrature of the KL integral's definition.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from gdlab.cli import main

GAUSS_1D = ("--target", "N(2, 1)", "--init", "N(0, 5)")
MIXTURE = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"
TARGET_2D = "N([1,2], [[2,0.5],[0.5,1]])"
INIT_2D = "N([0,0], [[1,0],[0,1]])"
MEAN_2D = np.array([1.0, 2.0])
COV_2D = np.array([[2.0, 0.5], [0.5, 1.0]])
TRACE_KEYS = ("step", "loss", "mean", "var", "lr")
HUGE = "99999999999999999999"  # > 2**64


# ----------------------------------------------------------------- helpers

def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name!r}")


def strict_loads(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


def invoke(*args: str) -> tuple[int, str, str]:
    """Run ``gdlab ARGS`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


@lru_cache(maxsize=None)
def fit_json(*args: str) -> tuple[int, dict, str, str]:
    """``gdlab fit ARGS --json -`` in-process, cached: (exit code, payload, stdout, stderr)."""
    rc, out, err = invoke("fit", *args, "--json", "-")
    assert rc == 0, err
    return rc, strict_loads(out), out, err


def assert_one_line_error(rc: int, out: str, err: str) -> str:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""
    line = err.strip()
    assert line, "stderr is empty"
    assert "\n" not in line, f"stderr has more than one line: {err!r}"
    return line


def gauss_kl(m0, c0, m1, c1) -> float:
    """KL(N(m0, c0) || N(m1, c1)), closed form, any dimension."""
    m0, m1 = np.atleast_1d(np.asarray(m0, float)), np.atleast_1d(np.asarray(m1, float))
    c0, c1 = np.atleast_2d(np.asarray(c0, float)), np.atleast_2d(np.asarray(c1, float))
    d = m0.size
    c1inv = np.linalg.inv(c1)
    diff = m1 - m0
    return 0.5 * (np.trace(c1inv @ c0) + diff @ c1inv @ diff - d
                  + math.log(np.linalg.det(c1) / np.linalg.det(c0)))


def mixture_pdf(x):
    return 0.5 * stats.norm.pdf(x, -2.0, 0.5) + 0.5 * stats.norm.pdf(x, 2.0, 0.5)


def quad(f, lo, hi, points=None) -> float:
    return integrate.quad(f, lo, hi, points=points, epsabs=1e-14, epsrel=1e-13, limit=500)[0]


def mixture_kl_forward(m: float, v: float) -> float:
    """KL(p || N(m, v)) for the two-mode MIXTURE, by quadrature of its definition."""
    s = math.sqrt(v)
    return quad(lambda x: mixture_pdf(x) * (math.log(mixture_pdf(x)) - stats.norm.logpdf(x, m, s)),
                -10.0, 10.0, points=[-2.0, 0.0, 2.0])


def mixture_kl_reverse(m: float, v: float) -> float:
    """KL(N(m, v) || p) for the two-mode MIXTURE, by quadrature of its definition."""
    s = math.sqrt(v)
    return quad(lambda x: stats.norm.pdf(x, m, s) * (stats.norm.logpdf(x, m, s) - math.log(mixture_pdf(x))),
                m - 12 * s, m + 12 * s, points=[0.0])


def fwd_kl_1d(m, v):
    """KL(N(2, 1) || N(m, v))."""
    return 0.5 * (np.log(v) + (1.0 + (m - 2.0) ** 2) / v - 1.0)


def fwd_grad_1d(m, v):
    return np.array([(m - 2.0) / v, 0.5 * (1.0 / v - (1.0 + (m - 2.0) ** 2) / v ** 2)])


def rev_kl_1d(m, v):
    """KL(N(m, v) || N(2, 1))."""
    return 0.5 * (v + (m - 2.0) ** 2 - 1.0 - np.log(v))


def rev_grad_1d(m, v):
    return np.array([m - 2.0, 0.5 * (1.0 - 1.0 / v)])


def table_value(text: str, label: str) -> str:
    """The value cell of the row whose first cell is ``label`` in a rich table."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")]
        cells = [c for c in cells if c]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def gdlab_script() -> Path | None:
    for candidate in (Path(sys.executable).parent / "gdlab", shutil.which("gdlab")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


needs_script = pytest.mark.skipif(gdlab_script() is None, reason="the gdlab console script is not installed")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(gdlab_script()), *args], capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------- help

@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"]], ids=["gdlab", "fit"])
def test_help_exits_zero_and_mentions_variance(args):
    rc, out, err = invoke(*args)
    assert rc == 0, err
    assert "variance" in out.lower()
    assert "Traceback" not in err


def test_fit_help_lists_the_contract_options():
    rc, out, _ = invoke("fit", "--help")
    assert rc == 0
    for option in ("--target", "--init", "--family", "--divergence", "--param", "--optimizer", "--lr",
                   "--momentum", "--schedule", "--decay", "--decay-steps", "--alpha", "--period",
                   "--period-mult", "--max-steps", "--tol", "--grad-tol", "--seed", "--samples", "--json"):
        assert option in out, option


# ----------------------------------------------------------------- bad input: exit 2, one line

MIX_3D = "0.5*N([0,0,0], [1,1,1]) + 0.5*N([1,1,1], [1,1,1])"
FIT = ("fit", *GAUSS_1D, "--max-steps", "5")

# (id, argv, the stderr line must contain at least one of these)
BAD_INPUTS = [
    ("bad-spec", ["fit", "--target", "N(2,"], ["N(2,"]),
    ("negative-var-target", ["fit", "--target", "N(2, -1)"], ["--target"]),
    ("zero-var-target", ["fit", "--target", "N(2, 0)"], ["--target"]),
    ("negative-var-init", ["fit", "--target", "N(2, 1)", "--init", "N(0, -5)"], ["--init"]),
    ("zero-var-init", ["fit", "--target", "N(2, 1)", "--init", "N(0, 0)"], ["--init"]),
    ("unknown-optimizer", [*FIT, "--optimizer", "sgdx"], ["sgdx", "--optimizer"]),
    ("momentum-1.5", [*FIT, "--optimizer", "momentum", "--momentum", "1.5"], ["1.5"]),
    ("lr-nan", [*FIT, "--lr", "nan"], ["--lr"]),
    ("lr-inf", [*FIT, "--lr", "inf"], ["--lr"]),
    ("lr-missing-value", [*FIT, "--lr"], ["--lr"]),
    ("unknown-option", [*FIT, "--bogus"], ["--bogus"]),
    ("max-steps-negative", [*FIT[:-2], "--max-steps", "-1"], ["max-steps", "max_steps"]),
    ("tol-negative", [*FIT, "--tol", "-1"], ["tol"]),
    ("init-mixture", ["fit", "--target", "N(2, 1)", "--init", "0.5*N(0, 1) + 0.5*N(1, 1)"], ["init"]),
    ("init-wrong-dim", ["fit", "--target", "N(2, 1)", "--init", INIT_2D], ["init"]),
    ("param-bogus", [*FIT, "--param", "bogus"], ["bogus"]),
    ("param-mean_var-2d", ["fit", "--target", TARGET_2D, "--param", "mean_var"], ["mean_var"]),
    ("period-0", [*FIT, "--schedule", "warm-restarts", "--period", "0"], ["period"]),
    ("decay-2", [*FIT, "--decay", "2", "--schedule", "exponential"], ["decay"]),
    ("samples-1-3d-mixture", ["fit", "--target", MIX_3D, "--samples", "1"], ["samples"]),
    ("json-missing-folder", [*FIT, "--json", "{tmp}/no-such-folder/out.json"], ["{tmp}/no-such-folder"]),
    ("unsafe-target", ["fit", "--target", "__import__('os')"], ["__import__"]),
    # beyond the list, the same rule holds
    ("unknown-family", [*FIT, "--family", "bogus"], ["bogus"]),
    ("unknown-divergence", [*FIT, "--divergence", "bogus"], ["bogus"]),
    ("unknown-schedule", [*FIT, "--schedule", "bogus"], ["bogus"]),
    ("lr-not-a-number", [*FIT, "--lr", "abc"], ["abc"]),
    ("target-missing", ["fit", "--init", "N(0, 1)"], ["--target"]),
    ("target-empty", ["fit", "--target", ""], ["--target"]),
    ("grad-tol-negative", [*FIT, "--grad-tol", "-1"], ["grad_tol", "grad-tol"]),
    ("tol-nan", [*FIT, "--tol", "nan"], ["tol"]),
    ("momentum-nan", [*FIT, "--optimizer", "momentum", "--momentum", "nan"], ["--momentum"]),
    ("momentum-with-gd", [*FIT, "--momentum", "0.5"], ["momentum"]),
    ("decay-0", [*FIT, "--decay", "0", "--schedule", "step"], ["decay"]),
    ("decay-with-constant", [*FIT, "--decay", "0.5"], ["--decay"]),
    ("period-with-constant", [*FIT, "--period", "5"], ["--period"]),
    ("decay-steps-0", [*FIT, "--schedule", "exponential", "--decay-steps", "0"], ["decay_steps", "decay-steps"]),
    ("alpha-2", [*FIT, "--schedule", "cosine", "--alpha", "2"], ["alpha"]),
    ("period-mult-0.5", [*FIT, "--schedule", "warm-restarts", "--period-mult", "0.5"], ["period_mult", "period-mult"]),
    ("patience-0", [*FIT, "--patience", "0"], ["patience"]),
    ("non-diagonal-init-diag-family", ["fit", "--target", TARGET_2D, "--family", "diag-gaussian", "--init",
                                       "N([0,0], [[1,0.5],[0.5,1]])"], ["init"]),
    ("unknown-command", ["bogus"], ["bogus"]),
]


@pytest.mark.parametrize("argv, mentions", [pytest.param(a, m, id=i) for i, a, m in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(argv, mentions, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    mentions = [m.replace("{tmp}", str(tmp_path)) for m in mentions]
    line = assert_one_line_error(*invoke(*argv))
    assert line.startswith("gdlab: error:"), line
    assert any(m in line for m in mentions), f"{line!r} mentions none of {mentions}"


def test_unsafe_target_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    text = f"__import__('os').system('touch {marker}')"
    for argv in (["fit", "--target", text], ["fit", "--target", "N(2, 1)", "--init", text]):
        line = assert_one_line_error(*invoke(*argv, "--max-steps", "1"))
        assert "__import__" in line
    assert not marker.exists()


def test_bad_json_path_is_refused_before_any_file_is_written(tmp_path):
    target = tmp_path / "missing" / "out.json"
    assert_one_line_error(*invoke(*FIT, "--json", str(target)))
    assert not target.parent.exists()


@pytest.mark.parametrize("extra", [["--max-steps", HUGE], ["--patience", HUGE],
                                   ["--schedule", "exponential", "--decay-steps", HUGE]],
                         ids=["max-steps", "patience", "decay-steps"])
def test_huge_integer_options_exit_2(extra):
    line = assert_one_line_error(*invoke("fit", *GAUSS_1D, "--tol", "1e-3", *extra))
    assert HUGE in line or extra[-2] in line or extra[-2].lstrip("-").replace("-", "_") in line


def test_negative_seed_runs_or_names_the_option():
    rc, out, err = invoke("fit", *GAUSS_1D, "--seed", "-1", "--max-steps", "3", "--json", "-")
    if rc == 0:
        assert strict_loads(out)["steps"] == 3
    else:
        line = assert_one_line_error(rc, out, err)
        assert "seed" in line


# ----------------------------------------------------------------- JSON output

def assert_json_shape(d: dict, dim: int, finite_loss: bool = True) -> None:
    assert isinstance(d["stop_reason"], str) and d["stop_reason"] in ("converged", "max_steps", "diverged")
    assert isinstance(d["steps"], int) and not isinstance(d["steps"], bool) and d["steps"] >= 0
    for key in ("loss", "kl_forward", "kl_reverse"):
        if finite_loss:
            assert isinstance(d[key], float), key
        else:
            assert d[key] is None or isinstance(d[key], float), key
    mean, var = d["q"]["mean"], d["q"]["var"]
    if dim == 1:
        assert isinstance(mean, float) and (isinstance(var, float) or not finite_loss and var is None)
    else:
        assert isinstance(mean, list) and len(mean) == dim
        assert isinstance(var, list) and len(var) == dim and all(isinstance(r, list) and len(r) == dim for r in var)
    trace = d["trace"]
    for key in TRACE_KEYS:
        assert isinstance(trace[key], list), key
        assert len(trace[key]) == d["steps"] + 1, (key, len(trace[key]), d["steps"])
    assert trace["step"] == list(range(d["steps"] + 1))


def test_json_dash_stdout_is_the_json_alone_and_the_message_goes_to_stderr():
    rc, d, out, err = fit_json(*GAUSS_1D, "--optimizer", "gd", "--lr", "0.1")
    assert rc == 0
    assert strict_loads(out) == d  # the whole of stdout parses
    assert out.strip().startswith("{") and out.strip().endswith("}")
    assert_json_shape(d, 1)
    assert d["stop_reason"] == "converged"
    assert "converged" in err and "Traceback" not in err


def test_json_loss_is_the_minimised_divergence_and_matches_the_trace():
    for divergence in ("forward", "reverse"):
        _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", divergence, "--optimizer", "gd", "--lr", "0.1")
        assert d["loss"] == d["kl_" + divergence]
        assert d["loss"] == pytest.approx(d["trace"]["loss"][-1], abs=1e-15)
        assert d["q"]["mean"] == d["trace"]["mean"][-1] and d["q"]["var"] == d["trace"]["var"][-1]


def test_json_to_a_file(tmp_path):
    path = tmp_path / "fit.json"
    rc, out, err = invoke("fit", *GAUSS_1D, "--tol", "0", "--max-steps", "12", "--json", str(path))
    assert rc == 0, err
    d = strict_loads(path.read_text())
    assert_json_shape(d, 1)
    assert d["steps"] == 12 and d["stop_reason"] == "max_steps"
    # same run, same numbers as through stdout
    _, d2, _, _ = fit_json(*GAUSS_1D, "--tol", "0", "--max-steps", "12")
    assert d["q"] == d2["q"] and d["trace"]["loss"] == d2["trace"]["loss"]


def test_json_shape_2d():
    _, d, _, _ = fit_json("--target", TARGET_2D, "--init", INIT_2D, "--family", "gaussian", "--divergence", "forward")
    assert_json_shape(d, 2)
    assert all(len(v) == 2 for v in d["trace"]["mean"])
    assert all(np.shape(v) == (2, 2) for v in d["trace"]["var"])


DIVERGING = {
    "lr-negative": ["--lr", "-0.02"],                       # the example: gradient ascent
    "lr-1e300": ["--lr", "1e300"],                          # one step overflows the variance
    "lr-50-logstd": ["--lr", "50", "--param", "mean_logstd"],  # exp(2 log s) overflows to inf
}


@pytest.mark.parametrize("extra", list(DIVERGING.values()), ids=list(DIVERGING))
def test_diverged_run_exits_0_with_strict_json(extra):
    rc, out, err = invoke("fit", *GAUSS_1D, *extra, "--json", "-")
    assert rc == 0, err
    d = strict_loads(out)  # NaN / inf never reach the JSON
    assert d["stop_reason"] == "diverged"
    assert_json_shape(d, 1, finite_loss=False)
    assert "diverged" in err and "Traceback" not in err
    # the trace starts at the init: KL(N(2,1) || N(0,5)) = ln(5)/2
    assert d["trace"]["loss"][0] == pytest.approx(0.5 * math.log(5.0), abs=1e-12)


def test_diverged_run_to_a_file_is_strict_json(tmp_path):
    path = tmp_path / "diverged.json"
    rc, out, err = invoke("fit", *GAUSS_1D, "--lr", "-0.02", "--json", str(path))
    assert rc == 0, err
    d = strict_loads(path.read_text())
    assert d["stop_reason"] == "diverged"
    assert "diverged" in table_value(out, "stop reason")


def test_every_stop_reason_exits_0():
    reasons = {fit_json(*GAUSS_1D, "--optimizer", "gd", "--lr", "0.1")[1]["stop_reason"],
               fit_json(*GAUSS_1D, "--tol", "0", "--max-steps", "12")[1]["stop_reason"],
               fit_json(*GAUSS_1D, "--lr", "-0.02")[1]["stop_reason"]}
    assert reasons == {"converged", "max_steps", "diverged"}  # fit_json asserts exit code 0


# ----------------------------------------------------------------- human output

def test_human_output_table():
    rc, out, err = invoke("fit", *GAUSS_1D, "--divergence", "forward", "--optimizer", "gd", "--lr", "0.1")
    assert rc == 0, err
    assert float(table_value(out, "mean")) == pytest.approx(2.0, abs=1e-6)
    assert float(table_value(out, "variance")) == pytest.approx(1.0, abs=1e-6)
    assert abs(float(table_value(out, "KL(p||q)  forward"))) < 1e-10  # KL = 0 at q = p
    assert abs(float(table_value(out, "KL(q||p)  reverse"))) < 1e-10
    assert table_value(out, "stop reason") == "converged"
    steps = int(table_value(out, "steps"))
    assert steps == fit_json(*GAUSS_1D, "--divergence", "forward", "--optimizer", "gd", "--lr", "0.1")[1]["steps"]
    assert f"converged after {steps} steps" in out


def test_human_output_2d_shows_the_covariance():
    rc, out, err = invoke("fit", "--target", TARGET_2D, "--init", INIT_2D, "--max-steps", "3", "--tol", "0")
    assert rc == 0, err
    assert "covariance" in out and "mean" in out
    assert table_value(out, "steps") == "3" and table_value(out, "stop reason") == "max_steps"


# ----------------------------------------------------------------- math through the CLI

PARAMS_1D = ("mean_var", "mean_std", "mean_logstd", "mean_precision", "natural", "expectation")


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
@pytest.mark.parametrize("param", PARAMS_1D)
def test_gaussian_target_is_recovered(param, divergence):
    """p = N(2, 1) is a Gaussian, so both KL minimisers are p itself, whatever the parameterization."""
    _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", divergence, "--optimizer", "gd", "--lr", "0.1",
                          "--param", param)
    assert d["param"] == param and d["stop_reason"] == "converged"
    assert d["q"]["mean"] == pytest.approx(2.0, abs=1e-6)
    assert d["q"]["var"] == pytest.approx(1.0, abs=1e-6)
    assert -1e-15 <= d["kl_forward"] < 1e-10 and -1e-15 <= d["kl_reverse"] < 1e-10  # KL ≥ 0 up to rounding


def test_max_steps_0_reports_the_init_and_its_closed_form_kls():
    _, d, _, _ = fit_json(*GAUSS_1D, "--max-steps", "0")
    assert d["steps"] == 0 and d["stop_reason"] == "max_steps"
    assert d["q"] == {"mean": 0.0, "var": 5.0}
    assert d["kl_forward"] == pytest.approx(0.5 * math.log(5.0), abs=1e-12)          # KL(N(2,1)||N(0,5))
    assert d["kl_reverse"] == pytest.approx(0.5 * (8.0 - math.log(5.0)), abs=1e-12)  # KL(N(0,5)||N(2,1))
    assert len(d["trace"]["loss"]) == 1


def test_tol_0_runs_exactly_max_steps_of_plain_gradient_descent():
    _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", "forward", "--optimizer", "gd", "--lr", "0.1",
                          "--tol", "0", "--max-steps", "37")
    assert d["steps"] == 37 and d["stop_reason"] == "max_steps"
    tr = d["trace"]
    assert all(len(tr[k]) == 38 for k in TRACE_KEYS)
    theta = np.array([0.0, 5.0])  # mean_var: θ = (m, v)
    for t in range(38):
        assert tr["mean"][t] == pytest.approx(theta[0], abs=1e-12), t
        assert tr["var"][t] == pytest.approx(theta[1], abs=1e-12), t
        assert tr["loss"][t] == pytest.approx(fwd_kl_1d(*theta), abs=1e-12), t
        assert tr["kl_reverse"][t] == pytest.approx(rev_kl_1d(*theta), abs=1e-12), t
        theta = theta - 0.1 * fwd_grad_1d(*theta)


def test_exponential_schedule_drives_the_steps():
    """θ_{t+1} = θ_t − 0.1·0.9^t ∇KL(θ_t): the schedule reaches the updates.
    """
    _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", "forward", "--optimizer", "gd", "--lr", "0.1",
                          "--schedule", "exponential", "--decay", "0.9", "--tol", "0", "--max-steps", "30")
    theta = np.array([0.0, 5.0])
    for t in range(31):
        np.testing.assert_allclose([d["trace"]["mean"][t], d["trace"]["var"][t]], theta, rtol=0, atol=1e-12,
                                   err_msg=f"step {t}")
        theta = theta - 0.1 * 0.9 ** t * fwd_grad_1d(*theta)
    # a constant rate would be far off by now: 0.9^30 ≈ 0.04
    assert abs(theta[0] - fit_json(*GAUSS_1D, "--tol", "0", "--max-steps", "30")[1]["q"]["mean"]) > 1e-2


@pytest.mark.parametrize("extra", [
    pytest.param(["--schedule", "exponential", "--decay", "0.9"], id="exponential"),
    pytest.param(["--schedule", "step", "--decay", "0.5"], id="step"),
    pytest.param(["--schedule", "cosine"], id="cosine"),
    pytest.param(["--schedule", "warm-restarts", "--period", "10"], id="warm-restarts"),
    pytest.param([], id="constant"),
])
def test_first_step_uses_lr_in_float64(extra):
    """Every schedule starts at lr: θ_1 = θ_0 − 0.1·∇KL(θ_0), i.e. mean 0 + 0.1·2/5 = 0.04."""
    _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", "forward", "--optimizer", "gd", "--lr", "0.1", *extra,
                          "--tol", "0", "--max-steps", "1")
    expected = np.array([0.0, 5.0]) - 0.1 * fwd_grad_1d(0.0, 5.0)
    assert expected[0] == pytest.approx(0.04, abs=1e-15)
    np.testing.assert_allclose([d["q"]["mean"], d["q"]["var"]], expected, rtol=1e-13, atol=1e-15)


def test_heavy_ball_momentum_recursion():
    """v_{t+1} = 0.9 v_t + ∇L(θ_t), θ_{t+1} = θ_t − 0.05 v_{t+1} on the reverse KL."""
    _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", "reverse", "--optimizer", "momentum", "--lr", "0.05",
                          "--momentum", "0.9", "--tol", "0", "--max-steps", "25")
    theta, vel = np.array([0.0, 5.0]), np.zeros(2)
    for t in range(26):
        np.testing.assert_allclose([d["trace"]["mean"][t], d["trace"]["var"][t]], theta, rtol=0, atol=1e-12,
                                   err_msg=f"step {t}")
        assert d["trace"]["loss"][t] == pytest.approx(rev_kl_1d(*theta), abs=1e-12), t
        vel = 0.9 * vel + rev_grad_1d(*theta)
        theta = theta - 0.05 * vel


LR_SCHEDULES = {
    "constant": ([], lambda t: 0.1),
    "exponential": (["--schedule", "exponential", "--decay", "0.9"], lambda t: 0.1 * 0.9 ** t),
    "step": (["--schedule", "step", "--decay", "0.5", "--decay-steps", "10"], lambda t: 0.1 * 0.5 ** (t // 10)),
    "cosine": (["--schedule", "cosine", "--decay-steps", "20", "--alpha", "0.1"],
               lambda t: 0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 20) / 20)))),
    "warm-restarts": (["--schedule", "warm-restarts", "--period", "5", "--period-mult", "2"],
                      lambda t: _sgdr(t, 0.1, [5, 10, 20])),
}


def _sgdr(t: int, lr: float, cycles: list[int]) -> float:
    """SGDR: cosine from lr to 0 over each cycle, restarting at lr."""
    for length in cycles:
        if t < length:
            return lr * 0.5 * (1 + math.cos(math.pi * t / length))
        t -= length
    raise AssertionError("t beyond the listed cycles")


@pytest.mark.parametrize("name", list(LR_SCHEDULES))
def test_trace_lr_follows_the_schedule(name):
    extra, rate = LR_SCHEDULES[name]
    _, d, _, _ = fit_json(*GAUSS_1D, "--divergence", "forward", "--optimizer", "gd", "--lr", "0.1",
                          *extra, "--tol", "0", "--max-steps", "30")
    lrs = d["trace"]["lr"]
    assert len(lrs) == 31
    assert lrs == pytest.approx([rate(t) for t in range(31)], rel=1e-13)


# the help text's example command, with the divergence turned to forward
README_MIXTURE = ("--target", MIXTURE, "--init", "N(0.5, 5)", "--divergence", "forward")
MOMENT_MATCH_VAR = 0.5 * (0.25 + 4.0) + 0.5 * (0.25 + 4.0) - 0.0 ** 2  # Σ wᵢ(vᵢ + mᵢ²) − mean² = 4.25


@pytest.mark.parametrize("optimizer", [["--optimizer", "momentum", "--lr", "0.05", "--momentum", "0.9"],
                                       ["--optimizer", "gd", "--lr", "0.1"]], ids=["momentum", "gd"])
def test_readme_mixture_forward_moment_matches_with_default_stopping(optimizer):
    """The default stopping rule must not stop before the variance is within 1e-6 of 4.25."""
    _, d, _, _ = fit_json(*README_MIXTURE, *optimizer)
    assert d["stop_reason"] == "converged"
    assert d["q"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert d["q"]["var"] == pytest.approx(MOMENT_MATCH_VAR, abs=1e-6)


def test_mixture_forward_moment_matches():
    """Forward KL over Gaussians is minimised by the moment match: mean 0, var 0.25 + 4."""
    _, d, _, _ = fit_json(*README_MIXTURE, "--optimizer", "momentum", "--lr", "0.05", "--momentum", "0.9",
                          "--tol", "0", "--grad-tol", "1e-10", "--max-steps", "20000")
    assert d["stop_reason"] == "converged"
    assert MOMENT_MATCH_VAR == 4.25
    assert d["q"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert d["q"]["var"] == pytest.approx(4.25, abs=1e-6)
    # the reported KL(p||q) is the definition's integral at q = N(0, 4.25)
    assert d["kl_forward"] == pytest.approx(mixture_kl_forward(0.0, 4.25), abs=1e-9)
    assert d["loss"] == d["kl_forward"]


def test_mixture_reverse_settles_on_the_nearer_mode():
    """Reverse KL is mode-seeking: from N(1.5, 1) q settles on the mode N(2, 0.25), KL ≈ ln 2.

    The other mode sits 8 standard deviations away, so the optimum is N(2, 0.25) up to ~1e-4;
    the reported q must be a stationary point of the quadrature KL and its KL must match it.
    """
    _, d, _, _ = fit_json("--target", MIXTURE, "--init", "N(1.5, 1)", "--divergence", "reverse",
                          "--optimizer", "gd", "--lr", "0.05")
    m, v = d["q"]["mean"], d["q"]["var"]
    assert m == pytest.approx(2.0, abs=1e-3) and v == pytest.approx(0.25, abs=1e-3)
    assert d["loss"] == d["kl_reverse"] == pytest.approx(math.log(2.0), abs=1e-3)
    assert d["kl_reverse"] == pytest.approx(mixture_kl_reverse(m, v), abs=1e-9)
    assert d["kl_forward"] == pytest.approx(mixture_kl_forward(m, v), abs=1e-8)
    h = 1e-5
    grad = [(mixture_kl_reverse(m + h, v) - mixture_kl_reverse(m - h, v)) / (2 * h),
            (mixture_kl_reverse(m, v + h) - mixture_kl_reverse(m, v - h)) / (2 * h)]
    assert np.abs(grad).max() < 1e-5, grad


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_2d_full_gaussian_recovers_the_target(divergence):
    _, d, _, _ = fit_json("--target", TARGET_2D, "--init", INIT_2D, "--family", "gaussian",
                          "--divergence", divergence)
    assert d["stop_reason"] == "converged" and d["family"] == "gaussian"
    np.testing.assert_allclose(d["q"]["mean"], MEAN_2D, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d["q"]["var"], COV_2D, rtol=0, atol=1e-6)
    assert -1e-15 <= d["kl_forward"] < 1e-10 and -1e-15 <= d["kl_reverse"] < 1e-10


def test_2d_diag_gaussian_forward_keeps_the_marginal_variances():
    """min over diagonal D of KL(p||N(m, D)): m = μ, D = diag(Σ) = diag(2, 1)."""
    _, d, _, _ = fit_json("--target", TARGET_2D, "--init", INIT_2D, "--family", "diag-gaussian",
                          "--divergence", "forward")
    assert d["stop_reason"] == "converged" and d["family"] == "diag-gaussian"
    expected = np.diag(np.diag(COV_2D))
    np.testing.assert_allclose(d["q"]["mean"], MEAN_2D, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d["q"]["var"], expected, rtol=0, atol=1e-6)
    assert d["q"]["var"][0][1] == 0.0 and d["q"]["var"][1][0] == 0.0
    # at the optimum KL(p||q) = ½ ln(det D / det Σ) = ½ ln(2 / 1.75)
    assert d["kl_forward"] == pytest.approx(0.5 * math.log(np.linalg.det(expected) / np.linalg.det(COV_2D)), abs=1e-10)
    assert d["kl_forward"] == pytest.approx(gauss_kl(MEAN_2D, COV_2D, d["q"]["mean"], d["q"]["var"]), abs=1e-12)
    assert d["kl_reverse"] == pytest.approx(gauss_kl(d["q"]["mean"], d["q"]["var"], MEAN_2D, COV_2D), abs=1e-12)


def test_2d_diag_gaussian_reverse_uses_the_conditional_variances():
    """min over diagonal D of KL(N(m, D)||p): m = μ, D_ii = 1 / (Σ⁻¹)_ii (= [1.75, 0.875])."""
    _, d, _, _ = fit_json("--target", TARGET_2D, "--init", INIT_2D, "--family", "diag-gaussian",
                          "--divergence", "reverse")
    assert d["stop_reason"] == "converged"
    expected = np.diag(1.0 / np.diag(np.linalg.inv(COV_2D)))
    np.testing.assert_allclose(d["q"]["mean"], MEAN_2D, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d["q"]["var"], expected, rtol=0, atol=1e-6)
    assert d["q"]["var"][0][1] == 0.0 and d["q"]["var"][1][0] == 0.0
    # at the optimum KL(q||p) = ½ ln(det Σ / det D) = ½ ln(1.75 / (1.75·0.875)) = ½ ln(8/7)
    assert d["kl_reverse"] == pytest.approx(0.5 * math.log(np.linalg.det(COV_2D) / np.linalg.det(expected)), abs=1e-10)
    assert d["kl_reverse"] == pytest.approx(gauss_kl(MEAN_2D, expected, MEAN_2D, COV_2D), abs=1e-10)
    assert d["kl_reverse"] == pytest.approx(gauss_kl(d["q"]["mean"], d["q"]["var"], MEAN_2D, COV_2D), abs=1e-12)
    assert d["kl_forward"] == pytest.approx(gauss_kl(MEAN_2D, COV_2D, d["q"]["mean"], d["q"]["var"]), abs=1e-12)


# ----------------------------------------------------------------- the real console script

@needs_script
def test_script_help():
    for args in (["--help"], ["fit", "--help"]):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
        assert "variance" in proc.stdout.lower()
        assert "Traceback" not in proc.stderr


@needs_script
@pytest.mark.parametrize("args", [["fit", "--target", "N(2,"], [*FIT, "--lr"]], ids=["bad-spec", "missing-value"])
def test_script_bad_input_exits_2_with_one_line_and_no_traceback(args):
    proc = run_script(*args)
    line = assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert line.startswith("gdlab: error:")


@needs_script
def test_script_json_dash_keeps_stdout_pure_even_when_diverging():
    proc = run_script("fit", *GAUSS_1D, "--lr", "-0.02", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    d = strict_loads(proc.stdout)
    assert d["stop_reason"] == "diverged"
    assert_json_shape(d, 1, finite_loss=False)
    assert "diverged" in proc.stderr


# ----------------------------------------------------------------- compilation cache

def _fit_json(cache: str) -> tuple[dict, str]:
    proc = subprocess.run([str(gdlab_script()), "fit", "--target", "N(2, 1)", "--init", "N(0, 5)", "--lr", "0.5",
                           "--json", "-"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GDLAB_COMPILATION_CACHE": cache})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    out.pop("elapsed", None)
    return out, proc.stderr


@needs_script
def test_compilation_cache_is_written_then_read_and_changes_no_number(tmp_path):
    cache = tmp_path / "cache"
    first, _ = _fit_json(str(cache))
    written = sorted(p.name for p in cache.iterdir())
    assert written, "the first run wrote no compiled program"
    second, _ = _fit_json(str(cache))
    assert second == first                     # loaded programs compute the same numbers, bit for bit
    uncached, _ = _fit_json("off")
    assert uncached == first


@needs_script
def test_compilation_cache_that_cannot_be_written_is_skipped_quietly(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out, err = _fit_json(str(blocker / "jax"))
    assert out["stop_reason"] == "converged"
    assert "Warning" not in err and "Traceback" not in err
