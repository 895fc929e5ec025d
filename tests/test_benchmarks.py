"""Every benchmark runs at toy size (``--quick``) in the suite, so the scripts never rot.

Nothing here asserts a speed: only that each script runs, writes its results file with every
contender's answer, that the answers agree, and that the report page is generated from them.

Each script runs once per session, when the first test that reads its results asks for it, into
one results folder that every pytest-xdist worker shares (``once`` in tests/conftest.py), rather
than all nine in one fixture, one after another, before the first test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
QUICK = ["bench_step_cost.py", "bench_fit.py", "bench_startup.py", "bench_sweep.py", "bench_grid.py",
         "bench_logistic.py", "bench_out_of_core.py", "bench_explorer_load.py", "bench_dask.py"]


@pytest.fixture(scope="session")
def bench(session_root, once):
    """``bench(script)`` runs ``benchmarks/SCRIPT --quick`` unless this session ran it already (on
    any worker) and returns the results folder."""
    folder = session_root / "bench-results"
    folder.mkdir(exist_ok=True)
    env = {**os.environ, "GDLAB_BENCH_RESULTS": str(folder)}

    def run_script(script: str) -> None:
        proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                              env=env, timeout=600)
        assert proc.returncode == 0, f"{script}: {proc.stderr[-2000:]}"

    def run(script: str) -> Path:
        assert script in QUICK
        once(script, lambda: run_script(script))
        return folder

    return run


def test_step_cost_runs_every_contender_and_they_agree(bench):
    results = bench("bench_step_cost.py")
    data = json.loads((results / "step_cost.json").read_text())
    assert data["quick"] is True
    for workload in ("rosenbrock", "kl_fit"):
        w = data["workloads"][workload]
        names = {r["name"] for r in w["rows"]} | {m["name"] for m in w["missing"]}
        assert names == {"gdlab", "bare_scan", "optax_loop", "numpy_loop", "torch_loop"}  # torch: run or missing
        assert w["answers_agree"]
        assert all(r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"] for r in w["rows"])


def test_fit_benchmark_reports_steps_for_each_optimizer(bench):
    results = bench("bench_fit.py")
    data = json.loads((results / "fit.json").read_text())
    optimizers = {r["optimizer"] for r in data["rows"]}
    assert optimizers == {"gd", "momentum", "nesterov", "adam", "natural", "natural-tr"}
    natural = next(r for r in data["rows"] if r["optimizer"] == "natural")
    assert natural["steps"] == 2  # forward KL in (mean, variance): the mean at step 1, the variance at 2


def test_fit_benchmarks_reverse_kl_reference_is_the_closed_form_and_gdlabs_objective():
    """bench_fit checks its reverse KL* against scipy's quadrature: the quadrature itself is the
    closed form for a Gaussian p, and gdlab's objective for a mixture, including a q that straddles
    its modes (both agree to 1e-12)."""
    import gdlab

    sys.path.insert(0, str(BENCH))
    try:
        import bench_fit
    finally:
        sys.path.remove(str(BENCH))
    m0, v0, m1, v1 = 0.5, 3.0, 2.0, 1.0       # KL(N(m0, v0) ‖ N(m1, v1))
    closed = 0.5 * (math.log(v1 / v0) + (v0 + (m0 - m1) ** 2) / v1 - 1)
    assert bench_fit.reverse_kl_by_quadrature("N(2, 1)", m0, v0) == pytest.approx(closed, rel=1e-12)
    target = bench_fit.TARGETS["asymmetric"]
    for mean, var in [(0.0, 5.0), (1.5, 0.16), (-0.57, 2.4)]:
        ours = gdlab.fit(target, f"N({mean}, {var})", "reverse", max_steps=0).loss
        assert bench_fit.reverse_kl_by_quadrature(target, mean, var) == pytest.approx(ours, rel=1e-12)
    # p's moments: 0.3·(−2) + 0.7·1.5 = 0.45 and 0.3·(0.36 + 4) + 0.7·(0.16 + 2.25) − 0.45² = 2.7925
    assert bench_fit.starts(target) == [(-2.0, 0.36), (1.5, 0.16), (pytest.approx(0.45), pytest.approx(2.7925))]


def test_sweep_benchmark_writes_its_results(bench):
    results = bench("bench_sweep.py")
    data = json.loads((results / "sweep.json").read_text())
    assert data["quick"] is True


def test_dask_benchmark_reports_both_cluster_sizes_and_their_tables_agree(bench):
    results = bench("bench_dask.py")
    data = json.loads((results / "dask.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"local vmapped sweep", "dask, 1 worker", "dask, 2 workers"}
    assert data["answers_agree"] and all(r["max_rel_gap_to_local"] <= 1e-12 for r in rows.values())
    assert data["speedup_2_over_1_worker"] > 0 and set(data["overhead_over_local"]) == {"dask, 1 worker",
                                                                                        "dask, 2 workers"}


def test_grid_benchmark_contenders_agree_cell_by_cell(bench):
    results = bench("bench_grid.py")
    data = json.loads((results / "grid.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert {"gdlab.sweep", "bare jit(vmap(scan))", "numpy (vectorised)"} <= set(rows)
    for r in rows.values():        # the same final f on every cell finite in both, the same diverged cells
        assert r["max_rel_gap"] < 1e-9 and r["cells_diverged_in_one_only"] == 0


def test_logistic_benchmark_every_exact_method_reaches_the_optimum(bench):
    results = bench("bench_logistic.py")
    data = json.loads((results / "logistic.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    for name in ("gdlab natural (Fisher scoring)", "sklearn lbfgs", "sklearn newton-cholesky", "scipy L-BFGS-B"):
        assert rows[name]["reached"], f"{name} stopped {rows[name]['gap']:.1e} above J*"
    assert not rows["sklearn SGDClassifier (5 epochs)"]["reached"]     # the contrast the row shows


def test_out_of_core_benchmark_trains_on_the_whole_file(bench):
    results = bench("bench_out_of_core.py")
    data = json.loads((results / "out_of_core.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["pyarrow raw read"]["answer"] == data["n"]          # every row read
    # one epoch of Adam from zero weights ends near the generating weights' loss (and never below
    # the minimum, which lies within about d/(2n) under it)
    assert abs(rows["gdlab.train (stream)"]["answer"] - data["truth_loss"]) < 0.05
    # the spill changes where the rows are read from, not the run: the same loss to the last bit
    assert rows["gdlab.train (stream, no spill)"]["answer"] == rows["gdlab.train (stream)"]["answer"]


def test_explorer_load_benchmark_reports_every_client(bench):
    results = bench("bench_explorer_load.py")
    data = json.loads((results / "explorer_load.json").read_text())     # the script checks each got every frame
    rows = {r["name"]: r for r in data["rows"]}
    assert data["clients"] == 5 and data["repeats"] == 1 and rows["frames/s per client, load 1"]["min"] > 0
    # the summary is over the loads: one load here, so its median is that load's own number
    assert data["longest_gap_ms"]["median"] == rows["gap between frame messages (ms), load 1"]["max"]
    assert data["slowest_client_frames_per_s"]["median"] == rows["frames/s per client, load 1"]["min"]


def test_startup_benchmark_and_report(bench, tmp_path):
    # the report is made from every script's results, as `make bench` makes it
    results = [bench(script) for script in QUICK][0]
    data = json.loads((results / "startup.json").read_text())
    assert {r["name"] for r in data["rows"]} >= {"gdlab --help", "gdlab fit"}
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run([sys.executable, str(BENCH / "report.py"), "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "do not edit by hand" in page and "per-step cost" in page and "µs/step" in page
