"""What every benchmark shares: interleaved timing of gdlab beside its peers, and the results file.

Each benchmark builds a list of :class:`Case`\\ s (gdlab and each peer on the same workload), and
:func:`measure` runs them **interleaved** (case 1, case 2, …, then again) after one warm-up call
each, so that a slow patch of the machine hits every case alike; it reports the median and the
min–max of the repeats. A repeat of a case that runs in under :data:`MIN_REPEAT_SECONDS` calls
it again until that much time has passed and counts the mean per call (``timeit``'s autorange):
a millisecond-long call timed once right after a peer measures the peer's aftermath too (torch's
OpenMP threads spin on both cores for a while after a torch loop returns). A peer that cannot run here (a package not installed) is a
:class:`Missing` row with the reason, never silently dropped. Every case returns the answer it
computed (a final loss or KL), reported beside its time: a fast wrong answer is a failure.

Results go to ``benchmarks/results/NAME.json`` (or ``$GDLAB_BENCH_RESULTS/NAME.json``, which
the test suite points at a temporary folder when it runs every benchmark with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(os.environ.get("GDLAB_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


@dataclass
class Case:
    """One contender: ``run()`` does the whole workload once and returns its answer (a number)."""

    name: str
    run: Callable[[], float]
    units: int = 1                  # work items per run (e.g. optimizer steps), for per-unit times
    note: str = ""


@dataclass
class Missing:
    """A peer that could not run here, and why."""

    name: str
    reason: str


@dataclass
class Timing:
    name: str
    median_s: float
    min_s: float
    max_s: float
    units: int
    answer: float
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def per_unit_us(self) -> float:
        return self.median_s / self.units * 1e6


MIN_REPEAT_SECONDS = 0.05


def measure(cases: list[Case], repeats: int = 5, min_seconds: float = MIN_REPEAT_SECONDS) -> list[Timing]:
    """Warm each case up once, then run them interleaved ``repeats`` times; median and min–max.

    A repeat calls a case until ``min_seconds`` have passed (at least once) and counts the mean
    time per call.
    """
    answers = {c.name: float(c.run()) for c in cases}  # warm-up: compilation, caches, imports
    times: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(repeats):
        for c in cases:
            calls, start = 0, time.perf_counter()
            while True:
                answers[c.name] = float(c.run())
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            times[c.name].append(elapsed / calls)
    return [Timing(c.name, statistics.median(times[c.name]), min(times[c.name]), max(times[c.name]), c.units,
                   answers[c.name], c.note) for c in cases]


def optional_import(module: str) -> tuple[Any, str]:
    """(module, "") or (None, why it is missing)."""
    try:
        return __import__(module), ""
    except ImportError as exc:
        return None, f"{module} is not installed ({exc.msg}); `make bench` installs it"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="toy sizes, a few seconds: checks the script runs, "
                   "not the speed")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default: the benchmark's own, "
                   "5 for most, 3 for the long ones, 7 for start-up; fewer with --quick)")
    return p


def machine() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def write(name: str, payload: dict, quick: bool = False) -> Path:
    """Write ``payload`` (plus the machine's description) to the results folder; return the path.

    Quick runs go to ``results/quick/`` so that they never replace a full run's numbers.
    """
    folder = RESULTS / "quick" if quick and "GDLAB_BENCH_RESULTS" not in os.environ else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "quick": quick, "machine": machine(), **payload}, indent=2,
                               default=float))
    return path


def timing_rows(timings: list[Timing], reference: str | None = None) -> list[dict]:
    """JSON rows; ``ratio`` is each case's median over the reference case's (None without one)."""
    ref = next((t for t in timings if t.name == reference), None)
    return [{"name": t.name, "median_s": t.median_s, "min_s": t.min_s, "max_s": t.max_s, "units": t.units,
             "per_unit_us": t.per_unit_us, "answer": t.answer, "note": t.note,
             "ratio_to_" + (reference or "reference"): (t.median_s / ref.median_s) if ref else None, **t.extra}
            for t in timings]


def print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    print(f"\n{title}")
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_cell(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
