"""Tests for gdlab.spill: a streamed file's rows kept on disk by the scan for the later passes.

The reference is the same stream decoding its file on every pass (``spill=False``): the spill
must give the same arrays bit for bit, in the same shuffled order, so that training from it is
training from the file; and where it cannot be written it must step aside (or, asked for, say why).
"""

from __future__ import annotations

import errno
from collections import namedtuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gdlab
from datagen import write_csv, write_logistic_parquet
from gdlab import data, optim, spill
from test_cli import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A Parquet file in row groups of uneven record batches, and a CSV file of the same rows."""
    folder = tmp_path_factory.mktemp("spill")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 3)) * [1.0, 30.0, 0.01] + [2.0, -5.0, 1.0]
    y = (X[:, 0] + rng.normal(size=4000) > 2).astype(np.int64)
    pq.write_table(pa.table({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "label": y}), folder / "t.parquet",
                   row_group_size=1500)          # groups of 1,500, 1,500, 1,000; batches of 1,024 split each
    write_csv(folder / "t.csv", X, y)
    return folder


def streamed(path, **kw):
    return data.load(str(path), "logistic", target="label", test_size=0.25, seed=4, stream=True,
                     memory_limit=1 << 20, **kw)


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_the_spill_gives_the_decoded_blocks_bit_for_bit_in_the_same_order(files, ext):
    spilled, decoded = streamed(files / f"t.{ext}"), streamed(files / f"t.{ext}", spill=False)
    assert spilled.spill is not None and spilled.spill.ok and decoded.spill is None
    assert spilled.budget.block_rows == 1024
    for seed in (None, 0, 1):             # file order, then two shuffled orders of the row groups
        rng_a, rng_b = ((np.random.default_rng(seed),) * 2 if seed is None else
                        (np.random.default_rng(seed), np.random.default_rng(seed)))
        got, want = list(spilled.blocks(None if seed is None else rng_a)), \
            list(decoded.blocks(None if seed is None else rng_b))
        assert len(got) == len(want) > 3
        for (Xa, ya, ta), (Xb, yb, tb) in zip(got, want):
            assert Xa.tobytes() == Xb.tobytes() and ya.tobytes() == yb.tobytes()
            np.testing.assert_array_equal(ta, tb)
    spilled.close()
    assert not spilled.spill.ok and spilled.spill.handle.closed


def test_spill_blocks_keep_row_groups_together_in_the_order_given(tmp_path):
    s = spill.Spill(open(tmp_path / "raw", "w+b"), n_features=2, group_starts=np.array([0, 5, 9]))
    for offset, rows in ((0, 3), (3, 2), (5, 4), (9, 1)):
        X = np.arange(offset, offset + rows, dtype=float)[:, None] * [1.0, -1.0]
        s.add(offset, X, X[:, 0] * 10)
    assert s.finish() and s.size == 10 * 3 * 8
    got = [(offset, X[:, 0].tolist(), y.tolist()) for offset, X, y in s.blocks(np.array([2, 0, 1]))]
    assert got == [(9, [9.0], [90.0]), (0, [0.0, 1.0, 2.0], [0.0, 10.0, 20.0]), (3, [3.0, 4.0], [30.0, 40.0]),
                   (5, [5.0, 6.0, 7.0, 8.0], [50.0, 60.0, 70.0, 80.0])]
    X = next(s.blocks())[1]
    assert X.flags.c_contiguous and X.flags.writeable and X[:, 1].tolist() == [0.0, -1.0, -2.0]


@pytest.mark.parametrize("model, kw", [("logistic", dict(epochs=3, optimizer=optim.adam(0.01))),
                                       ("logistic", dict(epochs=2, optimizer=optim.momentum(0.05, 0.9),
                                                         shuffle_buffer=600))])
def test_training_from_the_spill_is_training_from_the_file(tmp_path, model, kw):
    path = tmp_path / "train.parquet"
    write_logistic_parquet(path, 9_000, 4, seed=2, row_group_rows=1_250)
    common = dict(target="label", batch_size=128, test_size=0.2, seed=6, stream=True, memory_limit=2 << 20, **kw)
    a = gdlab.train(str(path), model, spill=None, **common)
    b = gdlab.train(str(path), model, spill=False, **common)
    assert a.steps == b.steps > 0 and a.stop_reason == b.stop_reason
    np.testing.assert_array_equal(a.params, b.params)
    assert a.loss == b.loss and a.test_loss == b.test_loss
    np.testing.assert_array_equal(a.trace.loss, b.trace.loss)
    np.testing.assert_array_equal(a.trace.epoch_loss, b.trace.epoch_loss)


def test_text_labels_are_not_spilled_and_asking_for_it_says_why(tmp_path):
    names = np.array(["ant", "bee", "cat"])
    rng = np.random.default_rng(0)
    write_csv(tmp_path / "zoo.csv", rng.normal(size=(300, 2)), names[rng.integers(0, 3, 300)], names=["a", "b"],
              target="kind")
    st = data.load(str(tmp_path / "zoo.csv"), "softmax", target="kind", test_size=0.0, stream=True)
    assert st.spill is None and st.classes == ("ant", "bee", "cat")
    assert sum(len(yb) for _, yb, _ in st.blocks()) == 300
    with pytest.raises(data.DataError, match=r"holds text, and the spill keeps numbers\); pass spill=False \(--no-"):
        data.load(str(tmp_path / "zoo.csv"), "softmax", target="kind", test_size=0.0, stream=True, spill=True)


def test_no_room_on_the_disk_means_no_spill_unless_asked(files, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(spill.shutil, "disk_usage", lambda _: Usage(10**9, 10**9 - 1000, 1000))
    st = streamed(files / "t.parquet")
    assert st.spill is None and sum(len(yb) for _, yb, _ in st.blocks()) == 4000
    with pytest.raises(data.DataError, match=r"1,000 bytes free.*free some disk space there, or pass spill=False"):
        streamed(files / "t.parquet", spill=True)


class FillsUp:
    """A file that takes ``room`` writes, then fails as a full disk does."""

    def __init__(self, room: int):
        self.room, self.closed = room, False

    def seek(self, _):
        pass

    def write(self, _):
        self.room -= 1
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self.closed = True


def test_a_disk_that_fills_up_mid_scan_drops_the_spill(files, monkeypatch):
    handles = []
    monkeypatch.setattr(spill.tempfile, "TemporaryFile", lambda **_: handles.append(FillsUp(3)) or handles[-1])
    st = streamed(files / "t.parquet")
    assert st.spill is None and handles[0].closed
    reference = streamed(files / "t.parquet", spill=False)
    for (Xa, ya, _), (Xb, yb, _) in zip(st.blocks(), reference.blocks()):
        assert Xa.tobytes() == Xb.tobytes() and ya.tobytes() == yb.tobytes()
    with pytest.raises(data.DataError, match="No space left on device"):
        streamed(files / "t.parquet", spill=True)


def test_bad_spill_values_are_refused(files):
    with pytest.raises(data.DataError, match="spill must be True, False or None"):
        streamed(files / "t.parquet", spill="yes")


def test_the_cli_takes_no_spill_and_refuses_it_with_dask(tmp_path):
    path = tmp_path / "s.parquet"
    write_logistic_parquet(path, 6_000, 3, seed=1, row_group_rows=2_000)
    args = ("train", "--data", str(path), "--target", "label", "--model", "logistic", "--batch-size", "256",
            "--epochs", "1", "--stream", "--memory-limit", "4M", "--optimizer", "adam")
    rc, _, err = invoke(*args, "--no-spill")
    assert rc == 0, err
    line = assert_one_line_error(*invoke("train", "--data", "breast_cancer", "--model", "logistic", "--engine", "dask",
                                         "--no-spill"))
    assert "--no-spill is for --engine local" in line, line


@pytest.mark.parametrize("order", [None, np.array([2, 0, 1])])
def test_two_decoding_threads_give_the_one_reader_sequence(files, order):
    """Row groups decoded by two threads come out in the order asked, each batch with its own rows."""
    file = data.TableFile.open(str(files / "t.parquet"))
    features = ["x0", "x1", "x2"]
    one = list(data.decoded_blocks(file, features, "label", 1024, order, workers=1))
    two = list(data.decoded_blocks(file, features, "label", 1024, order, workers=2))
    assert [o for o, _, _ in two] == [o for o, _, _ in one]
    groups = [0, 1, 2] if order is None else order.tolist()
    starts = {0: 0, 1: 1500, 2: 3000}
    assert [o for o, _, _ in two][0] == starts[groups[0]]
    table = pq.read_table(files / "t.parquet")
    X = np.column_stack([table[c].to_numpy() for c in features])
    for (offset, Xa, ya), (_, Xb, yb) in zip(two, one):
        assert Xa.tobytes() == Xb.tobytes() and ya.tobytes() == yb.tobytes()
        np.testing.assert_array_equal(Xa, X[offset:offset + len(ya)])
    assert sum(len(y) for _, _, y in two) == 4000
