"""Convolution helpers for one NHWC example (H, W, C): zero ("SAME") or circular padding, exact adjoints, pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jeq import validate

__all__ = ["avg_pool", "conv", "conv_norm_bound", "conv_transpose"]


def conv(z: jax.Array, kernel: jax.Array, *, circular: bool = False, stride: int = 1) -> jax.Array:
    """Cross-correlation of z (H, W, C_in) with kernel (k, k, C_in, C_out), same spatial size for stride 1.

    ``circular=True`` wraps the borders (a circulant operator, diagonalised by the 2-D DFT; MON's convolutions).
    """
    validate.array("jeq.equilibrium.conv", "z", z, ndim=3)
    validate.array("jeq.equilibrium.conv", "kernel", kernel, shape=(None, None, z.shape[-1], None))
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
        validate.fail("jeq.equilibrium.avg_pool", "size", size, f"must divide the spatial shape {(h, w)}")
    return z.reshape(h // size, size, w // size, size, c).mean(axis=(1, 3))


def conv_norm_bound(kernel: jax.Array, spatial_shape: tuple[int, int]) -> jax.Array:
    """An upper bound on ||conv(., kernel)||_2 for the zero-padded ('SAME', stride 1) convolution on ``spatial_shape``.

        ||conv||_2 <= max_omega sigma_max(K_hat(omega)),   K_hat = DFT of the kernel on an (H + k - 1) x (W + k - 1)
        grid,

    because the zero-padded convolution is the restriction (embed with zeros, then crop) of the circular one on a
    grid large enough that nothing wraps, and a circulant operator's singular values are those of its per-frequency
    C_out x C_in blocks. Tight up to border effects, differentiable (eigvalsh of the Hermitian K_hat^H K_hat), and
    a certificate, unlike power iteration (a lower bound that can stall when the top singular values are close).
    The kernel is real, so half the spectrum (``rfft2``) suffices.
    """
    validate.array("jeq.equilibrium.conv_norm_bound", "kernel", kernel, ndim=4)
    k_h, k_w = kernel.shape[:2]
    grid = (spatial_shape[0] + k_h - 1, spatial_shape[1] + k_w - 1)
    blocks = jnp.fft.rfft2(kernel, s=grid, axes=(0, 1))  # (grid_h, grid_w // 2 + 1, C_in, C_out)
    small, large = sorted(blocks.shape[2:])
    blocks = blocks if blocks.shape[3] == small else jnp.swapaxes(blocks, 2, 3)  # (..., large, small)
    gram = jnp.einsum("...ij,...ik->...jk", jnp.conj(blocks), blocks)  # (..., small, small), Hermitian
    return jnp.sqrt(jnp.max(jnp.linalg.eigvalsh(gram)))
