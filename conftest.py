"""The suite (tests and doctests) runs in float64: gdlab's math is checked to 1e-8 and tighter."""

import jax

jax.config.update("jax_enable_x64", True)

# The gdlab commands the tests start share one compilation cache of their own (not ~/.cache):
# a program compiled by one test's subprocess loads from disk in the next.
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("GDLAB_COMPILATION_CACHE", tempfile.mkdtemp(prefix="gdlab-test-jax-cache-"))
