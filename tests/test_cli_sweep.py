"""Tests for ``gdlab sweep fit|landscape``: tables in three formats, the heatmap, cells equal to
single ``gdlab fit`` runs, and one clear sentence for every bad input."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_cli import assert_one_line_error, invoke, strict_loads

MIXTURE = "0.5*N(-2,0.25)+0.5*N(2,0.25)"
FIT = ("sweep", "fit", "--target", MIXTURE, "--init", "N(0.5,5)", "--divergence", "reverse")


def sweep_json(*args: str) -> dict:
    rc, out, err = invoke(*args, "--json", "-")
    assert rc == 0, err
    return strict_loads(out)


def single_fit(*args: str) -> dict:
    rc, out, err = invoke("fit", *args, "--json", "-")
    assert rc == 0, err
    return strict_loads(out)


def test_the_issues_sweep_at_small_size_writes_a_table_and_a_heatmap(tmp_path):
    table, png = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    rc, out, err = invoke(*FIT, "--optimizer", "momentum", "--grid", "lr=0.01:1:4:log", "--grid", "momentum=0,0.9",
                          "--max-steps", "300", "--out", str(table), "--heatmap", str(png), "--plot-size", "500x350")
    assert rc == 0, err
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert {"lr", "momentum", "loss", "steps", "stop_reason", "steps_to_converge", "mean", "var"} <= set(rows[0])
    assert [float(r["lr"]) for r in rows[::2]] == [0.01, 0.01 * 10 ** (2 / 3), 0.01 * 10 ** (4 / 3), 1.0] or \
        [round(float(r["lr"]), 12) for r in rows[::2]] == [round(v, 12) for v in (0.01, 0.046415888336127795,
                                                                                   0.21544346900318834, 1.0)]
    for r in rows:
        assert r["stop_reason"] in ("converged", "max_steps", "diverged")
        assert (r["steps_to_converge"] == r["steps"]) == (r["stop_reason"] == "converged")
        assert r["steps_to_converge"] != "" or r["stop_reason"] != "converged"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (500, 350)
    assert "one compiled program" in out and "converged" in out


@pytest.mark.parametrize("exact, tol", [(True, "1e-15"), (False, "1e-10")], ids=["exact", "vmap"])
def test_each_cell_equals_a_single_gdlab_fit_with_its_settings(exact, tol):
    """--exact: bit for bit, even when the stop is decided at the rounding level (tol = 1e-15).
    vmap rounds differently (vectorised code), so it is compared at a tolerance above rounding,
    where the stop step is decided by the run, not by rounding noise."""
    d = sweep_json(*FIT, "--optimizer", "momentum", "--grid", "lr=0.05,0.3", "--grid", "period=20,60",
                   "--schedule", "warm-restarts", "--period-mult", "2", "--max-steps", "400", "--tol", tol,
                   *(["--exact"] if exact else []))
    assert d["settings"]["compiled_programs"] == 1 and d["settings"]["schedule_shapes"] == 2
    for cell in d["cells"][:: 1 if exact else 3]:
        one = single_fit("--target", MIXTURE, "--init", "N(0.5,5)", "--divergence", "reverse", "--optimizer",
                         "momentum", "--lr", repr(cell["lr"]), "--schedule", "warm-restarts", "--period",
                         str(cell["period"]), "--period-mult", "2", "--max-steps", "400", "--tol", tol)
        assert (cell["stop_reason"], cell["steps"]) == (one["stop_reason"], one["steps"])
        for key, value in (("loss", one["loss"]), ("mean", one["q"]["mean"]), ("var", one["q"]["var"]),
                           ("kl_forward", one["kl_forward"]), ("kl_reverse", one["kl_reverse"])):
            assert abs(cell[key] - value) <= 1e-10, (key, cell[key], value)
        if exact:
            assert cell["loss"] == one["loss"] and cell["var"] == one["q"]["var"]


def test_parquet_and_json_tables_and_steps_to_reach(tmp_path):
    pq_path, js_path = tmp_path / "s.parquet", tmp_path / "s.json"
    for path in (pq_path, js_path):
        rc, _, err = invoke("sweep", "fit", "--target", "N(2, 1)", "--grid", "lr=0.1,0.5,-1", "--max-steps", "200",
                            "--reach", "1e-6", "--out", str(path))
        assert rc == 0, err
    table = pq.read_table(pq_path).to_pydict()
    payload = json.loads(js_path.read_text())
    assert table["stop_reason"] == [c["stop_reason"] for c in payload["cells"]]
    assert table["stop_reason"][2] == "diverged" and table["steps_to_reach"][2] is None
    one = single_fit("--target", "N(2, 1)", "--lr", "0.5", "--max-steps", "200")
    first = next(s for s, v in zip(one["trace"]["step"], one["trace"]["loss"]) if v <= 1e-6)
    assert table["steps_to_reach"][1] == first
    assert payload["axes"] == {"lr": [0.1, 0.5, -1.0]}


def test_sweep_landscape_small_step_stays_large_step_escapes():
    d = sweep_json("sweep", "landscape", "--function", "double-well", "--init", "1.5", "--grid", "lr=0.01,0.1",
                   "--max-steps", "2000")
    assert [round(c["x"], 6) for c in d["cells"]] == [1.2, -1.5]
    assert d["settings"]["global_minima"] == [[-1.5]]


def test_sweep_landscape_over_start_points_with_a_heatmap(tmp_path):
    png = tmp_path / "starts.png"
    rc, out, err = invoke("sweep", "landscape", "--function", "himmelblau", "--grid", "x0=-4:4:3",
                          "--grid", "y0=-4:4:3", "--max-steps", "3000", "--heatmap", str(png), "--heatmap-axes",
                          "y0,x0", "--plot-size", "400x300")
    assert rc == 0, err
    with Image.open(png) as im:
        assert im.size == (400, 300)
    assert "9 cells" in out


def test_help_lists_the_options():
    for sub in ("fit", "landscape"):
        rc, out, _ = invoke("sweep", sub, "--help")
        assert rc == 0
        for option in ("--grid", "--out", "--heatmap", "--max-steps", "--optimizer", "--lr", "--exact", "--json"):
            assert option in out, (sub, option)


SW = ("sweep", "fit", "--target", "N(2, 1)", "--max-steps", "5")
BAD = [
    ("grid-no-equals", [*SW, "--grid", "lr0.1"], ["name=values"]),
    ("grid-bad-number", [*SW, "--grid", "lr=a,b"], ["'a' is not a number"]),
    ("grid-bad-count", [*SW, "--grid", "lr=0:1:0"], ["whole number", "name=a:b:n"]),   # as written: no emoji codes
    ("grid-too-many-parts", [*SW, "--grid", "lr=0:1:3:log:x"], ["parts"]),
    ("grid-log-negative", [*SW, "--grid", "lr=-1:1:3:log"], ["log spacing"]),
    ("grid-unknown-name", [*SW, "--grid", "speed=1,2"], ["speed", "can vary lr"]),
    ("grid-momentum-on-gd", [*SW, "--grid", "momentum=0,0.9"], ["momentum"]),
    ("grid-decay-constant", [*SW, "--grid", "decay=0.9,0.99"], ["--schedule exponential or step"]),
    ("grid-max-steps", [*SW, "--grid", "max_steps=10,20"], ["stopping rules"]),
    ("grid-period-fraction", [*SW, "--schedule", "warm-restarts", "--grid", "period=10,12.5"], ["whole numbers"]),
    ("grid-momentum-1.5", [*SW, "--optimizer", "momentum", "--grid", "momentum=0.5,1.5"], ["1.5"]),
    ("grid-twice", [*SW, "--grid", "lr=0.1", "--grid", "lr=0.2"], ["twice"]),
    ("grid-missing", [*SW], ["--grid"]),
    ("out-suffix", [*SW, "--grid", "lr=0.1", "--out", "{tmp}/s.xlsx"], [".csv"]),
    ("out-folder", [*SW, "--grid", "lr=0.1", "--out", "{tmp}/no/s.csv"], ["folder"]),
    ("heatmap-suffix", [*SW, "--grid", "lr=0.1", "--heatmap", "{tmp}/h.bmp"], [".png"]),
    ("heatmap-three-axes", ["sweep", "landscape", "--function", "bowl", "--optimizer", "momentum",
                            "--grid", "lr=0.1,0.2", "--grid", "momentum=0,0.5", "--grid", "x0=1,2",
                            "--heatmap", "{tmp}/h.png"], ["3"]),
    ("heatmap-axes-alone", [*SW, "--grid", "lr=0.1", "--heatmap-axes", "lr,momentum"], ["--heatmap"]),
    ("heatmap-axes-unknown", [*SW, "--grid", "lr=0.1", "--heatmap", "{tmp}/h.png", "--heatmap-axes", "lr,speed"],
     ["speed"]),
    ("reach-nan", [*SW, "--grid", "lr=0.1", "--reach", "nan"], ["--reach"]),
    ("target-bad", ["sweep", "fit", "--target", "N(2,", "--grid", "lr=0.1"], ["N(2,"]),
    ("init-var-negative", [*SW, "--grid", "init_var=1,-1"], ["positive"]),
    ("landscape-natural", ["sweep", "landscape", "--function", "bowl", "--optimizer", "natural",
                           "--grid", "lr=0.1"], ["Fisher"]),
    ("landscape-unsafe", ["sweep", "landscape", "--function", "__import__('os')", "--grid", "lr=0.1"],
     ["__import__"]),
    ("landscape-no-start", ["sweep", "landscape", "--function", "x**2", "--grid", "lr=0.1"], ["--init"]),
]


@pytest.mark.parametrize("argv, mentions", [pytest.param(a, m, id=i) for i, a, m in BAD])
def test_bad_input_exits_2_with_one_line(argv, mentions, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    line = assert_one_line_error(*invoke(*argv))
    assert line.startswith("gdlab: error:"), line
    assert all(m.replace("{tmp}", str(tmp_path)) in line for m in mentions), f"{line!r} lacks one of {mentions}"


# ------------------------------------------------------------------------------ gdlab sweep train

TRAIN = ("sweep", "train", "--data", "breast_cancer", "--model", "logistic")


def single_train(*args: str) -> dict:
    rc, out, err = invoke("train", "--data", "breast_cancer", "--model", "logistic", *args, "--json", "-")
    assert rc == 0, err
    return strict_loads(out)


@pytest.mark.parametrize("exact, tol", [(True, "1e-15"), (False, "0")], ids=["exact", "vmap"])
def test_sweep_train_cells_equal_single_gdlab_train_runs(exact, tol, tmp_path):
    """Each cell is `gdlab train` with the cell's settings: the same final loss (to 1e-10), steps
    and stop reason. Under vmap (rounding differs) the stop is the gradient rule (--tol 0)."""
    table = tmp_path / "cells.json"
    d = sweep_json(*TRAIN, "--optimizer", "momentum", "--grid", "lr=0.3,3", "--grid", "momentum=0,0.9",
                   "--max-steps", "1500", "--tol", tol, "--grad-tol", "1e-8", "--out", str(table),
                   *(["--exact"] if exact else []))
    assert d["kind"] == "train" and len(d["cells"]) == 4 and d["settings"]["compiled_programs"] == 1
    assert {c["stop_reason"] for c in d["cells"]} == {"converged", "max_steps"}
    for cell in d["cells"]:
        single = single_train("--optimizer", "momentum", "--lr", repr(cell["lr"]), "--momentum", repr(cell["momentum"]),
                              "--max-steps", "1500", "--tol", tol, "--grad-tol", "1e-8")
        assert (cell["stop_reason"], cell["steps"]) == (single["stop_reason"], single["steps"])
        assert abs(cell["loss"] - single["loss"]) <= 1e-10
        assert abs(cell["test_loss"] - single["test_loss"]) <= 1e-10
    with open(table) as fh:
        assert strict_loads(fh.read())["cells"] == d["cells"]


def test_sweep_train_writes_a_table_and_a_heatmap(tmp_path):
    table, png = tmp_path / "t.csv", tmp_path / "t.png"
    rc, out, err = invoke(*TRAIN, "--optimizer", "natural", "--grid", "lr=0.25,0.5,1", "--grid", "damping=0,0.1",
                          "--max-steps", "100", "--out", str(table), "--heatmap", str(png), "--plot-size", "480x320")
    assert rc == 0, err
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert {"lr", "damping", "loss", "steps", "stop_reason", "steps_to_converge", "test_loss", "accuracy"} <= set(rows[0])
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (480, 320)
    assert "sweep train" in out and "one compiled program" in out


def test_sweep_train_help_has_train_options():
    rc, out, _ = invoke("sweep", "train", "--help")
    assert rc == 0
    for option in ("--data", "--model", "--loss", "--C", "--l2", "--optimizer", "--solver", "--schedule", "--grid",
                   "--out", "--heatmap", "--exact", "--json", "--max-steps", "--grad-tol"):
        assert option in out, option


TRAIN_BAD = [
    ("unknown-axis", [*TRAIN, "--grid", "speed=1,2"], ["speed", "can vary lr"]),
    ("momentum-on-gd", [*TRAIN, "--grid", "momentum=0,0.9"], ["momentum"]),
    ("damping-on-adam", [*TRAIN, "--optimizer", "adam", "--grid", "damping=0,1"], ["natural-gradient"]),
    ("penalty-axis", [*TRAIN, "--grid", "l2=0,1"], ["--l2"]),
    ("bad-dataset", ["sweep", "train", "--data", "no_such_data", "--model", "logistic", "--grid", "lr=0.1"],
     ["no_such_data"]),
    ("missing-file", ["sweep", "train", "--data", "{tmp}/none.csv", "--target", "y", "--model", "logistic",
                      "--grid", "lr=0.1"], ["none.csv"]),
    ("bad-model", ["sweep", "train", "--data", "iris", "--model", "svm", "--grid", "lr=0.1"], ["svm"]),
    ("penalty-twice", [*TRAIN, "--l2", "0.1", "--C", "1", "--grid", "lr=0.1"], ["--l2", "--C"]),
    ("mini-batch", [*TRAIN, "--grid", "lr=0.1", "--batch-size", "32"], ["--batch-size"]),
    ("grid-missing", [*TRAIN], ["--grid"]),
]


@pytest.mark.parametrize("argv, mentions", [pytest.param(a, m, id=i) for i, a, m in TRAIN_BAD])
def test_sweep_train_bad_input_exits_2_with_one_line(argv, mentions, tmp_path):
    test_bad_input_exits_2_with_one_line(argv, mentions, tmp_path)
