"""Tests for ``gdlab train``: the table, --json, --save-weights, help, and every bad input (one
sentence on stderr, exit 2). Expected numbers come from scikit-learn, numpy.linalg.lstsq or NumPy
formulas, never from gdlab's own output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import datasets as skd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from datagen import write_csv, write_logistic_parquet
from test_cli import invoke, strict_loads, table_value

JSON_KEYS = ("stop_reason", "steps", "epochs", "loss", "test_loss", "metrics", "weights", "trace")
TRACE_KEYS = ("step", "loss", "epoch_loss", "lr")


@lru_cache(maxsize=None)
def train_json(*args: str) -> dict:
    rc, out, err = invoke("train", *args, "--json", "-")
    assert rc == 0, err
    assert "Traceback" not in err
    return strict_loads(out)


def assert_one_line_error(rc: int, out: str, err: str) -> str:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and out == ""
    line = err.strip()
    assert line.startswith("gdlab: error:") and "\n" not in line, err
    return line


# ------------------------------------------------------------------------------- the commands

def test_fisher_scoring_table_and_json_agree_with_sklearn():
    X, y = skd.load_breast_cancer(return_X_y=True)
    test = __import__("gdlab").data.in_test_split(np.arange(len(y)), 0, 0.2)
    scaler = StandardScaler().fit(X[~test])
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(scaler.transform(X[~test]), y[~test])
    rc, out, err = invoke("train", "--data", "breast_cancer", "--model", "logistic", "--optimizer", "natural")
    assert rc == 0, err
    assert table_value(out, "stop reason") == "converged"
    assert int(table_value(out, "steps")) <= 10
    assert float(table_value(out, "test accuracy")) == pytest.approx(sk.score(scaler.transform(X[test]), y[test]))
    assert float(table_value(out, "train accuracy")) == pytest.approx(sk.score(scaler.transform(X[~test]), y[~test]))
    assert "C = 1" in table_value(out, "penalty")
    d = train_json("--data", "breast_cancer", "--model", "logistic", "--optimizer", "natural")
    np.testing.assert_allclose(d["weights"], sk.coef_[0], atol=2e-5)
    assert d["bias"] == pytest.approx(sk.intercept_[0], abs=2e-5)
    assert d["n_train"] == int((~test).sum()) and d["n_test"] == int(test.sum())


def test_momentum_minibatch_example_prints_the_table():
    rc, out, err = invoke("train", "--data", "breast_cancer", "--model", "logistic", "--optimizer", "momentum",
                          "--lr", "0.1", "--momentum", "0.9", "--batch-size", "32", "--epochs", "20")
    assert rc == 0, err
    for label in ("train loss", "test loss", "train accuracy", "test accuracy", "steps", "epochs", "stop reason"):
        table_value(out, label)
    assert table_value(out, "epochs") == "20" and table_value(out, "stop reason") == "max_steps"
    assert int(table_value(out, "steps").replace(",", "")) == 20 * (438 // 32)
    assert float(table_value(out, "test accuracy")) > 0.9


def test_linear_rmse_annealing_example_and_least_squares():
    X, y = skd.load_diabetes(return_X_y=True, scaled=False)
    Xa = np.hstack([StandardScaler().fit_transform(X), np.ones((len(y), 1))])
    theta, *_ = np.linalg.lstsq(Xa, y, rcond=None)
    rmse = np.sqrt(np.mean((Xa @ theta - y) ** 2))
    d = train_json("--data", "diabetes", "--model", "linear", "--optimizer", "gd", "--lr", "0.2", "--test-size", "0",
                   "--max-steps", "100000")
    assert d["stop_reason"] == "converged" and abs(d["metrics"]["rmse"] - rmse) <= 1e-6
    assert d["loss_function"] == "mse" and d["loss"] == pytest.approx(rmse ** 2, rel=1e-9)
    # the annealing example runs and says what its decayed step did
    rc, out, err = invoke("train", "--data", "diabetes", "--model", "linear", "--loss", "rmse", "--optimizer", "gd",
                          "--lr", "0.05", "--schedule", "exponential", "--decay", "0.995")
    assert rc == 0, err
    assert "train RMSE" in out and "anneal more slowly" in out


def test_softmax_adam_json_shape():
    d = train_json("--data", "digits", "--model", "softmax", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "64",
                   "--epochs", "3")
    for key in JSON_KEYS:
        assert key in d, key
    for key in TRACE_KEYS:
        assert isinstance(d["trace"][key], list), key
    per_epoch = d["n_train"] // 64
    assert d["steps"] == 3 * per_epoch and d["epochs"] == 3 and d["batch_size"] == 64
    assert len(d["trace"]["loss"]) == d["steps"] and d["trace"]["step"] == list(range(d["steps"]))
    assert len(d["trace"]["epoch_loss"]) == 4 and d["trace"]["epoch_step"] == [0, per_epoch, 2 * per_epoch,
                                                                                3 * per_epoch]
    assert np.shape(d["weights"]) == (64, 10) and len(d["bias"]) == 10 and d["classes"] == list(range(10))
    assert set(d["metrics"]) >= {"accuracy", "test_accuracy", "grad_norm"}
    assert d["loss"] == d["trace"]["epoch_loss"][-1] and d["test_loss"] == d["trace"]["epoch_test_loss"][-1]
    assert d["lr"] == 0.01 and d["trace"]["lr"][0] == 0.01


def test_json_without_test_rows_has_nulls_not_nan():
    d = train_json("--data", "iris", "--model", "softmax", "--optimizer", "natural", "--test-size", "0")
    assert d["test_loss"] is None and d["metrics"]["test_accuracy"] is None and d["n_test"] == 0
    rc, out, _ = invoke("train", "--data", "iris", "--model", "softmax", "--optimizer", "natural", "--test-size", "0")
    assert table_value(out, "test loss") == "n/a (no test rows)"


def test_too_large_a_learning_rate_is_diverged_with_strict_json_and_no_nan_table():
    d = train_json("--data", "diabetes", "--model", "linear", "--lr", "10")
    assert d["stop_reason"] == "diverged" and d["message"].startswith("diverged at step")
    rc, out, err = invoke("train", "--data", "diabetes", "--model", "linear", "--lr", "10")
    assert rc == 0 and table_value(out, "stop reason") == "diverged"
    assert "nan" not in out.lower() and "inf " not in out.lower()
    assert "smaller learning rate" in out


def test_separable_data_message_in_the_cli():
    rc, out, err = invoke("train", "--data", "breast_cancer", "--model", "logistic", "--optimizer", "natural",
                          "--l2", "0")
    assert rc == 0, err
    assert table_value(out, "stop reason") == "diverged" and table_value(out, "penalty") == "none (λ = 0)"
    assert "linearly separable" in out and "--C 1" in out
    d = train_json("--data", "breast_cancer", "--model", "logistic", "--optimizer", "natural", "--l2", "0")
    assert d["separable"] is True and d["stop_reason"] == "diverged"


def test_json_to_a_file_and_saved_weights_predict(tmp_path):
    out_json, weights = tmp_path / "run.json", tmp_path / "w.json"
    rc, out, err = invoke("train", "--data", "wine", "--model", "softmax", "--optimizer", "natural", "--json",
                          str(out_json), "--save-weights", str(weights))
    assert rc == 0, err
    d, w = strict_loads(out_json.read_text()), strict_loads(weights.read_text())
    assert w["weights"] == d["weights"] and w["classes"] == [0, 1, 2] and len(w["features"]) == 13
    X, y = skd.load_wine(return_X_y=True)
    Z = ((X - w["standardize"]["mean"]) / w["standardize"]["scale"]) @ np.array(w["weights"]) + w["bias"]
    test = __import__("gdlab").data.in_test_split(np.arange(len(y)), 0, 0.2)
    assert np.mean(Z[test].argmax(axis=1) == y[test]) == pytest.approx(d["metrics"]["test_accuracy"])


def test_a_csv_file_with_target_and_features(tmp_path):
    X, y = skd.load_breast_cancer(return_X_y=True)
    write_csv(tmp_path / "bc.csv", X[:, :5], y, names=["a", "b", "c", "d", "e"], target="malignant")
    d = train_json("--data", str(tmp_path / "bc.csv"), "--target", "malignant", "--features", "a, c", "--model",
                   "logistic", "--optimizer", "natural", "--test-size", "0")
    Xs = StandardScaler().fit_transform(X[:, [0, 2]])
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(Xs, y)
    assert d["features"] == ["a", "c"] and d["target"] == "malignant"
    np.testing.assert_allclose(d["weights"], sk.coef_[0], atol=1e-5)


def test_a_streamed_parquet_file(tmp_path):
    path = tmp_path / "s.parquet"
    write_logistic_parquet(path, 20_000, 5, seed=1, row_group_rows=3_000)
    rc, out, err = invoke("train", "--data", str(path), "--target", "label", "--model", "logistic", "--batch-size",
                          "256", "--epochs", "2", "--stream", "--memory-limit", "4M", "--optimizer", "adam")
    assert rc == 0, err
    n_train = int(table_value(out, "data").split()[0].replace(",", ""))
    assert table_value(out, "epochs") == "2"
    assert int(table_value(out, "steps").replace(",", "")) == 2 * (n_train // 256)


# ------------------------------------------------------------------------------- help

def test_help_answers_the_questions():
    rc, out, _ = invoke("train", "--help")
    assert rc == 0
    for option in ("--data", "--target", "--features", "--model", "--loss", "--optimizer", "--lr", "--momentum",
                   "--schedule", "--decay", "--batch-size", "--epochs", "--max-steps", "--test-size", "--standardize",
                   "--no-standardize", "--init", "--seed", "--l2", "--C", "--damping", "--json", "--save-weights",
                   "--tol", "--patience", "--grad-tol", "--memory-limit", "--stream", "--solver", "--no-spill"):
        assert option in out, option
    flat = " ".join(out.split())
    for phrase in ("λ = 1/(C·n)", "Default: C = 1 (scikit-learn's) for logistic and softmax", "0 or 'full'",
                   "population std", "natural-diag", "1024-based"):
        assert phrase in flat, phrase


def test_gdlab_help_does_not_load_jax():
    code = "import sys; from gdlab.cli import main; main(['--help']); print('jax' in sys.modules, 'sklearn' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False False"
    assert "train" in proc.stdout


# ------------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text("a,b,label\n")
    (folder / "text.csv").write_text("a,colour,label\n1,red,0\n2,blue,1\n")
    (folder / "labels.csv").write_text("a,label\n1,0\n2,1\n3,2\n4,1\n")
    pq.write_table(pa.table({"a": pa.array([], pa.float64()), "label": pa.array([], pa.int64())}),
                   folder / "empty.parquet")
    write_logistic_parquet(folder / "ok.parquet", 3_000, 3, seed=1)
    return folder


BASE = ("train", "--data", "iris", "--model", "softmax", "--max-steps", "2")
BAD = [  # (id, argv, fragments that must all appear in the one line)
    ("missing-file", ["train", "--data", "{d}/nope.csv", "--target", "y", "--model", "logistic"], ["no file", "nope.csv"]),
    ("missing-model", ["train", "--data", "iris"], ["Missing option '--model'", "linear, logistic, softmax"]),
    ("unknown-dataset", ["train", "--data", "irs", "--model", "softmax"],
     ["unknown dataset 'irs'", "breast_cancer, diabetes, digits, iris, wine"]),
    ("missing-target-column", ["train", "--data", "{d}/labels.csv", "--target", "y", "--model", "logistic"],
     ["no target column 'y'", "a, label"]),
    ("no-target", ["train", "--data", "{d}/labels.csv", "--model", "logistic"], ["--target", "a, label"]),
    ("non-numeric-feature", ["train", "--data", "{d}/text.csv", "--target", "label", "--model", "logistic"],
     ["'colour' is not numeric"]),
    ("labels-not-0-1", ["train", "--data", "{d}/labels.csv", "--target", "label", "--model", "logistic"],
     ["labels 0 and 1", "0, 1, 2", "--model softmax"]),
    ("labels-not-0-1-dataset", ["train", "--data", "iris", "--model", "logistic"], ["labels 0 and 1"]),
    ("batch-size--3", [*BASE, "--batch-size", "-3"], ["--batch-size", "'-3'", "0 or 'full'"]),
    ("batch-size-abc", [*BASE, "--batch-size", "abc"], ["--batch-size"]),
    ("batch-size-too-big", [*BASE, "--batch-size", "1000"], ["larger than the"]),
    ("empty-csv", ["train", "--data", "{d}/empty.csv", "--target", "label", "--model", "logistic"], ["is empty"]),
    ("header-only-csv", ["train", "--data", "{d}/header.csv", "--target", "label", "--model", "logistic"],
     ["no data rows"]),
    ("empty-parquet", ["train", "--data", "{d}/empty.parquet", "--target", "label", "--model", "logistic"],
     ["no data rows"]),
    ("C-0", [*BASE, "--C", "0"], ["--C must be positive"]),
    ("l2-and-C", [*BASE, "--C", "1", "--l2", "0.1"], ["not both"]),
    ("l2-negative", [*BASE, "--l2", "-1"], ["--l2 must be >= 0"]),
    ("lr-nan", [*BASE, "--lr", "nan"], ["--lr must be a finite number"]),
    ("test-size-1", [*BASE, "--test-size", "1"], ["--test-size"]),
    ("epochs-0", [*BASE, "--epochs", "0"], ["--epochs"]),
    ("unknown-model", ["train", "--data", "iris", "--model", "tree"], ["--model", "tree"]),
    ("loss-for-logistic", ["train", "--data", "breast_cancer", "--model", "logistic", "--loss", "rmse"],
     ["mse and rmse are for --model linear"]),
    ("target-with-dataset", [*BASE, "--target", "species"], ["--target is for files"]),
    ("unknown-feature", [*BASE, "--features", "petal"], ["no feature column 'petal'"]),
    ("empty-feature-name", [*BASE, "--features", "a,,b"], ["empty name"]),
    ("momentum-with-adam", [*BASE, "--optimizer", "adam", "--momentum", "0.5"], ["momentum applies to"]),
    ("damping-with-gd", [*BASE, "--damping", "0.1"], ["damping applies to the natural optimizer"]),
    ("solver-with-gd", [*BASE, "--solver", "cg"], ["solver applies to the natural optimizer"]),
    ("decay-with-constant", [*BASE, "--decay", "0.5"], ["--decay applies to"]),
    ("memory-limit-bad", [*BASE, "--memory-limit", "lots"], ["--memory-limit", "512M"]),
    ("json-bad-folder", [*BASE, "--json", "{d}/no/out.json"], ["--json", "no/out.json"]),
    ("save-weights-bad-folder", [*BASE, "--save-weights", "{d}/no/w.json"], ["--save-weights"]),
    ("full-batch-on-a-stream", ["train", "--data", "{d}/ok.parquet", "--target", "label", "--model", "logistic",
                                "--stream"], ["needs every training row in memory", "--batch-size"]),
    ("plot-suffix", [*BASE, "--plot", "{d}/t.bmp"], ["--plot", ".png"]),
    ("plot-folder", [*BASE, "--plot", "{d}/no/t.png"], ["--plot", "folder"]),
    ("animate-suffix", [*BASE, "--animate", "{d}/t.png"], ["--animate", ".gif"]),
    ("plot-size-bad", [*BASE, "--plot", "{d}/t.png", "--plot-size", "big"], ["WIDTHxHEIGHT"]),
]


@pytest.mark.parametrize("argv, fragments", [pytest.param(a, f, id=i) for i, a, f in BAD])
def test_bad_input_exits_2_with_one_sentence(argv, fragments, files):
    argv = [a.replace("{d}", str(files)) for a in argv]
    line = assert_one_line_error(*invoke(*argv))
    for fragment in fragments:
        assert fragment.replace("{d}", str(files)) in line, (fragment, line)


def test_the_console_script_reports_bad_input_without_a_traceback(files):
    script = Path(sys.executable).parent / "gdlab"
    if not (script.is_file() and os.access(script, os.X_OK)):
        pytest.skip("the gdlab console script is not installed")
    proc = subprocess.run([str(script), "train", "--data", str(files / "nope.parquet"), "--target", "y",
                           "--model", "logistic"], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)


def test_a_terminal_gets_a_progress_bar_per_epoch():
    script = Path(sys.executable).parent / "gdlab"
    if not (script.is_file() and os.access(script, os.X_OK)):
        pytest.skip("the gdlab console script is not installed")
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "100"}      # rich then draws as on a terminal
    proc = subprocess.run([str(script), "train", "--data", "iris", "--model", "softmax", "--optimizer", "adam",
                           "--batch-size", "16", "--epochs", "40"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 40" in proc.stderr.replace("\r", "\n") and "stop reason" in proc.stdout


def test_plot_and_animate_write_pictures_of_the_asked_size(tmp_path):
    """--plot and --animate: the loss curves of the run just made, at the asked size."""
    from PIL import Image

    png, gif = tmp_path / "train.png", tmp_path / "train.gif"
    rc, out, err = invoke("train", "--data", "breast_cancer", "--model", "logistic", "--optimizer", "momentum",
                          "--batch-size", "64", "--epochs", "3", "--plot", str(png), "--animate", str(gif),
                          "--plot-size", "480x360")
    assert rc == 0, err
    for path, fmt in ((png, "PNG"), (gif, "GIF")):
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == fmt and im.size == (480, 360)
            assert getattr(im, "n_frames", 1) >= (2 if fmt == "GIF" else 1)
            low, high = im.convert("L").getextrema()
            assert low < high
    assert "train loss" in out


def test_train_caps_malloc_arenas_before_it_reads_data(monkeypatch):
    """`gdlab train` caps glibc's malloc arenas first (a streamed run's reader thread and the
    main thread otherwise keep freed buffers in arenas of their own: a higher peak)."""
    import platform

    from gdlab import buffers

    calls = []
    monkeypatch.setattr(buffers, "share_malloc_arenas", lambda arenas=2: calls.append(arenas) or True)
    rc, out, err = invoke("train", "--data", "breast_cancer", "--model", "logistic", "--max-steps", "3")
    assert rc == 0, err
    assert calls == [2]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="arenas must be at least 1"):
        buffers.share_malloc_arenas(0)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert buffers.share_malloc_arenas() is True
