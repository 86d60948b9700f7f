"""Pure, jitted training and evaluation steps for any model whose ``apply(params, x, *, key=None) -> Output``.

    L(theta) = sum_n m_n [CE(logits_n, y_n) + lambda_J J_n] / sum_n m_n,

with per-example weights m_n (1 by default; 0 for padding rows) and J_n the Hutchinson Jacobian-penalty estimate
at z*_n (only when ``jacobian_weight > 0``; the step then needs a key). The weighted means are global
reductions, so a data-parallel wrapper can jit the same step (``train_step.__wrapped__``) with ``NamedSharding``s
on the batch axis.

The implicit backward's adjoint solve runs inside the step's VJP, which can only return the gradient:
:func:`adjoint_report` reruns it on a batch with its diagnostics (steps, convergence, residual).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jeq import fixedpoint as fp
from jeq import validate
from jeq.equilibrium.core import EquilibriumModel, Output
from jeq.sharding import weighted_mean

__all__ = ["BATCH_AXIS", "AdjointReport", "EvalMetrics", "TrainMetrics", "adjoint_report", "make_eval_step",
           "make_train_step"]

PyTree = Any


class TrainMetrics(NamedTuple):
    """Weighted batch means from one training step (before the update): sum_n m_n q_n / sum_n m_n for each q.

    >>> from jeq import equilibrium as eq
    >>> eq.TrainMetrics._fields
    ('loss', 'accuracy', 'jacobian', 'mean_steps', 'converged')
    """

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
    """Weighted sums over a batch, sum_n m_n q_n (add them over batches, divide by ``count`` = sum_n m_n).

    Sums over two batches, added field by field, then divided by the count:

    >>> from jeq import equilibrium as eq
    >>> batches = [eq.EvalMetrics(loss=2.0, correct=3, steps=24, converged=4, count=4), eq.EvalMetrics(1.0, 1, 6, 2, 2)]
    >>> total = eq.EvalMetrics(*map(sum, zip(*batches)))
    >>> total.correct / total.count, total.steps / total.count, total.converged / total.count
    (0.6666666666666666, 5.0, 1.0)
    """

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


def _check_batch(where: str, xb, yb, weight) -> None:
    """xb (n, ...), yb (n,) integer labels and weight (n,) or None share the leading batch axis (static shapes)."""
    if not jnp.ndim(xb):
        validate.array(where, "xb", xb, shape=(None,))  # fails: a batch needs a leading axis
    n = jnp.shape(xb)[0]
    validate.array(where, "yb", yb, shape=(n,))
    if weight is not None:
        validate.array(where, "weight", weight, shape=(n,))


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

    Ten steps of SGD on four examples lower the loss:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq(features=4, hidden=3, classes=2, solver="picard")
    >>> params = model.init(jax.random.key(0))
    >>> optimizer = optax.sgd(0.5)
    >>> step = eq.make_train_step(model.apply, optimizer)
    >>> xb, yb = jnp.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), jnp.array([0, 1, 0, 1])
    >>> state, losses = optimizer.init(params), []
    >>> for _ in range(10):
    ...     params, state, metrics = step(params, state, xb, yb)
    ...     losses.append(float(metrics.loss))
    >>> losses[-1] < losses[0], float(metrics.converged)
    (True, 1.0)
    """
    where = "jeq.equilibrium.make_train_step"
    if not callable(apply):
        validate.fail(where, "apply", apply, "must be callable")
    jacobian_weight = validate.nonnegative(where, "jacobian_weight", jacobian_weight)
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
        _check_batch("jeq.equilibrium.train_step", xb, yb, weight)
        if use_jacobian and key is None:
            validate.fail("jeq.equilibrium.train_step", "key", key, "must be a jax.random.key(...) when "
                          "jacobian_weight > 0")
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb, weight, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    return train_step


def make_eval_step(apply: Callable[..., Output]) -> Callable[..., EvalMetrics]:
    """``evaluate(params, xb, yb, weight=None) -> EvalMetrics`` (weighted sums; jitted): sum_n m_n q_n per metric.

    A zero weight drops a (padding) row from every sum:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.deq(features=4, hidden=3, classes=2, solver="picard")
    >>> evaluate = eq.make_eval_step(model.apply)
    >>> metrics = evaluate(model.init(jax.random.key(0)), jnp.eye(4), jnp.array([0, 1, 0, 1]),
    ...                    jnp.array([1.0, 1.0, 1.0, 0.0]))
    >>> float(metrics.count), float(metrics.converged), 0.0 <= float(metrics.correct) <= 3.0
    (3.0, 3.0, True)
    """
    if not callable(apply):
        validate.fail("jeq.equilibrium.make_eval_step", "apply", apply, "must be callable")

    @jax.jit
    def evaluate(params, xb, yb, weight=None):
        _check_batch("jeq.equilibrium.evaluate", xb, yb, weight)
        out, ce, correct = _per_example(apply, params, xb, yb, None)
        w = jnp.ones_like(ce) if weight is None else weight.astype(ce.dtype)
        return EvalMetrics(
            loss=jnp.sum(w * ce), correct=jnp.sum(w * correct),
            steps=jnp.sum(w * out.stats.num_steps.astype(ce.dtype)),
            converged=jnp.sum(w * out.stats.converged.astype(ce.dtype)), count=jnp.sum(w),
        )

    return evaluate


class AdjointReport(NamedTuple):
    """How the implicit backward's adjoint solve u = J^T u + g went on a batch (see :func:`adjoint_report`).

    >>> from jeq import equilibrium as eq
    >>> eq.AdjointReport._fields
    ('mean_steps', 'converged_fraction', 'max_residual', 'stats')
    """

    mean_steps: float
    """Mean adjoint solver steps per example (-1 for ``"gmres"``/``"bicgstab"``, which do not report them)."""
    converged_fraction: float
    """Fraction of examples whose adjoint solve met its tolerance within its ``maxiter``."""
    max_residual: float
    """Largest adjoint residual ||J^T u + g - u|| over the batch."""
    stats: fp.Stats
    """The per-example :class:`jeq.fixedpoint.Stats` of the adjoint solves (arrays of shape (batch,))."""


def adjoint_report(model: EquilibriumModel, params: PyTree, xb: jax.Array, yb: jax.Array) -> AdjointReport:
    """The adjoint solve u = J^T u + g of the implicit backward, per example, with its diagnostics:

        s* = layer(s*, prepare(params), inject(params, x)),   g = d CE(readout(params, hidden(s*)), y) / d s*,
        u = J^T u + g  with J = d layer / d s at s*   (:func:`jeq.fixedpoint.adjoint_solve`),

    with the model's forward and backward settings (``model.settings``; the forward stops per example). Inside a
    training step this solve runs silently in the VJP, so a truncated backward (``maxiter`` reached) goes unnoticed
    there; this reruns it on the batch ``xb`` (n, ...) with integer labels ``yb`` (n,). g is each example's own
    cross-entropy gradient (not divided by n). Not jittable as a whole (returns Python floats); the solves are jitted.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import equilibrium as eq
    >>> model = eq.opteq(features=4, hidden=3, classes=2, solver="picard")
    >>> report = eq.adjoint_report(model, model.init(jax.random.key(0)), jnp.eye(4), jnp.array([0, 1, 0, 1]))
    >>> report.converged_fraction, report.max_residual <= 1e-6, report.stats.num_steps.shape
    (1.0, True, (4,))
    """
    where = "jeq.equilibrium.adjoint_report"
    if not isinstance(model, EquilibriumModel):
        validate.fail(where, "model", model, "must be a jeq.equilibrium.EquilibriumModel")
    backward = model.settings.backward
    if not (backward == "implicit" or isinstance(backward, fp.Implicit)):
        validate.fail(where, "model", model.name, f"must have an implicit backward, not {backward!r}")
    _check_batch(where, xb, yb, None)
    settings = model.settings

    def one(x, y):
        prepared, c = model.prepare(params), model.inject(params, x)
        s = fp.solve(model.layer, model.initial_state(c), prepared, c, solver=settings.solver, tol=settings.tol,
                     rtol=settings.rtol, maxiter=settings.maxiter, backward=backward).value

        def loss(state):
            logits = model.readout(params, model.hidden(state, prepared, c))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y)

        return fp.adjoint_solve(model.layer, s, prepared, c, cotangent=jax.grad(loss)(s), backward=backward,
                                tol=settings.tol, rtol=settings.rtol).stats

    stats = jax.jit(jax.vmap(one))(xb, yb)
    return AdjointReport(mean_steps=float(jnp.mean(stats.num_steps)),
                         converged_fraction=float(jnp.mean(stats.converged)),
                         max_residual=float(jnp.max(stats.residual)), stats=stats)
