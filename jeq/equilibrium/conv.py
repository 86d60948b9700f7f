"""Convolution helpers for one NHWC example (H, W, C): zero ("SAME") or circular padding, exact adjoints, pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["avg_pool", "conv", "conv_transpose"]


def conv(z: jax.Array, kernel: jax.Array, *, circular: bool = False, stride: int = 1) -> jax.Array:
    """Cross-correlation of z (H, W, C_in) with kernel (k, k, C_in, C_out), same spatial size for stride 1.

    ``circular=True`` wraps the borders (a circulant operator, diagonalised by the 2-D DFT; MON's convolutions).
    """
    if z.ndim != 3 or kernel.ndim != 4 or z.shape[-1] != kernel.shape[2]:
        raise ValueError(
            f"jeq.equilibrium.conv: z has shape {tuple(z.shape)} and kernel {tuple(kernel.shape)}; expected "
            "(H, W, C_in) and (k, k, C_in, C_out)"
        )
    k = kernel.shape[0]
    if circular:
        lo, hi = (k - 1) // 2, k // 2
        z = jnp.pad(z, ((lo, hi), (lo, hi), (0, 0)), mode="wrap")
        padding = "VALID"
    else:
        padding = "SAME"
    out = jax.lax.conv_general_dilated(
        z[None], kernel, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return out[0]


def conv_transpose(y: jax.Array, kernel: jax.Array, shape: tuple[int, ...], *, circular: bool = False,
                   stride: int = 1) -> jax.Array:
    """The exact adjoint of ``conv(., kernel)`` from input shape ``shape``, applied to y (``jax.linear_transpose``)."""
    example = jax.ShapeDtypeStruct(tuple(shape), y.dtype)
    transpose = jax.linear_transpose(lambda z: conv(z, kernel, circular=circular, stride=stride), example)
    return transpose(y)[0]


def avg_pool(z: jax.Array, size: int) -> jax.Array:
    """Non-overlapping size x size average pooling of (H, W, C); H and W must be multiples of size."""
    h, w, c = z.shape
    if h % size or w % size:
        raise ValueError(f"jeq.equilibrium.avg_pool: spatial shape {(h, w)} is not a multiple of pool size {size}")
    return z.reshape(h // size, size, w // size, size, c).mean(axis=(1, 3))
