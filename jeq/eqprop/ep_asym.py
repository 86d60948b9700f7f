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
    """EP_asym's vector field: ds_j/dt = sum_i W_ij s_i - s_j (bias through the clamped bias neuron)."""
    return state @ weights - state


def asym_rule(states: jax.Array, *, beta: float) -> jax.Array:
    """EP_asym's rule from one nudged trajectory (T2 + 1, N): dW = s0 (x) (s_beta - s0) / beta."""
    return jnp.outer(states[0], states[-1] - states[0]) / beta


def ep_asym(
    graph: Graph, *, learning_rate: float = 1.0, beta: float = 10.0, **settings: Any
) -> DirectedLearner:
    """EP_asym learner: W <- mask * (W + learning_rate * mean_b s0 (x) (s_beta - s0) / beta - l1_strength * sign(W)).

    Defaults are the notebook's: dt_W = ``learning_rate`` = 1, ``beta`` 10 (the nudging strength, which also
    scales the rule :func:`asym_rule`); ``settings`` are the phases and options every directed learner takes, with
    the same defaults as DEEP's (:func:`jeq.eqprop.directed.directed_learner`: dt 0.05, T1 = T2 = 1000, ...).
    Returns jitted ``init``, ``update``, ``predict`` (:class:`jeq.eqprop.directed.DirectedLearner`), batched.
    """
    validate.positive("jeq.eqprop.ep_asym", "beta", beta)
    dw = functools.partial(asym_rule, beta=beta)
    return directed_learner(graph, leaky_field, dw, learning_rate=learning_rate, beta=beta, name="ep_asym", **settings)
