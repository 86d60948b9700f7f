"""OptEq: optimisation-induced equilibrium networks (Xie et al., arXiv 2105.13228; spec opteq.md sections 3-6).

Equilibrium (one example, c = U x + b):

    z* = prox_f(W^T W z* - grad h(z*) + c),      ||W||_2 <= 1 - eps,                                   (3.1)

is exactly the minimiser of the hidden convex objective

    G(z) = sum_i f(z_i) + ||z||^2 / 2 - ||W z||^2 / 2 - <c, z> + h(z)                                  (3.2)

(optimality 0 in df(z) + z - W^T W z + grad h(z) - c is (3.1)); sigma = prox_f is the activation
(:mod:`jeq.prox`) and h an optional smooth convex prior. G is convex iff ||W||_2 <= 1 (strongly convex for < 1),
and Picard on (3.1) is proximal gradient descent on G with step 1, so G decreases along its iterates and they
contract with factor ||W^T W - grad^2 h||_2 (||W||_2^2 without a prior; section 4).

Priors (section 6): (a) change the objective, get a new layer: an l1 prior lam ||z||_1 gives
``activation=jeq.prox.add_l1(prox.relu(), weight=lam)`` = relu(v - lam); the smoothness prior
h(z) = mu/2 z^T L z (:func:`smoothness_prior`) adds -mu L z inside sigma. (b) select among equilibria: with
||W||_2 = 1 the minimisers of G may form a set; ``equilibrium(..., solver=jeq.fixedpoint.halpern(anchor=u))``
returns the one nearest u.

W = s V / ||V||_2 with s = (1 - eps) sigmoid(a) (section 4): dense ||V||_2 is exact (SVD); for the convolutional
variant W is a 'SAME' convolution, W^T W z is the convolution followed by its transpose, and ||V||_2 is replaced by
the certified upper bound of :func:`jeq.equilibrium.conv.conv_norm_bound` (largest per-frequency singular value), so
||W||_2 <= 1 - eps holds exactly (slightly below it on small images, where the bound is loose at the borders).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import prox as proxlib
from jeq.equilibrium import conv as convlib
from jeq.equilibrium.core import (
    EquilibriumModel,
    SolveSettings,
    assemble,
    check_margin,
    random_blocks,
    spectral_scale,
)

__all__ = [
    "OptEqConvParams",
    "OptEqParams",
    "hidden_objective",
    "opteq",
    "opteq_conv",
    "opteq_map",
    "smoothness_prior",
]

Array = jax.Array
Prior = Callable[[Array], Array]


def opteq_map(z: Array, c: Array, *, gram: Callable[[Array], Array], activation: proxlib.Prox,
              prior: Prior | None = None) -> Array:
    """The OptEq fixed-point map (3.1): ``prox_f(W^T W z - grad h(z) + c)``, with ``gram(z) = W^T W z``."""
    pre = gram(z) + c
    if prior is not None:
        pre = pre - jax.grad(prior)(z)
    return activation.apply(pre)


def hidden_objective(z: Array, c: Array, *, weight: Callable[[Array], Array], activation: proxlib.Prox,
                     prior: Prior | None = None) -> Array:
    """G(z) = sum f(z) + ||z||^2/2 - ||W z||^2/2 - <c, z> + h(z) (3.2), with ``weight(z) = W z``.

    +inf outside the domain of f (e.g. negative entries for ReLU).
    """
    value = jnp.sum(activation.potential(z)) + 0.5 * jnp.sum(z * z) - 0.5 * jnp.sum(weight(z) ** 2) - jnp.sum(c * z)
    if prior is not None:
        value = value + prior(z)
    return value


def smoothness_prior(*, strength: float, axes: Sequence[int] = (0,)) -> Prior:
    """Laplacian (smoothness) prior h(z) = mu/2 sum_axes sum_i (z_{i+1} - z_i)^2 = mu/2 z^T L z.

    Its gradient mu L z enters the layer as ``prox_f(W^T W z - mu L z + c)``. ||L||_2 < 4 per axis, so
    mu < 1 / (4 len(axes)) keeps ||W^T W - mu L||_2 < 1 and Picard contractive (checked here).
    ``axes`` are the axes of one example's z: (0,) for a dense layer, (0, 1) for the spatial axes of (H, W, C).
    """
    axes = tuple(axes)
    if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
        raise ValueError(f"jeq.equilibrium.smoothness_prior(axes={axes!r}): must be a non-empty tuple of ints")
    limit = 1.0 / (4 * len(axes))
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.number)) or not 0.0 <= strength < limit:
        raise ValueError(
            f"jeq.equilibrium.smoothness_prior(strength={strength!r}): must be in [0, {limit}) so that the "
            "OptEq map stays contractive (||L||_2 < 4 per axis)"
        )
    mu = float(strength)

    def energy(z):
        return 0.5 * mu * sum(jnp.sum(jnp.diff(z, axis=a) ** 2) for a in axes)

    return energy


def _check_int(fn: str, arg: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"jeq.equilibrium.{fn}({arg}={value!r}): must be an int >= {minimum}")
    return int(value)


def _check_activation(fn: str, activation) -> proxlib.Prox:
    if not isinstance(activation, proxlib.Prox):
        raise TypeError(
            f"jeq.equilibrium.{fn}(activation={activation!r}): must be a jeq.prox.Prox (e.g. jeq.prox.relu()); "
            "use jeq.prox.from_activation to check and wrap another function"
        )
    return activation


def _check_input(fn: str, x: Array, shape: tuple[int, ...]) -> None:
    if tuple(jnp.shape(x)) != shape:
        raise ValueError(f"jeq.equilibrium.{fn}: x has shape {tuple(jnp.shape(x))} but the model expects {shape} "
                         "(one example; vmap over the batch)")


# ---------------------------------------------------------------------------------------------------------- dense
class OptEqParams(NamedTuple):
    """Trainable parameters of a dense OptEq classifier."""

    coupling: Array
    """V, shape (hidden, hidden); W = s V / ||V||_2."""
    scale: Array
    """a, scalar; s = (1 - eps) sigmoid(a) = ||W||_2."""
    injection: Array
    """U, shape (hidden, features)."""
    bias: Array
    """b, shape (hidden,)."""
    readout: Array
    """Classifier W_c, shape (classes, hidden)."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


class OptEqPrepared(NamedTuple):
    """Constrained weights of a dense OptEq layer."""

    weight: Array
    """W = s V / ||V||_2, shape (hidden, hidden)."""
    gram: Array
    """W^T W, shape (hidden, hidden)."""


def opteq(
    *,
    features: int,
    hidden: int,
    classes: int,
    activation: proxlib.Prox | None = None,
    margin: float = 0.05,
    prior: Prior | None = None,
    init_scale: float = 1.0,
    solver="anderson",
    tol: float = 1e-3,
    rtol: float = 0.0,
    maxiter: int = 50,
    backward="implicit",
    axis_name: str | None = None,
    dtype=jnp.float32,
) -> EquilibriumModel:
    """Dense OptEq classifier: z* = prox_f(W^T W z* - grad h(z*) + U x + b) (3.1), logits = W_c z* + b_c.

    x is one flattened example of shape (features,). ``objective(params, z, x)`` is G (3.2).

    Args:
      features, hidden, classes: sizes.
      activation: a :class:`jeq.prox.Prox` (default ReLU); its potential f enters G.
      margin: eps in ||W||_2 <= 1 - eps (0 <= eps < 1).
      prior: optional smooth convex energy h(z) (e.g. :func:`smoothness_prior`).
      init_scale: initial a (s = (1 - eps) sigmoid(a)).
      solver, tol, rtol, maxiter, backward: forward/backward settings of :func:`jeq.fixedpoint.solve`.
      axis_name: vmap axis name for batch-level stopping (``"batch"`` in :mod:`jeq.equilibrium.train`), or None.
    """
    fn = "opteq"
    features, hidden, classes = (_check_int(fn, n, v) for n, v in
                                 (("features", features), ("hidden", hidden), ("classes", classes)))
    activation = _check_activation(fn, activation or proxlib.relu())
    margin = check_margin(fn, margin)

    def init(key):
        coupling, injection, readout = random_blocks(key, [
            ((hidden, hidden), 1 / np.sqrt(hidden)), ((hidden, features), np.sqrt(2.0 / features)),
            ((classes, hidden), 1 / np.sqrt(hidden))], dtype)
        return OptEqParams(
            coupling=coupling, scale=jnp.asarray(init_scale, dtype), injection=injection,
            bias=jnp.zeros((hidden,), dtype), readout=readout, readout_bias=jnp.zeros((classes,), dtype),
        )

    def prepare(params):
        w = spectral_scale(params.scale, margin) * params.coupling / jnp.linalg.norm(params.coupling, 2)
        return OptEqPrepared(w, w.T @ w)

    def inject(params, x):
        _check_input(fn, x, (features,))
        return params.injection @ x + params.bias

    def layer(z, prepared, c):
        return opteq_map(z, c, gram=lambda v: prepared.gram @ v, activation=activation, prior=prior)

    def objective(params, z, x):
        prepared = prepare(params)
        return hidden_objective(z, inject(params, x), weight=lambda v: prepared.weight @ v, activation=activation,
                                prior=prior)

    return assemble(
        name="opteq", init=init, prepare=prepare, inject=inject, layer=layer,
        readout=lambda params, z: params.readout @ z + params.readout_bias,
        settings=SolveSettings(solver, tol, rtol, maxiter, backward, axis_name), objective=objective,
    )


# ----------------------------------------------------------------------------------------------------------- conv
class OptEqConvParams(NamedTuple):
    """Trainable parameters of a convolutional OptEq classifier."""

    kernel: Array
    """V, shape (k, k, channels, channels); W = s V / ||V||_2 as a 'SAME' convolution on (H, W, channels)."""
    scale: Array
    """a, scalar; s = (1 - eps) sigmoid(a)."""
    injection: Array
    """U, shape (k, k, in_channels, channels)."""
    bias: Array
    """b, shape (channels,)."""
    readout: Array
    """Classifier on the pooled, flattened z*: shape (classes, channels * (H/pool) * (W/pool))."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


def opteq_conv(
    *,
    image_shape: tuple[int, int],
    in_channels: int,
    channels: int,
    classes: int,
    kernel_size: int = 3,
    pool: int = 4,
    activation: proxlib.Prox | None = None,
    margin: float = 0.05,
    prior: Prior | None = None,
    init_scale: float = 1.0,
    solver="anderson",
    tol: float = 1e-3,
    rtol: float = 0.0,
    maxiter: int = 50,
    backward="implicit",
    axis_name: str | None = None,
    dtype=jnp.float32,
) -> EquilibriumModel:
    """Convolutional OptEq: z* = prox_f(W^T W z* - grad h(z*) + U * x + b), W a 'SAME' convolution.

    W^T W z is ``conv_transpose(conv(z, W), W)`` (the exact adjoint). W = s V / B(V) with B(V) >= ||V||_2 the
    per-frequency bound of :func:`jeq.equilibrium.conv.conv_norm_bound`, so ||W||_2 <= s <= 1 - eps. x: one image (H, W, in_channels); z: (H, W, channels);
    logits from ``pool`` x ``pool`` average pooling of z* and a dense layer.
    """
    fn = "opteq_conv"
    height, width = (_check_int(fn, "image_shape", v) for v in image_shape)
    in_channels, channels, classes, kernel_size, pool = (
        _check_int(fn, n, v) for n, v in (("in_channels", in_channels), ("channels", channels),
                                          ("classes", classes), ("kernel_size", kernel_size), ("pool", pool)))
    if height % pool or width % pool:
        raise ValueError(f"jeq.equilibrium.{fn}(pool={pool}): must divide image_shape {(height, width)}")
    activation = _check_activation(fn, activation or proxlib.relu())
    margin = check_margin(fn, margin)
    z_shape = (height, width, channels)
    pooled = channels * (height // pool) * (width // pool)

    def init(key):
        fan = kernel_size * kernel_size
        kernel, injection, readout = random_blocks(key, [
            ((kernel_size, kernel_size, channels, channels), 1 / np.sqrt(fan * channels)),
            ((kernel_size, kernel_size, in_channels, channels), np.sqrt(2.0 / (fan * in_channels))),
            ((classes, pooled), 1 / np.sqrt(pooled))], dtype)
        return OptEqConvParams(
            kernel=kernel, scale=jnp.asarray(init_scale, dtype), injection=injection,
            bias=jnp.zeros((channels,), dtype), readout=readout, readout_bias=jnp.zeros((classes,), dtype),
        )

    def prepare(params):
        return spectral_scale(params.scale, margin) * params.kernel / convlib.conv_norm_bound(params.kernel,
                                                                                              (height, width))

    def gram(kernel, z):
        return convlib.conv_transpose(convlib.conv(z, kernel), kernel, z_shape)

    def inject(params, x):
        _check_input(fn, x, (height, width, in_channels))
        return convlib.conv(x, params.injection) + params.bias

    def layer(z, kernel, c):
        return opteq_map(z, c, gram=lambda v: gram(kernel, v), activation=activation, prior=prior)

    def readout(params, z):
        return params.readout @ convlib.avg_pool(z, pool).reshape(-1) + params.readout_bias

    def objective(params, z, x):
        kernel = prepare(params)
        return hidden_objective(z, inject(params, x), weight=lambda v: convlib.conv(v, kernel), activation=activation,
                                prior=prior)

    return assemble(
        name="opteq-conv", init=init, prepare=prepare, inject=inject, layer=layer, readout=readout,
        settings=SolveSettings(solver, tol, rtol, maxiter, backward, axis_name), objective=objective,
    )
