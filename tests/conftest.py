"""Shared test settings: strict rank promotion, as in equinox's test suite."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
