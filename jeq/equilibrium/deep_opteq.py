"""Deep OptEq: several OptEq layers with a symmetric block coupling (spec opteq.md section 5; the paper's exact
layout is unverified, this is the derived construction that keeps the gradient structure across layers).

With z = (z_1, ..., z_L), input injection U x into z_1, c_l = b_l (+ U x for l = 1) and an optional smooth convex
prior h(z_1, ..., z_L) (as in the single-layer model, spec section 6.1):

    z_l = prox_f(W_l^T W_l z_l + V_l z_{l-1} + V_{l+1}^T z_{l+1} - grad_l h(z) + c_l),                     (5.1)

the optimality condition of

    G(z) = sum_l [1^T f(z_l) + ||z_l||^2/2 - ||W_l z_l||^2/2 - <c_l, z_l>] - sum_{l>=2} <V_l z_{l-1}, z_l> + h(z),
                                                                                                           (5.2)

which is convex iff  I - M >= 0,  M = blockdiag(W_l^T W_l) + V + V^T,  V the block sub-diagonal of the V_l.
Since V + V^T is block tridiagonal with zero diagonal blocks (a layered, bipartite coupling) its spectrum is
symmetric, so ||M||_2 = lambda_max(M): lambda_max(M) <= 1 - eps makes G strongly convex AND the simultaneous
(Jacobi) map (5.1) a contraction (without prior).

Two ways to keep it convex (``constraint=``):

* ``"blocks"`` (default; cheap, needs no eigenvalue, and the only one for the convolutional model): block budgets
  ||W_l||_2^2 = (1 - eps) sigmoid(a_l) / 2 and ||V_l||_2 = (1 - eps) sigmoid(e_l) / 4, so by the block Gershgorin
  bound every block row of M has norm sum <= 1 - eps. A sufficient condition, not the paper's: it caps the coupling
  at a quarter of the budget.
* ``"exact"`` (dense): full budgets ||W_l||_2^2 = (1 - eps) sigmoid(a_l), ||V_l||_2 = (1 - eps) sigmoid(e_l),
  then the projection that enforces the exact condition directly: with r = min(1, (1 - eps) / lambda_max(M))
  (``eigvalsh`` of the assembled M, differentiable), W_l <- sqrt(r) W_l and V_l <- r V_l, so M <- r M and
  lambda_max(M) <= 1 - eps with equality whenever the budgets overshoot. Costs an eigendecomposition of the
  (sum d_l)^2 matrix per parameter update.

The dense check of either is :func:`convexity_margin` = lambda_min(I - M) (>= eps).

:func:`deep_opteq_conv` is the convolutional version with downsampling: z_l is (H / s^(l-1), W / s^(l-1), C_l),
W_l a 'SAME' convolution on layer l's grid and V_l a stride-s convolution from layer l-1's grid to layer l's (the
downsample; V_l^T its exact transpose, upsampling). ||W_l||_2 and ||V_l||_2 are bounded by the certified
per-frequency bound :func:`jeq.equilibrium.conv.conv_norm_bound` (a strided convolution is a subsampling of the
stride-1 one, so the bound of the stride-1 convolution holds), with the ``"blocks"`` budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate
from jeq.equilibrium import conv as convlib
from jeq.equilibrium import core
from jeq.equilibrium.core import EquilibriumModel
from jeq.equilibrium.opteq import OptEqOptions

__all__ = ["CONSTRAINTS", "DeepOptEqOptions", "DeepOptEqParams", "DeepOptEqPrepared",
           "block_coupling", "convexity_margin", "deep_opteq", "deep_opteq_conv"]

Array = jax.Array
CONSTRAINTS = ("blocks", "exact")


class DeepOptEqOptions(NamedTuple):
    """Deep OptEq's own keyword option (besides :class:`jeq.equilibrium.OptEqOptions` and the solve settings): how
    I - M >= eps I is kept, M = blockdiag(W_l^T W_l) + V + V^T.

    >>> from jeq import equilibrium as eq
    >>> eq.DeepOptEqOptions._fields, eq.DeepOptEqOptions().constraint
    (('constraint',), 'blocks')
    """

    constraint: str = "blocks"
    """How G (5.2) is kept convex: ``"blocks"`` (block budgets 1/2 and 1/4, the default: no eigenvalue needed) or
    ``"exact"`` (full budgets projected onto lambda_max(M) <= 1 - eps; dense only). See the module docstring."""


def _options(where: str, options: dict, *, conv: bool) -> tuple[Any, Any, str]:
    """(OptEq options, solve settings, constraint) from a deep factory's keywords."""
    deep = {name: options.pop(name) for name in DeepOptEqOptions._fields if name in options}
    config, settings = OptEqOptions.from_keywords(where, options)
    validate.one_of(where, "norm", config.norm, ("svd",))  # block norms: exact SVD (dense), certified bound (conv)
    constraint = validate.one_of(where, "constraint", DeepOptEqOptions(**deep).constraint,
                                 ("blocks",) if conv else CONSTRAINTS)
    return config, settings, constraint


def _deep_layer(z, c, *, grams, links, links_t, activation, prior):
    """(5.1) for all layers at once (Jacobi): ``grams[l](z_l)``, ``links[l-1](z_{l-1})`` into layer l and
    ``links_t[l-1](z_l)`` back into layer l - 1."""
    depth = len(z)
    prior_grad = jax.grad(prior)(z) if prior is not None else None
    out = []
    for i in range(depth):
        pre = grams[i](z[i]) + c[i]
        if i > 0:
            pre = pre + links[i - 1](z[i - 1])
        if i < depth - 1:
            pre = pre + links_t[i](z[i + 1])
        if prior_grad is not None:
            pre = pre - prior_grad[i]
        out.append(activation.apply(pre))
    return tuple(out)


def _deep_objective(z, c, *, weights, links, activation, prior):
    """G (5.2) with ``weights[l](z_l) = W_l z_l`` and ``links[l-1](z_{l-1}) = V_l z_{l-1}``."""
    depth = len(z)
    value = sum(
        jnp.sum(activation.potential(z[i])) + 0.5 * jnp.sum(z[i] ** 2) - 0.5 * jnp.sum(weights[i](z[i]) ** 2)
        - jnp.sum(c[i] * z[i])
        for i in range(depth)
    )
    value = value - sum(jnp.sum(links[i - 1](z[i - 1]) * z[i]) for i in range(1, depth))
    return value if prior is None else value + prior(z)


class DeepOptEqParams(NamedTuple):
    """Trainable parameters of a deep OptEq classifier with L layers, dense (:func:`deep_opteq`) or convolutional
    (:func:`deep_opteq_conv`, downsampling by ``stride`` per layer); B(.) is ||.||_2 (dense) or the certified
    per-frequency bound of :func:`jeq.equilibrium.conv.conv_norm_bound` (conv):
    W_l = sqrt((1 - eps) sigmoid(a_l) / 2) V_l^W / B(V_l^W), V_l = (1 - eps) sigmoid(e_l) / 4 raw / B(raw).

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.deep_opteq(features=4, hidden=(3, 2), classes=2)
    >>> jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(model.init, jax.random.key(0)))
    DeepOptEqParams(weights=((3, 3), (2, 2)), scales=(2,), links=((2, 3),), link_scales=(1,), injection=(3, 4),
                    biases=((3,), (2,)), readout=(2, 5), readout_bias=(2,))
    """

    weights: tuple[Array, ...]
    """Raw V_l^W: (d_l, d_l) matrices or (k, k, C_l, C_l) kernels; W_l = sqrt((1 - eps) sigmoid(a_l) / 2) V_l^W / B."""
    scales: Array
    """a_l, shape (L,)."""
    links: tuple[Array, ...]
    """Raw couplings for l = 2..L: (d_l, d_{l-1}) or (k, k, C_{l-1}, C_l); V_l = (1 - eps) sigmoid(e_l) / 4 raw / B."""
    link_scales: Array
    """e_l, shape (L - 1,)."""
    injection: Array
    """U: (d_1, features), or a (k, k, in_channels, C_1) kernel."""
    biases: tuple[Array, ...]
    """b_l: (d_l,), or (C_l,) (one per channel)."""
    readout: Array
    """Classifier on (z_1, ..., z_L) (dense: concatenated; conv: spatial means), shape (classes, sum of widths)."""
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
    layer widths d_1, ..., d_L (L >= 2). ``**options``: as in :func:`jeq.equilibrium.opteq`, with ``prior`` a
    smooth convex h taking the tuple (z_1, ..., z_L), plus :class:`DeepOptEqOptions` (``constraint``).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.deep_opteq(features=4, hidden=(3, 2), classes=2, tol=1e-5, solver="picard")
    >>> params = model.init(jax.random.key(0))
    >>> x = jnp.linspace(-1.0, 1.0, 4)
    >>> z, stats = jax.jit(model.equilibrium)(params, x)
    >>> [layer.shape for layer in z], bool(stats.converged), model.readout(params, z).shape
    ([(3,), (2,)], True, (2,))
    >>> fz = jax.jit(lambda p, z, x: model.layer(z, model.prepare(p), model.inject(p, x)))(params, z, x)  # (5.1)
    >>> all(bool(jnp.allclose(a, b, atol=1e-4)) for a, b in zip(z, fz))
    True
    """
    where = "jeq.equilibrium.deep_opteq"
    features, classes = core.layer_sizes(where, features=features, classes=classes)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or len(hidden) < 2:
        validate.fail(where, "hidden", hidden, "must list at least two layers' widths (use opteq for one)")
    sizes = tuple(validate.integer(where, "hidden", d, low=1) for d in hidden)
    config, settings, constraint = _options(where, dict(options), conv=False)
    activation, margin, init_scale, dtype = config.activation, config.margin, config.init_scale, config.dtype
    depth = len(sizes)
    w_share, v_share = (0.5, 0.25) if constraint == "blocks" else (1.0, 1.0)

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
        w_norms = jnp.sqrt((1.0 - margin) * jax.nn.sigmoid(params.scales) * w_share)
        v_norms = (1.0 - margin) * jax.nn.sigmoid(params.link_scales) * v_share
        weights = tuple(w_norms[i] * v / jnp.linalg.norm(v, 2) for i, v in enumerate(params.weights))
        links = tuple(v_norms[i] * v / jnp.linalg.norm(v, 2) for i, v in enumerate(params.links))
        prepared = DeepOptEqPrepared(weights, tuple(w.T @ w for w in weights), links)
        if constraint == "blocks":
            return prepared
        top = jnp.linalg.eigvalsh(block_coupling(prepared))[-1]  # = ||M||_2 (symmetric spectrum of V + V^T)
        ratio = jnp.minimum(1.0, (1.0 - margin) / jnp.maximum(top, jnp.finfo(top.dtype).tiny))
        weights = tuple(jnp.sqrt(ratio) * w for w in weights)
        return DeepOptEqPrepared(weights, tuple(ratio * g for g in prepared.grams),
                                 tuple(ratio * v for v in links))

    def inject(params, x):
        core.check_input(where, x, (features,))
        return (params.injection @ x + params.biases[0],) + tuple(params.biases[1:])

    def layer(z, prepared, c):
        return _deep_layer(z, c, grams=[lambda v, g=g: g @ v for g in prepared.grams],
                           links=[lambda v, m=m: m @ v for m in prepared.links],
                           links_t=[lambda v, m=m: m.T @ v for m in prepared.links],
                           activation=activation, prior=config.prior)

    def objective(params, z, x):
        prepared = prepare(params)
        return _deep_objective(z, inject(params, x), weights=[lambda v, w=w: w @ v for w in prepared.weights],
                               links=[lambda v, m=m: m @ v for m in prepared.links], activation=activation,
                               prior=config.prior)

    return core.assemble(
        name="deep-opteq", init=init, prepare=prepare, inject=inject, layer=layer,
        readout=lambda params, z: params.readout @ jnp.concatenate(z) + params.readout_bias,
        settings=settings, objective=objective,
    )


def block_coupling(prepared: DeepOptEqPrepared) -> Array:
    """The dense symmetric M = blockdiag(W_l^T W_l) + V + V^T of (5.2) (small models only).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.deep_opteq(features=4, hidden=(3, 2), classes=2)
    >>> prepared = jax.jit(model.prepare)(model.init(jax.random.key(0)))
    >>> m = jax.jit(eq.block_coupling)(prepared)
    >>> m.shape, bool(jnp.allclose(m, m.T)), bool(jnp.all(m[3:, :3] == prepared.links[0]))  # V_2 below the diagonal
    ((5, 5), True, True)
    """
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
    """lambda_min(I - M): G (5.2) is convex iff >= 0, strongly convex (and (5.1) contractive) iff > 0.

    Both constraints keep it >= eps (0.05 by default); ``"exact"`` projects onto lambda_max(M) = 1 - eps when the
    full budgets overshoot:

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> for constraint in ("blocks", "exact"):
    ...     model = eq.deep_opteq(features=4, hidden=(3, 2), classes=2, constraint=constraint)
    ...     margin = jax.jit(lambda p: eq.convexity_margin(model.prepare(p)))(model.init(jax.random.key(0)))
    ...     print(constraint, bool(margin >= 0.05 - 1e-5), round(float(margin), 3))
    blocks True 0.606
    exact True 0.05
    """
    m = block_coupling(prepared)
    return jnp.linalg.eigvalsh(jnp.eye(m.shape[0], dtype=m.dtype) - m)[0]


# ----------------------------------------------------------------------------------------------------------- conv
def deep_opteq_conv(*, image_shape: tuple[int, int], in_channels: int, channels: Sequence[int], classes: int,
                    kernel_size: int = 3, stride: int = 2, **options: Any) -> EquilibriumModel:
    """Convolutional deep OptEq (5.1) with downsampling: z_l of shape (H / s^(l-1), W / s^(l-1), C_l),

        z_l = prox_f(W_l^T W_l z_l + V_l z_{l-1} + V_{l+1}^T z_{l+1} - grad_l h(z) + c_l),

    W_l a 'SAME' convolution on layer l's grid, V_l a 'SAME' stride-s convolution (the downsample), V_l^T its exact
    transpose, c_1 = U * x + b_1 and c_l = b_l. Norms by the certified bound of
    :func:`jeq.equilibrium.conv.conv_norm_bound` with the ``"blocks"`` budgets, so I - M >= eps I (5.2 convex,
    (5.1) contractive). logits = W_c (spatial means of z_1, ..., z_L) + b_c. x: one image (H, W, in_channels);
    ``channels`` lists C_1, ..., C_L (L >= 2); s^(L-1) must divide H and W. ``**options``: as in
    :func:`deep_opteq` (``constraint="blocks"`` only).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.deep_opteq_conv(image_shape=(4, 4), in_channels=1, channels=(2, 3), classes=2, stride=2,
    ...                            solver="picard")
    >>> params = model.init(jax.random.key(0))
    >>> z, stats = jax.jit(model.equilibrium)(params, jnp.linspace(0.0, 1.0, 16).reshape(4, 4, 1))
    >>> [layer.shape for layer in z], bool(stats.converged)  # the second layer on the downsampled 2 x 2 grid
    ([(4, 4, 2), (2, 2, 3)], True)
    """
    where = "jeq.equilibrium.deep_opteq_conv"
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) < 2:
        validate.fail(where, "channels", channels, "must list at least two layers' channels (use opteq_conv for one)")
    widths = tuple(validate.integer(where, "channels", c, low=1) for c in channels)
    depth = len(widths)
    stride = validate.integer(where, "stride", stride, low=1)
    shape = core.conv_shape(where, image_shape=image_shape, in_channels=in_channels, channels=widths[0],
                            classes=classes, kernel_size=kernel_size, pool=1)
    if shape.height % stride ** (depth - 1) or shape.width % stride ** (depth - 1):
        validate.fail(where, "stride", stride, f"must have stride^(L - 1) = {stride ** (depth - 1)} dividing "
                      f"image_shape {(shape.height, shape.width)}")
    grids = [(shape.height // stride**i, shape.width // stride**i) for i in range(depth)]
    z_shapes = [grid + (c,) for grid, c in zip(grids, widths)]
    config, settings, _ = _options(where, dict(options), conv=True)
    activation, margin, init_scale, dtype = config.activation, config.margin, config.init_scale, config.dtype
    k = shape.kernel_size

    def init(key):
        blocks = ([((k, k, c, c), 1 / np.sqrt(k * k * c)) for c in widths]
                  + [((k, k, widths[i], widths[i + 1]), 1 / np.sqrt(k * k * widths[i])) for i in range(depth - 1)]
                  + [((k, k, shape.in_channels, widths[0]), np.sqrt(2.0 / (k * k * shape.in_channels))),
                     ((shape.classes, sum(widths)), 1 / np.sqrt(sum(widths)))])
        draws = core.random_blocks(key, blocks, dtype)
        return DeepOptEqParams(
            weights=tuple(draws[:depth]), scales=jnp.full((depth,), init_scale, dtype),
            links=tuple(draws[depth:2 * depth - 1]), link_scales=jnp.full((depth - 1,), init_scale, dtype),
            injection=draws[-2], biases=tuple(jnp.zeros((c,), dtype) for c in widths), readout=draws[-1],
            readout_bias=jnp.zeros((shape.classes,), dtype),
        )

    def prepare(params):
        w_norms = jnp.sqrt((1.0 - margin) * jax.nn.sigmoid(params.scales) / 2)
        v_norms = (1.0 - margin) * jax.nn.sigmoid(params.link_scales) / 4
        kernels = tuple(w_norms[i] * v / convlib.conv_norm_bound(v, grids[i]) for i, v in enumerate(params.weights))
        links = tuple(v_norms[i] * v / convlib.conv_norm_bound(v, grids[i]) for i, v in enumerate(params.links))
        return kernels, links

    def operators(prepared):
        kernels, links = prepared
        weights = [lambda v, w=w: convlib.conv(v, w) for w in kernels]
        grams = [lambda v, w=w, s=s: convlib.conv_transpose(convlib.conv(v, w), w, s)
                 for w, s in zip(kernels, z_shapes)]
        down = [lambda v, m=m: convlib.conv(v, m, stride=stride) for m in links]
        up = [lambda v, m=m, s=s: convlib.conv_transpose(v, m, s, stride=stride) for m, s in zip(links, z_shapes)]
        return weights, grams, down, up

    def inject(params, x):
        core.check_input(where, x, shape.x_shape)
        first = convlib.conv(x, params.injection) + params.biases[0]
        return (first,) + tuple(jnp.broadcast_to(b, s).astype(first.dtype) for b, s in zip(params.biases[1:],
                                                                                            z_shapes[1:]))

    def layer(z, prepared, c):
        _, grams, down, up = operators(prepared)
        return _deep_layer(z, c, grams=grams, links=down, links_t=up, activation=activation, prior=config.prior)

    def objective(params, z, x):
        weights, _, down, _ = operators(prepare(params))
        return _deep_objective(z, inject(params, x), weights=weights, links=down, activation=activation,
                               prior=config.prior)

    def readout(params, z):
        return params.readout @ jnp.concatenate([jnp.mean(v, axis=(0, 1)) for v in z]) + params.readout_bias

    return core.assemble(name="deep-opteq-conv", init=init, prepare=prepare, inject=inject, layer=layer,
                         readout=readout, settings=settings, objective=objective)
