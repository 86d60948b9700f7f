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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import fixedpoint as fp
from jeq import prox as proxlib
from jeq.equilibrium import conv as convlib
from jeq.equilibrium.core import EquilibriumModel, SolveSettings, assemble, random_blocks
from jeq.equilibrium.opteq import _check_activation, _check_input, _check_int

__all__ = ["MonConvParams", "MonParams", "circulant_inverse", "mon", "mon_conv"]

Array = jax.Array
SPLITTINGS = ("fb", "pr")


def _check_mon(fn: str, splitting, alpha, monotonicity) -> tuple[str, float, float]:
    if splitting not in SPLITTINGS:
        raise ValueError(f"jeq.equilibrium.{fn}(splitting={splitting!r}): must be one of {SPLITTINGS}")
    for name, value in (("alpha", alpha), ("monotonicity", monotonicity)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
            raise ValueError(f"jeq.equilibrium.{fn}({name}={value!r}): must be > 0")
    return splitting, float(alpha), float(monotonicity)


def _torch_default(key, blocks, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) per block: torch.nn.Linear / Conv2d default initialisation."""
    return random_blocks(key, [(shape, 1.0 / np.sqrt(fan_in)) for shape, fan_in in blocks], dtype,
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
    """Trainable parameters of a dense MON classifier."""

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


def mon(
    *,
    features: int,
    hidden: int,
    classes: int,
    splitting: str = "pr",
    alpha: float = 1.0,
    monotonicity: float = 1.0,
    activation: proxlib.Prox | None = None,
    tol: float = 1e-6,
    rtol: float = 1e-2,
    maxiter: int = 300,
    backward=None,
    axis_name: str | None = None,
    dtype=jnp.float32,
) -> EquilibriumModel:
    """Dense MON (8.1) with the FB (8.2) or PR (8.3) splitting; x is one flattened example (features,).

    Defaults follow the official training setup: relative tolerance 1e-2, max 300 iterations, m = 1, and the
    backward (adjoint) solve by the same splitting (Picard on the transposed iteration) to the same tolerance.
    """
    fn = "mon"
    features, hidden, classes = (_check_int(fn, n, v) for n, v in
                                 (("features", features), ("hidden", hidden), ("classes", classes)))
    splitting, alpha, m = _check_mon(fn, splitting, alpha, monotonicity)
    activation = _check_activation(fn, activation or proxlib.relu())
    fp.check_settings(solver="picard", tol=tol, rtol=rtol, maxiter=maxiter, backward="implicit", caller=fn)
    if backward is None:
        backward = fp.implicit(solver="picard", tol=tol, rtol=rtol, maxiter=maxiter)

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

    def inject(params, x):
        _check_input(fn, x, (features,))
        return params.injection @ x + params.bias

    layer, hidden_fn = _splitting_pieces(splitting, alpha, activation, lambda p, z: p.weight @ z,
                                         lambda p, v: p.inverse @ v)
    return assemble(
        name=f"mon-{splitting}", init=init, prepare=prepare, inject=inject, layer=layer, hidden=hidden_fn,
        readout=lambda params, z: params.readout @ z + params.readout_bias,
        settings=SolveSettings("picard", tol, rtol, maxiter, backward, axis_name),
    )


# ----------------------------------------------------------------------------------------------------------- conv
class MonConvParams(NamedTuple):
    """Trainable parameters of a single-convolution MON classifier (circular convolutions)."""

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
    """
    h, w, c = shape
    deltas = jnp.zeros((c, h, w, c), dtype).at[jnp.arange(c), 0, 0, jnp.arange(c)].set(1.0)
    responses = jax.vmap(apply_w)(deltas)  # (C_in, H, W, C_out)
    transfer = jnp.transpose(jnp.fft.rfft2(responses, axes=(1, 2)), (1, 2, 3, 0))  # (H, W', C_out, C_in)
    eye = jnp.eye(c, dtype=transfer.dtype)
    return jnp.linalg.inv((1.0 + alpha) * eye - alpha * transfer)


def _apply_transfer(inverse: Array, v: Array) -> Array:
    h, w, _ = v.shape
    spectrum = jnp.fft.rfft2(v, axes=(0, 1))
    return jnp.fft.irfft2(jnp.einsum("hwoi,hwi->hwo", inverse, spectrum), s=(h, w), axes=(0, 1)).astype(v.dtype)


def mon_conv(
    *,
    image_shape: tuple[int, int],
    in_channels: int,
    channels: int,
    classes: int,
    kernel_size: int = 3,
    pool: int = 4,
    splitting: str = "pr",
    alpha: float = 1.0,
    monotonicity: float = 1.0,
    activation: proxlib.Prox | None = None,
    tol: float = 1e-6,
    rtol: float = 1e-2,
    maxiter: int = 300,
    backward=None,
    axis_name: str | None = None,
    dtype=jnp.float32,
) -> EquilibriumModel:
    """Single-convolution MON: W z = (1 - m) z - A^T A z + B z - B^T z with circular convolutions.

    x: one image (H, W, in_channels); z: (H, W, channels); logits from ``pool`` x ``pool`` average pooling.
    """
    fn = "mon_conv"
    height, width = (_check_int(fn, "image_shape", v) for v in image_shape)
    in_channels, channels, classes, kernel_size, pool = (
        _check_int(fn, n, v) for n, v in (("in_channels", in_channels), ("channels", channels),
                                          ("classes", classes), ("kernel_size", kernel_size), ("pool", pool)))
    if height % pool or width % pool:
        raise ValueError(f"jeq.equilibrium.{fn}(pool={pool}): must divide image_shape {(height, width)}")
    splitting, alpha, m = _check_mon(fn, splitting, alpha, monotonicity)
    activation = _check_activation(fn, activation or proxlib.relu())
    fp.check_settings(solver="picard", tol=tol, rtol=rtol, maxiter=maxiter, backward="implicit", caller=fn)
    if backward is None:
        backward = fp.implicit(solver="picard", tol=tol, rtol=rtol, maxiter=maxiter)
    z_shape = (height, width, channels)
    pooled = channels * (height // pool) * (width // pool)

    def init(key):
        fan = kernel_size * kernel_size
        injection, bias, a, b, readout, readout_bias = _torch_default(key, [
            ((kernel_size, kernel_size, in_channels, channels), fan * in_channels), ((channels,), fan * in_channels),
            ((kernel_size, kernel_size, channels, channels), fan * channels),
            ((kernel_size, kernel_size, channels, channels), fan * channels),
            ((classes, pooled), pooled), ((classes,), pooled)], dtype)
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

    def inject(params, x):
        _check_input(fn, x, (height, width, in_channels))
        return convlib.conv(x, params.injection, circular=True) + params.bias

    layer, hidden_fn = _splitting_pieces(
        splitting, alpha, activation, lambda p, z: apply_w((p.a, p.b), z),
        lambda p, v: _apply_transfer(p.inverse_real + 1j * p.inverse_imag, v),
    )

    def readout(params, z):
        return params.readout @ convlib.avg_pool(z, pool).reshape(-1) + params.readout_bias

    return assemble(
        name=f"mon-conv-{splitting}", init=init, prepare=prepare, inject=inject, layer=layer, hidden=hidden_fn,
        readout=readout, settings=SolveSettings("picard", tol, rtol, maxiter, backward, axis_name),
    )
