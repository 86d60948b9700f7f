"""Test data from numpy's generator: every jax.random draw of a new shape is its own (slow) XLA compilation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def normal_data(seed: int, shape, dtype=None):
    """Standard normal test data (float64 under x64, else float32 unless ``dtype`` says otherwise)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def uniform_data(seed: int, shape, dtype=None):
    """U(0, 1) test data."""
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), dtype)
