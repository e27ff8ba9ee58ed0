"""Multi-device tests need 8 (fake CPU) devices, set before JAX initialises.

Run them in their own process: `JAX_NUM_CPU_DEVICES=8 pytest tests/multidevice`
(`make test` does this). Without enough devices they fail rather than skip, so a
misconfigured run cannot pass silently.
"""

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
    if jax.device_count() < 8:
        pytest.fail(
            f"tests/multidevice needs 8 devices, JAX sees {jax.device_count()}: run them in "
            "their own process with JAX_NUM_CPU_DEVICES=8 (see the Makefile's test target)."
        )
