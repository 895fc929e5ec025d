"""The suite (tests and doctests) runs in float64: gdlab's math is checked to 1e-8 and tighter."""

import jax

jax.config.update("jax_enable_x64", True)

# The gdlab commands the tests start share one compilation cache of their own (not ~/.cache):
# a program compiled by one test's subprocess loads from disk in the next.
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("GDLAB_COMPILATION_CACHE", tempfile.mkdtemp(prefix="gdlab-test-jax-cache-"))

# Under pytest-xdist (`make test` runs the suite on every core) each worker inherits the folder
# above from the controller and takes a subfolder of its own: JAX writes a cache entry in place,
# not by a rename, so a command of one worker could read an entry that another worker's command
# is still writing, and warn on stderr (which the CLI tests read). A worker runs one test at a time.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ["GDLAB_COMPILATION_CACHE"].strip().lower() not in ("off", "0", "no", "false"):
    os.environ["GDLAB_COMPILATION_CACHE"] = os.path.join(os.environ["GDLAB_COMPILATION_CACHE"], _worker)


# ------------------------------------------------------- results made once per session, on any worker
# (here, not in tests/conftest.py: --doctest-modules would import that file as a second module
# named "conftest" beside tests/browser/conftest.py, and fail on the clash)

import fcntl  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402


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
