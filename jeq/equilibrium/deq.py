"""A plain deep equilibrium layer (Bai, Kolter & Koltun, NeurIPS 2019; spec opteq.md section 8):

    z* = sigma(W z* + U x + b),                                                                           (8.4)

solved by Anderson (or Broyden) with implicit differentiation, g = J^T g + d loss / d z* at z*. W is
unconstrained, so nothing guarantees a unique or reachable fixed point: watch ``stats.converged`` and
``stats.relative_residual`` (advice: < 0.05, locuslab/deq #20) and add the Jacobian penalty
(``Output.jacobian``, Bai et al. ICML 2021) to the loss if training drifts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import fixedpoint as fp
from jeq import validate
from jeq.equilibrium import core
from jeq.equilibrium.core import EquilibriumModel, SolveSettings

__all__ = ["DEQ_SETTINGS", "DeqOptions", "DeqParams", "deq"]

Array = jax.Array

DEQ_SETTINGS = SolveSettings(solver="anderson", tol=1e-3, rtol=0.0, maxiter=40, backward=None)
"""Default solve of :func:`deq` (TorchDEQ 0.1.0): Anderson to ||f(z) - z|| <= 1e-3 within 40 steps; backward None =
an Anderson adjoint solve to TorchDEQ's backward tolerance, absolute 1e-6, within ``maxiter`` steps."""


class DeqOptions(NamedTuple):
    """Keyword hyper-parameters of :func:`deq` besides the sizes and the solve settings (with defaults): sigma in
    z* = sigma(W z* + U x + b) and ||W_0||_2 at initialisation.

    >>> from jeq import equilibrium as eq
    >>> eq.DeqOptions._fields, eq.DeqOptions().init_norm
    (('activation', 'init_norm', 'dtype'), 0.5)
    """

    activation: Callable[[Array], Array] = jax.nn.relu
    """sigma, any elementwise function (W is unconstrained: no prox structure is needed or used)."""
    init_norm: float = 0.5
    """Spectral norm of the initial W."""
    dtype: Any = jnp.float32
    """Parameter dtype."""

    @classmethod
    def from_keywords(cls, where: str, keywords: Mapping[str, Any]) -> tuple[DeqOptions, SolveSettings]:
        """A factory's ``**options`` as (checked DEQ options, checked solve settings with the backward resolved)."""
        options, settings = core.split_options(where, keywords, cls(), DEQ_SETTINGS)
        if not callable(options.activation):
            validate.fail(where, "activation", options.activation, "must be callable")
        settings = core.solve_settings(where, settings)
        if settings.backward is None:
            settings = settings._replace(backward=fp.implicit(solver="anderson", tol=1e-6, rtol=0.0,
                                                              maxiter=settings.maxiter))
        return options, settings


class DeqParams(NamedTuple):
    """Trainable parameters of a dense plain DEQ classifier: z* = sigma(W z* + U x + b), logits = W_c z* + b_c.

    >>> import jax
    >>> from jeq import equilibrium as eq
    >>> model = eq.deq(features=4, hidden=3, classes=2)
    >>> jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(model.init, jax.random.key(0)))
    DeqParams(weight=(3, 3), injection=(3, 4), bias=(3,), readout=(2, 3), readout_bias=(2,))
    """

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


def deq(*, features: int, hidden: int, classes: int, **options: Any) -> EquilibriumModel:
    """Dense plain DEQ (8.4); x is one flattened example (features,).

    Defaults follow TorchDEQ 0.1.0: Anderson forward, tolerance 1e-3, 40 iterations, IFT backward (by default an
    Anderson adjoint solve to TorchDEQ's backward tolerance, absolute 1e-6, at most ``maxiter`` steps).
    W is initialised with spectral norm ``init_norm``. ``**options``: :class:`DeqOptions` and the solve settings
    (defaults :data:`DEQ_SETTINGS`).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.deq(features=4, hidden=3, classes=2, activation=jnp.tanh, tol=1e-5, solver="picard")
    >>> params = model.init(jax.random.key(0))
    >>> round(float(jnp.linalg.norm(params.weight, 2)), 3)  # init_norm
    0.5
    >>> x = jnp.linspace(-1.0, 1.0, 4)
    >>> z, stats = jax.jit(model.equilibrium)(params, x)
    >>> bool(stats.converged), bool(jnp.allclose(z, jnp.tanh(params.weight @ z + params.injection @ x), atol=1e-4))
    (True, True)
    """
    where = "jeq.equilibrium.deq"
    features, hidden, classes = core.layer_sizes(where, features=features, hidden=hidden, classes=classes)
    config, settings = DeqOptions.from_keywords(where, options)
    activation, dtype = config.activation, config.dtype

    def init(key):
        w, injection, readout = core.random_blocks(key, [
            ((hidden, hidden), 1.0), ((hidden, features), np.sqrt(2.0 / features)),
            ((classes, hidden), 1 / np.sqrt(hidden))], dtype)
        return DeqParams(
            weight=config.init_norm * w / jnp.linalg.norm(w, 2), injection=injection,
            bias=jnp.zeros((hidden,), dtype), readout=readout, readout_bias=jnp.zeros((classes,), dtype),
        )

    return core.assemble(
        name="deq", init=init, prepare=lambda params: params.weight, inject=core.linear_injection(where, features),
        layer=lambda z, w, c: activation(w @ z + c), readout=core.linear_readout, settings=settings,
    )
