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

from jeq import validate

__all__ = ["Dense", "check_layers", "init_mlp", "mlp_apply"]


class Dense(NamedTuple):
    """One affine layer ``h -> W h + b``.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import Dense, mlp_apply
    >>> Dense._fields
    ('w', 'b')
    >>> layer = Dense(w=jnp.array([[1.0, -1.0]]), b=jnp.array([0.5]))
    >>> mlp_apply((layer,), jnp.array([2.0, 1.0])).tolist()  # W h + b
    [1.5]
    """

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

    >>> import jax
    >>> from jeq.pathsgd import init_mlp
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(256, 128, 10))
    >>> [layer.w.shape for layer in params], [float(layer.b.sum()) for layer in params]
    ([(128, 256), (10, 128)], [0.0, 0.0])
    >>> round(float(params[0].w.var() * 256), 1)  # Var W = 2 / fan_in
    2.0
    """
    sizes = tuple(layer_sizes)
    if len(sizes) < 2:
        validate.fail("jeq.pathsgd.init_mlp", "layer_sizes", sizes, "must be >= 2 ints, each >= 1")
    sizes = tuple(validate.integer("jeq.pathsgd.init_mlp", f"layer_sizes[{i}]", s, low=1) for i, s in enumerate(sizes))
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
    """``y = W_L act(... act(W_1 x + b_1) ...) + b_L`` for one example x of shape (fan_in,); callers vmap.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_mlp, mlp_apply
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(2, 3, 1))
    >>> xs = jax.random.normal(jax.random.key(1), (4, 2))
    >>> jax.vmap(lambda x: mlp_apply(params, x))(xs).shape
    (4, 1)
    >>> hidden = jax.nn.relu(params[0].w @ xs[0] + params[0].b)
    >>> bool(np.allclose(mlp_apply(params, xs[0]), params[1].w @ hidden + params[1].b))
    True
    """
    check_layers("jeq.pathsgd.mlp_apply", params)
    try:
        validate.array("jeq.pathsgd.mlp_apply", "x", x, shape=(params[0].w.shape[1],))
    except validate.ArgumentError as err:
        raise validate.ArgumentError(
            f"{err} (one example, for the first layer's w of shape {tuple(params[0].w.shape)}; vmap over a batch)"
        ) from None
    h = x
    for layer in params[:-1]:
        h = activation(layer.w @ h + layer.b)
    return params[-1].w @ h + params[-1].b


def check_layers(where: str, params: Sequence[Dense], *, argument: str = "params") -> None:
    """Raise :class:`jeq.validate.ArgumentError` naming ``where`` unless ``params`` holds at least one layer."""
    if not params:
        validate.fail(where, argument, params, "must hold at least one Dense layer")
