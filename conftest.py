"""The suite (tests and doctests) runs in float64: gdlab's math is checked to 1e-8 and tighter."""

import jax

jax.config.update("jax_enable_x64", True)
