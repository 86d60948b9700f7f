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

import jax
import jax.numpy as jnp

from jeq.eqprop.directed import DirectedLearner, Graph, _check_positive, directed_learner

__all__ = ["asym_rule", "ep_asym", "leaky_field"]


def leaky_field(weights: jax.Array, state: jax.Array) -> jax.Array:
    """EP_asym's vector field: ds_j/dt = sum_i W_ij s_i - s_j (bias through the clamped bias neuron)."""
    return state @ weights - state


def asym_rule(states: jax.Array, *, beta: float) -> jax.Array:
    """EP_asym's rule from one nudged trajectory (T2 + 1, N): dW = s0 (x) (s_beta - s0) / beta."""
    return jnp.outer(states[0], states[-1] - states[0]) / beta


def ep_asym(
    graph: Graph,
    *,
    dt: float = 0.05,
    free_steps: int = 1000,
    nudged_steps: int = 1000,
    beta: float = 10.0,
    learning_rate: float = 1.0,
    l1_strength: float = 0.0,
    init_std: float = 0.05,
    init_state_max: float = 0.1,
) -> DirectedLearner:
    """EP_asym learner on a directed graph; defaults are the notebook's (dt_W = ``learning_rate`` = 1).

        W <- mask * (W + learning_rate * mean_b s0 (x) (s_beta - s0) / beta - l1_strength * sign(W))

    Returns jitted ``init``, ``update``, ``predict`` (:class:`jeq.eqprop.directed.DirectedLearner`), batched.
    """
    _check_positive("ep_asym", "beta", beta)
    return directed_learner(
        graph,
        leaky_field,
        lambda states: asym_rule(states, beta=beta),
        dt=dt,
        free_steps=free_steps,
        nudged_steps=nudged_steps,
        beta=beta,
        learning_rate=learning_rate,
        l1_strength=l1_strength,
        sign_update=False,
        init_std=init_std,
        init_state_max=init_state_max,
        name="ep_asym",
    )
