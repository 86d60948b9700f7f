"""Pure, jitted training and evaluation steps for any model whose ``apply(params, x, *, key=None) -> Output``.

    L(theta) = sum_n m_n [CE(logits_n, y_n) + lambda_J J_n] / sum_n m_n,

with per-example weights m_n (1 by default; 0 for padding rows) and J_n the Hutchinson Jacobian-penalty estimate
at z*_n (only when ``jacobian_weight > 0``; the step then needs a key). The weighted means are global
reductions, so a data-parallel wrapper can jit the same step (``train_step.__wrapped__``) with ``NamedSharding``s
on the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jeq.equilibrium.core import Output
from jeq.sharding import weighted_mean

__all__ = ["BATCH_AXIS", "EvalMetrics", "TrainMetrics", "make_eval_step", "make_train_step"]

PyTree = Any


class TrainMetrics(NamedTuple):
    """Weighted batch means from one training step (before the update)."""

    loss: jax.Array
    """Cross-entropy plus the weighted Jacobian penalty."""
    accuracy: jax.Array
    """Fraction of correct argmax predictions."""
    jacobian: jax.Array
    """Mean Jacobian-penalty estimate (0 without ``jacobian_weight``)."""
    mean_steps: jax.Array
    """Mean forward solver steps."""
    converged: jax.Array
    """Fraction of examples whose forward solve converged."""


class EvalMetrics(NamedTuple):
    """Weighted sums over a batch (add them over batches, divide by ``count``)."""

    loss: jax.Array
    """Sum of cross-entropies."""
    correct: jax.Array
    """Number of correct predictions."""
    steps: jax.Array
    """Sum of forward solver steps."""
    converged: jax.Array
    """Number of converged forward solves."""
    count: jax.Array
    """Sum of the example weights."""


def _check_batch(fn: str, xb, yb, weight) -> None:
    n = jnp.shape(xb)[0] if jnp.ndim(xb) else None
    if n is None or jnp.ndim(yb) != 1 or jnp.shape(yb)[0] != n:
        raise ValueError(
            f"jeq.equilibrium.{fn}: xb shape {tuple(jnp.shape(xb))} and yb shape {tuple(jnp.shape(yb))} must "
            "share a leading batch axis (yb: integer labels, one per example)"
        )
    if weight is not None and tuple(jnp.shape(weight)) != (n,):
        raise ValueError(f"jeq.equilibrium.{fn}: weight shape {tuple(jnp.shape(weight))} must be ({n},)")


BATCH_AXIS = "batch"
"""The vmap axis name of the batch in these steps: models built with ``axis_name="batch"`` stop on the batch-level
residual (as the MON and DEQ reference codes do), others per example."""


def _per_example(apply, params, xb, yb, keys):
    if keys is None:
        out: Output = jax.vmap(lambda x: apply(params, x), axis_name=BATCH_AXIS)(xb)
    else:
        out = jax.vmap(lambda x, k: apply(params, x, key=k), axis_name=BATCH_AXIS)(xb, keys)
    ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, yb)
    correct = (jnp.argmax(out.logits, axis=-1) == yb).astype(ce.dtype)
    return out, ce, correct


def make_train_step(
    apply: Callable[..., Output], optimizer: optax.GradientTransformation, *, jacobian_weight: float = 0.0
) -> Callable[..., tuple[PyTree, PyTree, TrainMetrics]]:
    """``train_step(params, opt_state, xb, yb, weight=None, key=None) -> (params, opt_state, TrainMetrics)``.

    ``apply`` acts on one example (e.g. ``model.apply``); the step vmaps it over the batch, minimises the weighted
    mean cross-entropy (+ ``jacobian_weight`` times the Jacobian penalty, which needs ``key``) and applies
    ``optimizer``. Jitted and pure.
    """
    if not callable(apply):
        raise TypeError(f"jeq.equilibrium.make_train_step(apply={apply!r}): must be callable")
    if isinstance(jacobian_weight, bool) or not np.isfinite(jacobian_weight) or jacobian_weight < 0:
        raise ValueError(f"jeq.equilibrium.make_train_step(jacobian_weight={jacobian_weight!r}): must be >= 0")
    use_jacobian = jacobian_weight > 0

    def loss_fn(params, xb, yb, weight, key):
        keys = jax.random.split(key, xb.shape[0]) if use_jacobian else None
        out, ce, correct = _per_example(apply, params, xb, yb, keys)
        jac = out.jacobian.astype(ce.dtype)
        loss = weighted_mean(ce + jacobian_weight * jac, weight)
        metrics = TrainMetrics(
            loss=loss, accuracy=weighted_mean(correct, weight), jacobian=weighted_mean(jac, weight),
            mean_steps=weighted_mean(out.stats.num_steps.astype(ce.dtype), weight),
            converged=weighted_mean(out.stats.converged.astype(ce.dtype), weight),
        )
        return loss, metrics

    @jax.jit
    def train_step(params, opt_state, xb, yb, weight=None, key=None):
        _check_batch("train_step", xb, yb, weight)
        if use_jacobian and key is None:
            raise ValueError("jeq.equilibrium.train_step: jacobian_weight > 0 needs key=jax.random.key(...)")
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb, weight, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    return train_step


def make_eval_step(apply: Callable[..., Output]) -> Callable[..., EvalMetrics]:
    """``evaluate(params, xb, yb, weight=None) -> EvalMetrics`` (weighted sums; jitted)."""
    if not callable(apply):
        raise TypeError(f"jeq.equilibrium.make_eval_step(apply={apply!r}): must be callable")

    @jax.jit
    def evaluate(params, xb, yb, weight=None):
        _check_batch("evaluate", xb, yb, weight)
        out, ce, correct = _per_example(apply, params, xb, yb, None)
        w = jnp.ones_like(ce) if weight is None else weight.astype(ce.dtype)
        return EvalMetrics(
            loss=jnp.sum(w * ce), correct=jnp.sum(w * correct),
            steps=jnp.sum(w * out.stats.num_steps.astype(ce.dtype)),
            converged=jnp.sum(w * out.stats.converged.astype(ce.dtype)), count=jnp.sum(w),
        )

    return evaluate
