"""A small contractive test problem shared by the fixed-point tests."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

N = 6


def tanh_layer(z, w, c):
    """f(z) = tanh(W z + c); a contraction with factor ||W||_2 < 1."""
    return jnp.tanh(w @ z + c)


def make_problem(dtype, norm=0.8, seed=0):
    rng = np.random.default_rng(seed)  # numpy: each jax.random draw of a new shape is a separate compilation
    w = rng.standard_normal((N, N))
    w = jnp.asarray(norm * w / np.linalg.norm(w, 2), dtype)
    c = jnp.asarray(rng.standard_normal(N), dtype)
    return w, c


@pytest.fixture(scope="module")
def problem32():
    return make_problem(jnp.float32)


def normal_data(seed: int, shape, dtype=None):
    """Standard normal test data from numpy (float64 under x64, else float32 unless ``dtype`` says otherwise)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)
