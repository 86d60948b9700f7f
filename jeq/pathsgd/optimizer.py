"""Path-SGD as an optax transformation (Neyshabur et al., NIPS 2015 and NeurIPS 2016).

    w_i <- w_i - eta * (dL/dw_i) / (kappa_i(w) + eps),   kappa = kappa1 (+ kappa2),

with kappa1 = dGamma/du at u = w^2 for the network's squared-weight path sum Gamma (see
``jeq.pathsgd.path_norm``). kappa depends only on the weights, so it is computed once per update, at batch
size 1. The update commutes with node rescaling (a weight scaled by a has its gradient scaled by 1/a and
kappa1 by 1/a^2, so its step scales by a), which plain SGD's does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jeq import validate
from jeq.pathsgd.path_norm import path_kappa

__all__ = ["ScaleByPathNormState", "scale_by_path_norm", "path_sgd"]

PyTree = Any


class ScaleByPathNormState(NamedTuple):
    """State of :func:`scale_by_path_norm`.

    >>> import jax
    >>> from jeq.pathsgd import ScaleByPathNormState, init_mlp, mlp_path_sum, scale_by_path_norm
    >>> ScaleByPathNormState._fields
    ('count', 'ratio')
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(2, 3, 1))
    >>> state = scale_by_path_norm(mlp_path_sum).init(params)
    >>> isinstance(state, ScaleByPathNormState), int(state.count)
    (True, 0)
    """

    count: jax.Array
    """Number of updates made so far (int32 scalar)."""
    ratio: jax.Array
    """Global factor multiplying every ``g / kappa``: 1, or with ``match_first_step_norm`` the ratio
    ``||g_1|| / ||g_1 / kappa_1||`` fixed at the first update (1 before it)."""


def scale_by_path_norm(
    path_sum: Callable[[PyTree], jax.Array],
    *,
    eps: float = 1e-8,
    include_kappa2: bool = False,
    match_first_step_norm: bool = False,
    max_norm: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Divide each gradient coordinate by the path-norm curvature: ``g_i -> r * g_i / (kappa_i(w) + eps)``.

    ``kappa = kappa1 = dGamma/du`` at ``u = w^2`` (practical Path-SGD) or, with ``include_kappa2``,
    ``kappa1 + kappa2`` with the exact ``kappa2 = u * diag(Hess Gamma)`` (the paper's full kappa; costs one
    Hessian-vector product per weight: small models only). ``r = 1`` unless ``match_first_step_norm``, where
    ``r = ||g_1|| / ||g_1 / kappa_1||`` is fixed at the first update so that the first step has the norm of
    the first SGD step (the official NIPS 2015 code does the same, with a slightly different norm).

    With ``max_norm`` the scaled update ``d`` is clipped in the path-norm metric (clipping inside the chain):

        d <- d * min(1, max_norm / ||d||_kappa),   ||d||_kappa^2 = sum_i (kappa_i + eps) d_i^2
                                                                  = r^2 sum_i g_i^2 / (kappa_i + eps),

    the norm of the step under the diagonal curvature kappa1 of the path regulariser. A node rescaling w -> D w maps
    kappa -> D^-2 kappa and d -> D d, so ``||d||_kappa`` and the clip factor are unchanged and the clipped step still
    commutes with rescaling (with eps = 0; up to eps otherwise). Clipping the raw gradient in front of the transform
    (``optax.clip_by_global_norm``, the SGD baselines' clip) does not: ``||g||`` changes under rescaling, so whenever
    that clip is active runs from a network and from its rescaled copy diverge.
    ``update(updates, state, params, *, kappa1=None)`` needs ``params`` (kappa is a function of the weights).
    A caller that already has ``kappa1 = dGamma/du`` at ``u = params**2`` (e.g. the fused scan of
    :func:`jeq.pathsgd.make_rnn_train_step` with ``fused_path_sum=True``) passes it as the extra argument
    ``kappa1`` and the transform uses it instead of differentiating ``path_sum`` again; inside ``optax.chain``
    the extra argument reaches this transform and is ignored by the others.

    Args:
      path_sum: ``Gamma(u)``, the network's squared-weight path sum, e.g.
        ``functools.partial(jeq.pathsgd.rnn_path_sum, length=T, head="many_to_one")`` or
        :func:`jeq.pathsgd.mlp_path_sum`.
      eps: added to kappa (a weight on no path has kappa1 = 0, and then also a zero gradient; with ``eps = 0``
        such a weight gets a zero step rather than 0/0).
      include_kappa2: add the exact kappa2.
      match_first_step_norm: fix the global ratio r at the first update.
      max_norm: bound (> 0) on the path-metric norm ``||d||_kappa`` of the scaled update, or None (no clip).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByPathNormState`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import init_mlp, mlp_path_sum, path_kappa, scale_by_path_norm
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(2, 3, 1))
    >>> tx = scale_by_path_norm(mlp_path_sum)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> kappa1 = path_kappa(mlp_path_sum, params).kappa1
    >>> all(bool(np.allclose(d, 1 / (k + 1e-8))) for d, k in zip(jax.tree.leaves(updates), jax.tree.leaves(kappa1)))
    True
    >>> int(state.count)
    1
    """
    where = "jeq.pathsgd.scale_by_path_norm"
    if not callable(path_sum):
        validate.fail(where, "path_sum", path_sum, "must be callable Gamma(u)")
    eps = validate.nonnegative(where, "eps", eps)
    if max_norm is not None:
        max_norm = validate.positive(where, "max_norm", max_norm)

    def init_fn(params: PyTree) -> ScaleByPathNormState:
        leaves = jax.tree_util.tree_leaves(params)
        dtype = jnp.result_type(*leaves) if leaves else jnp.float32
        return ScaleByPathNormState(count=jnp.zeros((), jnp.int32), ratio=jnp.ones((), dtype))

    def update_fn(
        updates: PyTree,
        state: ScaleByPathNormState,
        params: PyTree | None = None,
        *,
        kappa1: PyTree | None = None,
        **extra_args,
    ):
        del extra_args  # other transformations' extra arguments (optax.chain passes them to all)
        if params is None:
            raise ValueError(
                "jeq.pathsgd.scale_by_path_norm: update(updates, state, params) got params=None; Path-SGD "
                "needs the current weights to compute kappa(w): call tx.update(grads, opt_state, params)"
            )
        if kappa1 is not None:
            shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(kappa1)]
            param_shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(params)]
            if jax.tree_util.tree_structure(kappa1) != jax.tree_util.tree_structure(params) or shapes != param_shapes:
                raise ValueError(
                    "jeq.pathsgd.scale_by_path_norm: update(..., kappa1=...) must be a pytree shaped like params; "
                    f"got {jax.tree_util.tree_structure(kappa1)} with leaf shapes {shapes} for params "
                    f"{jax.tree_util.tree_structure(params)} with leaf shapes {param_shapes}"
                )
        if kappa1 is None or include_kappa2:
            kap = path_kappa(path_sum, params, include_kappa2=include_kappa2)
            kappa1 = kap.kappa1 if kappa1 is None else kappa1
        denominator = kappa1
        if include_kappa2:
            denominator = jax.tree_util.tree_map(jnp.add, denominator, kap.kappa2)

        def divide(g, k):  # a weight on no path (kappa + eps = 0, only possible with eps = 0) does not move
            d = k + eps
            return jnp.where(d > 0, g / jnp.where(d > 0, d, 1), 0)

        scaled = jax.tree_util.tree_map(divide, updates, denominator)
        ratio = state.ratio
        if match_first_step_norm:
            first = optax.tree.norm(updates) / jnp.maximum(optax.tree.norm(scaled), jnp.finfo(ratio.dtype).tiny)
            ratio = jnp.where(state.count == 0, first.astype(ratio.dtype), ratio)
            scaled = jax.tree_util.tree_map(lambda s: s * ratio.astype(s.dtype), scaled)
        if max_norm is not None:
            norm = jnp.sqrt(sum(jnp.sum((k + eps) * s * s) for k, s in zip(
                jax.tree_util.tree_leaves(denominator), jax.tree_util.tree_leaves(scaled))))
            factor = jnp.minimum(1.0, max_norm / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny))
            scaled = jax.tree_util.tree_map(lambda s: s * factor.astype(s.dtype), scaled)
        return scaled, ScaleByPathNormState(count=optax.safe_increment(state.count), ratio=ratio)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def path_sgd(
    learning_rate: float | optax.Schedule,
    *,
    path_sum: Callable[[PyTree], jax.Array],
    eps: float = 1e-8,
    include_kappa2: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    match_first_step_norm: bool = False,
    max_norm: float | None = None,
) -> optax.GradientTransformation:
    """Path-SGD: ``w_i <- w_i - learning_rate * (dL/dw_i) / (kappa_i(w) + eps)``.

    ``= optax.chain(scale_by_path_norm(path_sum, ...), [optax.trace(momentum)], scale_by_learning_rate(lr))``;
    ``max_norm`` clips the path-scaled update in the path-norm metric (rescaling-invariant, see
    :func:`scale_by_path_norm`); composing with ``optax.clip_by_global_norm`` in front instead clips the raw gradient
    as the SGD baselines do, which breaks the invariance whenever the clip is active.

    Args:
      learning_rate: eta > 0, or an optax schedule.
      path_sum: ``Gamma(u)`` of the network (see :func:`scale_by_path_norm`).
      eps: added to kappa.
      include_kappa2: use ``kappa1 + kappa2`` (exact; small models) instead of ``kappa1``.
      momentum: heavy-ball momentum in [0, 1) applied to the path-scaled gradient, or None.
      nesterov: Nesterov momentum (only with ``momentum``).
      match_first_step_norm: see :func:`scale_by_path_norm`.
      max_norm: bound on the path-metric norm of the scaled update (before momentum), or None.

    Returns:
      An ``optax.GradientTransformation``; its ``update`` needs ``params``.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import optax
    >>> from jeq.pathsgd import init_mlp, mlp_apply, mlp_path_sum, path_sgd
    >>> params = init_mlp(jax.random.key(0), layer_sizes=(2, 3, 1))
    >>> c = jnp.array([0.5, 2.0, 4.0])  # node rescaling: the same function, other weights
    >>> rescaled = (params[0]._replace(w=c[:, None] * params[0].w, b=c * params[0].b),
    ...             params[1]._replace(w=params[1].w / c))
    >>> x, y = jnp.array([1.0, -2.0]), jnp.array([0.5])
    >>> def loss(p):
    ...     return jnp.sum((mlp_apply(p, x) - y) ** 2)
    >>> def step(tx, p):
    ...     updates, _ = tx.update(jax.grad(loss)(p), tx.init(p), p)
    ...     return optax.apply_updates(p, updates)
    >>> tx = path_sgd(0.002, path_sum=mlp_path_sum)
    >>> bool(np.allclose(mlp_apply(step(tx, params), x), mlp_apply(step(tx, rescaled), x), atol=1e-5))
    True
    >>> sgd = optax.sgd(0.002)  # plain SGD is not invariant to the rescaling
    >>> bool(np.allclose(mlp_apply(step(sgd, params), x), mlp_apply(step(sgd, rescaled), x), atol=1e-5))
    False
    >>> bool(loss(step(tx, params)) < loss(params))
    True
    """
    where = "jeq.pathsgd.path_sgd"
    if not callable(learning_rate):
        learning_rate = validate.positive(where, "learning_rate", learning_rate)
    if momentum is not None:
        momentum = validate.real(where, "momentum", momentum, low=0, high=1, high_open=True)
    if nesterov and momentum is None:
        validate.fail(where, "nesterov", nesterov, "needs momentum in [0, 1)")
    parts = [
        scale_by_path_norm(
            path_sum, eps=eps, include_kappa2=include_kappa2, match_first_step_norm=match_first_step_norm,
            max_norm=max_norm,
        )
    ]
    if momentum is not None:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)
