"""DEEP and EP_asym on directed graphs: masks, Euler relaxation, learning rules, the learners, bad input, gates."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jeq.data import logic_gates
from jeq.eqprop import (
    asym_rule,
    complete_graph,
    deep,
    deep_field,
    endpoint_rule,
    ep_asym,
    layered_graph,
    leaky_field,
    relax_field,
    trajectory_rule,
)

GATE_X, GATE_Y = logic_gates("XOR")
GRAPH = complete_graph(num_inputs=3, num_hidden=5, num_outputs=1)


@pytest.fixture(scope="module")
def small_deep():
    """A DEEP learner with short phases (the maths is the same as the notebook's 1000-step phases)."""
    return deep(GRAPH, free_steps=40, nudged_steps=30, l1_strength=1.5e-4)


def _notebook_euler(field, w, s, steps, dt, num_inputs, beta=0.0, y=None):
    """Plain numpy Euler loop written from the paper's equations (reference for relax_field)."""
    s = np.array(s, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    traj = [s.copy()]
    for _ in range(steps):
        ds = field(w, s)
        if y is not None:
            ds[-len(y):] += beta * (y - s[-len(y):])
        s[num_inputs:] = np.clip(s[num_inputs:] + dt * ds[num_inputs:], 0, 1)
        traj.append(s.copy())
    return np.array(traj)


def test_complete_graph_has_every_edge_but_self_loops_and_edges_into_inputs():
    mask = GRAPH.mask
    n = GRAPH.size
    assert mask.shape == (9, 9) and GRAPH.num_inputs == 3 and GRAPH.num_outputs == 1
    assert np.all(np.diag(mask) == 0)
    assert np.all(mask[:, :3] == 0)  # nothing flows into inputs or the bias neuron
    expected = n * (n - 3) - (n - 3)  # all edges into non-inputs minus their self-loops
    assert mask.sum() == expected


def test_layered_graph_matches_the_notebook_constraints():
    g = layered_graph(num_inputs=3, hidden_sizes=[2, 2], num_outputs=1)
    m = g.mask
    inp, bias, h1, h2, out = [0, 1], 2, [3, 4], [5, 6], 7
    assert np.all(m[:, :3] == 0) and np.all(np.diag(m) == 0)
    assert np.all(m[np.ix_(inp, h1)] == 1) and np.all(m[np.ix_(inp, h2 + [out])] == 0)  # inputs feed layer 1 only
    assert np.all(m[bias, 3:] == 1)  # the bias neuron feeds every non-input neuron
    assert np.all(m[np.ix_(h1, h2)] == 1) and np.all(m[np.ix_(h2, h1)] == 1)  # adjacent layers, both ways
    assert m[h1[0], h1[1]] == 0 and m[h2[0], h2[1]] == 0  # no intra-layer edges
    assert np.all(m[np.ix_(h1, [out])] == 0) and np.all(m[np.ix_([out], h1)] == 0)  # no skip connections
    assert np.all(m[np.ix_(h2, [out])] == 1) and np.all(m[np.ix_([out], h2)] == 1)


class TestDirectedOpsJittedAndNot(chex.TestCase):
    """The fields, the clipped Euler relaxation and the learning rules against the paper's equations, each checked
    jitted and not jitted (float64)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_deep_field_is_inflow_minus_state_times_outflow(self):
        w = np.random.default_rng(0).normal(size=(5, 5))
        s = np.random.default_rng(1).uniform(size=5)
        expected = np.array([sum(w[i, j] * s[i] for i in range(5)) - s[j] * w[j].sum() for j in range(5)])
        with jax.enable_x64(True):
            chex.assert_trees_all_close(self.variant(deep_field)(jnp.asarray(w), jnp.asarray(s)), expected,
                                        rtol=1e-12)
            chex.assert_trees_all_close(self.variant(leaky_field)(jnp.asarray(w), jnp.asarray(s)), s @ w - s,
                                        rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_relax_field_matches_a_plain_euler_loop_with_clip_clamp_and_nudge(self):
        rng = np.random.default_rng(2)
        w = rng.normal(0, 0.5, size=(9, 9)) * GRAPH.mask
        s0 = np.concatenate([GATE_X[3], rng.uniform(0, 0.1, 6)])
        y = np.array([0.0])
        run = self.variant(relax_field, static_argnames=("field", "num_inputs", "num_outputs", "steps", "dt"))
        with jax.enable_x64(True):
            for field in (deep_field, leaky_field):
                np_field = lambda w_, s_: np.array(field(jnp.asarray(w_), jnp.asarray(s_)))  # noqa: E731
                for beta, target in [(0.0, None), (10.0, y)]:
                    ref = _notebook_euler(np_field, w, s0, 50, 0.05, 3, beta, target)
                    out = run(field, jnp.asarray(w), jnp.asarray(s0), None if target is None else jnp.asarray(target),
                              num_inputs=3, num_outputs=1, steps=50, dt=0.05, beta=beta)
                    chex.assert_trees_all_close(out.states, ref, atol=1e-12, rtol=0)
                    chex.assert_shape([out.states, out.speed, out.cost], [(51, 9), (50,), (50,)])
                    np.testing.assert_array_equal(out.states[:, :3], np.broadcast_to(GATE_X[3], (51, 3)))  # clamped
                    assert np.all((out.states >= 0) & (out.states <= 1))
                chex.assert_trees_all_close(out.cost[-1], 0.5 * (ref[-1, -1] - 0.0) ** 2, rtol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_trajectory_rule_is_the_mean_stdp_sum_and_endpoint_its_telescoped_form(self):
        rng = np.random.default_rng(3)
        states = rng.uniform(size=(11, 6))
        b0, b1 = 0.3, 1.0
        expected = sum(np.outer(states[t], b0 * states[t] + b1 * (states[t] - states[t - 1]))
                       for t in range(1, 11)) / 10
        with jax.enable_x64(True):
            trajectory = self.variant(trajectory_rule, static_argnames=("stdp_beta0", "stdp_beta1"))
            endpoint = self.variant(endpoint_rule)
            chex.assert_trees_all_close(trajectory(jnp.asarray(states), stdp_beta0=b0, stdp_beta1=b1), expected,
                                        rtol=1e-12)
            chex.assert_trees_all_close(endpoint(jnp.asarray(states)),
                                        np.outer(states[0], states[-1] - states[0]) / 10, rtol=1e-12)
            # Derived: for a small nudge the presynaptic s(t) ~ s0 and the beta1 sum telescopes to the endpoint form.
            w = jnp.asarray(rng.normal(0, 0.3, (9, 9)) * GRAPH.mask)
            s0 = jnp.concatenate([jnp.asarray(GATE_X[1]), jnp.full(6, 0.5)])
            free = relax_field(deep_field, w, s0, num_inputs=3, num_outputs=1, steps=400, dt=0.05)
            nudged = relax_field(deep_field, w, free.final, jnp.array([1.0]), num_inputs=3, num_outputs=1,
                                 steps=400, dt=0.05, beta=0.05)
            traj, end = trajectory(nudged.states), endpoint(nudged.states)
            assert jnp.linalg.norm(end) > 0
            assert jnp.linalg.norm(traj - end) < 0.05 * jnp.linalg.norm(end)

    @chex.variants(with_jit=True, without_jit=True)
    def test_ep_asym_rule_is_presynaptic_free_times_postsynaptic_change_over_beta(self):
        with jax.enable_x64(True):
            states = jnp.asarray(np.random.default_rng(4).uniform(size=(5, 4)))
            chex.assert_trees_all_close(self.variant(asym_rule, static_argnames="beta")(states, beta=2.0),
                                        np.outer(states[0], states[-1] - states[0]) / 2.0, rtol=1e-12)


def _update_by_hand(field, rule, w, key, *, free_steps, nudged_steps, learning_rate, l1_strength=0.0):
    """The learner's step recomputed from the paper's equations: the same random initial states s(0) = [x, U(0, 0.1)],
    free and nudged (beta 10, dt 0.05) relax_field phases, dW = mean_b rule(nudged trajectory_b), L1 and mask.
    Returns (W_new, free phases)."""
    noise = jax.random.uniform(key, (4, 6), jnp.float32, 0.0, 0.1)
    s0 = jnp.concatenate([jnp.asarray(GATE_X), noise], axis=1)

    @jax.jit
    def reference(w, s0, y):
        run = lambda s, t=None, steps=free_steps, beta=0.0: relax_field(  # noqa: E731
            field, w, s, t, num_inputs=3, num_outputs=1, steps=steps, dt=0.05, beta=beta)
        free = jax.vmap(run)(s0)
        nudged = jax.vmap(lambda s, t: run(s, t, nudged_steps, 10.0))(free.final, y)
        delta = jnp.mean(jax.vmap(rule)(nudged.states), axis=0)
        return GRAPH.mask * (w + learning_rate * delta - l1_strength * jnp.sign(w)), free

    return reference(w, s0, jnp.asarray(GATE_Y))


def test_deep_update_is_the_paper_rule_and_respects_the_mask(small_deep, key):
    w = small_deep.init(key)
    chex.assert_shape(w, (9, 9))
    assert w.dtype == jnp.float32 and np.all(np.asarray(w)[GRAPH.mask == 0] == 0)
    k = jax.random.key(1)
    new, info = small_deep.update(w, k, GATE_X, GATE_Y)
    expected, free = _update_by_hand(deep_field, trajectory_rule, w, k, free_steps=40, nudged_steps=30,
                                     learning_rate=100.0, l1_strength=1.5e-4)
    chex.assert_trees_all_close(new, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(new)[GRAPH.mask == 0] == 0)
    assert bool(info.finite) and 0 <= float(info.free_error) <= 1
    chex.assert_shape(info.free_error, ())
    # the convergence residual is the last free step's actual (clipped) move per unit time
    moved = np.asarray(free.states[:, -1] - free.states[:, -2], np.float64)
    chex.assert_trees_all_close(info.free_residual, np.mean(np.sum(moved**2, axis=-1)) / 0.05**2, rtol=1e-4)


def test_endpoint_rules_1_over_t2_is_a_learning_rate_rescaling_of_the_specs_bare_form(key):
    """Spec §10 writes the endpoint rule as s0 (x) (s_beta - s0); jeq's default divides by T2 (the trajectory
    formula's own 1/(B T2)). The two are the same rule with dt_W and dt_W / T2 (issue 15, item 8)."""
    states = jnp.asarray(np.random.default_rng(5).uniform(size=(31, 9)), jnp.float32)
    s0, sb = states[0], states[-1]
    chex.assert_trees_all_close(endpoint_rule(states, average=False), jnp.outer(s0, sb - s0), rtol=1e-6)
    for b0 in (0.0, 0.3):
        chex.assert_trees_all_close(endpoint_rule(states, stdp_beta0=b0, average=False),
                                    30 * endpoint_rule(states, stdp_beta0=b0), rtol=1e-5, atol=1e-6)
    w, k = GRAPH.mask * 0.05 * jax.random.normal(key, (9, 9)), jax.random.key(3)
    settings = dict(rule="endpoint", free_steps=40, nudged_steps=30)
    averaged, _ = deep(GRAPH, learning_rate=100.0, **settings).update(w, k, GATE_X, GATE_Y)
    bare, _ = deep(GRAPH, learning_rate=100.0 / 30, endpoint_average=False, **settings).update(w, k, GATE_X, GATE_Y)
    assert float(jnp.linalg.norm(averaged - w)) > 1e-3
    chex.assert_trees_all_close(bare, averaged, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"deep\(endpoint_average=False\): must be True unless rule=\"endpoint\""):
        deep(GRAPH, endpoint_average=False)


def test_sign_update_moves_every_edge_by_exactly_the_learning_rate(key):
    learner = deep(GRAPH, free_steps=20, nudged_steps=20, sign_update=True, learning_rate=0.01)
    w = learner.init(key)
    new, _ = learner.update(w, jax.random.key(5), GATE_X, GATE_Y)
    step = np.abs(np.asarray(new - w))[GRAPH.mask == 1]
    np.testing.assert_allclose(step[step > 0], 0.01, rtol=1e-4)
    assert np.all(np.asarray(new)[GRAPH.mask == 0] == 0)


def test_update_is_jitted_vmappable_over_networks_and_does_not_recompile(small_deep, key):
    ws = jax.vmap(small_deep.init)(jax.random.split(key, 3))
    keys = jax.random.split(jax.random.key(7), 3)
    new, info = jax.vmap(small_deep.update, in_axes=(0, 0, None, None))(ws, keys, GATE_X, GATE_Y)
    chex.assert_shape([new, info.free_cost], [(3, 9, 9), (3,)])
    single, _ = small_deep.update(ws[1], keys[1], GATE_X, GATE_Y)
    chex.assert_trees_all_close(new[1], single, rtol=1e-5, atol=1e-7)
    small_deep.update(ws[0], keys[0], GATE_X, GATE_Y)
    before = small_deep.update._cache_size()
    small_deep.update(ws[2], keys[2], GATE_X, GATE_Y)
    assert small_deep.update._cache_size() == before
    pred = small_deep.predict(ws[0], keys[0], GATE_X)
    chex.assert_shape([pred.final, pred.states], [(4, 9), (4, 41, 9)])


def test_ep_asym_update_matches_its_rule(key):
    learner = ep_asym(GRAPH, free_steps=30, nudged_steps=30)
    w = learner.init(key)
    k = jax.random.key(2)
    new, _ = learner.update(w, k, GATE_X, GATE_Y)
    by_hand = lambda states: jnp.outer(states[0], states[-1] - states[0]) / 10.0  # noqa: E731 (s0 (x) (s_b - s0) / b)
    expected, _ = _update_by_hand(leaky_field, by_hand, w, k, free_steps=30, nudged_steps=30, learning_rate=1.0)
    chex.assert_trees_all_close(new, expected, rtol=1e-5, atol=1e-7)


def test_deep_and_ep_asym_take_the_same_settings_with_the_notebooks_defaults():
    """One set of phase settings for both learners (dt, T1, T2, beta, L1, sign, init), defaults from the notebooks."""
    a, b = deep(GRAPH), ep_asym(GRAPH)
    w = a.init(jax.random.key(0))
    chex.assert_trees_all_close(w, b.init(jax.random.key(0)))  # W ~ N(0, 0.05^2) on the edges for both
    chex.assert_shape(a.predict(w, jax.random.key(1), GATE_X).states, (4, 1001, 9))  # T1 = 1000 steps
    for learner in (deep, ep_asym):
        short = learner(GRAPH, free_steps=3, nudged_steps=2, dt=0.1, init_std=0.0, sign_update=True)
        chex.assert_trees_all_close(short.init(jax.random.key(0)), jnp.zeros((9, 9)))
        chex.assert_shape(short.predict(w, jax.random.key(1), GATE_X).states, (4, 4, 9))
        with pytest.raises(TypeError, match="free_step"):
            learner(GRAPH, free_step=3)  # a misspelt setting is refused, not ignored


def test_bad_input_gives_clear_errors(small_deep, key):
    w = small_deep.init(key)
    with pytest.raises(ValueError, match=r"deep\(beta=0"):
        deep(GRAPH, beta=0)
    with pytest.raises(ValueError, match=r"jeq.eqprop.deep\(dt=-0.05\): must be > 0"):
        deep(GRAPH, dt=-0.05)
    ep_asym(GRAPH, beta=np.float32(10.0))  # numpy scalars are accepted like Python numbers
    with pytest.raises(ValueError, match=r"ep_asym\(beta=0"):
        ep_asym(GRAPH, beta=0.0)
    with pytest.raises(ValueError, match=r"deep\(rule='fancy'\)"):
        deep(GRAPH, rule="fancy")
    with pytest.raises(ValueError, match=r"relax_field\(dt=-1"):
        relax_field(deep_field, w, jnp.zeros(9), num_inputs=3, num_outputs=1, steps=3, dt=-1.0)
    with pytest.raises(ValueError, match=r"relax_field\(weights\): must have shape \(9, 9\), got shape \(9, 8\)"):
        relax_field(deep_field, w[:, :8], jnp.zeros(9), num_inputs=3, num_outputs=1, steps=3, dt=0.1)
    with pytest.raises(ValueError, match=r"relax_field\(num_outputs=7\): must be an int in \[1, 6\]"):
        relax_field(deep_field, w, jnp.zeros(9), num_inputs=3, num_outputs=7, steps=3, dt=0.1)
    with pytest.raises(ValueError, match=r"deep\(x\): must have shape \(\*, 3\), got shape \(4, 2\)"):
        small_deep.update(w, key, GATE_X[:, :2], GATE_Y)
    with pytest.raises(ValueError, match=r"deep\(y\): must have shape \(4, 1\), got shape \(4, 2\)"):
        small_deep.update(w, key, GATE_X, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"deep\(weights\): must have shape \(9, 9\), got shape \(8, 8\)"):
        small_deep.update(w[:8, :8], key, GATE_X, GATE_Y)
    with pytest.raises(ValueError, match=r"complete_graph\(num_inputs=0\): must be an int >= 1"):
        complete_graph(num_inputs=0, num_hidden=2, num_outputs=1)
    with pytest.raises(TypeError, match=r"jeq.eqprop.deep\(graph\): must be a jeq.eqprop.Graph, got ndarray"):
        deep(GRAPH.mask)


def test_deep_solves_and_or_in_at_least_9_of_10_networks():
    """Paper claim (spec §3, measured 10/10): notebook defaults, 200 epochs, T1 = T2 = 1000, full batch."""
    learner = deep(GRAPH)  # AND and OR share the 3-input graph; both gates train in one vmapped program
    xs = jnp.stack([jnp.asarray(logic_gates(g)[0]) for g in ("AND", "OR")])
    ys = jnp.stack([jnp.asarray(logic_gates(g)[1]) for g in ("AND", "OR")])

    def train(key, x, y):
        k0, k1, k2 = jax.random.split(key, 3)
        w, _ = jax.lax.scan(lambda w, k: learner.update(w, k, x, y), learner.init(k0), jax.random.split(k1, 200))
        out = learner.predict(w, k2, x).final[:, -1]
        return jnp.all((out >= 0.5) == (y[:, 0] > 0.5))

    keys = jax.random.split(jax.random.key(0), 10)
    solved = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None, None)), in_axes=(None, 0, 0)))(keys, xs, ys)
    chex.assert_shape(solved, (2, 10))
    assert int(solved[0].sum()) >= 9 and int(solved[1].sum()) >= 9
