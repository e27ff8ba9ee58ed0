"""Runnable ECOS experiments: thin entry points over the `ecos_jax` library."""
