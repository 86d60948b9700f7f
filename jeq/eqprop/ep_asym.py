"""EP_asym: vector-field equilibrium propagation with asymmetric weights (Scellier et al. 2018, arXiv 1808.04873),
the baseline of the DEEP paper (official notebook ``logical_operations_EP_asym``; spec ``eqprop.md`` §4).

    free phase     ds_j/dt = sum_i W_ij s_i + b_j - s_j             (leaky; b_j = W[bias, j], bias neuron = 1)
    nudged phase   ds_out/dt += beta * (y - s_out);  Euler + clip to [0, 1] as in DEEP
    rule           dW_ij = s0_i (s_beta_j - s0_j) / beta,  db = (s_beta - s0) / beta

The bias vector of the notebook is the outgoing row of the bias neuron here, so its update (s_beta - s0)/beta is the
same rule applied to that row. Difference from the notebook (documented, not hidden): the notebook initialises b = 0
while here the bias row is drawn like every other weight, N(0, init_std^2).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jeq import validate
from jeq.eqprop.directed import DirectedLearner, Graph, directed_learner

__all__ = ["asym_rule", "ep_asym", "leaky_field"]


def leaky_field(weights: jax.Array, state: jax.Array) -> jax.Array:
    """EP_asym's vector field: ds_j/dt = sum_i W_ij s_i - s_j (bias through the clamped bias neuron).

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> w = jnp.array([[0.0, 0.5], [0.25, 0.0]])
    >>> s = jnp.array([1.0, 0.5])
    >>> eqprop.leaky_field(w, s).tolist(), (w.T @ s - s).tolist()
    ([-0.875, 0.0], [-0.875, 0.0])
    """
    return state @ weights - state


def asym_rule(states: jax.Array, *, beta: float) -> jax.Array:
    """EP_asym's rule from one nudged trajectory (T2 + 1, N): dW = s0 (x) (s_beta - s0) / beta.

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> states = jnp.array([[0.5, 0.0], [0.8, 0.4], [1.0, 1.0]])  # s0 = (0.5, 0), s_beta = (1, 1)
    >>> eqprop.asym_rule(states, beta=2.0).tolist()
    [[0.125, 0.25], [0.0, 0.0]]
    """
    return jnp.outer(states[0], states[-1] - states[0]) / beta


def ep_asym(
    graph: Graph, *, learning_rate: float = 1.0, beta: float = 10.0, **settings: Any
) -> DirectedLearner:
    """EP_asym learner: W <- mask * (W + learning_rate * mean_b s0 (x) (s_beta - s0) / beta - l1_strength * sign(W)).

    Defaults are the notebook's: dt_W = ``learning_rate`` = 1, ``beta`` 10 (the nudging strength, which also
    scales the rule :func:`asym_rule`); ``settings`` are the phases and options every directed learner takes, with
    the same defaults as DEEP's (:func:`jeq.eqprop.directed.directed_learner`: dt 0.05, T1 = T2 = 1000, ...).
    Returns jitted ``init``, ``update``, ``predict`` (:class:`jeq.eqprop.directed.DirectedLearner`), batched.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=3, num_hidden=2, num_outputs=1)
    >>> learner = eqprop.ep_asym(graph, free_steps=50, nudged_steps=50)
    >>> x = jnp.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # the last input is the bias neuron
    >>> relaxation = learner.predict(learner.init(jax.random.key(0)), jax.random.key(1), x)
    >>> relaxation.states.shape, bool(jnp.all(relaxation.states[:, :, :3] == x[:, None, :]))  # inputs clamped
    ((2, 51, 6), True)
    """
    validate.positive("jeq.eqprop.ep_asym", "beta", beta)
    dw = functools.partial(asym_rule, beta=beta)
    return directed_learner(graph, leaky_field, dw, learning_rate=learning_rate, beta=beta, name="ep_asym", **settings)
