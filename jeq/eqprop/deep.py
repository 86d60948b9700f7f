"""DEEP: equilibrium propagation for complete directed networks (Farinha, Pequito, Santos, Figueiredo, ESANN 2020).

Equations (as in the official notebooks ``logical_operations_DEEP``; spec ``eqprop.md`` §2):

    free phase     ds_j/dt = sum_i W_ij s_i - s_j sum_k W_jk          i.e. ds/dt = (W^T - diag(W 1)) s
    nudged phase   ds_out/dt += beta * (y - s_out)
    Euler + clip   s_free <- clip(s_free + dt * ds/dt, 0, 1), inputs (and the bias neuron, = 1) clamped
    STDP rule      dW = 1/(B T2) sum_t sum_b s(t) (x) [beta0 s(t) + beta1 (s(t) - s(t-1))]   (nudged trajectory)
    update         W <- mask * (W + dt_W * [sign](dW) - reg_W * sign(W))

With beta0 = 0, beta1 = 1 the rule is presynaptic activity times postsynaptic change; replacing the presynaptic s(t)
by the free state s0 the sum telescopes to the cheap endpoint form s0 (x) (s_beta - s0) / T2 (derived); spec §10
writes it without the 1/T2, a learning-rate rescaling (:func:`endpoint_rule`, ``average``).
The graph/mask, Euler relaxation and generic learner live in :mod:`jeq.eqprop.directed`; the Boltzmann pruning in
:mod:`jeq.eqprop.pruning`; stability checks in :mod:`jeq.eqprop.lyapunov`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jeq import validate
from jeq.eqprop.directed import DirectedLearner, Graph, directed_learner

__all__ = ["deep", "deep_field", "endpoint_rule", "trajectory_rule"]


def deep_field(weights: jax.Array, state: jax.Array) -> jax.Array:
    """DEEP's vector field for all N neurons: ds_j/dt = sum_i W_ij s_i - s_j sum_k W_jk (inflow - s_j * outflow).

    ``weights`` (N, N) with ``W[i, j]`` the edge i -> j; ``state`` (N,). Linear in s: ds/dt = (W^T - diag(W 1)) s.

    What flows out of a neuron flows into another, so the total activity is conserved:

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> w = jnp.array([[0.0, 0.5, 0.2], [0.1, 0.0, 0.3], [0.4, 0.0, 0.0]])
    >>> s = jnp.array([1.0, 0.5, 0.25])
    >>> velocity = eqprop.deep_field(w, s)
    >>> bool(jnp.allclose(velocity, (w.T - jnp.diag(w.sum(axis=1))) @ s)), abs(float(velocity.sum())) < 1e-6
    (True, True)
    """
    return state @ weights - state * jnp.sum(weights, axis=1)


def trajectory_rule(states: jax.Array, *, stdp_beta0: float = 0.0, stdp_beta1: float = 1.0) -> jax.Array:
    """DEEP's STDP-like rule along one example's nudged trajectory ``states`` (T2 + 1, N), s(0) = free state.

        dW = 1/T2 sum_{t=1}^{T2} s(t) (x) [beta0 s(t) + beta1 (s(t) - s(t-1))]

    Returns (N, N); the learner averages it over the batch (the 1/B of the paper's formula).

    Two steps (T2 = 2) from s(0) = (0.5, 0): pre = s(1), s(2) = (1, 0), (1, 1); post = s(t) - s(t-1) = (0.5, 0), (0, 1):

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> states = jnp.array([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0]])
    >>> eqprop.trajectory_rule(states).tolist()
    [[0.25, 0.5], [0.0, 0.5]]
    """
    pre = states[1:]
    post = stdp_beta0 * states[1:] + stdp_beta1 * (states[1:] - states[:-1])
    return pre.T @ post / pre.shape[0]


def endpoint_rule(
    states: jax.Array, *, stdp_beta0: float = 0.0, stdp_beta1: float = 1.0, average: bool = True
) -> jax.Array:
    """Cheap endpoint approximation of :func:`trajectory_rule` from the free state s0 = s(0) and s_beta = s(T2).

        average=True  (default)   dW = beta0 s_beta (x) s_beta + beta1 / T2 * s0 (x) (s_beta - s0)
        average=False (spec §10)  dW = T2 beta0 s_beta (x) s_beta + beta1 * s0 (x) (s_beta - s0)

    (derived: the beta1 sum telescopes when the presynaptic s(t) is replaced by s0; the beta0 sum is replaced by T2
    times its value at the nudged equilibrium). The two forms differ by the constant factor T2 only, i.e. by a
    learning-rate rescaling: ``average=False`` with ``learning_rate = dt_W / T2`` is ``average=True`` with
    ``dt_W``. The default keeps the paper's own 1/(B T2) of the trajectory formula (spec §2), so both rules share
    the notebook's ``learning_rate`` dt_W = 100; spec §10's bare s0 (x) (s_beta - s0) would need dt_W / T2 = 0.1.

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> states = jnp.array([[0.5, 0.0], [1.0, 0.0], [1.0, 1.0]])  # s0 = (0.5, 0), s_beta = (1, 1), T2 = 2
    >>> eqprop.endpoint_rule(states).tolist()  # s0 (x) (s_beta - s0) / T2
    [[0.125, 0.25], [0.0, 0.0]]
    >>> eqprop.endpoint_rule(states, average=False).tolist()  # the same rule, T2 times larger
    [[0.25, 0.5], [0.0, 0.0]]
    """
    s0, sb = states[0], states[-1]
    steps = states.shape[0] - 1
    dw = stdp_beta0 * steps * jnp.outer(sb, sb) + stdp_beta1 * jnp.outer(s0, sb - s0)
    return dw / steps if average else dw


def deep(
    graph: Graph,
    *,
    learning_rate: float = 100.0,
    rule: str = "trajectory",
    stdp_beta0: float = 0.0,
    stdp_beta1: float = 1.0,
    endpoint_average: bool = True,
    **settings: Any,
) -> DirectedLearner:
    """DEEP learner: W <- mask * (W + learning_rate * [sign](dW) - l1_strength * sign(W)), dW = mean_b rule(s_b).

    ``rule`` is "trajectory" (:func:`trajectory_rule`, the paper's STDP sum) or "endpoint" (:func:`endpoint_rule`),
    with the STDP weights ``stdp_beta0`` and ``stdp_beta1``; ``learning_rate`` is the notebook's dt_W (100).
    ``endpoint_average`` (endpoint rule only) keeps the trajectory formula's 1/T2 (default, so dt_W means the same
    for both rules); False gives spec §10's bare s0 (x) (s_beta - s0), the same rule at a T2-times larger step.
    ``settings`` are the phases and options every directed learner takes, with the notebook's logic-gate defaults
    (spec §2 table): ``dt`` 0.05, ``free_steps`` = ``nudged_steps`` = 1000, ``beta`` 10, ``l1_strength`` 0 (the
    notebook's ``reg_W``, 1.5e-4 when ``regularized``), ``sign_update`` False, ``init_std`` 0.05 (W ~ N(0, 0.05^2)),
    ``init_state_max`` 0.1 (s0 ~ U(0, 0.1)); see :func:`jeq.eqprop.directed.directed_learner`. Returns jitted
    ``init``, ``update``, ``predict`` (:class:`~jeq.eqprop.directed.DirectedLearner`); ``update`` is batched over
    examples (full batch in the paper).

    One DEEP step on the AND gate (short phases for the example): W stays on the graph's edges.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=3, num_hidden=1, num_outputs=1)
    >>> learner = eqprop.deep(graph, free_steps=50, nudged_steps=50)
    >>> x = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # bias last
    >>> y = jnp.array([[0.0], [0.0], [0.0], [1.0]])
    >>> weights, info = learner.update(learner.init(jax.random.key(0)), jax.random.key(1), x, y)
    >>> bool(info.finite), bool(jnp.all(jnp.where(graph.mask == 0, weights, 0.0) == 0))
    (True, True)
    >>> 0.0 <= float(info.free_error) <= 1.0, bool(info.update_norm > 0)
    (True, True)
    """
    where = "jeq.eqprop.deep"
    validate.one_of(where, "rule", rule, ("trajectory", "endpoint"))
    validate.nonnegative(where, "stdp_beta0", stdp_beta0)
    validate.nonnegative(where, "stdp_beta1", stdp_beta1)
    if stdp_beta0 == 0 and stdp_beta1 == 0:
        validate.fail(where, "stdp_beta1", stdp_beta1, "stdp_beta0 and stdp_beta1 cannot both be 0 (no learning)")
    if rule == "trajectory" and not endpoint_average:
        validate.fail(where, "endpoint_average", endpoint_average, 'must be True unless rule="endpoint"')
    if rule == "trajectory":
        dw = functools.partial(trajectory_rule, stdp_beta0=stdp_beta0, stdp_beta1=stdp_beta1)
    else:
        dw = functools.partial(endpoint_rule, stdp_beta0=stdp_beta0, stdp_beta1=stdp_beta1, average=endpoint_average)
    return directed_learner(graph, deep_field, dw, learning_rate=learning_rate, name="deep", **settings)
