"""Monotone operator equilibrium networks (Winston & Kolter, NeurIPS 2020; spec opteq.md section 8).

    z* = sigma(W z* + U x + b),    W = (1 - m) I - A^T A + B - B^T,                                        (8.1)

so I - W = m I + A^T A - (B - B^T) is strongly monotone (symmetric part >= m I) and the equilibrium is the zero
of the monotone operator (I - W) z - c + d f(z) (sigma = prox_f). The skew part B - B^T makes it a
monotone-operator zero, not the minimiser of an objective (contrast OptEq's symmetric W^T W).

Splittings (forward and adjoint use the same one; the adjoint is the transposed linearised iteration, solved by
``jeq.fixedpoint.implicit`` with a Picard backward):

* forward-backward ("fb"):  z <- sigma((1 - alpha) z + alpha (W z + c)).                                   (8.2)
* Peaceman-Rachford ("pr"): on the state u with z = sigma(u),                                              (8.3)
      u_half = 2 z - u,  z_half = (I + alpha (I - W))^{-1} (u_half + alpha c),  u <- 2 z_half - u_half.
  The inverse is computed once per parameter update (dense: a matrix inverse; conv: per-frequency C x C
  inverses of the circulant operator via the 2-D real FFT, as the official code does).

The convolutional variant uses circular convolutions, A = g A_raw / ||A_raw||_F and B = h B_raw / ||B_raw||_F
(learned scales g, h; the exact placement of g in the official code is unverified). Parameter counts match the
official models: 84,313 for MNIST FC with 87 hidden units, 172,218 for CIFAR-10 single conv with 81 channels.

The factories take the sizes by name and every other hyper-parameter as a keyword option: :class:`MonOptions`
(splitting, alpha, monotonicity, activation, dtype) and the solve settings (tol, rtol, maxiter, backward, axis_name;
defaults :data:`MON_SETTINGS`; the forward solver is Picard on the splitting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import fixedpoint as fp
from jeq import prox as proxlib
from jeq import validate
from jeq.equilibrium import conv as convlib
from jeq.equilibrium import core
from jeq.equilibrium.core import EquilibriumModel, SolveSettings

__all__ = ["MON_SETTINGS", "MonConvParams", "MonOptions", "MonParams", "circulant_apply", "circulant_inverse", "mon",
           "mon_conv"]

Array = jax.Array
SPLITTINGS = ("fb", "pr")

MON_SETTINGS = SolveSettings(solver="picard", tol=1e-6, rtol=1e-2, maxiter=300, backward=None)
"""Default solve of the MON factories (the official training setup): Picard on the splitting to the relative
tolerance 1e-2 (absolute 1e-6) within 300 steps; backward None = the adjoint by the same splitting (Picard on the
transposed iteration) to the same tolerances."""


class MonOptions(NamedTuple):
    """Keyword hyper-parameters of the MON factories besides the sizes and the solve settings (with defaults):
    the splitting (8.2)/(8.3), its step alpha and m in W = (1 - m) I - A^T A + B - B^T.

    >>> from jeq import equilibrium as eq
    >>> eq.MonOptions._fields
    ('splitting', 'alpha', 'monotonicity', 'activation', 'dtype')
    >>> eq.MonOptions().splitting, eq.MonOptions().alpha, eq.MonOptions().monotonicity
    ('pr', 1.0, 1.0)
    """

    splitting: str = "pr"
    """``"fb"`` (forward-backward, 8.2) or ``"pr"`` (Peaceman-Rachford, 8.3)."""
    alpha: float = 1.0
    """Step size alpha of the splitting (> 0)."""
    monotonicity: float = 1.0
    """m in W = (1 - m) I - A^T A + B - B^T: I - W is m-strongly monotone (> 0)."""
    activation: proxlib.Prox | None = None
    """A :class:`jeq.prox.Prox` sigma = prox_f (None: ReLU)."""
    dtype: Any = jnp.float32
    """Parameter dtype."""

    @classmethod
    def from_keywords(cls, where: str, keywords: Mapping[str, Any]) -> tuple[MonOptions, SolveSettings]:
        """A factory's ``**options`` as (checked MON options, checked solve settings with the backward resolved)."""
        options, settings = core.split_options(where, keywords, cls(), MON_SETTINGS)
        options = options._replace(
            splitting=validate.one_of(where, "splitting", options.splitting, SPLITTINGS),
            alpha=validate.positive(where, "alpha", options.alpha),
            monotonicity=validate.positive(where, "monotonicity", options.monotonicity),
            activation=core.check_activation(where, options.activation),
        )
        validate.one_of(where, "solver", settings.solver, ("picard",))
        settings = core.solve_settings(where, settings)
        if settings.backward is None:
            settings = settings._replace(backward=fp.implicit(solver="picard", tol=settings.tol, rtol=settings.rtol,
                                                              maxiter=settings.maxiter))
        return options, settings


def _torch_default(key, blocks, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) per block: torch.nn.Linear / Conv2d default initialisation."""
    return core.random_blocks(key, [(shape, 1.0 / np.sqrt(fan_in)) for shape, fan_in in blocks], dtype,
                              distribution="uniform")


def _splitting_pieces(splitting, alpha, activation, apply_w, apply_inverse):
    """layer/hidden for FB (state z) or PR (state u, z = sigma(u)); ``apply_w(prepared, z)``,
    ``apply_inverse(prepared, v) = (I + alpha (I - W))^{-1} v``."""
    if splitting == "fb":
        def layer(z, prepared, c):
            return activation.apply((1.0 - alpha) * z + alpha * (apply_w(prepared, z) + c))

        return layer, (lambda s, prepared, c: s)

    def layer(u, prepared, c):
        z = activation.apply(u)
        u_half = 2.0 * z - u
        z_half = apply_inverse(prepared, u_half + alpha * c)
        return 2.0 * z_half - u_half

    return layer, (lambda u, prepared, c: activation.apply(u))


# ---------------------------------------------------------------------------------------------------------- dense
class MonParams(NamedTuple):
    """Trainable parameters of a dense MON classifier: W = (1 - m) I - A^T A + B - B^T, c = U x + b.

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.mon(features=4, hidden=3, classes=2)
    >>> jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(model.init, jax.random.key(0)))
    MonParams(a=(3, 3), b=(3, 3), injection=(3, 4), bias=(3,), readout=(2, 3), readout_bias=(2,))
    """

    a: Array
    """A, shape (hidden, hidden)."""
    b: Array
    """B, shape (hidden, hidden); W = (1 - m) I - A^T A + B - B^T."""
    injection: Array
    """U, shape (hidden, features)."""
    bias: Array
    """b, shape (hidden,)."""
    readout: Array
    """Classifier, shape (classes, hidden)."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


class MonPrepared(NamedTuple):
    """W and, for Peaceman-Rachford, (I + alpha (I - W))^{-1}."""

    weight: Array
    """W, shape (hidden, hidden)."""
    inverse: Array
    """(I + alpha (I - W))^{-1} (PR), or an empty array (FB)."""


def mon(*, features: int, hidden: int, classes: int, **options: Any) -> EquilibriumModel:
    """Dense MON (8.1) with the FB (8.2) or PR (8.3) splitting; x is one flattened example (features,).

    Defaults follow the official training setup: relative tolerance 1e-2, max 300 iterations, m = 1, and the
    backward (adjoint) solve by the same splitting (Picard on the transposed iteration) to the same tolerance.
    ``**options``: :class:`MonOptions` and the solve settings (defaults :data:`MON_SETTINGS`).

    I - W is m-strongly monotone (symmetric part >= m I), and z* = relu(W z* + U x + b):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.mon(features=4, hidden=3, classes=2, splitting="pr", tol=1e-6, rtol=0.0)
    >>> params = model.init(jax.random.key(0))
    >>> w = model.prepare(params).weight
    >>> i_minus_w = jnp.eye(3) - w
    >>> bool(jnp.linalg.eigvalsh((i_minus_w + i_minus_w.T) / 2)[0] >= 1.0 - 1e-5)
    True
    >>> x = jnp.linspace(-1.0, 1.0, 4)
    >>> z, stats = jax.jit(model.equilibrium)(params, x)
    >>> bool(stats.converged), bool(jnp.allclose(z, jax.nn.relu(w @ z + model.inject(params, x)), atol=1e-4))
    (True, True)
    """
    where = "jeq.equilibrium.mon"
    features, hidden, classes = core.layer_sizes(where, features=features, hidden=hidden, classes=classes)
    config, settings = MonOptions.from_keywords(where, options)
    splitting, alpha, m, dtype = config.splitting, config.alpha, config.monotonicity, config.dtype

    def init(key):
        return MonParams(*_torch_default(key, [
            ((hidden, hidden), hidden), ((hidden, hidden), hidden), ((hidden, features), features),
            ((hidden,), features), ((classes, hidden), hidden), ((classes,), hidden)], dtype))

    def prepare(params):
        eye = jnp.eye(hidden, dtype=params.a.dtype)
        w = (1.0 - m) * eye - params.a.T @ params.a + params.b - params.b.T
        # solve(M, I) rather than inv(M): the same LU, but jnp.linalg.inv is ~100x slower on CPU in jax 0.10.
        inverse = jnp.linalg.solve(eye + alpha * (eye - w), eye) if splitting == "pr" else jnp.zeros((0,), w.dtype)
        return MonPrepared(w, inverse)

    layer, hidden_fn = _splitting_pieces(splitting, alpha, config.activation, lambda p, z: p.weight @ z,
                                         lambda p, v: p.inverse @ v)
    return core.assemble(name=f"mon-{splitting}", init=init, prepare=prepare,
                         inject=core.linear_injection(where, features), layer=layer, hidden=hidden_fn,
                         readout=core.linear_readout, settings=settings)


# ----------------------------------------------------------------------------------------------------------- conv
class MonConvParams(NamedTuple):
    """Trainable parameters of a single-convolution MON classifier (circular convolutions):
    W z = (1 - m) z - A^T A z + B z - B^T z with A = g A_raw / ||A_raw||_F and B = h B_raw / ||B_raw||_F.

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.mon_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2)
    >>> jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(model.init, jax.random.key(0)))
    MonConvParams(injection=(3, 3, 1, 2), bias=(2,), a=(3, 3, 2, 2), b=(3, 3, 2, 2), a_scale=(), b_scale=(),
                  readout=(3, 8), readout_bias=(3,))
    """

    injection: Array
    """U, shape (k, k, in_channels, channels)."""
    bias: Array
    """b, shape (channels,)."""
    a: Array
    """A_raw, shape (k, k, channels, channels)."""
    b: Array
    """B_raw, shape (k, k, channels, channels)."""
    a_scale: Array
    """g: A = g A_raw / ||A_raw||_F."""
    b_scale: Array
    """h: B = h B_raw / ||B_raw||_F."""
    readout: Array
    """Classifier on the pooled z*, shape (classes, channels * (H/pool) * (W/pool))."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


class MonConvPrepared(NamedTuple):
    """Normalised kernels and, for PR, the per-frequency inverse (I + alpha (I - W))^{-1}."""

    a: Array
    """A = g A_raw / ||A_raw||_F."""
    b: Array
    """B = h B_raw / ||B_raw||_F."""
    inverse_real: Array
    """Real part of the inverse transfer matrices, shape (H, W//2 + 1, C, C) (PR) or empty (FB)."""
    inverse_imag: Array
    """Imaginary part, same shape."""


def circulant_inverse(apply_w, shape: tuple[int, int, int], alpha: float, dtype) -> Array:
    """Transfer matrices of (I + alpha (I - W))^{-1} for a circulant (circularly convolutional) W on (H, W, C).

    W is translation-equivariant, so W z = sum_ci R_ci (*) z_ci with R_ci = W(delta at (0, 0) in channel ci)
    (circular convolution), and the 2-D DFT diagonalises it into C x C blocks W_hat(omega). Returns the complex
    array (H, W//2 + 1, C, C) of inv((1 + alpha) I - alpha W_hat(omega)) (real FFT: half the spectrum).

    For a circular shift W z = z(shifted by one row) / 2, the inverse undoes (I + alpha (I - W)) v:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> apply_w = lambda z: 0.5 * jnp.roll(z, 1, axis=0)
    >>> @jax.jit
    ... def round_trip(v):
    ...     inverse = eq.circulant_inverse(apply_w, (4, 4, 2), 1.0, jnp.float32)
    ...     return inverse, eq.circulant_apply(inverse, 2.0 * v - apply_w(v))
    >>> v = jnp.linspace(-1.0, 1.0, 32).reshape(4, 4, 2)
    >>> inverse, back = round_trip(v)
    >>> inverse.shape, bool(jnp.allclose(back, v, atol=1e-5))
    ((4, 3, 2, 2), True)
    """
    h, w, c = shape
    deltas = jnp.zeros((c, h, w, c), dtype).at[jnp.arange(c), 0, 0, jnp.arange(c)].set(1.0)
    responses = jax.vmap(apply_w)(deltas)  # (C_in, H, W, C_out)
    transfer = jnp.transpose(jnp.fft.rfft2(responses, axes=(1, 2)), (1, 2, 3, 0))  # (H, W', C_out, C_in)
    eye = jnp.eye(c, dtype=transfer.dtype)
    return jnp.linalg.inv((1.0 + alpha) * eye - alpha * transfer)


def circulant_apply(transfer: Array, v: Array) -> Array:
    """T v for a circulant operator T on (H, W, C) given by its transfer matrices (e.g. :func:`circulant_inverse`):

        T v = irfft2( T_hat(omega) rfft2(v)(omega) ),   T_hat of shape (H, W//2 + 1, C_out, C_in) (half spectrum),

    one C_out x C_in product per frequency. Returns an array shaped like v (with C_out channels), in v's dtype.

    The same channel swap at every frequency swaps the channels of every pixel:

    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> swap = jnp.broadcast_to(jnp.array([[0.0, 1.0], [1.0, 0.0]]), (4, 3, 2, 2))
    >>> v = jnp.linspace(-1.0, 1.0, 32).reshape(4, 4, 2)
    >>> bool(jnp.allclose(eq.circulant_apply(swap, v), v[..., ::-1], atol=1e-5))
    True
    """
    h, w, _ = v.shape
    spectrum = jnp.fft.rfft2(v, axes=(0, 1))
    return jnp.fft.irfft2(jnp.einsum("hwoi,hwi->hwo", transfer, spectrum), s=(h, w), axes=(0, 1)).astype(v.dtype)


def mon_conv(*, image_shape: tuple[int, int], in_channels: int, channels: int, classes: int, kernel_size: int = 3,
             pool: int = 4, **options: Any) -> EquilibriumModel:
    """Single-convolution MON: W z = (1 - m) z - A^T A z + B z - B^T z with circular convolutions.

    x: one image (H, W, in_channels); z: (H, W, channels); logits from ``pool`` x ``pool`` average pooling.
    ``**options``: as in :func:`mon`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.mon_conv(image_shape=(4, 4), in_channels=1, channels=2, classes=3, pool=2, splitting="pr")
    >>> params = model.init(jax.random.key(0))
    >>> x = jnp.linspace(0.0, 1.0, 16).reshape(4, 4, 1)
    >>> z, stats = jax.jit(model.equilibrium)(params, x)
    >>> model.name, z.shape, bool(stats.converged), model.readout(params, z).shape
    ('mon-conv-pr', (4, 4, 2), True, (3,))
    """
    where = "jeq.equilibrium.mon_conv"
    shape = core.conv_shape(where, image_shape=image_shape, in_channels=in_channels, channels=channels,
                            classes=classes, kernel_size=kernel_size, pool=pool)
    config, settings = MonOptions.from_keywords(where, options)
    splitting, alpha, m, dtype = config.splitting, config.alpha, config.monotonicity, config.dtype
    k, z_shape = shape.kernel_size, shape.z_shape

    def init(key):
        fan_in, fan_z = k * k * shape.in_channels, k * k * shape.channels
        injection, bias, a, b, readout, readout_bias = _torch_default(key, [
            ((k, k, shape.in_channels, shape.channels), fan_in), ((shape.channels,), fan_in),
            ((k, k, shape.channels, shape.channels), fan_z), ((k, k, shape.channels, shape.channels), fan_z),
            ((shape.classes, shape.pooled), shape.pooled), ((shape.classes,), shape.pooled)], dtype)
        return MonConvParams(injection=injection, bias=bias, a=a, b=b, a_scale=jnp.ones((), dtype),
                             b_scale=jnp.ones((), dtype), readout=readout, readout_bias=readout_bias)

    def apply_w(kernels, z):
        a, b = kernels
        az = convlib.conv(z, a, circular=True)
        return ((1.0 - m) * z - convlib.conv_transpose(az, a, z_shape, circular=True)
                + convlib.conv(z, b, circular=True) - convlib.conv_transpose(z, b, z_shape, circular=True))

    def prepare(params):
        a = params.a_scale * params.a / jnp.linalg.norm(params.a)
        b = params.b_scale * params.b / jnp.linalg.norm(params.b)
        if splitting == "pr":
            inverse = circulant_inverse(lambda z: apply_w((a, b), z), z_shape, alpha, dtype)
            return MonConvPrepared(a, b, jnp.real(inverse), jnp.imag(inverse))
        empty = jnp.zeros((0,), dtype)
        return MonConvPrepared(a, b, empty, empty)

    layer, hidden_fn = _splitting_pieces(
        splitting, alpha, config.activation, lambda p, z: apply_w((p.a, p.b), z),
        lambda p, v: circulant_apply(p.inverse_real + 1j * p.inverse_imag, v),
    )
    return core.assemble(name=f"mon-conv-{splitting}", init=init, prepare=prepare,
                         inject=core.conv_injection(where, shape, circular=True), layer=layer, hidden=hidden_fn,
                         readout=core.pooled_readout(shape.pool), settings=settings)
