"""Directed networks on a (complete or layered) graph: masks, clipped Euler relaxation, and the generic learner.

Shared machinery of DEEP (:mod:`jeq.eqprop.deep`, Farinha et al., ESANN 2020) and its vector-field EP baseline
(:mod:`jeq.eqprop.ep_asym`, Scellier et al. 2018). A network has ``N`` neurons; ``W[i, j]`` is the weight of the edge
``i -> j``. The first ``num_inputs`` neurons are inputs (the last of them is the bias neuron, clamped at 1 as in
``jeq.data.logic_gates``) and the last ``num_outputs`` neurons are outputs.

Dynamics (one example; ``field`` is DEEP's or EP_asym's vector field):

    ds/dt = field(W, s) + beta * (y - s_out)          (nudging on the output neurons only)
    s_free <- clip(s_free + dt * ds/dt, 0, 1)           (Euler step; inputs stay clamped)

Learning (the rule is a function of the nudged trajectory; ``learning_rate`` is the notebooks' ``dt_W``):

    W <- mask * (W + learning_rate * [sign](mean_b rule(trajectory_b)) - l1_strength * sign(W))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jeq import validate

__all__ = [
    "DirectedInfo",
    "DirectedLearner",
    "Graph",
    "Relaxation",
    "class_error",
    "complete_graph",
    "directed_learner",
    "init_weights",
    "layered_graph",
    "relax_field",
]

Field = Callable[[jax.Array, jax.Array], jax.Array]
Rule = Callable[[jax.Array], jax.Array]


class Graph(NamedTuple):
    """A directed network's static structure: ``mask[i, j] = 1`` iff the edge i -> j exists (W = mask * W).

    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=3, num_hidden=2, num_outputs=1)
    >>> graph._fields, graph.size, graph.num_inputs, graph.num_outputs
    (('mask', 'num_inputs', 'num_outputs'), 6, 3, 1)
    """

    mask: np.ndarray
    """(N, N) float32 {0, 1}; ``mask[i, j] = 1`` iff the edge ``i -> j`` exists."""
    num_inputs: int
    """Clamped neurons ``0 .. num_inputs - 1``; the last one is the bias neuron (clamped at 1)."""
    num_outputs: int
    """Output neurons ``N - num_outputs .. N - 1`` (nudged in the second phase)."""

    @property
    def size(self) -> int:
        """Number of neurons N."""
        return int(self.mask.shape[0])


def complete_graph(*, num_inputs: int, num_hidden: int, num_outputs: int) -> Graph:
    """DEEP's complete directed graph: every edge except self-loops and edges into input/bias neurons.

    ``mask[i, j] = [i != j] * [j >= num_inputs]`` (Farinha et al. 2020; this also removes input -> input edges).

    >>> from jeq import eqprop
    >>> eqprop.complete_graph(num_inputs=2, num_hidden=1, num_outputs=1).mask.astype(int).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 1, 0]]
    """
    where = "jeq.eqprop.complete_graph"
    validate.integer(where, "num_inputs", num_inputs, low=1)
    validate.integer(where, "num_outputs", num_outputs, low=1)
    validate.integer(where, "num_hidden", num_hidden, low=0)
    n = num_inputs + num_hidden + num_outputs
    i, j = np.indices((n, n))
    mask = ((i != j) & (j >= num_inputs)).astype(np.float32)
    return Graph(mask, int(num_inputs), int(num_outputs))


def layered_graph(*, num_inputs: int, hidden_sizes: Sequence[int], num_outputs: int) -> Graph:
    """The notebooks' layered option: edges between adjacent layers in both directions, none into the inputs.

    Layers are ``[inputs, hidden_sizes..., outputs]``; ``i -> j`` exists iff ``j`` is not an input and
    ``|layer(i) - layer(j)| == 1``, except that the bias neuron (the last input) feeds every non-input neuron.

    Inputs 0, 1 (1 is the bias), hidden 2, 3, output 4: input 0 feeds only the hidden layer, the bias feeds all.

    >>> from jeq import eqprop
    >>> eqprop.layered_graph(num_inputs=2, hidden_sizes=[2], num_outputs=1).mask.astype(int).tolist()
    [[0, 0, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 1, 1, 0]]
    """
    where = "jeq.eqprop.layered_graph"
    validate.integer(where, "num_inputs", num_inputs, low=1)
    validate.integer(where, "num_outputs", num_outputs, low=1)
    for h in hidden_sizes:
        validate.integer(where, "hidden_sizes", h, low=1)
    sizes = [num_inputs, *hidden_sizes, num_outputs]
    layer = np.repeat(np.arange(len(sizes)), sizes)
    n = layer.size
    i, j = np.indices((n, n))
    adjacent = np.abs(layer[i] - layer[j]) == 1
    from_bias = i == num_inputs - 1
    mask = ((adjacent | from_bias) & (j >= num_inputs) & (i != j)).astype(np.float32)
    return Graph(mask, int(num_inputs), int(num_outputs))


def init_weights(key: jax.Array, graph: Graph, *, std: float = 0.05, dtype=jnp.float32) -> jax.Array:
    """W ~ N(0, std^2) on the graph's edges, 0 elsewhere (the notebooks' ``weights_init`` + ``constrain_weights``).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=3, num_hidden=2, num_outputs=1)
    >>> weights = eqprop.init_weights(jax.random.key(0), graph, std=0.05)
    >>> weights.shape, bool(jnp.all(jnp.where(graph.mask == 0, weights, 0.0) == 0.0))
    ((6, 6), True)
    """
    validate.nonnegative("jeq.eqprop.init_weights", "std", std)
    return std * jax.random.normal(key, graph.mask.shape, dtype) * jnp.asarray(graph.mask, dtype)


class Relaxation(NamedTuple):
    """Result of one Euler relaxation s_free <- clip(s_free + dt * ds/dt, 0, 1) (one example; leading batch axes
    when vmapped).

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> relaxation = eqprop.relax_field(eqprop.leaky_field, jnp.zeros((3, 3)), jnp.array([1.0, 0.5, 0.5]),
    ...                                 num_inputs=1, num_outputs=1, steps=10, dt=0.1)
    >>> relaxation._fields
    ('final', 'states', 'speed', 'cost')
    >>> relaxation.final.shape, relaxation.states.shape, relaxation.speed.shape
    ((3,), (11, 3), (10,))
    """

    final: jax.Array
    """(N,) state after the last step."""
    states: jax.Array
    """(steps + 1, N) trajectory including the initial state."""
    speed: jax.Array
    """(steps,) squared norm of the free neurons' ds/dt at each step (the notebooks' ``error_free``)."""
    cost: jax.Array
    """(steps,) 0.5 * ||s_out - y||^2 after each step (0 when no target is given)."""


def relax_field(
    field: Field,
    weights: jax.Array,
    state: jax.Array,
    target: jax.Array | None = None,
    *,
    num_inputs: int,
    num_outputs: int,
    steps: int,
    dt: float,
    beta: float | jax.Array = 0.0,
) -> Relaxation:
    """s_free <- clip(s_free + dt * ds/dt, 0, 1), ds/dt = field(W, s) + beta * (y - s_out) on the outputs.

    Clipped Euler relaxation of a directed network's vector field with clamped inputs, one example (vmap over
    examples); a ``lax.scan`` of ``steps`` steps. ``field`` maps ``(W, s) -> ds/dt`` for all N neurons (e.g.
    :func:`jeq.eqprop.deep.deep_field`); there is no energy (compare :func:`jeq.eqprop.hopfield.relax_energy`).
    ``target`` is ``y`` with shape (num_outputs,); without it there is no nudging (free phase).

    DEEP's field on a 2-input graph: the inputs stay clamped, the states stay in [0, 1], and nudging with beta pulls
    the output towards y = 1:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=2, num_hidden=2, num_outputs=1)
    >>> weights = eqprop.init_weights(jax.random.key(0), graph, std=0.5)
    >>> s0 = jnp.array([1.0, 1.0, 0.1, 0.1, 0.1])
    >>> free = eqprop.relax_field(eqprop.deep_field, weights, s0, num_inputs=2, num_outputs=1, steps=200, dt=0.05)
    >>> bool(jnp.all(free.states[:, :2] == 1.0)), bool(jnp.all((free.states >= 0) & (free.states <= 1)))
    (True, True)
    >>> nudged = eqprop.relax_field(eqprop.deep_field, weights, free.final, jnp.array([1.0]), num_inputs=2,
    ...                             num_outputs=1, steps=200, dt=0.05, beta=10.0)
    >>> bool(nudged.final[-1] > free.final[-1]), bool(nudged.cost[-1] < nudged.cost[0])
    (True, True)
    """
    where = "jeq.eqprop.relax_field"
    validate.integer(where, "steps", steps, low=1)
    validate.positive(where, "dt", dt)
    dtype = jnp.result_type(weights, state)
    weights = jnp.asarray(weights, dtype)
    state = jnp.asarray(state, dtype)
    validate.array(where, "weights", weights, ndim=2)
    n = weights.shape[0]
    validate.array(where, "weights", weights, shape=(n, n))
    validate.array(where, "state", state, shape=(n,))
    validate.integer(where, "num_inputs", num_inputs, low=0, high=n - 1)
    validate.integer(where, "num_outputs", num_outputs, low=1, high=n - num_inputs)
    if target is not None:
        target = validate.array(where, "target", jnp.asarray(target, state.dtype), shape=(num_outputs,))
    free = jnp.arange(n) >= num_inputs
    dt = jnp.asarray(dt, state.dtype)

    def step(s, _):
        ds = field(weights, s)
        if target is not None:
            ds = ds.at[n - num_outputs:].add(beta * (target - s[n - num_outputs:]))
        ds = jnp.where(free, ds, 0.0)
        s_next = jnp.where(free, jnp.clip(s + dt * ds, 0.0, 1.0), s)
        out = s_next[n - num_outputs:]
        cost = 0.0 if target is None else 0.5 * jnp.sum((out - target) ** 2)
        return s_next, (s_next, jnp.sum(ds**2), jnp.asarray(cost, state.dtype))

    final, (states, speed, cost) = jax.lax.scan(step, state, None, length=steps)
    return Relaxation(final, jnp.concatenate([state[None], states]), speed, cost)


def class_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of examples with any output on the wrong side of 0.5 (prediction = heaviside(s_out - 0.5, 1)).

    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> outputs = jnp.array([[0.7, 0.1], [0.2, 0.9], [0.5, 0.4]])
    >>> targets = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    >>> round(float(eqprop.class_error(outputs, targets)), 4)  # only the second example has a wrong output
    0.3333
    """
    predictions = (outputs >= 0.5).astype(targets.dtype)
    return jnp.mean(jnp.any(predictions != targets, axis=-1))


class DirectedInfo(NamedTuple):
    """Diagnostics of one learning step (means over the batch), e.g. free_cost = mean_b 0.5 ||s_out - y||^2.

    >>> from jeq import eqprop
    >>> eqprop.DirectedInfo._fields
    ('free_speed', 'free_residual', 'free_cost', 'free_error', 'nudged_cost', 'update_norm', 'finite')
    """

    free_speed: jax.Array
    """||ds/dt||^2 of the free neurons at the last free step, before clipping (the notebooks' ``error_free``):
    neurons held at 0 or 1 by the clip keep pushing, so it need not vanish at a converged state."""
    free_residual: jax.Array
    """||(s_T - s_{T-1}) / dt||^2 of the last free step, after clipping: 0 when the free phase has converged."""
    free_cost: jax.Array
    """0.5 * ||s_out - y||^2 at the end of the free phase (the notebooks' ``mses_free[:, -1]``)."""
    free_error: jax.Array
    """Class error of the free phase (fraction of examples misclassified)."""
    nudged_cost: jax.Array
    """0.5 * ||s_out - y||^2 at the end of the nudged phase."""
    update_norm: jax.Array
    """Frobenius norm of the applied weight change."""
    finite: jax.Array
    """False when the weights or states contain NaN/inf (the notebooks overflow silently; here it is reported)."""


class DirectedLearner(NamedTuple):
    """Pure, jitted functions of a directed-network learner (DEEP or EP_asym):
    ``update``: W <- mask * (W + learning_rate * [sign](dW) - l1_strength * sign(W)).

    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=3, num_hidden=2, num_outputs=1)
    >>> learner = eqprop.deep(graph)
    >>> learner._fields, learner.graph.size
    (('init', 'update', 'predict', 'graph'), 6)
    """

    init: Callable[[jax.Array], jax.Array]
    """``init(key) -> W`` (N, N), masked N(0, init_std^2)."""
    update: Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, DirectedInfo]]
    """``update(W, key, x, y) -> (W, DirectedInfo)``: free phase, nudged phase, rule, L1/sign, mask (batched:
    x (B, num_inputs), y (B, num_outputs))."""
    predict: Callable[[jax.Array, jax.Array, jax.Array], Relaxation]
    """``predict(W, key, x) -> Relaxation`` (batched): the free phase from a fresh random state."""
    graph: Graph
    """The network's structure."""


def directed_learner(
    graph: Graph,
    field: Field,
    rule: Rule,
    *,
    learning_rate: float,
    dt: float = 0.05,
    free_steps: int = 1000,
    nudged_steps: int = 1000,
    beta: float = 10.0,
    l1_strength: float = 0.0,
    sign_update: bool = False,
    init_std: float = 0.05,
    init_state_max: float = 0.1,
    name: str = "directed_learner",
) -> DirectedLearner:
    """W <- mask * (W + learning_rate * [sign](dW) - l1_strength * sign(W)),  dW = mean_b rule(s_b(T1 .. T1 + T2)).

    The generic learner for directed networks: :func:`jeq.eqprop.deep.deep` and :func:`~.ep_asym.ep_asym` are this
    learner with their own vector field and rule. Per step: free states ``s(0) = [x, U(0, init_state_max)]`` relax
    ``free_steps`` Euler steps (:func:`relax_field`); the nudged phase continues from the free state for
    ``nudged_steps`` steps with ``beta * (y - s_out)``. ``rule`` maps one example's nudged trajectory
    (nudged_steps + 1, N) to (N, N).

    Defaults are the DEEP and EP_asym notebooks' shared logic-gate settings (spec §2, §4): dt 0.05,
    T1 = T2 = 1000, beta 10, W ~ N(0, 0.05^2) on the edges, s0 ~ U(0, 0.1); ``l1_strength`` is the notebooks'
    ``reg_W`` and ``sign_update`` applies sign(dW). ``name`` is the public name the error messages give.

    A learner with EP_asym's field and rule on a 2-input OR-like task (short phases): one update keeps W on the
    graph's edges and reports its diagnostics.

    >>> import functools
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jeq import eqprop
    >>> graph = eqprop.complete_graph(num_inputs=3, num_hidden=2, num_outputs=1)
    >>> learner = eqprop.directed_learner(graph, eqprop.leaky_field, functools.partial(eqprop.asym_rule, beta=10.0),
    ...                                   learning_rate=1.0, free_steps=50, nudged_steps=50)
    >>> x = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])  # the last input is the bias
    >>> y = jnp.array([[0.0], [1.0], [1.0]])
    >>> weights, info = learner.update(learner.init(jax.random.key(0)), jax.random.key(1), x, y)
    >>> bool(info.finite), bool(info.update_norm > 0), bool(jnp.all(jnp.where(graph.mask == 0, weights, 0.0) == 0))
    (True, True, True)
    """
    where = f"jeq.eqprop.{name}"
    if not isinstance(graph, Graph):
        raise validate.ArgumentError(f"{where}(graph): must be a jeq.eqprop.Graph, got {type(graph).__name__}")
    validate.positive(where, "dt", dt)
    validate.integer(where, "free_steps", free_steps, low=1)
    validate.integer(where, "nudged_steps", nudged_steps, low=1)
    validate.positive(where, "beta", beta)
    validate.positive(where, "learning_rate", learning_rate)
    validate.nonnegative(where, "l1_strength", l1_strength)
    validate.nonnegative(where, "init_std", init_std)
    validate.nonnegative(where, "init_state_max", init_state_max)
    n, n_in, n_out = graph.size, graph.num_inputs, graph.num_outputs
    run = functools.partial(relax_field, field, num_inputs=n_in, num_outputs=n_out, dt=dt)

    def check_batch(weights, x, y=None):
        validate.array(where, "weights", weights, shape=(n, n))
        validate.array(where, "x", x, shape=(None, n_in))
        if y is not None:
            validate.array(where, "y", y, shape=(x.shape[0], n_out))

    def init(key):
        return init_weights(key, graph, std=init_std)

    def initial_states(key, x):
        noise = jax.random.uniform(key, (x.shape[0], n - n_in), x.dtype, 0.0, init_state_max)
        return jnp.concatenate([x, noise], axis=1)

    @jax.jit
    def predict(weights, key, x):
        x = jnp.asarray(x, weights.dtype)
        check_batch(weights, x)
        return jax.vmap(lambda s: run(weights, s, steps=free_steps))(initial_states(key, x))

    @jax.jit
    def update(weights, key, x, y):
        x = jnp.asarray(x, weights.dtype)
        y = jnp.asarray(y, weights.dtype)
        check_batch(weights, x, y)
        free = jax.vmap(lambda s: run(weights, s, steps=free_steps))(initial_states(key, x))
        nudged = jax.vmap(lambda s, t: run(weights, s, t, steps=nudged_steps, beta=beta))(free.final, y)
        delta = jnp.mean(jax.vmap(rule)(nudged.states), axis=0)
        if sign_update:
            delta = jnp.sign(delta)
        mask = jnp.asarray(graph.mask, weights.dtype)
        new = mask * (weights + learning_rate * delta - l1_strength * jnp.sign(weights))
        info = DirectedInfo(
            free_speed=jnp.mean(free.speed[:, -1]),
            free_residual=jnp.mean(jnp.sum((free.states[:, -1] - free.states[:, -2]) ** 2, axis=-1)) / dt**2,
            free_cost=jnp.mean(0.5 * jnp.sum((free.final[:, n - n_out:] - y) ** 2, axis=-1)),
            free_error=class_error(free.final[:, n - n_out:], y),
            nudged_cost=jnp.mean(nudged.cost[:, -1]),
            update_norm=jnp.linalg.norm(new - weights),
            finite=jnp.all(jnp.isfinite(new)) & jnp.all(jnp.isfinite(nudged.final)),
        )
        return new, info

    return DirectedLearner(init, update, predict, graph)
