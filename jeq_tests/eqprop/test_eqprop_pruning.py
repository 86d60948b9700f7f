"""Boltzmann pruning: a distribution over each neuron's weak incoming edges; strong edges and masks are safe."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeq.data import logic_gates
from jeq.eqprop import boltzmann_prune, complete_graph, deep, pruning_probabilities, sparsity

GRAPH = complete_graph(num_inputs=3, num_hidden=5, num_outputs=1)
PRUNE = jax.jit(boltzmann_prune, static_argnames=("threshold", "temperature"))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.sampled_from([0.005, 0.02, 0.1]),
       temperature=st.sampled_from([0.001, 0.05, 5.0]))
def test_probabilities_are_a_distribution_over_each_neurons_weak_incoming_edges(seed, threshold, temperature):
    w = jnp.asarray(np.random.default_rng(seed).normal(0, 0.03, (9, 9)).astype(np.float32)) * GRAPH.mask
    p = np.asarray(pruning_probabilities(w, GRAPH.mask, threshold=threshold, temperature=temperature))
    weak = (GRAPH.mask > 0) & (np.abs(np.asarray(w)) < threshold)
    assert np.all(p[~weak] == 0) and np.all(p >= 0)
    sums = p.sum(axis=0)
    has_weak = weak.any(axis=0)
    np.testing.assert_allclose(sums[has_weak], 1.0, rtol=1e-5)
    assert np.all(sums[~has_weak] == 0)
    # Boltzmann: within a column, a weaker edge is at least as likely to be removed.
    for j in np.flatnonzero(has_weak):
        order = np.argsort(np.abs(np.asarray(w)[weak[:, j], j]))
        assert np.all(np.diff(p[weak[:, j], j][order]) <= 1e-7)


def test_strong_weights_are_never_pruned_and_masks_are_respected(key):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(0, 0.02, (9, 9)).astype(np.float32)) * GRAPH.mask
    strong = (np.abs(np.asarray(w)) >= 0.01) & (GRAPH.mask > 0)
    for k in jax.random.split(key, 50):
        out = PRUNE(k, w, jnp.asarray(GRAPH.mask), threshold=0.01, temperature=5.0)
        np.testing.assert_array_equal(np.asarray(out.weights)[strong], np.asarray(w)[strong])
        assert np.all(np.asarray(out.weights)[GRAPH.mask == 0] == 0)
        assert np.all(np.asarray(out.mask) <= GRAPH.mask)
        assert np.all(np.asarray(out.weights)[np.asarray(out.mask) == 0] == 0)
        removed = (GRAPH.mask > 0) & (np.asarray(out.mask) == 0)
        assert float(out.pruned_fraction) == pytest.approx(removed.sum() / GRAPH.mask.sum())


def test_removal_frequency_matches_the_probabilities(key):
    """E[#removed in column j] = sum_i P(p_ij > u) = sum_i p_ij = 1 for a column with weak edges."""
    w = jnp.asarray(np.random.default_rng(1).uniform(-0.009, 0.009, (9, 9)).astype(np.float32)) * GRAPH.mask
    outs = jax.vmap(lambda k: PRUNE(k, w, jnp.asarray(GRAPH.mask), threshold=0.01, temperature=0.002))(
        jax.random.split(key, 2000))
    freq = 1.0 - np.asarray(outs.mask).mean(axis=0)
    np.testing.assert_allclose(freq[GRAPH.mask > 0], np.asarray(outs.probabilities[0])[GRAPH.mask > 0], atol=0.04)


class TestPruningOpsJittedAndNot(chex.TestCase):
    """Pruning and sparsity, each checked jitted and not jitted."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_pruning_is_deterministic_given_the_key(self):
        w = jnp.asarray(np.random.default_rng(2).normal(0, 0.01, (9, 9)).astype(np.float32)) * GRAPH.mask
        prune = self.variant(boltzmann_prune, static_argnames=("threshold", "temperature"))
        a, b, c = (prune(jax.random.key(k), w, jnp.asarray(GRAPH.mask), threshold=0.01, temperature=0.01)
                   for k in (3, 3, 4))
        chex.assert_trees_all_equal(a, b)
        assert not np.array_equal(np.asarray(a.mask), np.asarray(c.mask))
        chex.assert_trees_all_close(a, PRUNE(jax.random.key(3), w, jnp.asarray(GRAPH.mask), threshold=0.01,
                                             temperature=0.01))  # the same result jitted and not

    @chex.variants(with_jit=True, without_jit=True)
    def test_sparsity_counts_zero_weights_on_allowed_edges(self):
        mask = jnp.array([[0.0, 1.0], [1.0, 1.0]])
        assert float(self.variant(sparsity)(jnp.array([[5.0, 0.0], [2.0, 0.0]]), mask)) == pytest.approx(2 / 3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_probabilities_of_a_column_are_its_weak_edges_boltzmann_weights(self):
        w = jnp.array([[0.0, 0.004], [0.0, 0.002], [0.0, 0.5]])  # column 1: two weak edges, one strong
        mask = jnp.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
        p = self.variant(pruning_probabilities, static_argnames=("threshold", "temperature"))(
            w, mask, threshold=0.01, temperature=0.001)
        e = np.exp([-4.0, -2.0])
        chex.assert_trees_all_close(p, jnp.array([[0.0, e[0] / e.sum()], [0.0, e[1] / e.sum()], [0.0, 0.0]]),
                                    rtol=1e-5)


def test_masks_are_respected_after_training_with_l1_and_pruning(key):
    x, y = logic_gates("AND")
    learner = deep(GRAPH, free_steps=30, nudged_steps=30, l1_strength=1.5e-4)

    @jax.jit
    def epoch(carry, k):
        w, mask = carry
        k1, k2 = jax.random.split(k)
        w, _ = learner.update(w, k1, x, y)
        pruned = boltzmann_prune(k2, w * mask, mask, threshold=0.01, temperature=5.0)
        return (pruned.weights, pruned.mask), sparsity(pruned.weights, jnp.asarray(GRAPH.mask))

    (w, mask), sparse = jax.lax.scan(epoch, (learner.init(key), jnp.asarray(GRAPH.mask)),
                                     jax.random.split(key, 30))
    assert np.all(np.asarray(w)[GRAPH.mask == 0] == 0)
    assert np.all(np.asarray(w)[np.asarray(mask) == 0] == 0)
    assert float(sparse[-1]) > 0 and np.all(np.diff(np.asarray(sparse)) >= 0)  # permanent pruning only grows


def test_bad_input_gives_clear_errors(key):
    w = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match=r"jeq.eqprop.pruning_probabilities\(threshold=-1.0\): must be >= 0"):
        pruning_probabilities(w, w, threshold=-1.0, temperature=1.0)
    with pytest.raises(ValueError, match=r"jeq.eqprop.pruning_probabilities\(temperature=0.0\): must be > 0"):
        pruning_probabilities(w, w, threshold=0.1, temperature=0.0)
    with pytest.raises(ValueError, match=r"jeq.eqprop.boltzmann_prune\(threshold=-1.0\): must be >= 0"):
        boltzmann_prune(key, w, w, threshold=-1.0)
    with pytest.raises(ValueError, match=r"boltzmann_prune\(mask\): must have shape \(3, 3\), got shape \(2, 3\)"):
        boltzmann_prune(key, w, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"boltzmann_prune\(weights\): must have 2 axes"):
        boltzmann_prune(key, jnp.zeros(3), jnp.zeros(3))
