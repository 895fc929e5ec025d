"""Tests for gdlab.data: bundled datasets, CSV/Parquet files, the hashed split, standardisation
(in memory and streamed), the shuffle buffer, and every bad input with its one-sentence error.

References are independent: NumPy's population standard deviation (ddof=0), a pure-Python
splitmix64 on Python integers, scikit-learn's loaders, and counting rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import datasets as skd

from datagen import write_csv, write_logistic_parquet
from gdlab import data

MASK64 = (1 << 64) - 1


def splitmix64_py(x: int) -> int:
    """splitmix64 on Python integers (Steele, Lea & Flood 2014), for checking the vectorised one."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


# ------------------------------------------------------------------------------- the split

def test_split_hash_matches_a_pure_python_splitmix64():
    seed, size = 12345, 0.3
    key = splitmix64_py(seed)
    rows = np.array([0, 1, 2, 17, 10**6, 2**40 + 3])
    expected = [((splitmix64_py((int(r) + key) & MASK64) >> 11) * 2.0 ** -53) < size for r in rows]
    assert data.in_test_split(rows, seed, size).tolist() == expected


def test_split_fraction_is_binomial_and_decided_per_row():
    n, size = 200_000, 0.2
    mask = data.in_test_split(np.arange(n), 7, size)
    sd = np.sqrt(n * size * (1 - size))
    assert abs(mask.sum() - n * size) < 5 * sd
    # each row on its own: any order, any subset gives the same answer for that row
    order = np.random.default_rng(0).permutation(n)
    np.testing.assert_array_equal(data.in_test_split(order, 7, size), mask[order])
    # another seed, another split (about 2 · 0.2 · 0.8 of the rows change sides)
    other = data.in_test_split(np.arange(n), 8, size)
    assert abs((mask != other).mean() - 2 * size * (1 - size)) < 0.01
    assert not data.in_test_split(np.arange(n), 7, 0.0).any()


# ------------------------------------------------------------------------------- bundled datasets

@pytest.mark.parametrize("name, kind, loader", [
    ("breast_cancer", "logistic", skd.load_breast_cancer), ("diabetes", "linear", skd.load_diabetes),
    ("digits", "softmax", skd.load_digits), ("iris", "softmax", skd.load_iris), ("wine", "softmax", skd.load_wine)])
def test_bundled_datasets_split_and_standardise_on_the_training_rows(name, kind, loader):
    X, y = loader(return_X_y=True, **({"scaled": False} if name == "diabetes" else {}))
    ds = data.load(name, kind, test_size=0.25, seed=3)
    test = data.in_test_split(np.arange(len(y)), 3, 0.25)
    assert ds.n_train == (~test).sum() and ds.n_test == test.sum()
    mean, std = X[~test].mean(axis=0), X[~test].std(axis=0)      # population std, ddof = 0
    std = np.where(std == 0, 1.0, std)                            # a constant column keeps scale 1
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds.scale, std, rtol=1e-12)
    np.testing.assert_allclose(ds.X_train, (X[~test] - mean) / std, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ds.X_test, (X[test] - mean) / std, rtol=1e-10, atol=1e-12)   # train statistics
    if kind == "linear":
        np.testing.assert_array_equal(ds.y_train, y[~test])
        assert ds.target_mean == pytest.approx(y[~test].mean(), rel=1e-14)
    else:
        classes = np.unique(y)
        assert ds.classes == tuple(classes.tolist())
        np.testing.assert_array_equal(ds.y_test, np.searchsorted(classes, y[test]))
        if kind == "softmax":
            np.testing.assert_allclose(ds.target_mean, np.bincount(y[~test], minlength=len(classes)) / ds.n_train)


def test_no_standardize_keeps_the_raw_features_and_diabetes_is_unscaled():
    ds = data.load("diabetes", "linear", test_size=0.0, standardize=False)
    X, _ = skd.load_diabetes(return_X_y=True, scaled=False)
    np.testing.assert_array_equal(ds.X_train, X)
    assert ds.X_train[:, 0].max() > 50        # age in years, not sklearn's scaled version


def test_features_select_columns_by_name():
    ds = data.load("breast_cancer", "logistic", features=["mean radius", "worst area"], test_size=0.0)
    bunch = skd.load_breast_cancer()
    cols = [list(bunch.feature_names).index(f) for f in ("mean radius", "worst area")]
    assert ds.features == ("mean radius", "worst area")
    np.testing.assert_allclose(ds.X_train * ds.scale + ds.mean, bunch.data[:, cols], rtol=1e-12)


# ------------------------------------------------------------------------------- files

@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A 3,000-row table written as CSV and as Parquet (several row groups), and its arrays."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(3000, 4)) * [1.0, 10.0, 0.1, 3.0] + [5.0, -2.0, 0.0, 100.0]
    y = (X[:, 0] + 0.1 * X[:, 1] + rng.normal(size=3000) > 4).astype(int)
    folder = tmp_path_factory.mktemp("table")
    write_csv(folder / "t.csv", X, y)
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(4)}, "label": y}), folder / "t.parquet",
                   row_group_size=700)
    return folder, X, y


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_files_load_like_the_arrays(table, ext):
    folder, X, y = table
    ds = data.load(str(folder / f"t.{ext}"), "logistic", target="label", test_size=0.2, seed=4)
    ref = data.load((X, y), "logistic", test_size=0.2, seed=4)
    assert ds.features == ("x0", "x1", "x2", "x3") and ds.target == "label"
    for a in ("X_train", "y_train", "X_test", "y_test", "mean", "scale"):
        np.testing.assert_allclose(getattr(ds, a), getattr(ref, a), rtol=1e-14, atol=1e-14, err_msg=a)


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_streaming_pass_gives_the_in_memory_statistics(table, ext):
    folder, X, y = table
    path = str(folder / f"t.{ext}")
    st = data.load(path, "logistic", target="label", test_size=0.3, seed=9, stream=True, memory_limit=1 << 20)
    assert isinstance(st, data.Stream) and st.budget.block_rows == 1024      # several record batches
    test = data.in_test_split(np.arange(len(y)), 9, 0.3)
    assert (st.n_train, st.n_test) == ((~test).sum(), test.sum())
    np.testing.assert_allclose(st.mean, X[~test].mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(st.scale, X[~test].std(axis=0), rtol=1e-12)
    assert st.target_mean == pytest.approx(y[~test].mean(), rel=1e-14)
    # every row comes back once per pass, standardised, on its side of the split, in any order
    rows = [(Xb, yb, tb) for Xb, yb, tb in st.blocks(np.random.default_rng(0))]
    got = np.vstack([np.column_stack([Xb, yb, tb]) for Xb, yb, tb in rows])
    expected = np.column_stack([(X - st.mean) / st.scale, y, test])
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(got), order(expected), rtol=1e-12, atol=1e-12)
    train = np.vstack([Xb for Xb, _ in st.train_blocks(np.random.default_rng(1))])
    assert len(train) == st.n_train


def test_parquet_row_groups_come_in_a_new_order_each_epoch(table):
    folder, _, _ = table
    st = data.load(str(folder / "t.parquet"), "logistic", target="label", stream=True, memory_limit=1 << 20)
    firsts = {float(next(st.blocks(np.random.default_rng(s)))[0][0, 0]) for s in range(8)}
    assert len(firsts) > 1


def test_softmax_takes_text_labels_from_a_csv(tmp_path):
    names = np.array(["setosa", "versicolor", "virginica"])
    X, y = skd.load_iris(return_X_y=True)
    write_csv(tmp_path / "iris.csv", X, names[y], names=["a", "b", "c", "d"], target="species")
    ds = data.load(str(tmp_path / "iris.csv"), "softmax", target="species", test_size=0.0)
    assert ds.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(ds.y_train, y)
    st = data.load(str(tmp_path / "iris.csv"), "softmax", target="species", test_size=0.0, stream=True)
    assert st.classes == ds.classes
    np.testing.assert_allclose(st.target_mean, [1 / 3] * 3)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb, _ in st.blocks()]), y)


# ------------------------------------------------------------------------------- the shuffle buffer

def blocks_of(y, rows):
    for start in range(0, len(y), rows):
        yield y[start:start + rows, None].astype(float), y[start:start + rows].astype(float)


def test_shuffle_buffer_emits_each_row_once_in_whole_batches():
    y = np.arange(10_007)
    out = list(data.shuffled_batches(blocks_of(y, 333), 64, 1000, np.random.default_rng(0)))
    assert all(b[1].shape == (64,) and b[0].shape == (64, 1) for b in out)
    seen = np.concatenate([b[1] for b in out])
    assert len(seen) == (10_007 // 64) * 64 and len(np.unique(seen)) == len(seen)   # remainder (< 64) dropped
    np.testing.assert_array_equal(np.concatenate([b[0][:, 0] for b in out]), seen)   # X and y stay together


def test_shuffle_buffer_as_large_as_the_data_is_a_uniform_permutation():
    """Where row 0 lands, over 4,000 shuffles of 8 rows in batches of 1: uniform on 0..7 (χ² test)."""
    from scipy.stats import chisquare

    positions = []
    for s in range(4000):
        out = list(data.shuffled_batches(blocks_of(np.arange(8), 3), 1, 8, np.random.default_rng(s)))
        positions.append(int(np.flatnonzero(np.concatenate([b[1] for b in out]) == 0)[0]))
    assert chisquare(np.bincount(positions, minlength=8)).pvalue > 1e-4


def test_shuffle_buffer_mixes_a_file_sorted_by_label():
    """Labels sorted 0…0 1…1: a buffer of a third of the rows still mixes both labels into
    almost every batch (read in order, most batches would hold one label)."""
    y = np.repeat([0, 1], 6000)
    out = list(data.shuffled_batches(blocks_of(y, 500), 100, 4000, np.random.default_rng(1)))
    mixed = np.mean([0 < b[1].mean() < 1 for b in out])
    assert mixed > 0.6
    in_order = np.mean([0 < y[i:i + 100].mean() < 1 for i in range(0, len(y), 100)])
    assert in_order < 0.01


def test_budget_follows_the_memory_limit():
    small, large = data.budget(64 << 20, 51, 256), data.budget(1 << 30, 51, 256)
    assert small.buffer_rows * 51 * 8 <= (64 << 20) / 4 and large.buffer_rows > small.buffer_rows
    assert small.block_rows >= 1024 and small.chunk_steps >= 1
    assert data.budget(64 << 20, 51, 256, buffer_rows=5000).buffer_rows == 5000


# ------------------------------------------------------------------------------- bad input

def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture()
def bad_files(tmp_path):
    pq.write_table(pa.table({"a": pa.array([], pa.float64()), "label": pa.array([], pa.int64())}),
                   tmp_path / "empty.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "when": pa.array([1, 2], pa.timestamp("s")), "label": [0, 1]}),
                   tmp_path / "dates.parquet")
    return {
        "empty.csv": write(tmp_path / "empty.csv", ""),
        "header.csv": write(tmp_path / "header.csv", "a,b,label\n"),
        "text.csv": write(tmp_path / "text.csv", "a,colour,label\n1,red,0\n2,blue,1\n"),
        # past the first megabyte, which pyarrow infers the column types from
        "late-text.csv": write(tmp_path / "late-text.csv", "a,label\n" + "1,0\n" * 300_000 + "oops,1\n"),
        "labels.csv": write(tmp_path / "labels.csv", "a,label\n1,0\n2,1\n3,2\n"),
        "missing.csv": write(tmp_path / "missing.csv", "a,b,label\n1,2,0\n3,,1\n"),
        "one-label.csv": write(tmp_path / "one-label.csv", "a,label\n1,1\n2,1\n3,1\n"),
        "float-class.csv": write(tmp_path / "float-class.csv", "a,label\n1,0.5\n2,1\n"),
        "empty.parquet": str(tmp_path / "empty.parquet"),
        "dates.parquet": str(tmp_path / "dates.parquet"),
        "notparquet.parquet": write(tmp_path / "notparquet.parquet", "hello"),
        "table.txt": write(tmp_path / "table.txt", "a,label\n1,0\n"),
    }


BAD = [  # (id, data, kind, kwargs, fragments that must all be in the message)
    ("missing-file", "{tmp}/nope.csv", "logistic", {"target": "label"}, ["no file", "nope.csv"]),
    ("unknown-dataset", "breast_cancr", "logistic", {}, ["unknown dataset 'breast_cancr'", "breast_cancer, diabetes"]),
    ("unknown-extension", "table.txt", "logistic", {"target": "label"}, ["neither a .csv nor a .parquet"]),
    ("no-target", "labels.csv", "logistic", {}, ["needs --target", "a, label"]),
    ("missing-target", "labels.csv", "logistic", {"target": "y"}, ["no target column 'y'", "columns are a, label"]),
    ("non-numeric-feature", "text.csv", "logistic", {"target": "label"}, ["'colour' is not numeric", "text"]),
    ("non-numeric-late", "late-text.csv", "logistic", {"target": "label", "stream": True},
     ["'a' holds the non-numeric value 'oops'"]),
    ("date-feature", "dates.parquet", "logistic", {"target": "label"}, ["'when' is not numeric", "dates"]),
    ("labels-not-binary", "labels.csv", "logistic", {"target": "label"}, ["labels 0 and 1", "0, 1, 2", "softmax"]),
    ("labels-not-binary-streamed", "labels.csv", "logistic", {"target": "label", "stream": True},
     ["labels 0 and 1", "softmax"]),
    ("one-label", "one-label.csv", "logistic", {"target": "label", "test_size": 0.0}, ["only the label 1"]),
    ("one-label-streamed", "one-label.csv", "logistic", {"target": "label", "test_size": 0.0, "stream": True},
     ["only the label 1"]),
    ("float-class", "float-class.csv", "softmax", {"target": "label"}, ["0.5", "not a class label"]),
    ("missing-value", "missing.csv", "logistic", {"target": "label"}, ["'b' has a missing", "row 2"]),
    ("empty-csv", "empty.csv", "logistic", {"target": "label"}, ["is empty"]),
    ("header-only-csv", "header.csv", "logistic", {"target": "label"}, ["no data rows"]),
    ("header-only-streamed", "header.csv", "logistic", {"target": "label", "stream": True}, ["no data rows"]),
    ("empty-parquet", "empty.parquet", "logistic", {"target": "label"}, ["no data rows"]),
    ("empty-parquet-streamed", "empty.parquet", "logistic", {"target": "label", "stream": True}, ["no data rows"]),
    ("not-parquet", "notparquet.parquet", "logistic", {"target": "label"}, ["cannot read", "as PARQUET"]),
    ("target-with-dataset", "iris", "softmax", {"target": "y"}, ["--target is for files"]),
    ("unknown-feature", "iris", "softmax", {"features": ["petal"]}, ["no feature column 'petal'", "sepal length"]),
    ("target-as-feature", "labels.csv", "logistic", {"target": "label", "features": ["a", "label"]},
     ["also listed as a feature"]),
    ("test-size-1", "iris", "softmax", {"test_size": 1.0}, ["test_size must be a fraction in [0, 1)"]),
    ("negative-seed", "iris", "softmax", {"seed": -1}, ["seed must be a whole number"]),
    ("bad-arrays", (np.zeros((3, 2)), np.zeros(4)), "linear", {}, ["shape (n, d)"]),
    ("nan-in-arrays", (np.array([[1.0, 2.0], [np.nan, 0.0]]), np.zeros(2)), "linear", {}, ["missing or infinite"]),
    # +inf and −inf: their sum is NaN, not ±inf
    ("both-infinities", (np.array([[np.inf, 2.0], [-np.inf, 0.0]]), np.zeros(2)), "linear", {},
     ["missing or infinite"]),
    ("inf-among-huge", (np.array([[1e308, 1e308], [np.inf, 0.0]]), np.zeros(2)), "linear", {},
     ["missing or infinite"]),
]


def test_huge_finite_features_are_not_called_infinite():
    """Their sum overflows to inf; every entry is still finite, so the data load."""
    X = np.array([[1e308, -1.0], [1e308, 1.0], [1e308, 2.0]])
    ds = data.load((X, np.array([0.0, 1.0, 2.0])), "linear", test_size=0.0, standardize=False)
    assert np.array_equal(ds.X_train, X)


@pytest.mark.parametrize("source, kind, kwargs, fragments", [pytest.param(*b[1:], id=b[0]) for b in BAD])
def test_bad_data_gives_one_clear_sentence(source, kind, kwargs, fragments, bad_files, tmp_path):
    if isinstance(source, str):
        source = bad_files.get(source, source.replace("{tmp}", str(tmp_path)))
    with pytest.raises(data.DataError) as info:
        data.load(source, kind, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith((".", "?")), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_big_generator_writes_row_groups(tmp_path):
    write_logistic_parquet(tmp_path / "g.parquet", 25_000, 3, seed=1, row_group_rows=10_000)
    meta = pq.ParquetFile(tmp_path / "g.parquet").metadata
    assert meta.num_rows == 25_000 and [meta.row_group(g).num_rows for g in range(3)] == [10_000, 10_000, 5_000]
