"""Benchmark 5: out-of-core mini-batch SGD from a Parquet file 4× larger than the memory cap.

The file: seeded synthetic logistic-regression rows, d = 50 float64 features and a 0/1 label,
in row groups of 65,536 rows; ``--cap`` (default 128 MiB) is the ``memory_limit`` given to
:func:`gdlab.train`, and the file holds 4 × cap of float64 values (N = 4·cap / (8·51) rows:
1.3 million at the default). gdlab streams it (``stream=True``): one pass for the split, the
standardisation and the labels, then one epoch of mini-batch SGD (Adam, batch 1,024) through a
shuffle buffer, reading the row groups again in a random order (the same read evaluates J, ∇J and
the metrics at θ_0 for the per-epoch record), then one pass for J and the metrics at the final θ.
The first pass keeps the rows it decodes in a spill file beside the data (:mod:`gdlab.spill`), and
the epoch and the final evaluation read the spill instead of decoding the Parquet file again.

Contenders, interleaved in this process after a warm-up:

- ``pyarrow raw read`` (the floor): ``ParquetFile.iter_batches`` over the file, each batch's
  columns converted to NumPy (the least any reader must do);
- ``gdlab.train (stream)``: the whole training run;
- ``gdlab.train (stream, no spill)``: the same run with ``spill=False``, decoding the file on
  each of its three passes (the A/B of the spill; the same answer bit for bit).

Throughput is rows of the file per second of wall time (the gdlab run passes over the rows three
times: the scan, the epoch, the final evaluation; ``passes`` says so, and ``decodes`` how many of
them decode the Parquet file). Peak memory is measured in a fresh child process
(``VmHWM``, after a warm-up run on a small file): the growth of the peak over the warm-up's,
which must stay under the cap. The child caps glibc's malloc at two arenas first, as
``gdlab train`` does (:func:`gdlab.buffers.share_malloc_arenas`). The answer reported is the
training loss, beside the loss of the generator's own weights (SGD's one epoch should come
close).

    .venv/bin/python benchmarks/bench_out_of_core.py [--quick] [--cap MIB]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import harness
import numpy as np

D = 50
ROW_GROUP = 65_536


def write_file(path: Path, n: int, seed: int = 0) -> float:
    """Write n rows; return the mean log-loss of the generating weights (the answer to come close to)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0 / np.sqrt(D), D)
    names = [f"x{j}" for j in range(D)] + ["label"]
    total = 0.0
    with pq.ParquetWriter(path, pa.schema([(c, pa.float64()) for c in names])) as writer:
        for start in range(0, n, ROW_GROUP):
            m = min(ROW_GROUP, n - start)
            X = rng.standard_normal((m, D))
            z = X @ w
            y = (rng.random(m) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
            total += float(np.sum(np.logaddexp(0.0, z) - y * z))
            writer.write_table(pa.table([*X.T, y], names=names))
    return total / n


def raw_read(path: Path) -> float:
    import pyarrow.parquet as pq

    rows = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP):
        cols = [c.to_numpy() for c in batch.columns]
        rows += len(cols[0])
    return float(rows)


def train_call(path: str, cap: int, spill: bool | None = None):
    from gdlab import optim, train

    return train(path, "logistic", optimizer=optim.adam(0.01), target="label", batch_size=1024, epochs=1,
                 test_size=0.0, l2=0.0, stream=True, memory_limit=cap, spill=spill)


CHILD = textwrap.dedent("""
    import json, re, sys
    from gdlab.buffers import share_malloc_arenas
    share_malloc_arenas()                 # first, as `gdlab train` does: before any thread starts
    sys.path.insert(0, sys.argv[4])
    from bench_out_of_core import train_call

    def peak_mib():
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024

    cap = int(sys.argv[3])
    train_call(sys.argv[1], cap)          # warm-up on a small file: imports, compilation, buffers
    warm = peak_mib()
    res = train_call(sys.argv[2], cap)
    print(json.dumps({"warm_mib": warm, "peak_mib": peak_mib(), "loss": res.loss}))
""")


def peak_memory(small: Path, big: Path, cap: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(small), str(big), str(cap), str(Path(__file__).parent)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--cap", type=int, default=128, help="the memory limit in MiB (default 128)")
    args = p.parse_args()
    cap_mib = 2 if args.quick else args.cap
    cap = cap_mib << 20
    n = 4 * cap // (8 * (D + 1))
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.parquet", Path(tmp) / "small.parquet"
        truth_loss = write_file(big, n)
        write_file(small, max(4096, n // 20), seed=1)
        size_mib = big.stat().st_size / 2**20
        print(f"{n:,} rows x {D + 1} columns: {n * (D + 1) * 8 / 2**20:.0f} MiB as float64 "
              f"({size_mib:.0f} MiB on disk), memory cap {cap_mib} MiB")
        cases = [harness.Case("pyarrow raw read", lambda: raw_read(big), units=n, note="the floor: one pass"),
                 harness.Case("gdlab.train (stream)", lambda: train_call(str(big), cap).loss, units=n,
                              note="scan (spilled) + one epoch of SGD + final evaluation"),
                 harness.Case("gdlab.train (stream, no spill)", lambda: train_call(str(big), cap, False).loss,
                              units=n, note="the same, decoding the file on every pass")]
        timings = harness.measure(cases, repeats=args.repeats or (2 if args.quick else 3))
        memory = peak_memory(small, big, cap)
    rows = harness.timing_rows(timings, reference="pyarrow raw read")
    for r in rows:
        r["rows_per_s"] = r["units"] / r["median_s"]
        r["passes"] = 3 if r["name"].startswith("gdlab") else 1
        r["decodes"] = 3 if r["name"].endswith("no spill)") else 1
    by = {r["name"]: r for r in rows}
    share = by["gdlab.train (stream)"]["rows_per_s"] / by["pyarrow raw read"]["rows_per_s"]
    growth = memory["peak_mib"] - memory["warm_mib"]
    harness.print_table(f"out-of-core SGD: {n:,} rows, file = 4x the {cap_mib} MiB cap", rows,
                        ["name", "median_s", "min_s", "max_s", "rows_per_s", "passes", "decodes", "answer", "note"])
    if by["gdlab.train (stream)"]["answer"] != by["gdlab.train (stream, no spill)"]["answer"]:
        raise SystemExit("the spilled and the decoding runs gave different losses; the spill must not change them")
    spill_gain = by["gdlab.train (stream, no spill)"]["median_s"] / by["gdlab.train (stream)"]["median_s"]
    print(f"loss of the generating weights: {truth_loss:.6f}; peak memory: {memory['peak_mib']:.0f} MiB "
          f"({growth:+.0f} MiB over the warm-up's {memory['warm_mib']:.0f} MiB; cap {cap_mib} MiB)")
    summary = (f"{share:.0%} of pyarrow's raw read throughput ({by['gdlab.train (stream)']['rows_per_s']:.3g} vs "
               f"{by['pyarrow raw read']['rows_per_s']:.3g} rows/s; 3 passes, the file decoded once; "
               f"{spill_gain:.2f}x faster than decoding on every pass); peak memory {growth:+.0f} MiB over the "
               f"warm-up, cap {cap_mib} MiB ({'under' if growth < cap_mib else 'OVER'})")
    print("ratio: " + summary)
    path = harness.write("out_of_core", {"n": n, "d": D, "cap_mib": cap_mib, "file_mib": size_mib,
                                         "truth_loss": truth_loss, "rows": rows, "memory": memory,
                                         "share_of_raw_read": share, "memory_growth_mib": growth,
                                         "summary": summary}, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
