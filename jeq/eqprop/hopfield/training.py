"""Training a layered Hopfield network with EP: per-layer SGD and the jitted batch step / epoch (spec §5-§6).

    g = sum_b w_b [dE/dtheta(high_b) - dE/dtheta(low_b)] / (scale sum_b w_b),   theta <- optimizer(theta, g)

(low, high, scale) per example come from :func:`jeq.eqprop.hopfield.ep_phases`: (s_0, s_beta, beta) for "positive"
and "random_sign" nudging (Scellier & Bengio 2017), (s_-beta, s_beta, 2 beta) for "centered" (Laborieux et al. 2021).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jeq import validate
from jeq.eqprop.hopfield.gradient import ep_phases
from jeq.eqprop.hopfield.network import HopfieldParams, State, ep_objective, free_phase, rho, tree_all_finite

__all__ = ["EPTrainer", "NUDGINGS", "StepMetrics", "ep_trainer", "layer_sgd"]


def layer_sgd(learning_rates: Sequence[float], *, momentum: float | None = None) -> optax.GradientTransformation:
    """theta_l <- theta_l - learning_rates[l] * g_l (optionally with heavy-ball momentum): per-layer SGD.

    W_l and b_{l+1} use ``learning_rates[l]`` (Scellier's alphas; Laborieux's ``--lrs``).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> optimizer = eqprop.layer_sgd([0.1, 0.01])
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, _ = optimizer.update(grads, optimizer.init(params), params)
    >>> [round(float(w[0, 0]), 4) for w in updates.weights], [round(float(b[0]), 4) for b in updates.biases]
    ([-0.1, -0.01], [-0.1, -0.01])
    """
    where = "jeq.eqprop.hopfield.layer_sgd"
    rates = list(learning_rates)
    if not rates:
        validate.fail(where, "learning_rates", learning_rates, "must be a non-empty sequence of numbers > 0")
    for r in rates:
        validate.positive(where, "learning_rates", r)

    def labels(params):
        if len(params.weights) != len(rates):
            validate.fail(where, "learning_rates", learning_rates,
                          f"{len(rates)} rates for {len(params.weights)} layers")
        names = tuple(str(l) for l in range(len(rates)))
        return HopfieldParams(names, names)

    return optax.multi_transform({str(l): optax.sgd(r, momentum) for l, r in enumerate(rates)}, labels)


class StepMetrics(NamedTuple):
    """Metrics of one EP training step (weighted means over the batch), e.g. loss = sum_b w_b C_b / sum_b w_b.

    >>> from jeq import eqprop
    >>> eqprop.StepMetrics._fields
    ('loss', 'accuracy', 'free_residual', 'nudged_residual', 'beta', 'finite', 'free_state')
    """

    loss: jax.Array
    """Mean C(s_0) at the free equilibrium."""
    accuracy: jax.Array
    """Fraction of examples whose argmax output matches the argmax target."""
    free_residual: jax.Array
    """Max over the batch of the free phase's last-step change."""
    nudged_residual: jax.Array
    """Max over the batch of the nudged phase's last-step change."""
    beta: jax.Array
    """The (signed) beta used for this batch."""
    finite: jax.Array
    """False when a state or a parameter is NaN/inf (the caller must stop training)."""
    free_state: State
    """Batched free equilibria (persistent particles: feed them back as ``initial_state``)."""


class EPTrainer(NamedTuple):
    """Jitted EP training functions (see :func:`ep_trainer`): theta <- optimizer(theta, mean_b g_b).

    >>> from jeq import eqprop
    >>> eqprop.EPTrainer._fields
    ('init', 'train_step', 'train_epoch', 'predict')
    """

    init: Callable
    """``init(params) -> opt_state``."""
    train_step: Callable
    """``train_step(params, opt_state, key, xb, yb, example_weights=None, initial_state=None)
    -> (params, opt_state, StepMetrics)``; params and opt_state buffers are donated."""
    train_epoch: Callable
    """``train_epoch(params, opt_state, key, xs, ys) -> (params, opt_state, StepMetrics stacked over batches)``:
    one ``lax.scan`` over xs (num_batches, B, n_0), ys (num_batches, B) or (num_batches, B, n_L); buffers donated."""
    predict: Callable
    """``predict(params, x) -> Phase`` (batched free phase from zeros; outputs are ``phase.state[-1]``)."""


NUDGINGS = ("positive", "random_sign", "centered")
"""The signs of beta :func:`ep_trainer` can nudge with."""


def ep_trainer(
    optimizer: optax.GradientTransformation,
    *,
    beta: float,
    free_steps: int,
    nudged_steps: int,
    step_size: float = 0.5,
    activation: Callable[[jax.Array], jax.Array] = rho,
    nudging: str = "random_sign",
) -> EPTrainer:
    """theta <- optimizer(theta, sum_b w_b g_b / sum_b w_b), g_b the EP gradient of example b: a pure, jitted step.

    The per-example gradients are those of :func:`jeq.eqprop.hopfield.eqprop_grad`, taken as one batched gradient of
    the weighted :func:`~jeq.eqprop.hopfield.ep_objective`. ``nudging``: "positive" (one-sided +beta),
    "random_sign" (beta * (+-1) drawn per batch from ``key``, Scellier & Bengio's code) or "centered" (+-beta,
    Laborieux et al.). Integer labels (B,) are one-hot encoded to the output size; float targets (B, n_L) are used as
    they are. ``example_weights`` (B,) weight each example (0 for padding). ``step_size`` and ``activation`` are the
    relaxation's (:func:`~jeq.eqprop.hopfield.relax_energy`). The step is a pure function of its arguments, so a
    data-parallel caller can wrap it with NamedSharding'd inputs unchanged.

    Thirty centered-EP steps (one ``train_epoch`` over the same batch) more than halve the loss of a tiny network:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> from jeq.eqprop import hopfield
    >>> params = hopfield.init(jax.random.key(0), [4, 3, 2])
    >>> trainer = eqprop.ep_trainer(eqprop.layer_sgd([0.5, 0.25]), beta=0.5, free_steps=20, nudged_steps=4,
    ...                             nudging="centered")
    >>> x = jnp.array([[1.0, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 1, 0, 1]])
    >>> y = jnp.array([0, 1, 1, 0])  # integer labels, one-hot encoded to the 2 outputs
    >>> params, state, metrics = trainer.train_epoch(params, trainer.init(params), jax.random.key(1),
    ...                                              jnp.stack([x] * 30), jnp.stack([y] * 30))
    >>> metrics.loss.shape, bool(metrics.loss[-1] < metrics.loss[0] / 2), bool(jnp.all(metrics.finite))
    ((30,), True, True)
    >>> trainer.predict(params, x).state[-1].shape
    (4, 2)
    """
    where = "jeq.eqprop.hopfield.ep_trainer"
    validate.one_of(where, "nudging", nudging, NUDGINGS)
    validate.positive(where, "beta", beta)
    validate.integer(where, "free_steps", free_steps, low=1)
    validate.integer(where, "nudged_steps", nudged_steps, low=1)
    validate.positive(where, "step_size", step_size)
    dynamics = dict(step_size=step_size, activation=activation)
    step_where = "jeq.eqprop.hopfield.train_step"

    def targets(params, yb, batch):
        """Integer labels (B,) one-hot encoded, or float targets (B, n_L) as they are."""
        n_out = params.weights[-1].shape[1]
        if yb.ndim == 1 and jnp.issubdtype(yb.dtype, jnp.integer):
            validate.array(step_where, "yb", yb, shape=(batch,))
            yb = jax.nn.one_hot(yb, n_out, dtype=params.weights[0].dtype)
        validate.array(step_where, "yb", yb, shape=(batch, n_out))
        return yb.astype(params.weights[0].dtype)

    def step(params, opt_state, key, xb, yb, example_weights=None, initial_state=None):
        xb = jnp.asarray(xb, params.weights[0].dtype)
        validate.array(step_where, "xb", xb, shape=(None, params.weights[0].shape[0]))
        batch = xb.shape[0]
        yb = targets(params, jnp.asarray(yb), batch)
        w = jnp.ones(batch, xb.dtype) if example_weights is None else jnp.asarray(example_weights, xb.dtype)
        validate.array(step_where, "example_weights", w, shape=(batch,))
        signed = beta
        if nudging == "random_sign":
            signed = beta * jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(xb.dtype)
        state_axis = None if initial_state is None else 0
        low, high, info = jax.vmap(
            lambda x, y, s: ep_phases(params, x, y, signed, s, free_steps=free_steps, nudged_steps=nudged_steps,
                                      centered=nudging == "centered", **dynamics),
            in_axes=(0, 0, state_axis),
        )(xb, yb, initial_state)
        total = jnp.maximum(jnp.sum(w), jnp.finfo(xb.dtype).tiny)
        scale = 2 * signed if nudging == "centered" else signed

        def batch_objective(p):
            per_example = jax.vmap(lambda lo, hi, x: ep_objective(p, lo, hi, x, scale))(low, high, xb)
            return jnp.sum(w * per_example) / total

        grads = jax.grad(batch_objective)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        correct = jnp.argmax(info.free_state[-1], axis=-1) == jnp.argmax(yb, axis=-1)
        finite = jnp.all(info.finite) & tree_all_finite(params)
        metrics = StepMetrics(
            loss=jnp.sum(w * info.loss) / total,
            accuracy=jnp.sum(w * correct) / total,
            free_residual=jnp.max(info.free_residual),
            nudged_residual=jnp.max(info.nudged_residual),
            beta=jnp.asarray(signed, xb.dtype),
            finite=finite,
            free_state=info.free_state,
        )
        return params, opt_state, metrics

    def epoch(params, opt_state, key, xs, ys):
        def body(carry, batch):
            p, o = carry
            k, xb, yb = batch
            p, o, m = step(p, o, k, xb, yb)
            return (p, o), m._replace(free_state=())

        keys = jax.random.split(key, xs.shape[0])
        (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), (keys, xs, ys))
        return params, opt_state, metrics

    def predict(params, x):
        x = jnp.asarray(x, params.weights[0].dtype)
        return jax.vmap(lambda xi: free_phase(params, xi, steps=free_steps, **dynamics))(x)

    return EPTrainer(
        init=optimizer.init,
        train_step=jax.jit(step, donate_argnums=(0, 1)),
        train_epoch=jax.jit(epoch, donate_argnums=(0, 1)),
        predict=jax.jit(predict),
    )
