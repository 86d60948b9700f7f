"""A pure, jitted training step shared by Path-SGD and its baselines.

    L(w) = sum_n m_n loss(w, x_n, y_n) / sum_n m_n,    (w, s) <- optax update of (w, s) with grad L,

with per-example weights m_n (1 by default; 0 for padding rows), so a data-parallel wrapper can jit the same
function with ``NamedSharding``s on the batch axis: the weighted sums are global reductions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jeq import validate
from jeq.sharding import weighted_mean

__all__ = ["RNNTrainMetrics", "check_batch", "make_eval_fn", "make_rnn_train_step"]

PyTree = Any


class RNNTrainMetrics(NamedTuple):
    """Metrics of one :func:`make_rnn_train_step` step (scalars).

    >>> from jeq.pathsgd import RNNTrainMetrics
    >>> RNNTrainMetrics._fields
    ('loss', 'grad_norm', 'update_norm')
    """

    loss: jax.Array
    """Weighted mean loss of the batch before the update."""
    grad_norm: jax.Array
    """Global L2 norm of the raw gradient (before clipping or path scaling)."""
    update_norm: jax.Array
    """Global L2 norm of the applied parameter update."""


def check_batch(where: str, xb, yb, weights=None) -> None:
    """Raise :class:`jeq.validate.ArgumentError` unless ``xb`` and ``yb`` share a leading batch axis of size n and
    ``weights`` is ``None`` or has shape ``(n,)`` (shapes are static: this runs while tracing)."""
    n = jnp.shape(xb)[0] if jnp.ndim(xb) else None
    if n is None or jnp.ndim(yb) == 0 or jnp.shape(yb)[0] != n:
        raise validate.ArgumentError(
            f"{where}(xb, yb): must share a leading batch axis, got shapes {tuple(jnp.shape(xb))} and "
            f"{tuple(jnp.shape(yb))}"
        )
    if weights is not None:
        validate.array(where, "weights", weights, shape=(n,))


def make_rnn_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    fused_path_sum: bool = False,
) -> Callable[..., tuple[PyTree, PyTree, RNNTrainMetrics]]:
    """Build ``train_step(params, opt_state, xb, yb, weights=None) -> (params, opt_state, RNNTrainMetrics)``.

    ``L(w) = sum_n m_n loss_fn(w, x_n, y_n) / sum_n m_n``, ``(w, s) <- optimizer update of (w, s) with grad L``.

    ``loss_fn(params, x, y)`` acts on ONE example (an RNN sequence in the Path-SGD experiments; any per-example loss
    works, the MLP's too); the step vmaps it over the batch axis of ``xb``/``yb``,
    averages with the optional per-example ``weights`` (shape (batch,), e.g. a 0/1 padding mask), differentiates
    and applies ``optimizer`` (which receives ``params``, as Path-SGD requires). The returned function is
    ``jax.jit``-compiled and pure: called with batch arrays placed by ``NamedSharding`` it runs data-parallel
    (the weighted mean is a global reduction), and ``train_step.__wrapped__`` can be re-jitted with explicit
    ``in_shardings``/``out_shardings``.

    With ``fused_path_sum=True`` the loss also returns the network's path sum:
    ``loss_fn(params, squared_params, x, y) -> (loss, Gamma(squared_params))`` (e.g. built on
    :func:`jeq.pathsgd.rnn_apply_with_path_sum`, which runs both recursions in one scan). The step then takes
    ONE gradient of ``L(w) + Gamma(u)`` with respect to ``(w, u)`` at ``u = w * w``, so that

        dL/dw = grad_w,    kappa1 = dGamma/du = grad_u,

    and passes ``kappa1`` to ``optimizer.update(..., kappa1=kappa1)`` (:func:`jeq.pathsgd.scale_by_path_norm`
    uses it; other transformations ignore it). ``Gamma`` must not depend on the example: it is vmapped with
    ``out_axes=None``, which raises if it does.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.data import adding_problem
    >>> from jeq.pathsgd import init_rnn, make_eval_fn, make_optimizer, make_rnn_train_step, rnn_apply
    >>> x, y = adding_problem(jax.random.key(0), 8, 5)
    >>> params = init_rnn(jax.random.key(0), input_size=2, hidden_size=3, output_size=1)
    >>> def loss_fn(p, xs, target):  # one example
    ...     return (rnn_apply(p, xs)[0] - target) ** 2
    >>> tx = make_optimizer("sgd", learning_rate=0.05, max_norm=10.0)
    >>> train_step = make_rnn_train_step(loss_fn, tx)
    >>> new_params, opt_state, metrics = train_step(params, tx.init(params), x, y)
    >>> evaluate = make_eval_fn(loss_fn)
    >>> bool(np.allclose(metrics.loss, evaluate(params, x, y))), bool(evaluate(new_params, x, y) < metrics.loss)
    (True, True)
    """
    where = "jeq.pathsgd.make_rnn_train_step"
    if not callable(loss_fn):
        validate.fail(where, "loss_fn", loss_fn, "must be callable")
    if not isinstance(fused_path_sum, bool):
        validate.fail(where, "fused_path_sum", fused_path_sum, "must be a bool")
    optimizer = optax.with_extra_args_support(optimizer)

    def batch_loss(params, xb, yb, weights):
        losses = jax.vmap(loss_fn, in_axes=(None, 0, 0))(params, xb, yb)
        return weighted_mean(losses, weights)

    def batch_objective(params, squared_params, xb, yb, weights):  # L(w) + Gamma(u); aux: L(w)
        losses, path_sum = jax.vmap(loss_fn, in_axes=(None, None, 0, 0), out_axes=(0, None))(
            params, squared_params, xb, yb
        )
        loss = weighted_mean(losses, weights)
        return loss + path_sum, loss

    @jax.jit
    def train_step(params, opt_state, xb, yb, weights=None):
        check_batch("jeq.pathsgd.train_step", xb, yb, weights)  # shapes are static: raises while tracing
        if fused_path_sum:
            squared = jax.tree_util.tree_map(jnp.square, params)
            (_, loss), (grads, kappa1) = jax.value_and_grad(batch_objective, argnums=(0, 1), has_aux=True)(
                params, squared, xb, yb, weights
            )
            updates, opt_state = optimizer.update(grads, opt_state, params, kappa1=kappa1)
        else:
            loss, grads = jax.value_and_grad(batch_loss)(params, xb, yb, weights)
            updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = RNNTrainMetrics(
            loss=loss, grad_norm=optax.tree.norm(grads), update_norm=optax.tree.norm(updates)
        )
        return params, opt_state, metrics

    return train_step


def make_eval_fn(
    metric_fn: Callable[[PyTree, jax.Array, jax.Array], jax.Array],
) -> Callable[..., jax.Array]:
    """Build a jitted ``evaluate(params, xb, yb, weights=None)``: weighted batch mean of a per-example metric.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jeq.pathsgd import make_eval_fn
    >>> evaluate = make_eval_fn(lambda w, x, y: jnp.abs(w * x - y))  # per-example metric
    >>> xb, yb = jnp.array([1.0, 2.0, 3.0]), jnp.zeros(3)
    >>> float(evaluate(2.0, xb, yb)), float(evaluate(2.0, xb, yb, jnp.array([1.0, 1.0, 0.0])))  # mask the last
    (4.0, 3.0)
    """
    if not callable(metric_fn):
        validate.fail("jeq.pathsgd.make_eval_fn", "metric_fn", metric_fn, "must be callable")

    @jax.jit
    def evaluate(params, xb, yb, weights=None):
        return weighted_mean(jax.vmap(metric_fn, in_axes=(None, 0, 0))(params, xb, yb), weights)

    return evaluate
