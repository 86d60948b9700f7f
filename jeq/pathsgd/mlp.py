"""A ReLU multilayer perceptron as pure functions, for the feed-forward Path-SGD (Neyshabur et al., NIPS 2015).

    h_0 = x,   h_l = ReLU(W_l h_{l-1} + b_l)  (l < L),   y = W_L h_{L-1} + b_L.

As for the RNN, the path regulariser is :func:`mlp_apply` on squared weights with the identity activation
(see ``jeq.pathsgd.path_norm``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Dense", "init_mlp", "mlp_apply"]


class Dense(NamedTuple):
    """One affine layer ``h -> W h + b``."""

    w: jax.Array
    """Weights, shape (fan_out, fan_in); ``w[v, u]`` is the edge u -> v."""
    b: jax.Array
    """Bias, shape (fan_out,); for the path regulariser a weight from a constant-1 unit."""


def init_mlp(key: jax.Array, *, layer_sizes: Sequence[int], dtype=jnp.float32) -> tuple[Dense, ...]:
    """He-initialised ReLU MLP ``W_l ~ N(0, 2/fan_in)``, ``b_l = 0``.

    Args:
      key: a ``jax.random.key``.
      layer_sizes: ``(input, hidden_1, ..., output)``, at least two ints >= 1.

    Returns:
      A tuple of :class:`Dense` layers.
    """
    sizes = tuple(layer_sizes)
    if len(sizes) < 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
        raise ValueError(f"jeq.pathsgd.init_mlp(layer_sizes={sizes!r}): must be >= 2 ints, each >= 1")
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple(
        Dense(
            w=jax.random.normal(k, (n_out, n_in), dtype) * jnp.sqrt(jnp.asarray(2.0 / n_in, dtype)),
            b=jnp.zeros((n_out,), dtype),
        )
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])
    )


def mlp_apply(
    params: Sequence[Dense], x: jax.Array, *, activation: Callable[[jax.Array], jax.Array] = jax.nn.relu
) -> jax.Array:
    """``y = W_L act(... act(W_1 x + b_1) ...) + b_L`` for one example x of shape (fan_in,); callers vmap."""
    if not params:
        raise ValueError("jeq.pathsgd.mlp_apply: params is empty; expected at least one Dense layer")
    if x.ndim != 1 or x.shape[0] != params[0].w.shape[1]:
        raise ValueError(
            f"jeq.pathsgd.mlp_apply: x has shape {tuple(x.shape)} but the first layer's w has shape "
            f"{tuple(params[0].w.shape)}; expected x of shape ({params[0].w.shape[1]},) (vmap over a batch)"
        )
    h = x
    for layer in params[:-1]:
        h = activation(layer.w @ h + layer.b)
    return params[-1].w @ h + params[-1].b
