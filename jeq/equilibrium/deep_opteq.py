"""Deep OptEq: several OptEq layers with a symmetric block coupling (spec opteq.md section 5; the paper's exact
layout is unverified, this is the derived construction that keeps the gradient structure across layers).

With z = (z_1, ..., z_L), input injection U x into z_1 and c_l = b_l (+ U x for l = 1):

    z_l = prox_f(W_l^T W_l z_l + V_l z_{l-1} + V_{l+1}^T z_{l+1} + c_l),                                 (5.1)

the optimality condition of

    G(z) = sum_l [1^T f(z_l) + ||z_l||^2/2 - ||W_l z_l||^2/2 - <c_l, z_l>] - sum_{l>=2} <V_l z_{l-1}, z_l>,   (5.2)

which is convex iff  I - blockdiag(W_l^T W_l) - (V + V^T) >= 0,  V the block sub-diagonal of the V_l.

Convex by construction: ||W_l||_2^2 = (1 - eps) sigmoid(a_l) / 2 and ||V_l||_2 = (1 - eps) sigmoid(e_l) / 4, so by
the block Gershgorin bound every block row of M = blockdiag(W^T W) + V + V^T has norm sum <= 1 - eps, hence
||M||_2 <= 1 - eps: G is strongly convex and the simultaneous (Jacobi) map (5.1) contracts. The dense check is
:func:`convexity_margin` = lambda_min(I - M) (>= eps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate
from jeq.equilibrium import core
from jeq.equilibrium.core import EquilibriumModel
from jeq.equilibrium.opteq import OptEqOptions

__all__ = ["DeepOptEqParams", "DeepOptEqPrepared", "block_coupling", "convexity_margin", "deep_opteq"]

Array = jax.Array


class DeepOptEqParams(NamedTuple):
    """Trainable parameters of a dense deep OptEq classifier with L layers."""

    weights: tuple[Array, ...]
    """Raw V_l^W, shape (d_l, d_l); W_l = sqrt((1 - eps) sigmoid(a_l) / 2) V_l^W / ||V_l^W||_2."""
    scales: Array
    """a_l, shape (L,)."""
    links: tuple[Array, ...]
    """Raw couplings, shape (d_l, d_{l-1}) for l = 2..L; V_l = (1 - eps) sigmoid(e_l) / 4 * raw / ||raw||_2."""
    link_scales: Array
    """e_l, shape (L - 1,)."""
    injection: Array
    """U, shape (d_1, features)."""
    biases: tuple[Array, ...]
    """b_l, shape (d_l,)."""
    readout: Array
    """Classifier on the concatenation (z_1, ..., z_L), shape (classes, d_1 + ... + d_L)."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


class DeepOptEqPrepared(NamedTuple):
    """Constrained weights of a deep OptEq."""

    weights: tuple[Array, ...]
    """W_l, shape (d_l, d_l)."""
    grams: tuple[Array, ...]
    """W_l^T W_l."""
    links: tuple[Array, ...]
    """V_l, shape (d_l, d_{l-1}), l = 2..L."""


def deep_opteq(*, features: int, hidden: Sequence[int], classes: int, **options: Any) -> EquilibriumModel:
    """Dense deep OptEq (5.1) with objective (5.2); x is one flattened example (features,); the logits are a linear
    function of all layers' equilibria (z_1, ..., z_L) (the paper's readout is unverified).

    The solver state is the tuple (z_1, ..., z_L) (a pytree); ``equilibrium`` returns it. ``hidden`` lists the
    layer widths d_1, ..., d_L (L >= 2). ``**options``: as in :func:`jeq.equilibrium.opteq` (no prior).
    """
    where = "jeq.equilibrium.deep_opteq"
    features, classes = core.layer_sizes(where, features=features, classes=classes)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or len(hidden) < 2:
        validate.fail(where, "hidden", hidden, "must list at least two layers' widths (use opteq for one)")
    sizes = tuple(validate.integer(where, "hidden", d, low=1) for d in hidden)
    config, settings = OptEqOptions.from_keywords(where, options)
    if config.prior is not None:
        validate.fail(where, "prior", config.prior, "must be None: deep OptEq takes no prior")
    activation, margin, init_scale, dtype = config.activation, config.margin, config.init_scale, config.dtype
    depth = len(sizes)

    def init(key):
        blocks = ([((d, d), 1 / np.sqrt(d)) for d in sizes]
                  + [((sizes[i + 1], sizes[i]), 1 / np.sqrt(sizes[i])) for i in range(depth - 1)]
                  + [((sizes[0], features), np.sqrt(2.0 / features)), ((classes, sum(sizes)), 1 / np.sqrt(sum(sizes)))])
        draws = core.random_blocks(key, blocks, dtype)
        return DeepOptEqParams(
            weights=tuple(draws[:depth]), scales=jnp.full((depth,), init_scale, dtype),
            links=tuple(draws[depth:2 * depth - 1]), link_scales=jnp.full((depth - 1,), init_scale, dtype),
            injection=draws[-2], biases=tuple(jnp.zeros((d,), dtype) for d in sizes), readout=draws[-1],
            readout_bias=jnp.zeros((classes,), dtype),
        )

    def prepare(params):
        w_norms = jnp.sqrt((1.0 - margin) * jax.nn.sigmoid(params.scales) / 2)
        v_norms = (1.0 - margin) * jax.nn.sigmoid(params.link_scales) / 4
        weights = tuple(w_norms[i] * v / jnp.linalg.norm(v, 2) for i, v in enumerate(params.weights))
        links = tuple(v_norms[i] * v / jnp.linalg.norm(v, 2) for i, v in enumerate(params.links))
        return DeepOptEqPrepared(weights, tuple(w.T @ w for w in weights), links)

    def inject(params, x):
        core.check_input(where, x, (features,))
        return (params.injection @ x + params.biases[0],) + tuple(params.biases[1:])

    def layer(z, prepared, c):
        out = []
        for i in range(depth):
            pre = prepared.grams[i] @ z[i] + c[i]
            if i > 0:
                pre = pre + prepared.links[i - 1] @ z[i - 1]
            if i < depth - 1:
                pre = pre + prepared.links[i].T @ z[i + 1]
            out.append(activation.apply(pre))
        return tuple(out)

    def objective(params, z, x):
        prepared, c = prepare(params), inject(params, x)
        value = sum(
            jnp.sum(activation.potential(z[i])) + 0.5 * jnp.sum(z[i] ** 2)
            - 0.5 * jnp.sum((prepared.weights[i] @ z[i]) ** 2) - jnp.sum(c[i] * z[i])
            for i in range(depth)
        )
        return value - sum(jnp.sum((prepared.links[i - 1] @ z[i - 1]) * z[i]) for i in range(1, depth))

    return core.assemble(
        name="deep-opteq", init=init, prepare=prepare, inject=inject, layer=layer,
        readout=lambda params, z: params.readout @ jnp.concatenate(z) + params.readout_bias,
        settings=settings, objective=objective,
    )


def block_coupling(prepared: DeepOptEqPrepared) -> Array:
    """The dense symmetric M = blockdiag(W_l^T W_l) + V + V^T of (5.2) (small models only)."""
    sizes = [g.shape[0] for g in prepared.grams]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    m = jnp.zeros((offsets[-1], offsets[-1]), prepared.grams[0].dtype)
    for i, g in enumerate(prepared.grams):
        m = m.at[offsets[i]:offsets[i + 1], offsets[i]:offsets[i + 1]].set(g)
    for i, v in enumerate(prepared.links, start=1):
        m = m.at[offsets[i]:offsets[i + 1], offsets[i - 1]:offsets[i]].set(v)
        m = m.at[offsets[i - 1]:offsets[i], offsets[i]:offsets[i + 1]].set(v.T)
    return m


def convexity_margin(prepared: DeepOptEqPrepared) -> Array:
    """lambda_min(I - M): G (5.2) is convex iff >= 0, strongly convex (and (5.1) contractive) iff > 0."""
    m = block_coupling(prepared)
    return jnp.linalg.eigvalsh(jnp.eye(m.shape[0], dtype=m.dtype) - m)[0]
