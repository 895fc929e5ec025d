"""CLI tests for natural gradient: ``gdlab fisher``, ``gdlab compare-params`` and
``gdlab fit --optimizer natural [--damping] [--trust-region]``.

Expected numbers are closed forms: the 1-D Gaussian Fishers, the moment match, KL between
Gaussians by formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cli import assert_one_line_error, invoke, strict_loads

from gdlab.invariance import gaussian_kl_1d


def json_of(*args: str) -> dict:
    rc, out, err = invoke(*args, "--json", "-")
    assert rc == 0, err
    return strict_loads(out)


CLOSED_FORMS = {  # F at N(1, 2): m = 1, v = 2
    "mean_var": [[0.5, 0.0], [0.0, 0.125]],
    "mean_std": [[0.5, 0.0], [0.0, 1.0]],
    "mean_logstd": [[0.5, 0.0], [0.0, 2.0]],
    "mean_precision": [[0.5, 0.0], [0.0, 2.0]],                 # diag(τ, 1/(2τ²)), τ = 1/2
    "natural": [[2.0, 4.0], [4.0, 16.0]],                       # Cov[(x, x²)]
    "expectation": [[1.0, -0.25], [-0.25, 0.125]],              # its inverse
}


@pytest.mark.parametrize("param", list(CLOSED_FORMS))
def test_fisher_json_has_every_method_and_they_agree(param):
    d = json_of("fisher", "--at", "N(1, 2)", "--param", param)
    for key in ("param", "theta", "analytic", "kl_hessian", "score", "neg_hessian", "max_abs_diff", "eigenvalues"):
        assert key in d
    assert d["param"] == param
    for method in ("analytic", "kl_hessian", "score", "neg_hessian"):
        np.testing.assert_allclose(d[method], CLOSED_FORMS[param], rtol=1e-10, atol=1e-12, err_msg=method)
    assert d["max_abs_diff"] < 1e-8
    np.testing.assert_allclose(d["eigenvalues"], np.linalg.eigvalsh(CLOSED_FORMS[param]), rtol=1e-10)
    ratios = [row["ratio"] for row in d["second_order"]]
    assert abs(ratios[-1] - 1) < 1e-3
    assert abs(ratios[-1] - 1) < abs(ratios[0] - 1)


def test_fisher_table_for_a_multivariate_q():
    rc, out, err = invoke("fisher", "--at", "N([0, 1], [[1, 0.5], [0.5, 2]])")
    assert rc == 0, err
    assert "cholesky" in out and "E[score score^T]" in out and "second order" in out
    d = json_of("fisher", "--at", "N([0, 1], [[1, 0.5], [0.5, 2]])")
    cov_inv = np.linalg.inv([[1, 0.5], [0.5, 2]])
    np.testing.assert_allclose(np.array(d["analytic"])[:2, :2], cov_inv, rtol=1e-12)  # F_mm = C⁻¹
    assert len(d["theta"]) == 5


def test_fit_natural_expectation_one_step_is_the_moment_match():
    d = json_of("fit", "--target", "N(3, 0.5)", "--init", "N(0, 5)", "--divergence", "forward", "--optimizer", "natural",
                "--lr", "1", "--param", "expectation", "--max-steps", "1", "--tol", "0")
    assert d["steps"] == 1 and d["lr"] == 1.0 and d["optimizer"] == "natural"
    assert d["q"]["mean"] == pytest.approx(3.0, abs=1e-12)
    assert d["q"]["var"] == pytest.approx(0.5, abs=1e-12)


def test_fit_natural_defaults_to_a_full_step():
    d = json_of("fit", "--target", "N(3, 0.5)", "--optimizer", "natural", "--param", "mean_var")
    assert d["lr"] == 1.0 and d["stop_reason"] == "converged"
    assert d["trace"]["mean"][1] == pytest.approx(3.0, abs=1e-12)  # the mean lands at step 1


def test_fit_trust_region_records_step_kl_near_epsilon():
    d = json_of("fit", "--target", "N(3, 0.5)", "--init", "N(0, 5)", "--optimizer", "natural", "--trust-region", "0.01")
    assert d["trust_region"] == 0.01 and d["stop_reason"] == "converged"
    tr = d["trace"]
    kl = np.array(tr["step_kl"][:-1], dtype=float)
    assert tr["step_kl"][-1] is None  # no step after the last row
    m, v = np.array(tr["mean"]), np.array(tr["var"])
    np.testing.assert_allclose(kl, gaussian_kl_1d(m[:-1], v[:-1], m[1:], v[1:]), rtol=1e-9, atol=1e-15)
    last = int(np.argmax(kl < 0.009))
    assert last >= 10 and np.all(np.abs(kl[:last] / 0.01 - 1) < 0.1)


def test_compare_params_json_and_table():
    d = json_of("compare-params", "--target", "N(3, 0.5)", "--init", "N(0, 5)", "--optimizer", "natural",
                "--lr", "0.01", "--steps", "200", "--params", "mean_var,mean_logstd,mean_precision")
    assert d["optimizers"] == ["natural", "gd"] and d["steps"] == 200
    assert len(d["pairs"]) == 3
    assert d["max_kl"]["natural"] < 1e-4 and d["max_kl"]["gd"] > 100 * d["max_kl"]["natural"]
    rc, out, err = invoke("compare-params", "--target", "N(3, 0.5)", "--lr", "0.05", "--steps", "20",
                          "--params", "mean_var,natural")
    assert rc == 0, err
    assert "mean_var vs natural" in out and "diverged" in out  # plain GD in natural parameters runs away


@pytest.mark.parametrize("args, needle", [
    (["fit", "--target", "N(3,0.5)", "--optimizer", "natural", "--damping", "-1"], "--damping must be a number >= 0"),
    (["fit", "--target", "N(3,0.5)", "--optimizer", "natural", "--trust-region", "0"], "--trust-region must be a positive"),
    (["fit", "--target", "N(3,0.5)", "--optimizer", "natural", "--trust-region", "-0.5"], "--trust-region must be a positive"),
    (["fit", "--target", "N(3,0.5)", "--optimizer", "gd", "--trust-region", "0.01"], "applies to --optimizer natural"),
    (["fit", "--target", "N(3,0.5)", "--optimizer", "adam", "--damping", "1e-3"], "applies to --optimizer natural"),
    (["fit", "--target", "N(3,0.5)", "--optimizer", "natural", "--damping", "nan"], "--damping must be"),
    (["fit", "--target", "N(0,1)", "--init", "N(0, 1e200)", "--optimizer", "natural"], "singular"),
    (["fit", "--target", "N(3,0.5)", "--optimizer", "natural", "--momentum", "0.9", "--trust-region", "0.01"],
     "cannot be combined"),
    (["fisher", "--at", "0.5*N(-1,1) + 0.5*N(1,1)"], "is a mixture"),
    (["fisher", "--at", "N(1, 2)", "--param", "log_var"], "param must be one of"),
    (["fisher", "--at", "N(1, -2)"], "--at"),
    (["fisher", "--at", "N(0, 1e-320)"], "less extreme"),
    (["compare-params", "--target", "N([0,0], [[1,0],[0,1]])"], "1-D"),
    (["compare-params", "--target", "N(3,0.5)", "--params", "mean_var"], "at least two"),
    (["compare-params", "--target", "N(3,0.5)", "--params", "mean_var,var_mean"], "params must be among"),
    (["compare-params", "--target", "N(3,0.5)", "--steps", "0"], "--steps"),
])
def test_bad_input_is_one_sentence_and_exit_2(args, needle):
    line = assert_one_line_error(*invoke(*args))
    assert needle in line, line


def test_compare_params_draws_the_invariance_figure(tmp_path):
    from PIL import Image

    out = tmp_path / "invariance.png"
    rc, _, err = invoke("compare-params", "--target", "N(3, 0.5)", "--lr", "0.05", "--steps", "20",
                        "--params", "mean_var,mean_precision", "--plot", str(out), "--plot-size", "640x320")
    assert rc == 0, err
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (640, 320)
        assert len(np.unique(np.asarray(img.convert("L")))) > 10   # not blank
    line = assert_one_line_error(*invoke("compare-params", "--target", "N(3, 0.5)", "--plot", str(tmp_path / "x.txt")))
    assert "must end in" in line
