"""A small contractive test problem shared by the fixed-point tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

N = 6


def tanh_layer(z, w, c):
    """f(z) = tanh(W z + c); a contraction with factor ||W||_2 < 1."""
    return jnp.tanh(w @ z + c)


def make_problem(dtype, norm=0.8, seed=0):
    kw, kc = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(kw, (N, N), dtype)
    w = norm * w / jnp.linalg.norm(w, 2)
    c = jax.random.normal(kc, (N,), dtype)
    return w, c


@pytest.fixture(scope="module")
def problem32():
    return make_problem(jnp.float32)
