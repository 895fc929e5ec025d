r"""A streamed file's rows, decoded once and kept on disk as float64 for the passes after the first.

Decoding is most of what a streaming pass over a Parquet or CSV file costs: on 1.3·10⁶ rows of
51 float64 columns (626 MiB of Parquet), one decoding pass took 0.9 s here, and reading the same
rows back as raw float64 bytes from the page cache took 0.05 s. A streamed training run reads
its file at least three times (the scan for the split and the standardisation, each epoch, the
final evaluation), so the scan writes every record batch it decodes, X then y as float64, to an
unlinked temporary file beside the data (the scheme of tf.data's ``cache(filename)``), and the
later passes read those bytes instead of decoding the file again.

The spill keeps the record batches' boundaries and their Parquet row groups, so a pass over it
yields exactly the arrays a decoding pass yields, in the same (shuffled) order: training from
the spill is bit-for-bit training from the file. The spill takes ``rows × columns × 8`` bytes of
disk (not memory: the process holds one record batch at a time); it is written only where the
disk has room for twice that, and the file disappears when the stream is closed or collected,
or with the process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any, Iterator

import numpy as np

from gdlab.buffers import aligned_empty

_FLOAT_BYTES = 8


class Spill:
    """Record batches written once as float64 rows, read back by row group in any order.

    Args:
      handle: a binary file opened for writing and reading (an unlinked temporary file).
      n_features: float64 features per row (each row also holds its label).
      group_starts: the first row of each Parquet row group, in file order ([0] for a CSV file).

    Example:
      >>> import tempfile
      >>> spill = Spill(tempfile.TemporaryFile(), n_features=2, group_starts=np.array([0, 3]))
      >>> for offset in (0, 3):
      ...     spill.add(offset, np.arange(6.0).reshape(3, 2) + offset, np.full(3, float(offset)))
      >>> spill.finish()
      True
      >>> [(offset, float(X[0, 0]), float(y[0])) for offset, X, y in spill.blocks(order=np.array([1, 0]))]
      [(3, 3.0, 3.0), (0, 0.0, 0.0)]
    """

    def __init__(self, handle: Any, n_features: int, group_starts: np.ndarray):
        self.handle = handle
        self.n_features = n_features
        self.group_starts = np.asarray(group_starts)
        self.spans: list[list[tuple[int, int, int]]] = [[] for _ in self.group_starts]   # (first row, rows, byte)
        self.size = 0
        self.ok = True
        self.error: OSError | None = None
        self._lock = threading.Lock()

    def add(self, offset: int, X: np.ndarray, y: np.ndarray) -> None:
        """Write one record batch (rows ``offset`` onward) at its place, rows × columns × 8 bytes
        from the start (so batches may be added in any order). Give up, without raising, on a full
        disk or on labels that are not numbers (a softmax target given as text)."""
        position = offset * (self.n_features + 1) * _FLOAT_BYTES
        group = int(np.searchsorted(self.group_starts, offset, side="right")) - 1
        with self._lock:
            if not self.ok:
                return
            if X.dtype != np.float64 or y.dtype != np.float64:
                self.close()
                return
            try:
                self.handle.seek(position)
                self.handle.write(np.ascontiguousarray(X).data)
                self.handle.write(np.ascontiguousarray(y).data)
            except OSError as exc:
                self.error = exc
                self.close()
                return
            self.spans[group].append((offset, len(y), position))     # one thread decodes a group, in order
            self.size += len(y) * (self.n_features + 1) * _FLOAT_BYTES

    def finish(self) -> bool:
        """Flush what was written; True when every record batch is in the spill."""
        with self._lock:
            if self.ok:
                try:
                    self.handle.flush()
                except OSError as exc:
                    self.error = exc
                    self.close()
        return self.ok

    def close(self) -> None:
        """Drop the spill and free its disk space."""
        self.ok = False
        self.handle.close()

    def blocks(self, order: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first row, X, y) of each record batch, row groups in ``order`` (default: file order);
        fresh arrays, which the caller may change in place."""
        d = self.n_features
        for group in range(len(self.spans)) if order is None else order:
            for offset, rows, position in self.spans[int(group)]:
                flat = aligned_empty(rows * (d + 1))       # X read in place by a jitted pass
                with self._lock:
                    self.handle.seek(position)
                    got = self.handle.readinto(flat.data)
                if got != flat.nbytes:
                    raise OSError(f"the spill file ended early ({got} of {flat.nbytes} bytes at byte {position})")
                yield offset, flat[:rows * d].reshape(rows, d), flat[rows * d:]


def open_spill(beside: str, nbytes: float, n_features: int, group_starts: np.ndarray,
               required: bool) -> Spill | None:
    """A new spill in the directory of the file ``beside``, when that disk has room for 2 × ``nbytes``.

    The file is created unlinked (``tempfile.TemporaryFile``): nothing is left behind, even by a
    process that is killed.

    Args:
      beside: the data file's path; the spill goes in its directory (the disk chosen for the data,
        where a temporary folder may be a RAM-backed tmpfs).
      nbytes: the bytes the spill will take (rows × columns × 8).
      n_features, group_starts: as for :class:`Spill`.
      required: raise when the spill cannot be made, instead of returning None.

    Returns:
      A :class:`Spill`, or None when the directory cannot take it (with ``required``, OSError is
      raised instead; the caller words the error for its user).

    Example:
      >>> import os, tempfile
      >>> beside = os.path.join(tempfile.mkdtemp(), "data.parquet")
      >>> open_spill(beside, 1e3, 2, np.array([0]), required=False).ok
      True
      >>> open_spill(beside, 1e30, 2, np.array([0]), required=False) is None
      True
    """
    directory = os.path.dirname(os.path.abspath(beside))
    try:
        free = shutil.disk_usage(directory).free
        if free < 2 * nbytes:
            raise OSError(f"{directory!r} has {_size(free)} free; the spill needs {_size(nbytes)} and leaves "
                          f"as much again")
        handle = tempfile.TemporaryFile(dir=directory)
    except OSError:
        if required:
            raise
        return None
    return Spill(handle, n_features, group_starts)


def _size(nbytes: float) -> str:
    if nbytes < 2**20:
        return f"{nbytes:,.0f} bytes"
    return f"{nbytes / 2**20:,.0f} MiB" if nbytes < 2**30 else f"{nbytes / 2**30:,.1f} GiB"
