r"""Many playing runs, one compiled call: the explorer's turns taken together under load.

When more runs play than :data:`gdlab.web.runner.FULL_CHUNK_RUNS`, each plays in chunks of
:data:`gdlab.web.runner.SHARED_CHUNK` steps, and the runs take turns. A turn of one run is one
execution of its compiled chunk, and XLA:CPU pays a cost at every execution that grows with the
program's size, whether or not its loop runs: for a mixture target's chunk (quadrature, sorted
panel bounds) ~0.2 ms of a ~0.4 ms turn. So the runs waiting for a turn that share a compiled
chunk are stepped together, by one program that loops over them:

.. math::  (c_i, T_i) = \text{chunk}(c_i, d_i), \quad i = 0, \dots, n - 1

in a ``lax.fori_loop`` over lanes of :data:`BATCH_LANES` (``n`` is traced, so one compilation
serves any number of waiting runs). Each lane runs the run's own chunk, so its frames are the
ones its turn alone would give, bit for bit (tested), and so are ``gdlab fit``'s.

A kind's program is compiled in a thread of its own the first time :data:`BATCH_MIN` or more
runs of that kind wait together; until it is ready (and for kinds with fewer runs waiting) the
turns are taken one by one, as before.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gdlab.web import runner

log = logging.getLogger("gdlab.web")

BATCH_LANES = 64                 # runs one call steps at most (more wait for the next call)
# Runs of a kind waiting at once before they are stepped together: a kind's program costs ~1 s of
# compilation (and ~0.1 s of tracing that holds the GIL), worth it only when many runs share it.
BATCH_MIN = 8
STEPPED_TOGETHER: collections.Counter = collections.Counter()   # runs per call of a lanes program -> calls

_COMPILING = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gdlab-compile")
_PROGRAMS: dict = {}             # a packed chunk's jitted program -> Future of its program over lanes
_PROGRAMS_LOCK = threading.Lock()


def lanes_program(chunk: runner.PackedChunk) -> Callable:
    """The uncompiled program that steps ``n`` runs' chunks: ``(carries, data, n) -> (carries, tables)``.

    ``carries`` and ``data`` have a leading lanes axis of :data:`BATCH_LANES`; lanes from ``n``
    on are left as they are (their table rows are zeros).

    Args:
      chunk: the runs' packed chunk (:func:`gdlab.web.runner._packed_program`).

    Returns:
      The function, for ``jax.jit``.

    Example:
      >>> import jax.numpy as jnp
      >>> times = runner.PackedChunk(lambda c, d: (c * d, jnp.stack([c, d])[None]), {}, None)
      >>> carries, tables = lanes_program(times)(jnp.arange(64.0), jnp.full(64, 2.0), 2)
      >>> carries[:3].tolist(), tables[1].tolist()        # lanes 0 and 1 stepped, lane 2 not
      ([0.0, 2.0, 2.0], [[1.0, 2.0]])
    """
    # The jitted chunk is called, not its function: its traced program is reused (tracing it
    # again held the GIL ~0.1 s longer, a stall for every playing page), and XLA inlines it.
    def step_lanes(carries, data, n):
        one = jax.tree_util.tree_map(lambda x: x[0], (carries, data))
        table_shape = jax.eval_shape(chunk.program, *one)[1]
        tables = jnp.zeros((BATCH_LANES, *table_shape.shape), table_shape.dtype)

        def lane(i, state):
            cs, ts = state
            carry, table = chunk.program(jax.tree_util.tree_map(lambda x: x[i], cs),
                                          jax.tree_util.tree_map(lambda x: x[i], data))
            cs = jax.tree_util.tree_map(lambda x, v: x.at[i].set(v), cs, carry)
            return cs, ts.at[i].set(table)

        return jax.lax.fori_loop(0, n, lane, (carries, tables))

    return step_lanes


def _stacked(trees: list) -> Any:
    """The trees' leaves stacked on a leading axis of BATCH_LANES (lanes past the trees repeat the first)."""
    padded = trees + [trees[0]] * (BATCH_LANES - len(trees))
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *padded)


def _compile(chunk: runner.PackedChunk) -> Any:
    with jax.enable_x64(True):
        example = _stacked([chunk.example])
        return jax.jit(lanes_program(chunk)).lower(*example, np.int32(1)).compile()


def compiled_lanes(chunk: runner.PackedChunk, wait: bool = False) -> Optional[Any]:
    """The compiled :func:`lanes_program` of ``chunk``, or None while it compiles (in a thread of its
    own, started by the first call) or when it could not be compiled (then runs step one by one).

    Args:
      chunk: the runs' packed chunk.
      wait: wait for the compilation (tests).

    Returns:
      The compiled program, or None.
    """
    with _PROGRAMS_LOCK:
        if chunk.program not in _PROGRAMS:
            if len(_PROGRAMS) >= 64:     # bounded: a long-lived server sees many kinds of run
                _PROGRAMS.clear()
            _PROGRAMS[chunk.program] = _COMPILING.submit(_compile, chunk)
        future = _PROGRAMS[chunk.program]
    if wait:
        concurrent.futures.wait([future])
    if not future.done():
        return None
    if future.exception() is not None:
        if not getattr(future, "reported", False):
            future.reported = True
            log.warning("explorer runs step one by one: their shared program did not compile (%s)", future.exception())
        return None
    return future.result()


def _data_on_host(run: runner.Run) -> Any:
    """The run's objective data as NumPy arrays, copied once per objective (a direction switch makes a new one)."""
    if run.host_data is None or run.host_data[0] is not run.objective:
        run.host_data = (run.objective, jax.tree_util.tree_map(np.asarray, run.objective.data))
    return run.host_data[1]


def take_turns(runs: list[runner.Run], length: int, wait: bool = False, min_together: Optional[int] = None) -> list[Any]:
    """One chunk of ``length`` steps for each run; returns, per run, ``run.advance(length)``'s
    result (frames, stopped message) or the exception it raised.

    Runs that share a compiled chunk (the same kind: objective, optimizer, schedule, stopping
    rules), ``min_together`` of them or more, go through :func:`compiled_lanes`' program together
    once it is compiled; the others, and every run while it compiles, take their turn alone
    (:meth:`gdlab.web.runner.Run.advance`). Call inside ``jax.enable_x64``. A run must not have
    direction switches waiting (``pending``).

    Args:
      runs: the runs, each at most once.
      length: steps per chunk.
      wait: wait for a compilation instead of stepping the runs one by one meanwhile (tests).
      min_together: the fewest runs of a kind that are stepped together (default :data:`BATCH_MIN`).

    Returns:
      One result per run, in order.
    """
    min_together = BATCH_MIN if min_together is None else min_together
    results: list[Any] = [None] * len(runs)
    kinds: dict = {}                             # a jitted chunk -> (its PackedChunk, the runs' indices)
    for i, run in enumerate(runs):
        try:
            chunk = run._chunk_program(length)
            kinds.setdefault(chunk.program, (chunk, []))[1].append(i)
        except Exception as exc:                 # reported to that run's page, not to the others
            results[i] = exc
    for chunk, members in kinds.values():
        program = compiled_lanes(chunk, wait) if len(members) >= min_together else None
        for start in range(0, len(members), BATCH_LANES):
            group = members[start:start + BATCH_LANES]
            if program is None:
                for i in group:
                    results[i] = _alone(runs[i], length)
                continue
            carries, data = _stacked([runs[i].carry for i in group]), _stacked([_data_on_host(runs[i]) for i in group])
            carries, tables = jax.device_get(program(carries, data, np.int32(len(group))))
            with _PROGRAMS_LOCK:                 # two takers count
                STEPPED_TOGETHER[len(group)] += 1
            for lane, i in enumerate(group):
                carry = jax.tree_util.tree_map(lambda x: np.array(x[lane]), carries)
                try:
                    results[i] = runs[i].chunk_done(carry, tables[lane], chunk.layout)
                except Exception as exc:
                    results[i] = exc
    return results


def _alone(run: runner.Run, length: int) -> Any:
    try:
        return run.advance(length)
    except Exception as exc:
        return exc


class TurnTaker:
    """The explorer's playing runs of tab 1 queue here for their shared-play turns; up to
    ``takers`` threads of ``executor`` each take all the turns waiting when it looks
    (:func:`take_turns`), then the next ones: XLA runs one taker's program while another
    prepares its own, and runs of other kinds need not wait for a kind's whole turn.

    ``call`` wraps the work of a thread (the server runs it in float64).
    """

    def __init__(self, executor: concurrent.futures.Executor, call: Callable = lambda fn, *a: fn(*a),
                 takers: int = 2):
        self.executor, self.call, self.takers = executor, call, takers
        self.waiting: list = []
        self.lock = threading.Lock()
        self.taking = 0                          # takers at work

    async def advance(self, run: runner.Run, length: int) -> tuple[list[dict], Optional[dict]]:
        """``run.advance(length)``, taken with the other runs waiting now."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.lock:
            self.waiting.append((run, length, future, loop))
            start = self.taking < self.takers
            self.taking += start
        if start:
            self.executor.submit(self._take)
        return await future

    def _take(self) -> None:
        while True:
            with self.lock:
                batch, self.waiting = self.waiting, []
                if not batch:
                    self.taking -= 1
                    return
            by_length: dict = {}
            for entry in batch:
                by_length.setdefault(entry[1], []).append(entry)
            for length, entries in by_length.items():
                try:
                    results = self.call(take_turns, [e[0] for e in entries], length)
                except Exception as exc:         # never leave a page waiting
                    results = [exc] * len(entries)
                for (_, _, future, loop), result in zip(entries, results):
                    try:
                        loop.call_soon_threadsafe(_settle, future, result)
                    except RuntimeError:         # that page's event loop has closed: nobody waits
                        pass


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.cancelled():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
