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
