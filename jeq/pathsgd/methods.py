"""Path-SGD and its baselines as optax transformations with identical gradient clipping (Neyshabur et al. 2016).

Every method is ``optax.chain(clip_by_global_norm(max_norm), direction, scale_by_learning_rate(eta))``: the raw
gradient is clipped the same way for all, then turned into the method's descent direction:

- ``"path_sgd"``: ``g / (kappa1 + eps)``;
- ``"path_sgd_kappa2"``: ``g / (kappa1 + kappa2 + eps)`` (exact kappa2, small models);
- ``"sgd"``: ``g``;
- ``"adam"``: Adam's normalised direction.

The initialisation (Gaussian, IRNN, np-RNN) is chosen separately by :func:`jeq.pathsgd.init_rnn`. Path-SGD's
learning rate lives on the scale of 1/kappa, which depends on the task (T, input width, head): tune it per task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jeq import validate
from jeq.pathsgd.optimizer import scale_by_path_norm

__all__ = ["METHODS", "make_optimizer"]

METHODS = ("path_sgd", "path_sgd_kappa2", "sgd", "adam")

PyTree = Any


def make_optimizer(
    method: str,
    *,
    learning_rate: float,
    max_norm: float,
    path_sum: Callable[[PyTree], jax.Array] | None = None,
    eps: float = 1e-8,
    momentum: float = 0.0,
) -> optax.GradientTransformation:
    """``w <- w - eta * d(clip(g, max_norm), w)`` with the method's descent direction d (see module docstring).

    With ``momentum`` m > 0 (SGD and the path methods), heavy-ball momentum on the direction:
    ``v <- d + m v``, ``w <- w - eta v`` (``optax.trace``; a node rescaling scales d and v alike, so Path-SGD's
    invariance is kept).

    Args:
      method: one of :data:`METHODS`.
      learning_rate: eta > 0.
      max_norm: global-norm bound on the raw gradient (> 0), the same for every method.
      path_sum: ``Gamma(u)`` of the network, required by the path methods.
      eps: added to kappa by the path methods.
      momentum: heavy-ball momentum in [0, 1) (0: none); Adam has its own first moment, so 0 only.

    Returns:
      An ``optax.GradientTransformation`` (its ``update`` needs ``params`` for the path methods).
    """
    where = "jeq.pathsgd.make_optimizer"
    validate.one_of(where, "method", method, METHODS)
    learning_rate = validate.positive(where, "learning_rate", learning_rate)
    max_norm = validate.positive(where, "max_norm", max_norm)
    momentum = validate.real(where, "momentum", momentum, low=0, high=1, high_open=True)
    if method == "adam" and momentum:
        validate.fail(where, "momentum", momentum, "must be 0 for adam (Adam has its own first moment)")
    if method.startswith("path_sgd") and path_sum is None:
        validate.fail(where, "method", method, "needs path_sum=Gamma(u)")
    lr = optax.scale_by_learning_rate(learning_rate)
    clip = optax.clip_by_global_norm(max_norm)
    if method == "sgd":
        direction = optax.identity()
    elif method == "adam":
        direction = optax.scale_by_adam()
    else:
        direction = scale_by_path_norm(path_sum, eps=eps, include_kappa2=method == "path_sgd_kappa2")
    return optax.chain(clip, direction, *([optax.trace(decay=momentum)] if momentum else []), lr)
