"""Jacobian diagnostics and regularisers of a fixed-point map f at z (spec opteq.md sections 8, 9).

* Hutchinson estimate of the Jacobian penalty (Bai, Koltun & Kolter, "Stabilizing equilibrium models by Jacobian
  regularization", ICML 2021):  ||J||_F^2 = E_eps ||eps^T J||^2 for eps ~ N(0, I), averaged over ``samples``
  draws and divided by dim z (as the DEQ code does), so the weight does not depend on the width.
* Spectral radius of J by power iteration on Jacobian-vector products (TorchDEQ ``power_method``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jeq import validate
from jeq.fixedpoint.solvers import flat_map

__all__ = ["jacobian_penalty", "spectral_radius"]


def jacobian_penalty(fn: Callable[..., Any], z: Any, *args: Any, key: jax.Array, samples: int = 1) -> jax.Array:
    """Unbiased estimate of ||d fn / d z||_F^2 / dim(z) at z (one example; callers vmap and average).

        ||J||_F^2 / n ~= (1 / (S n)) sum_s ||J^T eps_s||^2,   eps_s ~ N(0, I)

    Differentiable in z and args, so it can be added to any loss (``loss + weight * jacobian_penalty(...)``).

    For f(z) = A z with A = diag(0.9, 0.5, -0.3), ||A||_F^2 / 3 = 0.383:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> f = lambda z, a: a * z
    >>> a = jnp.array([0.9, 0.5, -0.3])
    >>> estimate = fp.jacobian_penalty(f, jnp.zeros(3), a, key=jax.random.key(0), samples=2000)
    >>> round(float(estimate), 1)
    0.4
    """
    samples = validate.integer("jeq.fixedpoint.jacobian_penalty", "samples", samples, low=1)
    z_flat, unravel = ravel_pytree(z)
    _, vjp = jax.vjp(flat_map(fn, unravel, *args), z_flat)
    eps = jax.random.normal(key, (samples,) + z_flat.shape, z_flat.dtype)
    products = jax.vmap(lambda e: vjp(e)[0])(eps)
    return jnp.sum(products**2) / (samples * z_flat.size)


def spectral_radius(
    fn: Callable[..., Any], z: Any, *args: Any, key: jax.Array, iterations: int = 50
) -> jax.Array:
    """Power-iteration estimate of the spectral radius of J = d fn / d z at z, ``|v^T J v|``-free form:

        v <- J v / ||J v||,   rho ~= ||J v_k|| for the last normalised v_k.

    Exact for a dominant real eigenvalue (symmetric or normal J); a lower bound on ||J||_2 in general.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import fixedpoint as fp
    >>> f = lambda z, a: a * z  # J = diag(a)
    >>> rho = fp.spectral_radius(f, jnp.zeros(3), jnp.array([0.9, 0.5, -0.3]), key=jax.random.key(0))
    >>> round(float(rho), 3)
    0.9
    """
    iterations = validate.integer("jeq.fixedpoint.spectral_radius", "iterations", iterations, low=1)
    z_flat, unravel = ravel_pytree(z)
    _, jvp = jax.linearize(flat_map(fn, unravel, *args), z_flat)
    v = jax.random.normal(key, z_flat.shape, z_flat.dtype)
    v = v / jnp.linalg.norm(v)

    def step(_, carry):
        v, _ = carry
        w = jvp(v)
        norm = jnp.linalg.norm(w)
        return w / (norm + jnp.finfo(norm.dtype).tiny), norm

    _, rho = jax.lax.fori_loop(0, iterations, step, (v, jnp.zeros((), z_flat.dtype)))
    return rho
