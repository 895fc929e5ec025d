"""Fixtures that let a costly result be made once per test session, whichever pytest-xdist worker
asks for it first (``make test`` runs the suite on every core)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def session_root(tmp_path_factory) -> Path:
    """A folder of this test session that every xdist worker sees (each worker's own basetemp is a
    subfolder of it); without xdist, the session's basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def once(session_root) -> Callable[[str, Callable[[], None]], None]:
    """``once(key, make)`` calls ``make()`` unless this session made ``key`` already, on any worker.

    A lock per key: a worker that asks for a key another worker is making waits for it rather
    than making it again. A ``make`` that fails is not recorded, so the next asker tries again
    (and fails the same way)."""
    def run(key: str, make: Callable[[], None]) -> None:
        with open(session_root / f".once-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = session_root / f".once-{key}.done"
            if not done.exists():
                make()
                done.touch()

    return run
