"""A plain deep equilibrium layer (Bai, Kolter & Koltun, NeurIPS 2019; spec opteq.md section 8):

    z* = sigma(W z* + U x + b),                                                                           (8.4)

solved by Anderson (or Broyden) with implicit differentiation, g = J^T g + d loss / d z* at z*. W is
unconstrained, so nothing guarantees a unique or reachable fixed point: watch ``stats.converged`` and
``stats.relative_residual`` (advice: < 0.05, locuslab/deq #20) and add the Jacobian penalty
(``Output.jacobian``, Bai et al. ICML 2021) to the loss if training drifts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import fixedpoint as fp
from jeq.equilibrium.core import EquilibriumModel, SolveSettings, assemble, random_blocks
from jeq.equilibrium.opteq import _check_input, _check_int

__all__ = ["DeqParams", "deq"]

Array = jax.Array


class DeqParams(NamedTuple):
    """Trainable parameters of a dense plain DEQ classifier."""

    weight: Array
    """W, shape (hidden, hidden), unconstrained."""
    injection: Array
    """U, shape (hidden, features)."""
    bias: Array
    """b, shape (hidden,)."""
    readout: Array
    """Classifier, shape (classes, hidden)."""
    readout_bias: Array
    """Classifier bias, shape (classes,)."""


def deq(
    *,
    features: int,
    hidden: int,
    classes: int,
    activation: Callable[[Array], Array] = jax.nn.relu,
    init_norm: float = 0.5,
    solver="anderson",
    tol: float = 1e-3,
    rtol: float = 0.0,
    maxiter: int = 40,
    backward=None,
    axis_name: str | None = None,
    dtype=jnp.float32,
) -> EquilibriumModel:
    """Dense plain DEQ (8.4); x is one flattened example (features,).

    Defaults follow TorchDEQ 0.1.0: Anderson forward, tolerance 1e-3, 40 iterations, IFT backward (by default an
    Anderson adjoint solve to TorchDEQ's backward tolerance, absolute 1e-6, at most ``maxiter`` steps).
    W is initialised with spectral norm ``init_norm``.
    """
    fn = "deq"
    features, hidden, classes = (_check_int(fn, n, v) for n, v in
                                 (("features", features), ("hidden", hidden), ("classes", classes)))
    if not callable(activation):
        raise TypeError(f"jeq.equilibrium.deq(activation={activation!r}): must be callable")
    fp.check_settings(solver=solver, tol=tol, rtol=rtol, maxiter=maxiter, backward="implicit", caller=fn)
    if backward is None:
        backward = fp.implicit(solver="anderson", tol=1e-6, rtol=0.0, maxiter=maxiter)

    def init(key):
        w, injection, readout = random_blocks(key, [
            ((hidden, hidden), 1.0), ((hidden, features), np.sqrt(2.0 / features)),
            ((classes, hidden), 1 / np.sqrt(hidden))], dtype)
        return DeqParams(
            weight=init_norm * w / jnp.linalg.norm(w, 2), injection=injection, bias=jnp.zeros((hidden,), dtype),
            readout=readout, readout_bias=jnp.zeros((classes,), dtype),
        )

    def inject(params, x):
        _check_input(fn, x, (features,))
        return params.injection @ x + params.bias

    return assemble(
        name="deq", init=init, prepare=lambda params: params.weight, inject=inject,
        layer=lambda z, w, c: activation(w @ z + c),
        readout=lambda params, z: params.readout @ z + params.readout_bias,
        settings=SolveSettings(solver, tol, rtol, maxiter, backward, axis_name),
    )
