"""Path-SGD and its baselines as optax transformations with identical gradient clipping (Neyshabur et al. 2016).

Every method is ``optax.chain(clip_by_global_norm(max_norm), direction, scale_by_learning_rate(eta))`` by default
(``clip="gradient"``): the raw gradient is clipped the same way for all, then turned into the method's descent
direction. With ``clip="update"`` the direction is clipped instead, each method in its own metric: Path-SGD's
``g / kappa`` in the path-norm metric ``sqrt(sum kappa d^2)`` (``scale_by_path_norm(max_norm=...)``, which keeps the
node-rescaling invariance that the raw-gradient clip breaks whenever it is active), SGD's and Adam's in the global
L2 norm (for SGD the same as clipping the gradient). The directions are:

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

__all__ = ["CLIPS", "METHODS", "make_optimizer"]

METHODS = ("path_sgd", "path_sgd_kappa2", "sgd", "adam")
CLIPS = ("gradient", "update")

PyTree = Any


def make_optimizer(
    method: str,
    *,
    learning_rate: float,
    max_norm: float,
    path_sum: Callable[[PyTree], jax.Array] | None = None,
    eps: float = 1e-8,
    momentum: float = 0.0,
    clip: str = "gradient",
) -> optax.GradientTransformation:
    """``w <- w - eta * d(clip(g, max_norm), w)`` with the method's descent direction d (see module docstring), or
    with ``clip="update"`` ``w <- w - eta * clip(d(g, w), max_norm)``.

    ``clip="gradient"`` is the default because it is the one clip every method shares exactly (spec section 10:
    baselines with identical gradient clipping) and the published experiments use it; the paper does not say how it
    clipped. It makes Path-SGD's step depend on the node scaling whenever the clip is active; ``clip="update"``
    bounds the path-scaled step in the path-norm metric and keeps the invariance.

    With ``momentum`` m > 0 (SGD and the path methods), heavy-ball momentum on the direction:
    ``v <- d + m v``, ``w <- w - eta v`` (``optax.trace``; a node rescaling scales d and v alike, so Path-SGD's
    invariance is kept).

    Args:
      method: one of :data:`METHODS`.
      learning_rate: eta > 0.
      max_norm: bound (> 0) on the global norm of the raw gradient (``clip="gradient"``, the same for every method),
        or of the direction (``clip="update"``: the path-norm metric for the path methods, L2 for the others).
      path_sum: ``Gamma(u)`` of the network, required by the path methods.
      eps: added to kappa by the path methods.
      momentum: heavy-ball momentum in [0, 1) (0: none); Adam has its own first moment, so 0 only.
      clip: ``"gradient"`` (clip the raw gradient) or ``"update"`` (clip the direction, before momentum).

    Returns:
      An ``optax.GradientTransformation`` (its ``update`` needs ``params`` for the path methods).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from jeq.pathsgd import METHODS, init_mlp, make_optimizer, mlp_path_sum
    >>> METHODS
    ('path_sgd', 'path_sgd_kappa2', 'sgd', 'adam')
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(2, 3, 1))
    >>> huge = jax.tree.map(lambda p: 100.0 * jnp.ones_like(p), params)
    >>> sgd = make_optimizer("sgd", learning_rate=0.1, max_norm=1.0)
    >>> updates, _ = sgd.update(huge, sgd.init(params), params)
    >>> round(float(optax.tree.norm(updates)), 4)  # eta * clip(g, 1)
    0.1
    >>> make_optimizer("path_sgd", learning_rate=0.1, max_norm=1.0)  # Path-SGD needs the network's Gamma(u)
    Traceback (most recent call last):
    ...
    jeq.validate.ArgumentError: jeq.pathsgd.make_optimizer(method='path_sgd'): needs path_sum=Gamma(u)
    """
    where = "jeq.pathsgd.make_optimizer"
    validate.one_of(where, "method", method, METHODS)
    validate.one_of(where, "clip", clip, CLIPS)
    learning_rate = validate.positive(where, "learning_rate", learning_rate)
    max_norm = validate.positive(where, "max_norm", max_norm)
    momentum = validate.real(where, "momentum", momentum, low=0, high=1, high_open=True)
    if method == "adam" and momentum:
        validate.fail(where, "momentum", momentum, "must be 0 for adam (Adam has its own first moment)")
    if method.startswith("path_sgd") and path_sum is None:
        validate.fail(where, "method", method, "needs path_sum=Gamma(u)")
    lr = optax.scale_by_learning_rate(learning_rate)
    before, after = [], []
    (before if clip == "gradient" else after).append(optax.clip_by_global_norm(max_norm))
    if method == "sgd":
        direction = optax.identity()
    elif method == "adam":
        direction = optax.scale_by_adam()
    else:
        direction = scale_by_path_norm(path_sum, eps=eps, include_kappa2=method == "path_sgd_kappa2",
                                       max_norm=max_norm if clip == "update" else None)
        after = []  # the path methods clip inside scale_by_path_norm, in the path-norm metric
    return optax.chain(*before, direction, *after, *([optax.trace(decay=momentum)] if momentum else []), lr)
